"""How long the dataset readers take at the real datasets' sizes (files built here from real pixels).

    PYTHONPATH=. python bench/bench_data_readers.py              # full size: run on a quiet machine
    PYTHONPATH=. python bench/bench_data_readers.py --scale 0.02 # a quick check that it runs

Built in a temporary folder from the shared MNIST and CIFAR-10 files (rows and images are
repeated to reach the real counts): Kaggle's train.csv (42,000 x 785), CIFAR-10 in both
versions (60,000 images), mnist-original.mat (70,000) and a Tiny ImageNet tree (110,000
64x64 JPEGs). Each reader runs with the decode cache off, then (Tiny ImageNet) with it.
"""

from __future__ import annotations

import argparse
import gzip
import io
import pickle
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

from cnnlab.config import DataConfig
from cnnlab.data.build import read_raw

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def idx(path: Path) -> np.ndarray:
    raw = gzip.decompress(path.read_bytes())
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def tile(a: np.ndarray, n: int) -> np.ndarray:
    return np.resize(a, (n, *a.shape[1:]))


def cifar_pixels(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first n CIFAR-10 training JPEGs of the shared zip, decoded (N x 32 x 32 x 3), and labels."""
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    xs, ys = [], []
    with zipfile.ZipFile(SHARED / "cifar10" / "cifar10-jpeg.zip") as z:
        for name in z.namelist():
            parts = name.split("/")
            if len(parts) == 4 and parts[1] == "train" and parts[3]:
                xs.append(np.asarray(Image.open(io.BytesIO(z.read(name))).convert("RGB")))
                ys.append(classes.index(parts[2]))
                if len(xs) == n:
                    break
    return np.stack(xs), np.asarray(ys, np.int64)


def timed(label: str, cfg: DataConfig, rows: list) -> None:
    t = time.perf_counter()
    raw = read_raw(cfg)
    seconds = time.perf_counter() - t
    n = len(raw.train) + (len(raw.val) if raw.val is not None else 0) + (len(raw.test) if raw.test is not None else 0)
    rows.append((label, n, seconds))
    print(f"{label:38s} {n:8d} images {seconds:8.2f} s", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of the real sizes")
    args = ap.parse_args()
    s = lambda n: max(20, int(n * args.scale))  # noqa: E731
    rows: list = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        mx = idx(SHARED / "mnist" / "train-images-idx3-ubyte.gz")
        my = idx(SHARED / "mnist" / "train-labels-idx1-ubyte.gz")

        n = s(42000)
        body = np.hstack([tile(my[:, None], n), tile(mx.reshape(-1, 784), n)])
        with open(root / "train.csv", "w") as f:
            f.write("label," + ",".join(f"pixel{i}" for i in range(784)) + "\n")
            np.savetxt(f, body, fmt="%d", delimiter=",")
        timed("csv_pixels (Kaggle train.csv)", DataConfig(format="csv_pixels", path=str(root / "train.csv")), rows)

        n = s(70000)
        scipy.io.savemat(root / "mnist-original.mat", {"data": tile(mx.reshape(-1, 784), n).T,
                                                       "label": tile(my.astype(float), n)[None]})
        timed("mat (mnist-original.mat)", DataConfig(format="mat", path=str(root / "mnist-original.mat"),
                                                     test_from=max(1, n * 6 // 7)), rows)

        px, py = cifar_pixels(min(s(60000), 5000))
        n_train, n_test = s(50000), s(10000)
        flat = px.transpose(0, 3, 1, 2).reshape(len(px), 3072)
        for name in ("cifar-10-batches-py", "cifar-10-batches-bin"):
            (root / name).mkdir()
        for b, idx_ in enumerate(np.array_split(np.arange(n_train), 5), start=1):
            x, y = tile(flat, n_train)[idx_], tile(py, n_train)[idx_]
            with open(root / "cifar-10-batches-py" / f"data_batch_{b}", "wb") as f:
                pickle.dump({b"data": x, b"labels": y.tolist()}, f, protocol=2)
            (root / "cifar-10-batches-bin" / f"data_batch_{b}.bin").write_bytes(np.hstack([y[:, None].astype(np.uint8), x]).tobytes())
        x, y = tile(flat, n_test), tile(py, n_test)
        with open(root / "cifar-10-batches-py" / "test_batch", "wb") as f:
            pickle.dump({b"data": x, b"labels": y.tolist()}, f, protocol=2)
        (root / "cifar-10-batches-bin" / "test_batch.bin").write_bytes(np.hstack([y[:, None].astype(np.uint8), x]).tobytes())
        timed("cifar (Python version, pickles)", DataConfig(format="cifar", path=str(root / "cifar-10-batches-py")), rows)
        timed("cifar (binary version)", DataConfig(format="cifar", path=str(root / "cifar-10-batches-bin")), rows)

        # Tiny ImageNet: 200 classes x 500 train + 10,000 val JPEGs, 64x64, in a zip as distributed.
        jpegs = []
        for img in px[:200]:
            buf = io.BytesIO()
            Image.fromarray(img).resize((64, 64), Image.Resampling.BICUBIC).save(buf, format="JPEG", quality=90)
            jpegs.append(buf.getvalue())
        wnids = [f"n{i:08d}" for i in range(200)]
        per_class, n_val = max(1, s(100000) // 200), s(10000)
        with zipfile.ZipFile(root / "tiny-imagenet-200.zip", "w") as z:
            z.writestr("tiny-imagenet-200/wnids.txt", "\n".join(wnids) + "\n")
            z.writestr("tiny-imagenet-200/words.txt", "".join(f"{w}\tclass {w}\n" for w in wnids))
            for c, w in enumerate(wnids):
                for k in range(per_class):
                    z.writestr(f"tiny-imagenet-200/train/{w}/images/{w}_{k}.JPEG", jpegs[(c + k) % len(jpegs)])
            z.writestr("tiny-imagenet-200/val/val_annotations.txt",
                       "".join(f"val_{k}.JPEG\t{wnids[k % 200]}\t0\t0\t63\t63\n" for k in range(n_val)))
            for k in range(n_val):
                z.writestr(f"tiny-imagenet-200/val/images/val_{k}.JPEG", jpegs[k % len(jpegs)])
        zpath = str(root / "tiny-imagenet-200.zip")
        timed("tiny_imagenet (zip, decode)", DataConfig(format="tiny_imagenet", path=zpath, cache_dir=str(root / "cache")), rows)
        timed("tiny_imagenet (zip, from the cache)", DataConfig(format="tiny_imagenet", path=zpath, cache_dir=str(root / "cache")), rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
