"""Write a folder of PNG images and labels.csv (filename,label,split) from the CIFAR-10 JPEG zip:
the layout examples/folder_with_csv/dataset.py reads.

    python examples/folder_with_csv/make_sample.py OUT [--zip ZIP] [--train 40] [--test 10]
"""

from __future__ import annotations

import argparse
import csv
import io
import zipfile
from pathlib import Path

from PIL import Image

ZIP = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "cifar10" / "cifar10-jpeg.zip"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--zip", type=Path, default=ZIP)
    ap.add_argument("--train", type=int, default=40, help="training images per class")
    ap.add_argument("--test", type=int, default=10, help="test images per class")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    taken: dict[tuple[str, str], int] = {}
    rows = []
    with zipfile.ZipFile(args.zip) as z:
        for name in sorted(z.namelist()):
            parts = name.split("/")
            if len(parts) != 4 or not parts[3].endswith(".jpg"):
                continue
            _, split, label, file = parts
            want = args.train if split == "train" else args.test
            if taken.get((split, label), 0) >= want:
                continue
            taken[(split, label)] = taken.get((split, label), 0) + 1
            target = f"{split}-{label}-{file[:-4]}.png"
            Image.open(io.BytesIO(z.read(name))).save(args.out / target)
            rows.append({"filename": target, "label": label, "split": split})
    with (args.out / "labels.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["filename", "label", "split"])
        w.writeheader()
        w.writerows(rows)
    print(args.out)


if __name__ == "__main__":
    main()
