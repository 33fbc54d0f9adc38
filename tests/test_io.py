"""Atomic writes: all or nothing, and finished files get the mode any other file would get."""

from __future__ import annotations

import os
import stat

import pytest

from cnnlab.io import atomic_path, write_json, write_text


def test_written_files_respect_the_umask(tmp_path):
    mask = os.umask(0o022)
    os.umask(mask)
    write_json(tmp_path / "summary.json", {"a": 1})
    mode = stat.S_IMODE((tmp_path / "summary.json").stat().st_mode)
    assert mode == 0o666 & ~mask  # 0644 under the usual umask, not mkstemp's 0600


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "table.md"
    write_text(target, "old\n")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half of the new ")
        raise RuntimeError("killed half-way")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.md"]
