"""One pass over every image: the numbers the detectors need, so no image is decoded twice.

Per image: a digest of its decoded pixels (exact duplicates), imagehash's pHash (64 bits, packed
into a uint64; robust to re-encoding, resizing and brightness or colour changes), a 32 x 32 grey
thumbnail (the near-duplicate index and its shift-tolerant check) and its brightness, contrast
and size (the single-image checks).
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
    mean: np.ndarray  # brightness 0..255 over every channel
    std: np.ndarray
    height: np.ndarray
    width: np.ndarray
    undecodable: list[tuple[str, int, str]] = field(default_factory=list)  # (split, row, reason)

    def __len__(self) -> int:
        return len(self.keys)


def compute(images: DatasetImages) -> Features:
    keys, digest, phash, gray, stats = [], [], [], [], []
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
        gray.append(np.asarray(im.convert("L").resize((THUMB, THUMB), Image.Resampling.BILINEAR)))
        stats.append((float(arr.mean()), float(arr.std()), arr.shape[0], arr.shape[1]))
    s = np.asarray(stats, dtype=np.float64).reshape(-1, 4)
    return Features(keys, digest, np.asarray(phash, dtype=np.uint64),
                    np.stack(gray) if gray else np.zeros((0, THUMB, THUMB), np.uint8),
                    s[:, 0], s[:, 1], s[:, 2].astype(int), s[:, 3].astype(int), bad)


def pack(bits: np.ndarray) -> int:
    """imagehash's boolean hash (8 x 8) as one 64-bit integer."""
    return int.from_bytes(np.packbits(bits.reshape(-1)).tobytes(), "big")


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bits that differ between packed hashes, elementwise."""
    x = np.ascontiguousarray(np.bitwise_xor(a, b), dtype=np.uint64)
    return np.unpackbits(x.view(np.uint8).reshape(-1, 8), axis=1).sum(1).astype(np.int64)
