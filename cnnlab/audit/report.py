"""The audit's findings as plain data: groups with their members, counts per split pair and kind."""

from __future__ import annotations

from itertools import combinations_with_replacement
from typing import Any

from cnnlab.audit.duplicates import Pair
from cnnlab.audit.features import Features
from cnnlab.audit.source import DatasetImages

ORDER = {"train": 0, "val": 1, "test": 2}


def member(images: DatasetImages, f: Features, i: int) -> dict[str, Any]:
    """One image as the report names it: split, row, file path, id, label and class."""
    split, row = f.keys[i]
    s = images.splits[split]
    label = None if s.labels is None or s.labels[row] < 0 else int(s.labels[row])
    return {"split": split, "index": row, "path": None if s.paths is None else s.paths[row],
            "id": None if s.ids is None else s.ids[row], "label": label,
            "class": None if label is None or label >= len(images.classes) else images.classes[label]}


def group_records(images: DatasetImages, f: Features, exact: list[list[int]], near: list[list[int]],
                  pairs: list[Pair]) -> list[dict[str, Any]]:
    """Every group, cross-split ones and those with differing labels first, then the largest."""
    by_image: dict[int, list[Pair]] = {}
    for p in pairs:
        by_image.setdefault(p.a, []).append(p)
        by_image.setdefault(p.b, []).append(p)
    records = []
    for kind, groups in (("exact", exact), ("near", near)):
        for g in groups:
            g = sorted(g, key=lambda i: (ORDER.get(f.keys[i][0], 3), f.keys[i][1]))
            members = [member(images, f, i) for i in g]
            for i, m in zip(g, members):
                if kind == "exact":
                    m["similarity"], m["phash_bits"] = 1.0, 0
                else:
                    best = max(by_image.get(i, []), key=lambda p: p.correlation)
                    m["similarity"], m["phash_bits"] = round(best.correlation, 4), best.phash_bits
            labels = {m["label"] for m in members if m["label"] is not None}
            splits = sorted({m["split"] for m in members}, key=ORDER.get)
            records.append({"kind": kind, "size": len(g), "splits": splits, "labels_differ": len(labels) > 1,
                            "similarity": min(m["similarity"] for m in members), "members": members})
    records.sort(key=lambda r: (not r["labels_differ"], len(r["splits"]) == 1, -r["size"]))
    return records


def split_pair_counts(records: list[dict[str, Any]], splits: list[str]) -> dict[str, dict[str, dict[str, int]]]:
    """kind (exact, near, labels_differ) -> 'a-b' -> groups with members in both splits (two or more
    in the one split for 'a-a') and the images of those groups in them."""
    pairs = [f"{a}-{b}" for a, b in combinations_with_replacement(sorted(splits, key=ORDER.get), 2)]
    out = {kind: {p: {"groups": 0, "images": 0} for p in pairs} for kind in ("exact", "near", "labels_differ")}
    for r in records:
        where = [m["split"] for m in r["members"]]
        kinds = [r["kind"]] + (["labels_differ"] if r["labels_differ"] else [])
        for p in pairs:
            a, b = p.split("-")
            inside = [s for s in where if s in (a, b)]
            if (a == b and len(inside) >= 2) or (a != b and a in where and b in where):
                for kind in kinds:
                    out[kind][p]["groups"] += 1
                    out[kind][p]["images"] += len(inside)
    return out


def leaked(records: list[dict[str, Any]]) -> dict[str, int]:
    """Per val/test split: images with an exact or near copy in the training split."""
    out: dict[str, set] = {}
    for r in records:
        if "train" not in r["splits"]:
            continue
        for m in r["members"]:
            if m["split"] != "train":
                out.setdefault(m["split"], set()).add(m["index"])
    return {k: len(v) for k, v in out.items()}
