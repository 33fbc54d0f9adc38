"""The user's own code: imported from `imports:` and references (imports.py), objects handed to
the Python API (live.py), the frames shown when it raises (blame.py), the copies and hashes a run
keeps of it and the checks made when a run is reopened (record.py).

This package is below the registries and the config's resolution: it imports files and modules
and knows nothing of what they register."""

from __future__ import annotations

from cnnlab.usercode.blame import UserCodeError, blame
from cnnlab.usercode.imports import import_entry, is_reference, short


def load_imports(entries: list[str]) -> None:
    """Import every item of a config's `imports:` (files absolute by now, or module names)."""
    for i, entry in enumerate(entries):
        import_entry(entry, f"imports[{i}]")


__all__ = ["UserCodeError", "blame", "is_reference", "load_imports", "short"]
