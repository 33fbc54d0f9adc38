"""Decoding image files into one uint8 array, in parallel, naming any file that fails."""

from __future__ import annotations

import io
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import numpy as np
from PIL import Image, UnidentifiedImageError

from cnnlab.data.sources import FileTree
from cnnlab.errors import DataError

Size = tuple[int, int]


def decode_one(tree: FileTree, rel: str, mode: str, size: Size | None) -> np.ndarray | str:
    """An (H, W, C) uint8 array, or the reason it could not be decoded."""
    data = tree.read(rel)
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            if im.mode in ("P", "PA", "LA", "RGBA"):
                # Transparent pixels composite onto black, as if the alpha were premultiplied.
                im = im.convert("RGBA")
                background = Image.new("RGBA", im.size, (0, 0, 0, 255))
                im = Image.alpha_composite(background, im)
            im = im.convert(mode)
            if size is not None and im.size != (size[1], size[0]):
                im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR, reducing_gap=None)
            arr = np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        return f"{type(e).__name__}: {e}"
    return arr[:, :, None] if arr.ndim == 2 else arr


def probe_mode(tree: FileTree, rel: str) -> tuple[str, Size] | None:
    """(PIL mode, (H, W)) from the header only, or None when unreadable."""
    try:
        with Image.open(io.BytesIO(tree.read(rel))) as im:
            return im.mode, (im.size[1], im.size[0])
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None


def decode_many(
    tree: FileTree,
    files: list[str],
    channels: Literal[1, 3],
    size: Size,
    skip_corrupt: bool,
) -> tuple[np.ndarray, list[int], list[str]]:
    """Decode `files` to (N, C, H, W) uint8; return kept indices and corrupt-file notes."""
    mode = "L" if channels == 1 else "RGB"
    out = np.empty((len(files), channels, size[0], size[1]), dtype=np.uint8)
    kept: list[int] = []
    bad: list[str] = []

    def work(i: int) -> tuple[int, np.ndarray | str]:
        return i, decode_one(tree, files[i], mode, size)

    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:
        for i, result in pool.map(work, range(len(files)), chunksize=64):
            if isinstance(result, str):
                if not skip_corrupt:
                    raise DataError(
                        f"{tree.describe(files[i])}: cannot decode image ({result}); "
                        "replace or delete it, or set data.skip_corrupt: true"
                    )
                bad.append(tree.describe(files[i]))
                continue
            out[len(kept)] = result.transpose(2, 0, 1)
            kept.append(i)
    return out[: len(kept)], kept, bad
