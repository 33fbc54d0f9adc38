"""Decoding image files into one uint8 array, in parallel, naming any file that fails."""

from __future__ import annotations

import io
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cnnlab.data.read.tree import FileTree
from cnnlab.errors import DataError

Size = tuple[int, int]

_ORIENTATION = 0x0112  # EXIF tag: how the camera was held
_WIDE_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N"}  # 16-bit (or 32-bit integer) grayscale


def upright(im: Image.Image) -> Image.Image:
    """Apply the EXIF orientation, as photo viewers do; images without one are returned as they are."""
    if im.getexif().get(_ORIENTATION, 1) in (1, None):
        return im
    return ImageOps.exif_transpose(im)


def to_8bit(im: Image.Image) -> Image.Image:
    """16-bit grayscale scaled to 0..255 (PIL's own conversion clips everything above 255 to white)."""
    arr = np.asarray(im).astype(np.int64).clip(0, 65535)
    return Image.fromarray(((arr * 255 + 32767) // 65535).astype(np.uint8), "L")


def decode_one(tree: FileTree, rel: str, mode: str, size: Size | None) -> np.ndarray | str:
    """An (H, W, C) uint8 array, or the reason it could not be decoded."""
    data = tree.read(rel)
    try:
        with Image.open(io.BytesIO(data)) as im:
            too_big = _too_big(im)
            if too_big:
                return too_big
            im.load()
            im = upright(im)
            if im.mode in _WIDE_MODES:
                im = to_8bit(im)
            if im.mode in ("P", "PA", "LA", "RGBA"):
                # Transparent pixels composite onto black, as if the alpha were premultiplied.
                im = im.convert("RGBA")
                background = Image.new("RGBA", im.size, (0, 0, 0, 255))
                im = Image.alpha_composite(background, im)
            im = im.convert(mode)
            if size is not None and im.size != (size[1], size[0]):
                im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR, reducing_gap=None)
            arr = np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError, EOFError) as e:
        return f"{type(e).__name__}: {e}"
    return arr[:, :, None] if arr.ndim == 2 else arr


def _too_big(im: Image.Image) -> str | None:
    """Why an image is refused before decoding: it declares more pixels than Pillow's safety limit."""
    w, h = im.size
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and w * h > limit:
        return f"it declares {w} x {h} pixels, more than Pillow's safety limit of {limit:,} (a decompression bomb?)"
    return None


def probe_mode(tree: FileTree, rel: str) -> tuple[str, Size] | None:
    """(PIL mode, (H, W) as displayed) from the header only, or None when unreadable."""
    try:
        with Image.open(io.BytesIO(tree.read(rel))) as im:
            if _too_big(im):
                return None
            w, h = im.size
            if im.getexif().get(_ORIENTATION, 1) in (5, 6, 7, 8):  # rotated by 90 degrees
                w, h = h, w
            return im.mode, (h, w)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError, EOFError):
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
