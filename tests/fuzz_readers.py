"""Fuzzing every data-format reader with Hypothesis: real files, corrupted.

Each example copies a small, valid dataset of one format (real MNIST, Fashion-MNIST and
CIFAR-10 images), damages one of its files (truncation, flipped bytes, a random header, a
header declaring a huge size, an empty file, hostile archive member names, a pickle that
would run code) and reads it as `cnnlab train` would. The promise checked: a RawDataset
with consistent shapes, or a UserError of one line; never another exception, never a file
written outside the dataset's folder, and never more memory than the cap this process sets
on itself (MemoryError is a failure: a reader must check declared sizes before allocating).

    python tests/fuzz_readers.py [--examples 60] [--examples-of mat=20] [--seed 0] [--json F]
    # one line per format; exit 1 on a failure. --examples-of FORMAT=N: N examples for that format
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import resource
import shutil
import sys
import tempfile
import time
import traceback
import zipfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from conftest import CIFAR_ZIP, FASHION, MNIST, cifar_arrays, idx_slice  # noqa: E402
from PIL import Image  # noqa: E402

from cnnlab.config import DataConfig  # noqa: E402
from cnnlab.data.build import read_raw  # noqa: E402
from cnnlab.data.types import RawDataset  # noqa: E402
from cnnlab.errors import UserError  # noqa: E402

MEMORY_HEADROOM = 2 * 2**30  # what a reader may allocate beyond the interpreter and its libraries


def planes(x: np.ndarray) -> np.ndarray:
    return x.transpose(0, 3, 1, 2).reshape(len(x), 3072)


def build_datasets(root: Path) -> dict[str, tuple[dict, Path]]:
    """format name -> (data: section options, dataset path), each small and valid."""
    out: dict[str, tuple[dict, Path]] = {}
    out["idx-gz"] = ({"format": "idx"}, idx_slice(MNIST, root / "idx-gz", 60, 20))
    out["idx-raw"] = ({"format": "idx"}, idx_slice(FASHION, root / "idx-raw", 60, 20, compress=False))
    from conftest import read_idx

    x = read_idx(FASHION / "t10k-images-idx3-ubyte.gz")[:40]
    y = read_idx(FASHION / "t10k-labels-idx1-ubyte.gz")[:40]
    d = root / "npy_csv"
    d.mkdir()
    np.save(d / "train.npy", x.reshape(40, 784))
    (d / "train.csv").write_text("image_id,label\n" + "".join(f"{i},{v}\n" for i, v in enumerate(y)))
    out["npy_csv"] = ({"format": "npy_csv"}, d)
    d = root / "csv_pixels"
    d.mkdir()
    header = "label," + ",".join(f"pixel{i}" for i in range(784)) + "\n"
    rows = "".join(f"{v}," + ",".join(map(str, img.reshape(-1))) + "\n" for img, v in zip(x[:30], y[:30]))
    (d / "train.csv").write_text(header + rows)
    out["csv_pixels"] = ({"format": "csv_pixels"}, d)
    import scipy.io

    mat = root / "mat" / "mnist.mat"
    mat.parent.mkdir()
    scipy.io.savemat(mat, {"data": x.reshape(40, 784).T, "label": y.astype(np.float64)[None, :]}, format="5")
    out["mat"] = ({"format": "mat", "test_from": 30}, mat)
    arrays = cifar_arrays(4, 2)
    (xtr, ytr, _), (xte, yte, _) = arrays["train"], arrays["test"]
    py = root / "cifar" / "cifar-10-batches-py"
    py.mkdir(parents=True)
    for b, idx in enumerate(np.array_split(np.arange(len(xtr)), 5), start=1):
        (py / f"data_batch_{b}").write_bytes(pickle.dumps({b"labels": ytr[idx].tolist(), b"data": planes(xtr[idx])},
                                                          protocol=2))
    (py / "test_batch").write_bytes(pickle.dumps({b"labels": yte.tolist(), b"data": planes(xte)}, protocol=2))
    (py / "batches.meta").write_bytes(pickle.dumps({b"label_names": [str(i).encode() for i in range(10)]}, protocol=2))
    out["cifar-python"] = ({"format": "cifar"}, py)
    binary = root / "cifar-bin" / "cifar-10-batches-bin"
    binary.mkdir(parents=True)
    for b, idx in enumerate(np.array_split(np.arange(len(xtr)), 5), start=1):
        (binary / f"data_batch_{b}.bin").write_bytes(np.hstack([ytr[idx, None].astype(np.uint8), planes(xtr[idx])]).tobytes())
    (binary / "test_batch.bin").write_bytes(np.hstack([yte[:, None].astype(np.uint8), planes(xte)]).tobytes())
    out["cifar-binary"] = ({"format": "cifar"}, binary)
    with zipfile.ZipFile(CIFAR_ZIP) as z:
        members = [n for n in sorted(z.namelist()) if n.endswith(".jpg") and "/test/" in n]
        picked = [n for c in ("cat", "dog", "ship") for n in [m for m in members if f"/{c}/" in m][:3]]
        images = {n: z.read(n) for n in [p for p in picked]}
    zpath = root / "image-zip" / "data.zip"
    zpath.parent.mkdir()
    with zipfile.ZipFile(zpath, "w") as z:
        for n, b in images.items():
            z.writestr("data/" + "/".join(n.split("/")[2:]), b)
    out["image_folder-zip"] = ({"format": "image_folder"}, zpath)
    folder = root / "image-folder"
    for n, b in images.items():
        dest = folder / "/".join(n.split("/")[2:])
        dest.parent.mkdir(parents=True, exist_ok=True)
        png = io.BytesIO()
        Image.open(io.BytesIO(b)).save(png, format="PNG")
        dest.with_suffix(".png").write_bytes(png.getvalue())
    out["image_folder-png"] = ({"format": "image_folder"}, folder)
    tiny = root / "tiny" / "tiny-imagenet-200"
    wnids = ["n01443537", "n01629819"]
    val = []
    for k, (w, (_, b)) in enumerate(zip(wnids * 3, list(images.items())[:6])):
        split = "train" if k < 4 else "val"
        dest = (tiny / "train" / w / "images" / f"{w}_{k}.JPEG") if split == "train" else (tiny / "val" / "images" / f"val_{k}.JPEG")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(b)
        if split == "val":
            val.append(f"val_{k}.JPEG\t{w}\t0\t0\t31\t31\n")
    (tiny / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (tiny / "words.txt").write_text("".join(f"{w}\tclass {w}\n" for w in wnids))
    (tiny / "val" / "val_annotations.txt").write_text("".join(val))
    out["tiny_imagenet"] = ({"format": "tiny_imagenet", "image_size": 32}, tiny)
    return out


class Evil:
    """A pickle that would run a command when loaded."""

    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


def mutate(data: bytes, kind: str, draw) -> bytes:
    n = len(data)
    if kind == "truncate":
        return data[: draw(st.integers(0, max(0, n - 1)))]
    if kind == "flip":
        out = bytearray(data)
        for _ in range(draw(st.integers(1, 8))):
            if out:
                i = draw(st.integers(0, len(out) - 1))
                out[i] ^= draw(st.integers(1, 255))
        return bytes(out)
    if kind == "header":
        head = draw(st.binary(min_size=1, max_size=64))
        return head + data[len(head):]
    if kind == "huge":  # a big-endian and a little-endian 2**31 - 1 somewhere in the header
        at = draw(st.integers(0, max(0, min(n, 64) - 4)))
        value = draw(st.sampled_from([b"\x7f\xff\xff\xff", b"\xff\xff\xff\x7f", b"\x00\x01\x00\x00"]))
        return data[:at] + value + data[at + 4:]
    if kind == "empty":
        return b""
    if kind == "garbage":
        return draw(st.binary(min_size=1, max_size=4096))
    if kind == "evil_pickle":
        return pickle.dumps(Evil(), protocol=2)
    raise ValueError(kind)


def hostile_zip(path: Path, draw) -> None:
    """Rename a member of a zip to an escaping name, or flag it as encrypted."""
    with zipfile.ZipFile(path) as z:
        items = [(i, z.read(i)) for i in z.infolist()]
    victim = draw(st.integers(0, len(items) - 1))
    how = draw(st.sampled_from(["absolute", "dotdot", "encrypted", "huge_declared"]))
    with zipfile.ZipFile(path, "w") as z:
        for k, (info, blob) in enumerate(items):
            if k == victim and how == "absolute":
                info = zipfile.ZipInfo("/tmp/" + info.filename)
            elif k == victim and how == "dotdot":
                info = zipfile.ZipInfo("../../" + info.filename)
            z.writestr(info, blob)
    if how in ("encrypted", "huge_declared"):
        raw = bytearray(path.read_bytes())
        at = raw.find(b"PK\x01\x02")
        for _ in range(victim):
            at = raw.find(b"PK\x01\x02", at + 4)
        if how == "encrypted":
            raw[at + 8] |= 0x1
        else:  # the uncompressed size field of the central directory entry
            raw[at + 24: at + 28] = (2**31 - 1).to_bytes(4, "little")
        path.write_bytes(bytes(raw))


def check(fmt: str, options: dict, path: Path) -> str:
    """'ok' or 'refused'; raises AssertionError for a broken promise."""
    before = set(os.listdir(path.parent.parent))
    try:
        raw = read_raw(DataConfig.model_validate({**options, "path": str(path), "cache": False}))
    except UserError as e:
        assert "\n" not in str(e).strip(), f"{fmt}: a message of several lines: {e}"
        outcome = "refused"
    else:
        assert isinstance(raw, RawDataset) and len(raw.train) > 0
        assert raw.train.y is None or len(raw.train.y) == len(raw.train.x)
        assert raw.train.y is None or int(raw.train.y.max()) < len(raw.classes)
        outcome = "ok"
    assert set(os.listdir(path.parent.parent)) == before, f"{fmt}: files written beside the dataset"
    assert not Path("pwned.txt").exists(), f"{fmt}: a pickle ran code"
    return outcome


def make_case(examples: int, seed_value: int, root: Path, fmt: str, options: dict, pristine: Path,
              files: list[Path], kinds: list[str], outcomes: dict[str, int]):
    """The Hypothesis test of one format: copy the dataset, damage one file, read it."""

    @seed(seed_value)
    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.data())
    def case(data) -> None:
        tmp = Path(tempfile.mkdtemp(dir=root))
        (tmp / "inner").mkdir()
        target = tmp / "inner" / pristine.name
        if pristine.is_dir():
            shutil.copytree(pristine, target)
        else:
            shutil.copy(pristine, target)
        which = data.draw(st.integers(0, len(files) - 1))
        victim = target / files[which].relative_to(pristine) if pristine.is_dir() else target
        if fmt == "image_folder-zip" and data.draw(st.booleans()):
            hostile_zip(victim, data.draw)
        else:
            victim.write_bytes(mutate(victim.read_bytes(), data.draw(st.sampled_from(kinds)), data.draw))
        try:
            outcomes[check(fmt, options, target)] += 1
        finally:
            shutil.rmtree(tmp)

    return case


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--examples", type=int, default=60)
    ap.add_argument("--examples-of", action="append", default=[], metavar="FORMAT=N",
                    help="another number of examples for one format (repeatable)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    out = args.json.resolve() if args.json else None
    examples = {fmt: int(n) for fmt, n in (x.split("=") for x in args.examples_of)}
    root = Path(tempfile.mkdtemp(prefix="cnnlab-fuzz-"))
    os.chdir(root)
    datasets = build_datasets(root / "pristine")
    used = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (used + MEMORY_HEADROOM, resource.RLIM_INFINITY))
    report, failed = {}, False
    for fmt, (options, pristine) in datasets.items():
        assert check(fmt, options, pristine) == "ok", f"{fmt}: the undamaged dataset does not read"
        files = sorted(p for p in (pristine.rglob("*") if pristine.is_dir() else [pristine]) if p.is_file())
        kinds = ["truncate", "flip", "header", "huge", "empty", "garbage"]
        if fmt == "cifar-python":
            kinds.append("evil_pickle")
        outcomes: dict[str, int] = {"ok": 0, "refused": 0}
        start = time.perf_counter()

        case = make_case(examples.get(fmt, args.examples), args.seed, root, fmt, options, pristine, files, kinds,
                         outcomes)
        try:
            case()
        except Exception as e:  # Hypothesis re-raises the smallest failing example (a group when several)
            failed = True
            for sub in getattr(e, "exceptions", [e]):
                where = traceback.extract_tb(sub.__traceback__)[-1]
                print(f"FAIL {fmt}: {type(sub).__name__}: {str(sub).splitlines()[0][:300]} "
                      f"({Path(where.filename).name}:{where.lineno})", flush=True)
        seconds = time.perf_counter() - start
        report[fmt] = {**outcomes, "seconds": round(seconds, 1)}
        print(f"{fmt:18s} {sum(outcomes.values()):4d} inputs: {outcomes['ok']:4d} read, {outcomes['refused']:4d} refused "
              f"with one line; {seconds:5.1f} s", flush=True)
    if out is not None:
        out.write_text(json.dumps(report, indent=2) + "\n")
    shutil.rmtree(root, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
