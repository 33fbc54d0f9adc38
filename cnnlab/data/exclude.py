"""data.exclude: images left out of the dataset as read, before any split or limit.

`cnnlab data audit --write-clean` writes the list (duplicates, leaks, conflicting labels); training
on the cleaned data is then one override, `data.exclude=clean/exclude.txt`. An entry is `SPLIT:N`
(row N of the split as the format reads it) or `SPLIT:NAME` (the image's id: its file path inside
the split folder), so the entries stay valid whatever val_fraction, limits or seed a run uses.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from cnnlab.config import DataConfig
from cnnlab.errors import ConfigError, DataError

SPLITS = ("train", "val", "test")
_ROW = re.compile(r"^\d+$")


def exclude_entries(data: DataConfig) -> list[str]:
    """data.exclude as a list of entries: the list itself, or the lines of the file it names."""
    if data.exclude is None:
        return []
    if isinstance(data.exclude, list):
        return [e.strip() for e in data.exclude if e.strip()]
    path = Path(data.exclude).expanduser()
    if not path.is_file():
        raise ConfigError(f"data.exclude: {path} is not a file; give a list of SPLIT:N / SPLIT:NAME entries "
                          "or the exclude.txt that `cnnlab data audit --write-clean` writes")
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def parse(entries: list[str]) -> dict[str, tuple[set[int], set[str]]]:
    """split -> (rows, ids) to leave out; a malformed entry is a ConfigError naming it."""
    out: dict[str, tuple[set[int], set[str]]] = {}
    for entry in entries:
        split, sep, ref = entry.partition(":")
        if not sep or split not in SPLITS or not ref:
            raise ConfigError(f"data.exclude: '{entry}' is not SPLIT:N or SPLIT:NAME (SPLIT one of "
                              f"{', '.join(SPLITS)}), e.g. train:123 or test:cat/0001.jpg")
        rows, ids = out.setdefault(split, (set(), set()))
        (rows.add(int(ref)) if _ROW.match(ref) else ids.add(ref))
    return out


def excluded_rows(wanted: tuple[set[int], set[str]], split: str, size: int, ids: list[str] | None) -> list[int]:
    """The rows of a split of `size` images (with these ids) that `wanted` names, sorted; an entry
    that names no image is a DataError (the dataset changed since the list was written?)."""
    rows, names = wanted
    out = set()
    for r in rows:
        if r >= size:
            raise DataError(f"data.exclude: {split}:{r} is past the {size} images of the {split} split; "
                            "was the list written for another dataset?")
        out.add(r)
    if names:
        where = {name: i for i, name in enumerate(ids or [])}
        missing = sorted(n for n in names if n not in where)
        if missing:
            raise DataError(f"data.exclude: {split}:{missing[0]} names no image of the {split} split"
                            + ("" if ids else " (its images have no file names: use row numbers, SPLIT:N)")
                            + "; was the list written for another dataset?")
        out.update(where[n] for n in names)
    return sorted(out)


def kept_rows(data: DataConfig, split: str, size: int, ids: list[str] | None,
              parsed: dict[str, tuple[set[int], set[str]]] | None = None) -> list[int] | None:
    """The rows of `split` that stay, or None when data.exclude leaves it whole."""
    parsed = parse(exclude_entries(data)) if parsed is None else parsed
    if split not in parsed:
        return None
    drop = set(excluded_rows(parsed[split], split, size, ids))
    if len(drop) == size:
        raise DataError(f"data.exclude: leaves the {split} split without images; remove some entries")
    return [i for i in range(size) if i not in drop]


def unknown_splits(data: DataConfig, present: list[str]) -> None:
    """Refuse entries for a split the dataset does not have."""
    for split in parse(exclude_entries(data)):
        if split not in present:
            raise DataError(f"data.exclude: names {split} images but the dataset has no {split} split "
                            f"(it has {', '.join(present)})")


def apply_exclude(data: DataConfig, splits: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """(splits without the data.exclude images, a note per split that lost some), for in-memory
    Splits and file-backed FileSplits alike (both have len, ids and subset)."""
    entries = exclude_entries(data)
    if not entries:
        return splits, []
    present = [name for name, s in splits.items() if s is not None]
    unknown_splits(data, present)
    parsed = parse(entries)
    out, notes = dict(splits), []
    for name in present:
        split = splits[name]
        keep = kept_rows(data, name, len(split), split.ids, parsed)
        if keep is not None:
            out[name] = split.subset(keep)
            notes.append(f"data.exclude: {len(split) - len(keep)} {name} image(s) left out")
    return out, notes
