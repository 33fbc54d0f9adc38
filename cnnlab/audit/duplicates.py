"""Exact and near-duplicate groups, without comparing every pair of images.

Exact: images whose decoded pixels are identical share a digest (a dictionary lookup).

Near, in three steps:
1. Candidates. Each image's 32 x 32 grey thumbnail, averaged down to 8 x 8 and standardised
   (brightness and contrast drop out), goes into scikit-learn's KD-tree after a PCA to DIMS numbers,
   once as it is and once moved so its centre of mass is in the middle (a shifted digit on a blank
   background finds its original there), and once framed (cropped to its content's box, for
   images on a plain background: a digit cropped, shifted or rescaled frames to the same picture);
   each image's NEIGHBOURS nearest neighbours in each index are its candidates. The work grows as N log N, not N squared.
2. Similarity. A candidate pair's thumbnails are lined up: one of them zoomed in by cropping 0-3
   pixels a side and shifted by up to 2 pixels either way (1 when zoomed), the best Pearson correlation of the
   central 26 x 26 pixels counts (a re-encoded, resized, shifted, cropped or colour-changed copy
   lines up with its original at 0.9 or more), or, when higher, that of their framed thumbnails
   shifted by up to a pixel (a crop that rescaled the digit lines up there). imagehash's pHash distance is kept beside it.
3. Decision. A pair is a near-duplicate when its correlation is at least CORRELATION and it stands
   out from both images' other neighbours (1 - corr at most RATIO times 1 - the next best match, the
   ratio test of feature matching): a copy does, one handwritten '1' among thousands of look-alike
   1s does not. Pairs at CERTAIN or above are kept whatever the neighbours (triplicates), and so
   are pairs whose pHash differs in at most PHASH_BITS bits when they stand out.

The thresholds were tuned on planted copies in the first images of CIFAR-10 and MNIST
(bench/audit_planted.py --offset 0) and measured on others (bench/RESULTS.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from cnnlab.audit.features import Features, hamming

NEIGHBOURS = 10  # candidates per image from each index
CORRELATION = 0.93  # aligned correlation at or above which a pair may be a near-duplicate ...
RATIO = 0.5  # ... when it stands out: 1 - corr at most RATIO times 1 - (either image's next best match)
CERTAIN = 0.995  # aligned correlation at which a pair is one whatever the other matches (triplicates)
PHASH_BITS = 2  # or: imagehash pHash distance at most this (of 64 bits), and it stands out
FLAT_STD = 2.0  # images with less contrast (0..255) are left to the flat-image check, not matched
PREFILTER = 0.7  # candidates whose 16 x 16 shifted correlation is below this are not aligned (costly)
DIMS = 8  # the index's PCA dimensions (a KD-tree is fast up to about ten)
_CHUNK = 20000


@dataclass
class Pair:
    a: int
    b: int
    phash_bits: int
    correlation: float


def exact_groups(f: Features) -> list[list[int]]:
    """Images with identical decoded pixels, each group in reading order."""
    by_digest: dict[bytes, list[int]] = {}
    for i, d in enumerate(f.digest):
        by_digest.setdefault(d, []).append(i)
    return [g for g in by_digest.values() if len(g) > 1]


def candidate_pairs(f: Features, neighbours: int = NEIGHBOURS) -> np.ndarray:
    """(M, 2) index pairs a < b: each image with its nearest neighbours in two thumbnail indexes, one
    of the thumbnails as they are and one of them moved so their centre of mass is in the middle (a
    shifted digit on a blank background finds its original there)."""
    usable = np.flatnonzero(f.std >= FLAT_STD)
    if len(usable) < 2:
        return np.zeros((0, 2), dtype=np.int64)
    thumbs = f.gray[usable]
    found = [_neighbour_pairs(_embedding(t), neighbours) for t in (thumbs, centred(thumbs), f.framed[usable])]
    return usable[np.unique(np.concatenate(found), axis=0)]


def _embedding(thumbs: np.ndarray) -> np.ndarray:
    """8 x 8 block means of the 32 x 32 thumbnails, standardised (brightness and contrast drop out)."""
    n = len(thumbs)
    return _standardised(thumbs.reshape(n, 8, 4, 8, 4).mean(axis=(2, 4)).reshape(n, -1))


def _neighbour_pairs(emb: np.ndarray, neighbours: int) -> np.ndarray:
    from sklearn.decomposition import PCA
    from sklearn.neighbors import NearestNeighbors

    dims = min(DIMS, len(emb) - 1, emb.shape[1])
    sample = emb[np.random.default_rng(0).permutation(len(emb))[:5000]]
    z = PCA(dims, random_state=0).fit(sample).transform(emb).astype(np.float32)
    k = min(neighbours + 1, len(emb))
    _, idx = NearestNeighbors(n_neighbors=k, algorithm="kd_tree").fit(z).kneighbors(z)
    a = np.repeat(np.arange(len(emb)), k)
    b = idx.reshape(-1)
    pairs = np.stack([np.minimum(a, b), np.maximum(a, b)], axis=1)
    return pairs[pairs[:, 0] != pairs[:, 1]]


def centred(thumbs: np.ndarray, most: int = 4) -> np.ndarray:
    """Thumbnails moved (by up to `most` pixels, edges repeated) so the centre of mass of their
    difference from the border's median lies in the middle."""
    n, s, _ = thumbs.shape
    x = thumbs.astype(np.float32)
    border = np.median(np.concatenate([x[:, 0], x[:, -1], x[:, :, 0], x[:, :, -1]], axis=1), axis=1)
    w = np.abs(x - border[:, None, None])
    total = w.sum(axis=(1, 2)) + 1e-6
    grid = np.arange(s, dtype=np.float32)
    cy = (w.sum(axis=2) * grid).sum(1) / total
    cx = (w.sum(axis=1) * grid).sum(1) / total
    dy = np.clip(np.round((s - 1) / 2 - cy), -most, most).astype(int)
    dx = np.clip(np.round((s - 1) / 2 - cx), -most, most).astype(int)
    rows = np.clip(grid.astype(int)[None, :] - dy[:, None], 0, s - 1)
    cols = np.clip(grid.astype(int)[None, :] - dx[:, None], 0, s - 1)
    return thumbs[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]


def near_pairs(f: Features, pairs: np.ndarray, correlation: float = CORRELATION, ratio: float = RATIO,
               certain: float = CERTAIN, phash_bits: int = PHASH_BITS) -> list[Pair]:
    """The candidate pairs that are near-duplicates (see the module docstring), exact copies left out."""
    if len(pairs) == 0:
        return []
    bits = hamming(f.phash[pairs[:, 0]], f.phash[pairs[:, 1]])
    rough = shifted_correlation(f.gray, pairs)
    corr = rough.copy()
    close = np.flatnonzero(rough >= PREFILTER)
    corr[close] = aligned_correlation(f.gray, pairs[close])
    framed = _has_frame(f)
    both = np.flatnonzero(framed[pairs[:, 0]] & framed[pairs[:, 1]])  # photos have no frame
    both = both[shifted_correlation(f.framed, pairs[both]) >= PREFILTER]  # the 16 x 16 gate, as above
    corr[both] = np.maximum(corr[both], shifted_correlation(f.framed, pairs[both], full=True))
    ids = _digest_ids(f.digest)
    same = ids[pairs[:, 0]] == ids[pairs[:, 1]]
    corr[same] = 1.0
    runner_up = _runner_up(pairs, corr, ids)
    stands_out = (1 - corr) <= ratio * (1 - runner_up)
    keep = ((corr >= correlation) & (stands_out | (corr >= certain))) | ((bits <= phash_bits) & stands_out)
    return [Pair(int(a), int(b), int(d), float(c))
            for (a, b), d, c in zip(pairs[keep & ~same], bits[keep & ~same], corr[keep & ~same])]


def _has_frame(f: Features) -> np.ndarray:
    """Images whose framed thumbnail is their content's box (a plain background), not the plain thumbnail."""
    return (f.framed != f.gray).any(axis=(1, 2))


def _digest_ids(digests: list[bytes]) -> np.ndarray:
    seen: dict[bytes, int] = {}
    return np.array([seen.setdefault(d, len(seen)) for d in digests], dtype=np.int64)


def _runner_up(pairs: np.ndarray, corr: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Per pair (a, b): the best score of a or b with any image other than b or a (or their exact
    copies): a copy stands out from its other neighbours, a '1' among thousands of 1s does not."""
    ends = np.concatenate([pairs[:, 0], pairs[:, 1]])
    other = ids[np.concatenate([pairs[:, 1], pairs[:, 0]])]
    score = np.concatenate([corr, corr])
    order = np.lexsort((-score, ends))
    e, o, s = ends[order], other[order], score[order]
    starts = np.r_[0, np.flatnonzero(np.diff(e)) + 1]
    stops = np.r_[starts[1:], len(e)]
    top_id = np.full(ids.shape[0], -1)
    top, second = np.full(ids.shape[0], -1.0), np.full(ids.shape[0], -1.0)
    for lo, hi in zip(starts, stops):
        i = e[lo]
        top[i], top_id[i] = s[lo], o[lo]
        rest = np.flatnonzero(o[lo:hi] != o[lo])
        if len(rest):
            second[i] = s[lo + rest[0]]

    def best_other(end: np.ndarray, partner: np.ndarray) -> np.ndarray:
        return np.where(top_id[end] == ids[partner], second[end], top[end])

    return np.maximum(best_other(pairs[:, 0], pairs[:, 1]), best_other(pairs[:, 1], pairs[:, 0]))


def shifted_correlation(gray: np.ndarray, pairs: np.ndarray, full: bool = False) -> np.ndarray:
    """Per pair, the best Pearson correlation of the 16 x 16 thumbnails' central 14 x 14 (full: the
    32 x 32 thumbnails' central 30 x 30) over shifts of one pixel either way (in chunks, to bound memory).
    Each image's windows are standardised once per chunk, not once per pair it is in."""
    out = np.empty(len(pairs), dtype=np.float32)
    for start in range(0, len(pairs), _CHUNK):
        p = pairs[start:start + _CHUNK]
        (ua, ia), (ub, ib) = (np.unique(p[:, i], return_inverse=True) for i in (0, 1))
        a, b = (gray[u].astype(np.float32) if full else _half(gray[u]) for u in (ua, ub))
        e = a.shape[1] - 1
        a = _standardised(a[:, 1:e, 1:e].reshape(len(ua), -1))[ia]
        best = np.full(len(p), -1.0, dtype=np.float32)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                w = _standardised(b[:, 1 + dy:e + dy, 1 + dx:e + dx].reshape(len(ub), -1))[ib]
                best = np.maximum(best, np.einsum("ij,ij->i", a, w))
        out[start:start + len(p)] = best
    return out


def aligned_correlation(gray: np.ndarray, pairs: np.ndarray, zooms: tuple[int, ...] = (0, 1, 2, 3),
                        chunk: int = 2000) -> np.ndarray:
    """Per pair, the best Pearson correlation of the 32 x 32 thumbnails' central 26 x 26 when one of
    the two is zoomed in by cropping 0-3 pixels a side (scaled back to 32 x 32) and shifted by up to
    2 pixels either way: a shifted or cropped copy lines up with its original, two different
    images do not. Each image's zooms and windows are standardised once per chunk, not per pair."""
    out = np.empty(len(pairs), dtype=np.float32)
    for start in range(0, len(pairs), chunk):
        p = pairs[start:start + chunk]
        sides = [np.unique(p[:, i], return_inverse=True) for i in (0, 1)]
        best = np.full(len(p), -1.0, dtype=np.float32)
        for (ux, ix), (uy, iy), which in ((sides[0], sides[1], zooms), (sides[1], sides[0], zooms[1:])):
            x, y = gray[ux].astype(np.float32), gray[uy].astype(np.float32)
            windows = {(dy, dx): _standardised(y[:, 3 + dy:29 + dy, 3 + dx:29 + dx].reshape(len(uy), -1))
                       for dy in range(-2, 3) for dx in range(-2, 3)}
            for c in which:
                xw = _standardised(_zoom(x, c)[:, 3:29, 3:29].reshape(len(ux), -1))[ix]
                reach = 2 if c == 0 else 1  # a crop moves the centre by at most 1.5 pixels
                for (dy, dx), w in windows.items():
                    if max(abs(dy), abs(dx)) <= reach:
                        best = np.maximum(best, np.einsum("ij,ij->i", xw, w[iy]))
        out[start:start + len(p)] = best
    return out


def _zoom(x: np.ndarray, c: int) -> np.ndarray:
    """(N, S, S) images with c pixels cropped off each side and scaled back to S x S (bilinear)."""
    if c == 0:
        return x
    s = x.shape[1]
    pos = c + np.arange(s, dtype=np.float32) * (s - 1 - 2 * c) / (s - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, s - 1)
    f = (pos - lo).astype(np.float32)
    rows = x[:, lo, :] * (1 - f)[None, :, None] + x[:, hi, :] * f[None, :, None]
    return rows[:, :, lo] * (1 - f)[None, None, :] + rows[:, :, hi] * f[None, None, :]


def groups_of(pairs: list[Pair], n: int) -> list[list[int]]:
    """Connected groups of images joined by pairs (scipy's connected components), each sorted."""
    if not pairs:
        return []
    a = np.array([p.a for p in pairs])
    b = np.array([p.b for p in pairs])
    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    involved = np.unique(np.concatenate([a, b]))
    groups: dict[int, list[int]] = {}
    for i in involved:
        groups.setdefault(int(label[i]), []).append(int(i))
    return list(groups.values())


def _half(gray: np.ndarray) -> np.ndarray:
    n, h, w = gray.shape
    return gray.reshape(n, h // 2, 2, w // 2, 2).mean(axis=(2, 4), dtype=np.float32)


def _standardised(x: np.ndarray) -> np.ndarray:
    """Rows with zero mean and unit norm (so a dot product is a Pearson correlation)."""
    x = x.astype(np.float32) - x.mean(axis=1, keepdims=True, dtype=np.float32)
    return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-6)
