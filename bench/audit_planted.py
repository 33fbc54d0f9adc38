"""Planted-defect benchmark of `cnnlab data audit` (duplicates, leaks, differing labels).

Real images (CIFAR-10 JPEGs from the shared zip, MNIST from the shared IDX files) get copies planted
at known places: exact copies, near-duplicates of each kind (JPEG re-encoded, resized, shifted by
1-2 px, cropped by 1-3 px a side and resized back, brightness changed, colour/contrast changed),
half of them inside the training split and half leaked into the test split, and exact copies filed
under another class. The audit runs on the result as a user would run it (image folder / IDX
files, through cnnlab's readers); this script reports recall per kind, precision, and the time per
10,000 images. `--offset` picks which real images are used: the thresholds in
cnnlab/audit/duplicates.py were tuned at offset 0, the figures in bench/RESULTS.md are at another
offset (images the tuning never saw).

    python -m bench.audit_planted --dataset cifar --offset 1000 --train 10000 --test 2000
    python -m bench.audit_planted --dataset mnist --offset 20000 --train 20000 --test 4000
    python -m bench.audit_planted --real mnist|fashion|cifar      # the unplanted data sets, whole
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from bench.standins import CIFAR_ZIP, FASHION, MNIST
from cnnlab.data.read.idx import read_idx

NEAR_RGB = ["jpeg", "resize", "shift", "crop", "bright", "color"]
NEAR_GRAY = ["jpeg", "resize", "shift", "crop", "bright", "contrast"]
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def transform(arr: np.ndarray, kind: str, rng: np.random.Generator, keep_size: bool = False) -> np.ndarray:
    """A near-duplicate of an (H, W, C) uint8 image; 'resize' returns it at another size (or, with
    keep_size, for formats of arrays, resized and back)."""
    h, w, c = arr.shape
    im = Image.fromarray(arr[:, :, 0] if c == 1 else arr)
    if kind == "jpeg":
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=int(rng.integers(50, 91)))
        out = Image.open(io.BytesIO(buf.getvalue()))
    elif kind == "resize":
        f = rng.choice([0.75, 1.5, 2.0])
        out = im.resize((round(w * f), round(h * f)), Image.Resampling.BILINEAR)
        if keep_size:
            out = out.resize((w, h), Image.Resampling.BILINEAR)
    elif kind == "shift":
        dy, dx = 0, 0
        while dy == 0 and dx == 0:
            dy, dx = (int(v) for v in rng.integers(-2, 3, 2))
        pad = np.pad(arr, ((2, 2), (2, 2), (0, 0)), mode="edge" if c == 3 else "constant")
        return np.ascontiguousarray(pad[2 - dy:2 - dy + h, 2 - dx:2 - dx + w])
    elif kind == "crop":
        left, top, right, bottom = (int(v) for v in rng.integers(1, 4, 4))
        out = im.crop((left, top, w - right, h - bottom)).resize((w, h), Image.Resampling.BILINEAR)
    elif kind == "bright":
        out = ImageEnhance.Brightness(im).enhance(float(rng.choice([rng.uniform(0.7, 0.85), rng.uniform(1.15, 1.3)])))
    elif kind == "contrast":
        out = ImageEnhance.Contrast(im).enhance(float(rng.uniform(0.7, 0.85)))
    elif kind == "color":
        out = ImageEnhance.Color(ImageEnhance.Contrast(im).enhance(float(rng.uniform(0.8, 1.2)))).enhance(
            float(rng.uniform(0.5, 1.5)))
    else:
        raise ValueError(kind)
    a = np.asarray(out.convert("L" if c == 1 else "RGB"))
    return a[:, :, None] if a.ndim == 2 else a


def base_images(dataset: str, offset: int, n_train: int, n_test: int) -> dict[str, tuple[list, list]]:
    """split -> (images (H, W, C) uint8, labels): n real images from `offset` on (per class for CIFAR)."""
    if dataset == "mnist":
        out = {}
        for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
            x = read_idx(MNIST / f"{prefix}-images-idx3-ubyte.gz")
            y = read_idx(MNIST / f"{prefix}-labels-idx1-ubyte.gz")
            start = offset if split == "train" else offset * n_test // max(n_train, 1)
            out[split] = ([im[:, :, None] for im in x[start:start + n]], [int(v) for v in y[start:start + n]])
        return out
    per = {"train": n_train // 10, "test": n_test // 10}
    start = {"train": offset // 10, "test": offset * n_test // max(n_train, 1) // 10}
    out = {"train": ([], []), "test": ([], [])}
    seen: dict[tuple[str, str], int] = {}
    with zipfile.ZipFile(CIFAR_ZIP) as z:
        for info in z.infolist():
            parts = info.filename.split("/")
            if len(parts) != 4 or not parts[3]:
                continue
            split, cls = parts[1], parts[2]
            k = seen.get((split, cls), 0)
            seen[(split, cls)] = k + 1
            if start[split] <= k < start[split] + per[split]:
                with z.open(info) as fh:
                    out[split][0].append(np.asarray(Image.open(fh).convert("RGB")))
                out[split][1].append(CLASSES.index(cls))
    return out


def plant(base: dict[str, tuple[list, list]], kinds: list[str], per_kind: int, seed: int, keep_size: bool = False):
    """(splits with planted copies appended, truth): truth rows are dicts kind, src, copy ((split, row))."""
    rng = np.random.default_rng(seed)
    x = {s: list(v[0]) for s, v in base.items()}
    y = {s: list(v[1]) for s, v in base.items()}
    n_classes = max(y["train"]) + 1
    plan = [("exact", per_kind), ("label_conflict", per_kind // 2)] + [(k, per_kind) for k in kinds]
    sources = rng.permutation(len(x["train"]))[: sum(n for _, n in plan)].tolist()
    truth = []
    for kind, n in plan:
        for j in range(n):
            src = sources.pop()
            img, label = x["train"][src], y["train"][src]
            if kind in ("exact", "label_conflict"):
                copy = img.copy()
            else:
                copy = transform(img, kind, rng, keep_size)
            if kind == "label_conflict":
                label = (label + 1 + int(rng.integers(n_classes - 1))) % n_classes
            split = "train" if kind == "label_conflict" or j % 2 == 0 else "test"
            x[split].append(copy)
            y[split].append(label)
            truth.append({"kind": kind, "src": ("train", src), "copy": (split, len(x[split]) - 1)})
    return x, y, truth


def write_dataset(dataset: str, x: dict, y: dict, dest: Path) -> tuple[dict, dict]:
    """The planted data in the dataset's own layout; (data: section, (split, row) -> the id the audit reports)."""
    ids: dict = {}
    if dataset == "mnist":
        from tests.conftest import write_idx

        dest.mkdir(parents=True, exist_ok=True)
        for split, prefix in (("train", "train"), ("test", "t10k")):
            write_idx(dest / f"{prefix}-images-idx3-ubyte", np.stack([a[:, :, 0] for a in x[split]]), compress=False)
            write_idx(dest / f"{prefix}-labels-idx1-ubyte", np.asarray(y[split], np.uint8), compress=False)
            ids.update({(split, i): (split, str(i)) for i in range(len(x[split]))})
        return {"format": "idx", "path": str(dest)}, ids
    for split in x:  # PNG keeps the planted pixels exactly; the resized copies keep their size
        for i, (a, label) in enumerate(zip(x[split], y[split])):
            rel = f"{CLASSES[label]}/{i:06d}.png"
            path = dest / split / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(a).save(path)
            ids[(split, i)] = (split, rel)
    return {"format": "image_folder", "path": str(dest), "image_size": 32}, ids


def evaluate(report: dict, truth: list[dict], ids: dict, x: dict) -> dict:
    """Recall per kind, exact precision (every exact group really identical), near precision per flagged image."""
    where: dict = {}
    for gi, g in enumerate(report["groups"]):
        for m in g["members"]:
            where[(m["split"], m["id"] if m["id"] is not None else str(m["index"]))] = gi
    inverse = {v: k for k, v in ids.items()}
    rows = {}
    for kind in dict.fromkeys(t["kind"] for t in truth):
        mine = [t for t in truth if t["kind"] == kind]
        found = [where.get(ids[t["src"]]) is not None and where.get(ids[t["src"]]) == where.get(ids[t["copy"]])
                 for t in mine]
        leak = [f for t, f in zip(mine, found) if t["copy"][0] == "test"]
        rows[kind] = {"planted": len(mine), "found": int(sum(found)), "recall": round(float(np.mean(found)), 4),
                      "leaks_planted": len(leak), "leaks_found": int(sum(leak))}
    conflicts = [t for t in truth if t["kind"] == "label_conflict"]
    flagged_conflict = sum(report["groups"][where[ids[t["src"]]]]["labels_differ"] for t in conflicts
                           if where.get(ids[t["src"]]) is not None)
    rows["label_conflict"]["labels_differ_flagged"] = int(flagged_conflict)
    exact_groups = [g for g in report["groups"] if g["kind"] == "exact"]
    wrong_exact = 0
    for g in exact_groups:
        arrays = [x[k[0]][k[1]] for k in (inverse[(m["split"], m["id"] if m["id"] is not None else str(m["index"]))]
                                          for m in g["members"])]
        wrong_exact += any(a.shape != arrays[0].shape or not np.array_equal(a, arrays[0]) for a in arrays)
    partner: dict = {}
    for t in truth:
        if t["kind"] not in ("exact", "label_conflict"):
            partner.setdefault(ids[t["src"]], set()).add(ids[t["copy"]])
            partner.setdefault(ids[t["copy"]], set()).add(ids[t["src"]])
    flagged = right = 0
    unplanted = []  # groups (their place in audit.json) with a member that has no planted partner in them
    for gi, g in enumerate(report["groups"]):
        if g["kind"] != "near":
            continue
        keys = [(m["split"], m["id"] if m["id"] is not None else str(m["index"])) for m in g["members"]]
        hits = [any(where.get(p) == gi for p in partner.get(k, ())) for k in keys]
        flagged += len(keys)
        right += sum(hits)
        if not all(hits):
            unplanted.append(gi)
    return {"kinds": rows,
            "exact": {"groups": len(exact_groups), "groups_not_identical": int(wrong_exact)},
            "near": {"flagged_images": flagged, "with_planted_partner": right,
                     "precision": round(right / flagged, 4) if flagged else None, "unplanted_groups": unplanted}}


def audit(data: dict, out: Path) -> tuple[dict, float]:
    from cnnlab.audit.run import audit_data
    from cnnlab.resolve import resolve

    cfg = resolve({"name": "bench", "data": data, "model": {"name": "cnn"}, "train": {"out_dir": str(out)}})
    t = time.perf_counter()
    if (out / "audit").exists():
        shutil.rmtree(out / "audit")
    report, _ = audit_data(cfg, out=out / "audit")
    return report, time.perf_counter() - t


def planted(args: argparse.Namespace) -> dict:
    base = base_images(args.dataset, args.offset, args.train, args.test)
    kinds = NEAR_RGB if args.dataset == "cifar" else NEAR_GRAY
    x, y, truth = plant(base, kinds, args.per_kind, args.seed, keep_size=args.dataset == "mnist")
    out = args.out / f"planted-{args.dataset}-{args.offset}"
    with tempfile.TemporaryDirectory() as tmp:
        data, ids = write_dataset(args.dataset, x, y, Path(tmp) / "data")
        report, seconds = audit(data, out)  # out/audit/audit.html: the groups, to look at
    result = evaluate(report, truth, ids, x)
    n = sum(len(v) for v in x.values())
    result.update({"dataset": args.dataset, "offset": args.offset, "images": n, "seconds": round(seconds, 1),
                   "seconds_per_10000": round(seconds / n * 10000, 1), "timing": report["timing"],
                   "summary": report["summary"]})
    return result


def real(name: str, out: Path) -> dict:
    data = {"mnist": {"format": "idx", "path": str(MNIST)}, "fashion": {"format": "idx", "path": str(FASHION)},
            "cifar": {"format": "image_folder", "path": str(CIFAR_ZIP)}}[name]
    report, seconds = audit(data, out)
    return {"dataset": name, "folder": str(out / "audit"), "seconds": round(seconds, 1), "summary": report["summary"],
            "counts": report["counts"], "timing": report["timing"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", choices=["cifar", "mnist"], default="cifar")
    p.add_argument("--offset", type=int, default=1000, help="first real image used (0: the tuning images)")
    p.add_argument("--train", type=int, default=10000)
    p.add_argument("--test", type=int, default=2000)
    p.add_argument("--per-kind", type=int, default=100)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--real", choices=["mnist", "fashion", "cifar"], help="audit an unplanted data set instead")
    p.add_argument("--out", type=Path, default=Path("bench/out/audit"))
    args = p.parse_args()
    if args.real:
        result = real(args.real, args.out / args.real)
    else:
        result = planted(args)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
