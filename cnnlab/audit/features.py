"""One pass over every image: the numbers the detectors need, so no image is decoded twice.

Per image: a digest of its decoded pixels (exact duplicates), imagehash's pHash (64 bits, packed
into a uint64; robust to re-encoding, resizing and brightness or colour changes), a 32 x 32 grey
thumbnail (the near-duplicate index and its shift-tolerant check), a "framed" 32 x 32 thumbnail of
the same image cropped to the box around its content, where it has a plain background (a
digit on black: a shifted, cropped or rescaled copy frames to the same picture), and its
brightness, contrast and size (the single-image checks).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import imagehash
import numpy as np
from PIL import Image

from cnnlab.audit.source import DatasetImages

THUMB = 32  # side of the grey thumbnail the near-duplicate search works on


@dataclass
class Features:
    keys: list[tuple[str, int]]  # (split, row) of image i
    digest: list[bytes]
    phash: np.ndarray  # uint64
    gray: np.ndarray  # (N, THUMB, THUMB) uint8
    framed: np.ndarray  # (N, THUMB, THUMB) uint8: the content's box, squared, scaled (plain backgrounds; else gray)
    mean: np.ndarray  # brightness 0..255 over every channel
    std: np.ndarray
    height: np.ndarray
    width: np.ndarray
    undecodable: list[tuple[str, int, str]] = field(default_factory=list)  # (split, row, reason)

    def __len__(self) -> int:
        return len(self.keys)


def compute(images: DatasetImages) -> Features:
    keys, digest, phash, gray, framed, stats = [], [], [], [], [], []
    bad = []
    for split, row, arr in images.images():
        if isinstance(arr, str):
            bad.append((split, row, arr))
            continue
        stored = images.splits[split].raw_bytes(row)
        h = hashlib.blake2b(str(arr.shape).encode(), digest_size=16)
        h.update(arr.tobytes() if stored is None else stored)
        im = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)
        keys.append((split, row))
        digest.append(h.digest())
        phash.append(pack(imagehash.phash(im).hash))
        grey = im.convert("L")
        gray.append(np.asarray(grey.resize((THUMB, THUMB), Image.Resampling.BILINEAR)))
        framed.append(frame(grey, gray[-1]))
        stats.append((float(arr.mean()), float(arr.std()), arr.shape[0], arr.shape[1]))
    s = np.asarray(stats, dtype=np.float64).reshape(-1, 4)
    return Features(keys, digest, np.asarray(phash, dtype=np.uint64),
                    np.stack(gray) if gray else np.zeros((0, THUMB, THUMB), np.uint8),
                    np.stack(framed) if framed else np.zeros((0, THUMB, THUMB), np.uint8),
                    s[:, 0], s[:, 1], s[:, 2].astype(int), s[:, 3].astype(int), bad)


BACKGROUND = 0.75  # an image is "on a plain background" when this share of its border is within ...
INK = 32  # ... this much (0..255) of the border's median; content is what differs by more


def frame(grey: Image.Image, thumb: np.ndarray) -> np.ndarray:
    """The box around the image's content, padded to a square about its centre with the background
    and scaled to THUMB x THUMB; the plain thumbnail for a photo (no plain background) or a blank image."""
    g = np.asarray(grey, dtype=np.int16)
    border = np.concatenate([g[0], g[-1], g[:, 0], g[:, -1]])
    level = int(np.median(border))
    if np.mean(np.abs(border - level) <= INK) < BACKGROUND:
        return thumb
    ink = np.abs(g - level) > INK
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    if len(rows) < 2 or len(cols) < 2:
        return thumb
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    side = max(bottom - top, right - left)
    box = np.full((side, side), level, dtype=np.uint8)
    oy, ox = (side - (bottom - top)) // 2, (side - (right - left)) // 2
    box[oy:oy + bottom - top, ox:ox + right - left] = g[top:bottom, left:right]
    return np.asarray(Image.fromarray(box).resize((THUMB, THUMB), Image.Resampling.BILINEAR))


def pack(bits: np.ndarray) -> int:
    """imagehash's boolean hash (8 x 8) as one 64-bit integer."""
    return int.from_bytes(np.packbits(bits.reshape(-1)).tobytes(), "big")


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bits that differ between packed hashes, elementwise."""
    x = np.ascontiguousarray(np.bitwise_xor(a, b), dtype=np.uint64)
    return np.unpackbits(x.view(np.uint8).reshape(-1, 8), axis=1).sum(1).astype(np.int64)
