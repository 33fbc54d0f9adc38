"""Relative user-code paths in a config made absolute, once, where the config is read.

`imports: [nets.py]` and `model: {name: nets.py:TinyVGG}` are relative to the config file
(a study's axes and overrides: to the study file; command-line overrides: to the current
folder). The resolved config written into a run names them absolutely, so every later command,
study worker and torchrun rank finds the same files wherever it starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnnlab.config import SELECTORS
from cnnlab.usercode.imports import is_file_source, is_reference, split_reference


def absolutize(raw: dict[str, Any], base: str | Path) -> None:
    """Make every relative user-file path in a raw config absolute against `base`, in place."""
    base = Path(base)
    imports = raw.get("imports")
    if isinstance(imports, list):
        raw["imports"] = [_file(x, base) if isinstance(x, str) and _is_path(x) else x for x in imports]
    for section, key in SELECTORS.items():
        node = raw.get(section)
        if isinstance(node, dict) and key in node:
            node[key] = _ref(node[key], base)
    for key in ("augment", "callbacks"):
        if isinstance(raw.get(key), list):
            raw[key] = [_item(x, base) for x in raw[key]]


def _is_path(entry: str) -> bool:
    return entry.endswith(".py") or "/" in entry or "\\" in entry


def _file(path: str, base: Path) -> str:
    p = Path(path).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


def _ref(value: Any, base: Path) -> Any:
    """'nets.py:TinyVGG' -> '/abs/nets.py:TinyVGG'; anything else unchanged."""
    if not is_reference(value) or value.startswith("object:"):
        return value
    source, attr = split_reference(value)
    return f"{_file(source, base)}:{attr}" if is_file_source(source) else value


def _item(item: Any, base: Path) -> Any:
    """One op of augment: or callbacks: in any of its written forms, nested `ops:` included."""
    if isinstance(item, str):
        return _ref(item, base)
    if not isinstance(item, dict):
        return item
    if "name" in item:
        out = {**item, "name": _ref(item["name"], base)}
        if isinstance(out.get("ops"), list):
            out["ops"] = [_item(x, base) for x in out["ops"]]
        return out
    if len(item) == 1:
        (name, opts), = item.items()
        if isinstance(opts, dict) and isinstance(opts.get("ops"), list):
            opts = {**opts, "ops": [_item(x, base) for x in opts["ops"]]}
        elif isinstance(opts, list) and str(name) in ("random_apply", "random_order"):
            opts = [_item(x, base) for x in opts]
        return {_ref(name, base): opts}
    return item
