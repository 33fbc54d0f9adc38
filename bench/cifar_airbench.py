"""GPU figure 3: cnnlab's fastest CIFAR-10 preset (configs/cifar10_fast.yaml) side by side with
airbench94 (PyPI `airbench` 0.1.8, Keller Jordan's 94%-in-seconds CIFAR-10 trainer), same GPU,
same process, same images.

Both train on the JPEG copy of CIFAR-10 (../shared/datasets/cifar10/cifar10-jpeg.zip): cnnlab
reads the zip itself; for airbench the same decoded pixels (cnnlab's decoder, so the arrays are
identical) are written as the `train.pt` / `test.pt` files its CifarLoader reads. Figures:
airbench94's wall time (its own train94, after its warm-up run, TTA evaluation excluded) and
test accuracy (its TTA level 2); cnnlab's time to 94% test accuracy (the training and evaluation
seconds of metrics.jsonl up to the first epoch at or above the target) and the ratio of the two.
airbench94 reaches about 94.0% on the official PNG-exact CIFAR-10; on the JPEG copy it may fall
short, and then the target is the accuracy airbench reached (said in the output).

The device machine has no network and receives only the checkout (64 MiB in all): the zip does
not travel, so `pack` stores its JPEG bytes without the zip's per-file overhead (52.7 MiB) in
bench/data/cifar10-jpeg.npz, carried with the run, and `unpack` rebuilds the zip there, byte for
byte the same members. airbench is pure Python (no wheel on PyPI): `bash bench/gpu.sh --pack`
builds its wheel into .whl/ with the other wheels the device machine lacks.

    python bench/cifar_airbench.py --out bench/out/cifar_airbench.json          # on a GPU
    python bench/cifar_airbench.py --dry-run --out /tmp/cifar.json              # a few steps on CPU
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED_ZIP = ROOT.parent / "shared" / "datasets" / "cifar10" / "cifar10-jpeg.zip"
PACKED = "cifar10-jpeg.npz"
TARGET = 0.94


def pack(src: Path, dest: Path, limit: int | None = None) -> Path:
    """The zip's members (names and JPEG bytes) as one .npz without pickles; `limit` members per split and class."""
    names, blobs, seen = [], [], {}
    with zipfile.ZipFile(src) as z:
        for info in z.infolist():
            if info.is_dir():
                continue
            key = tuple(info.filename.split("/")[1:3])
            seen[key] = seen.get(key, 0) + 1
            if limit is not None and seen[key] > limit:
                continue
            names.append(info.filename)
            blobs.append(z.read(info))
    offsets = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
    dest.parent.mkdir(parents=True, exist_ok=True)
    np.savez(dest, names=np.asarray(names), offsets=offsets, data=np.frombuffer(b"".join(blobs), dtype=np.uint8))
    return dest


def unpack(packed: Path, dest: Path) -> Path:
    """Rebuild the image-folder zip from pack's .npz (stored, not deflated: JPEGs do not shrink)."""
    with np.load(packed, allow_pickle=False) as z:
        names, offsets, data = z["names"], z["offsets"], z["data"]
    dest.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_STORED) as out:
        for i, name in enumerate(names.tolist()):
            out.writestr(name, data[offsets[i]:offsets[i + 1]].tobytes())
    return dest


def find_cifar(data_dir: Path | None, work: Path) -> Path:
    """The CIFAR-10 JPEG zip: given, packed beside the checkout (bench/data), or ../shared; one line if none."""
    places = [d for d in (data_dir, ROOT / "bench" / "data") if d is not None]
    for d in places:
        if (d / "cifar10-jpeg.zip").is_file():
            return d / "cifar10-jpeg.zip"
        if (d / PACKED).is_file():
            return unpack(d / PACKED, work / "cifar10-jpeg.zip")
    if SHARED_ZIP.is_file():
        return SHARED_ZIP
    looked = ", ".join(str(p) for p in [*places, SHARED_ZIP])
    raise SystemExit(f"CIFAR-10 not found (looked for cifar10-jpeg.zip or {PACKED} in {looked}); run "
                     f"`bash bench/gpu.sh --pack cifar` where ../shared has it and carry bench/data")


def airbench_files(bundle, folder: Path) -> Path:
    """train.pt / test.pt as airbench's CifarLoader reads them, from cnnlab's decoded arrays (N x H x W x C)."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    for split, name in (("train", "train.pt"), ("test", "test.pt")):
        s = getattr(bundle, split)
        torch.save({"images": s.x.permute(0, 2, 3, 1).contiguous(), "labels": s.y.clone(),
                    "classes": list(bundle.classes)}, folder / name)
    return folder


def run_airbench(folder: Path) -> dict:
    """airbench94 on `folder`/{train,test}.pt: a warm-up run, then the timed one."""
    import torch

    try:
        import airbench
    except ImportError:
        return {"status": "skipped", "reason": "airbench is not installed (bash bench/gpu.sh --pack builds its wheel)"}
    if not torch.cuda.is_available():
        return {"status": "skipped", "reason": "airbench94 runs on CUDA only (make_net94 calls .cuda())"}
    here = os.getcwd()
    os.chdir(folder.parent)  # its test loader reads ./cifar10/test.pt
    try:
        with contextlib.redirect_stdout(sys.stderr):
            train = airbench.CifarLoader(folder.name, train=True, batch_size=1024, aug={"flip": True, "translate": 2},
                                         altflip=True)
            test = airbench.CifarLoader(folder.name, train=False, batch_size=2000)
            airbench.warmup94(train_loader=train)
            torch.cuda.synchronize()
            start = time.perf_counter()
            model = airbench.train94(train_loader=train, verbose=False)
            torch.cuda.synchronize()
            seconds = time.perf_counter() - start
            acc = airbench.evaluate(model, test, tta_level=2)
    finally:
        os.chdir(here)
    return {"status": "ok", "seconds": round(seconds, 3), "test_acc": acc, "version": getattr(airbench, "__version__", "0.1.8")}


def run_cnnlab(zip_path: Path, out: Path, dry: bool) -> dict:
    """configs/cifar10_fast.yaml in this process; time to the target from metrics.jsonl."""
    from cnnlab.resolve import load_config
    from cnnlab.training.runner import train

    overrides = [f"data.path={zip_path}", f"train.out_dir={out / 'runs'}"]
    if dry:
        overrides += ["device=cpu", "train.epochs=1", "train.batch_size=64", "train.eval_batch_size=256",
                      "model.channels=[8,16,16]", "model.stem_channels=8", "optim.lr=0.1"]
    cfg = load_config(ROOT / "configs" / "cifar10_fast.yaml", overrides)
    result = train(cfg, quiet=True)
    history = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    return {"status": "ok", "run_dir": str(result.run_dir), "epochs": len(history),
            "wall_seconds": result.summary["wall_seconds"], "device": result.summary["device"],
            "timeline": [(h["epoch"], round(h["seconds"], 3), h["test_acc"]) for h in history]}


def time_to(timeline: list, target: float) -> float | None:
    elapsed = 0.0
    for _, seconds, acc in timeline:
        elapsed += seconds
        if acc >= target:
            return elapsed
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "cifar_airbench.json")
    ap.add_argument("--data", type=Path, default=None, help="folder with cifar10-jpeg.zip or cifar10-jpeg.npz")
    ap.add_argument("--dry-run", action="store_true", help="a small slice, one epoch, on the CPU")
    ap.add_argument("--pack", type=Path, default=None, help="write the packed .npz here and stop")
    ap.add_argument("--limit", type=int, default=None, help="--pack/--dry-run: images per split and class")
    args = ap.parse_args()
    work = args.out.parent / "cifar_airbench"
    if args.pack is not None:
        print(pack(SHARED_ZIP, args.pack, args.limit))
        return 0
    zip_path = find_cifar(args.data, work)
    if args.dry_run:  # a slice of the real images, through the same two paths
        zip_path = unpack(pack(zip_path, work / "slice.npz", args.limit or 20), work / "slice.zip")
    from cnnlab.config import DataConfig
    from cnnlab.data.build import build_data

    bundle = build_data(DataConfig(format="image_folder", path=str(zip_path), val_fraction=0.0, in_memory=True), 0)
    folder = airbench_files(bundle, work / "cifar10")
    report: dict = {"data": str(zip_path), "images": {"train": len(bundle.train), "test": len(bundle.test)},
                    "airbench": run_airbench(folder), "cnnlab": run_cnnlab(zip_path, work, args.dry_run)}
    ab, cn = report["airbench"], report["cnnlab"]
    target = TARGET if ab.get("status") != "ok" else min(TARGET, ab["test_acc"])
    report["target_acc"] = target
    report["cnnlab_seconds_to_target"] = t = time_to(cn["timeline"], target)
    report["ratio_to_airbench"] = (round(t / ab["seconds"], 3) if t is not None and ab.get("status") == "ok" else None)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("target_acc", "cnnlab_seconds_to_target", "ratio_to_airbench")}))
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
