"""`cnnlab predict`: a submission CSV (image_id,label) for a .npy array, a pixel CSV or a folder of images."""

from __future__ import annotations

import csv
import io
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import torch

from cnnlab.data.batches import BatchLoader, LoaderOptions
from cnnlab.data.read.csv_pixels import predict_inputs as csv_inputs
from cnnlab.data.read.decode import decode_many
from cnnlab.data.read.npy_csv import load_npy, to_images
from cnnlab.data.read.tree import FileTree, is_image
from cnnlab.data.stats import value_scale
from cnnlab.data.types import Split
from cnnlab.errors import DataError
from cnnlab.io import writable_file, write_text
from cnnlab.reopen import open_run
from cnnlab.rundir import Run
from cnnlab.training.tta import with_tta


def read_inputs(path: Path, info: dict[str, Any], path_column: str | None = None) -> tuple[list[str], torch.Tensor]:
    """(ids, images shaped like the stored training images) from a .npy file, a pixel .csv, an image
    folder/zip, or (a run trained on data.format: csv_images) a CSV of image paths in `path_column`."""
    c, h, w = info.get("image_shape", info["input_shape"])  # runs from before image_shape was recorded
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.suffix.lower() == ".csv" and path_column is not None:
        return _image_csv(path, path_column, c, (h, w))
    if path.suffix.lower() == ".npy":
        arr = load_npy(path)
        if arr.ndim == 2 and arr.shape[1] != c * h * w:
            raise DataError(f"{path}: rows of {arr.shape[1]} values, but the model was trained on {c}x{h}x{w} = {c * h * w}")
        # Same layout rules as the npy_csv reader: flat rows are H x W x C.
        x = to_images(arr, path, [c, h, w] if arr.ndim == 2 else None)
        if tuple(x.shape[1:]) != (c, h, w):
            raise DataError(f"{path}: images are {tuple(x.shape[1:])} but the model was trained on {c}x{h}x{w}")
        return [str(i) for i in range(len(x))], x
    if path.suffix.lower() == ".csv":
        return csv_inputs(path, (c, h, w))
    tree = FileTree(path)
    files = [f for f in tree.files if is_image(f)]
    if not files:
        raise DataError(f"{path}: no image files found (looked for .png, .jpg, .jpeg, ...)")
    x, kept, _ = decode_many(tree, files, c, (h, w), skip_corrupt=False)
    names = [PurePosixPath(f).name for f in files]
    ids = names if len(set(names)) == len(names) else files  # file names, unless they repeat
    return [ids[i] for i in kept], torch.from_numpy(x)


def _image_csv(path: Path, column: str, channels: int, size: tuple[int, int]) -> tuple[list[str], torch.Tensor]:
    """A CSV of image paths (relative to its folder), as data.format: csv_images reads them: the
    ids are the paths as written."""
    from cnnlab.data.read.csv_images import read_rows, relative_paths

    rows = read_rows(path, [column])
    tree = FileTree(path.parent)
    files = relative_paths(path, tree, rows, column)
    x, _, _ = decode_many(tree, files, channels, size, skip_corrupt=False)  # type: ignore[arg-type]
    return [row[column] for _, row in rows], torch.from_numpy(x)


def probabilities(run: Run, x: torch.Tensor, which: Literal["best", "last"] = "best") -> torch.Tensor:
    """Class probabilities (N, K) of the run's model for images shaped like its stored training
    images (uint8 0..255 or floats as the data held them), seen as evaluation sees them (with the
    temperature `cnnlab calibrate` fitted, if any)."""
    opened = open_run(run, which)
    cfg, info = opened.cfg, opened.info
    model, device = opened.model(), opened.device
    # The run's deterministic ops (resize, center_crop) apply here as they did in training.
    pipeline = opened.pipeline(tuple(x.shape[1:]))
    options = LoaderOptions(device, value_scale(x), info["mean"], info["std"])
    loader = BatchLoader(Split(x, None, None), cfg.train.eval_batch_size, options, augment=pipeline.eval_ops)
    out = []
    scorer = with_tta(model, cfg.train.tta)  # the same test-time augmentation as the run's evaluation
    t = opened.temperature  # `cnnlab calibrate`'s, else 1
    with torch.inference_mode():
        for xb, _ in loader:
            out.append(torch.softmax(scorer(xb).float() / t, 1).cpu())
    return torch.cat(out)


def predict_run(run_dir: Path, input_path: Path, out: Path, which: Literal["best", "last"] = "best") -> tuple[Path, int]:
    """Write `out` atomically; return its path and the number of rows."""
    out = writable_file(out, "--out")  # before the model and images are loaded
    run = Run(run_dir).check()
    info = run.data_info
    data = run.config_raw().get("data") or {}
    column = data.get("path_column", "path") if data.get("format") == "csv_images" else None
    if data.get("format") == "hf" and Path(input_path).is_dir():  # a Hugging Face dataset: its test split
        from cnnlab.data.read.hf import predict_inputs as hf_inputs

        ids, x = hf_inputs(Path(input_path), info, data)
    else:
        ids, x = read_inputs(Path(input_path), info, column)
    labels = probabilities(run, x, which).argmax(1).tolist()
    values = info["label_values"]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["image_id", "label"])
    writer.writerows((i, values[k]) for i, k in zip(ids, labels))
    write_text(out, buf.getvalue())
    return out, len(ids)
