"""--write-clean DIR: what to leave out so training sees each image once, no test image it trained on,
and no image under two labels. The user's files are never touched: a manifest of the kept images
(kept.csv), the left-out ones with the reason (excluded.csv), and the data.exclude list (exclude.txt,
and exclude.yaml to paste into a config): `cnnlab train CONFIG data.exclude=DIR/exclude.txt`.

Policy: in a group of copies whose labels agree, the first member in split order (train, val, test)
is kept and the others left out, so a test image that copies a training image leaves the test split;
a group whose labels differ is left out whole (which label is right is not known); flat (constant)
images are left out. Near-flat, dark, bright and odd-sized images are only reported.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any

import yaml

from cnnlab.audit.report import ORDER
from cnnlab.audit.source import DatasetImages
from cnnlab.io import write_text

_NUMBER = re.compile(r"^\d+$")


def excluded(report: dict[str, Any]) -> dict[tuple[str, int], str]:
    """(split, row) -> why it is left out."""
    out: dict[tuple[str, int], str] = {}
    for g in report["groups"]:
        members = g["members"]
        if g["labels_differ"]:
            for m in members:
                out.setdefault((m["split"], m["index"]), f"{g['kind']} duplicates with differing labels")
            continue
        for m in members[1:]:
            first = members[0]
            out.setdefault((m["split"], m["index"]),
                           f"{g['kind']} duplicate of {first['split']}:{first['index']}")
    for m in report["quality"]["constant"]:
        out.setdefault((m["split"], m["index"]), "constant image")
    return out


def entry(images: DatasetImages, split: str, row: int) -> str:
    """The data.exclude entry naming an image: its id (file path in its split) when it has one, else its row."""
    ids = images.splits[split].ids
    if ids is not None and images.files and not _NUMBER.match(ids[row]):
        return f"{split}:{ids[row]}"
    return f"{split}:{row}"


def write_clean(folder: Path, report: dict[str, Any], images: DatasetImages) -> dict[str, Any]:
    """Write kept.csv, excluded.csv, exclude.txt and exclude.yaml into `folder`; return what was written."""
    drop = excluded(report)
    order = sorted(drop, key=lambda k: (ORDER.get(k[0], 3), k[1]))
    entries = [entry(images, s, r) for s, r in order]
    kept = io.StringIO()
    w = csv.writer(kept)
    w.writerow(["split", "index", "id", "path", "label"])
    for name, s in images.splits.items():
        for row in s.rows:
            if (name, row) not in drop:
                label = "" if s.labels is None else int(s.labels[row])
                w.writerow([name, row, "" if s.ids is None else s.ids[row], "" if s.paths is None else s.paths[row], label])
    gone = io.StringIO()
    w = csv.writer(gone)
    w.writerow(["entry", "split", "index", "reason"])
    for (s, r), e in zip(order, entries):
        w.writerow([e, s, r, drop[(s, r)]])
    write_text(folder / "kept.csv", kept.getvalue())
    write_text(folder / "excluded.csv", gone.getvalue())
    write_text(folder / "exclude.txt", "".join(e + "\n" for e in entries))
    write_text(folder / "exclude.yaml", yaml.safe_dump({"data": {"exclude": entries}}, sort_keys=False))
    per_split: dict[str, int] = {}
    for s, _ in order:
        per_split[s] = per_split.get(s, 0) + 1
    return {"folder": str(folder), "excluded": per_split, "override": f"data.exclude={folder / 'exclude.txt'}"}
