"""Stand-in datasets in each workload's own layout, built from the real shared datasets.

The workloads' own data (face photos, a Kaggle competition, Tiny ImageNet, mnist-original.mat)
is not on this machine; these builders write real images in exactly those layouts so every
preset runs end to end. Used by bench/presets.py (full size) and the tests (small slices).

    python -m bench.standins OUT_DIR [--per-class N]
"""

from __future__ import annotations

import argparse
import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from cnnlab.data.read.idx import read_idx

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets"
MNIST = SHARED / "mnist"
CIFAR_ZIP = SHARED / "cifar10" / "cifar10-jpeg.zip"
FASHION = Path("/usr/share/datasets/fashion-mnist")


def mnist_original_mat(dest: Path, n_train: int = 60000, n_test: int = 10000) -> Path:
    """mnist-original.mat as mldata.org served it: data 784 x N uint8 (a column per image), label 1 x N."""
    import scipy.io

    x = np.concatenate([read_idx(MNIST / "train-images-idx3-ubyte.gz")[:n_train],
                        read_idx(MNIST / "t10k-images-idx3-ubyte.gz")[:n_test]])
    y = np.concatenate([read_idx(MNIST / "train-labels-idx1-ubyte.gz")[:n_train],
                        read_idx(MNIST / "t10k-labels-idx1-ubyte.gz")[:n_test]])
    dest.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(dest, {"data": x.reshape(len(x), 784).T, "label": y.astype(np.float64)[None, :]}, format="5")
    return dest


def kaggle_npy_csv(dest: Path, n_train: int = 60000, n_test: int = 10000) -> Path:
    """train.npy (N x 784 uint8), train.csv (image_id,label, rows shuffled), test.npy (+ its labels aside)."""
    dest.mkdir(parents=True, exist_ok=True)
    x = read_idx(FASHION / "train-images-idx3-ubyte.gz")[:n_train]
    y = read_idx(FASHION / "train-labels-idx1-ubyte.gz")[:n_train]
    np.save(dest / "train.npy", x.reshape(len(x), 784))
    order = np.random.default_rng(0).permutation(len(x))
    (dest / "train.csv").write_text("image_id,label\n" + "".join(f"{i},{y[i]}\n" for i in order))
    np.save(dest / "test.npy", read_idx(FASHION / "t10k-images-idx3-ubyte.gz")[:n_test].reshape(-1, 784))
    np.save(dest / "test_labels.npy", read_idx(FASHION / "t10k-labels-idx1-ubyte.gz")[:n_test])
    return dest


def cifar_members(per_class: dict[str, int]) -> list[zipfile.ZipInfo]:
    """The first images of each class in each split ({"train": n, "test": m}) of the CIFAR-10 JPEG zip."""
    with zipfile.ZipFile(CIFAR_ZIP) as z:
        picked, counts = [], {}
        for info in z.infolist():
            parts = info.filename.split("/")
            if len(parts) != 4 or not parts[3]:
                continue
            key = (parts[1], parts[2])
            if counts.get(key, 0) < per_class[parts[1]]:
                counts[key] = counts.get(key, 0) + 1
                picked.append(info)
        return picked


def faces_folder(dest: Path, train_per_class: int = 4500, dev_per_class: int = 500, test_per_class: int = 1000,
                 names: tuple[str, str, str] = ("train", "dev", "test")) -> Path:
    """An ImageFolder tree with train/ dev/ test/ (as the face-photo workload has), from CIFAR-10 JPEGs;
    `names` renames the three split folders (the write-up's train_sample/ dev_sample/ test_sample/)."""
    counts: dict[tuple[str, str], int] = {}
    folder = dict(zip(("train", "dev", "test"), names))
    with zipfile.ZipFile(CIFAR_ZIP) as z:
        for info in cifar_members({"train": train_per_class + dev_per_class, "test": test_per_class}):
            _, split, cls, name = info.filename.split("/")
            n = counts[split, cls] = counts.get((split, cls), 0) + 1
            target = "test" if split == "test" else ("train" if n <= train_per_class else "dev")
            path = dest / folder[target] / cls / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(z.read(info))
    return dest


def tiny_imagenet_folder(dest: Path, train_per_class: int = 5000, val_per_class: int = 1000,
                         test_images: int = 100) -> Path:
    """tiny-imagenet-200/ layout (wnids.txt, words.txt, train/<wnid>/images, val annotations, test/images)
    with CIFAR-10's ten classes upscaled to 64x64 JPEGs."""
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    wnids = {c: f"n{1000000 + 7919 * i:08d}" for i, c in enumerate(classes)}
    counts: dict[tuple[str, str], int] = {}
    val_lines: list[str] = []
    k_test = 0

    def jpeg(blob: bytes) -> bytes:
        im = Image.open(io.BytesIO(blob)).convert("RGB").resize((64, 64), Image.Resampling.BICUBIC)
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=90)
        return buf.getvalue()

    with zipfile.ZipFile(CIFAR_ZIP) as z:
        members = cifar_members({"train": train_per_class, "test": val_per_class + test_images // 10 + 1})
        for info in members:
            _, split, cls, _ = info.filename.split("/")
            wnid = wnids[cls]
            n = counts[split, cls] = counts.get((split, cls), 0) + 1
            if split == "train":
                path = dest / "train" / wnid / "images" / f"{wnid}_{n - 1}.JPEG"
            elif n <= val_per_class:
                path = dest / "val" / "images" / f"val_{len(val_lines)}.JPEG"
                val_lines.append(f"{path.name}\t{wnid}\t0\t0\t63\t63\n")
            elif k_test < test_images:
                path, k_test = dest / "test" / "images" / f"test_{k_test}.JPEG", k_test + 1
            else:
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(jpeg(z.read(info)))
    (dest / "val" / "val_annotations.txt").write_text("".join(val_lines))
    (dest / "wnids.txt").write_text("".join(f"{w}\n" for w in wnids.values()))
    (dest / "words.txt").write_text("".join(f"{w}\t{c}\n" for c, w in wnids.items()))
    return dest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    args = ap.parse_args()
    print(mnist_original_mat(args.out / "mnist-original.mat"))
    print(kaggle_npy_csv(args.out / "kaggle"))
    print(faces_folder(args.out / "faces"))
    print(tiny_imagenet_folder(args.out / "tiny-imagenet-200"))


if __name__ == "__main__":
    main()
