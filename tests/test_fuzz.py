"""The readers' promise under fuzzing (tests/fuzz_readers.py): every format's real files,
damaged by Hypothesis, read as a valid dataset or refused with one line; nothing else.
It runs in a child process because it caps its own address space (RLIMIT_AS)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import ROOT

pytestmark = pytest.mark.slow

FORMATS = ("idx-gz", "idx-raw", "npy_csv", "csv_pixels", "mat", "cifar-python", "cifar-binary",
           "image_folder-zip", "image_folder-png", "tiny_imagenet")


def test_every_reader_reads_or_refuses_damaged_files_in_one_line(tmp_path):
    report = tmp_path / "fuzz.json"
    r = subprocess.run([sys.executable, str(ROOT / "tests" / "fuzz_readers.py"), "--examples", "40",
                        "--seed", "1", "--json", str(report)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    import json

    counts = json.loads(report.read_text())
    assert set(counts) == set(FORMATS)
    for fmt, c in counts.items():
        assert c["ok"] + c["refused"] == 40, (fmt, c)
        assert c["refused"] > 0, f"{fmt}: no damaged input was refused, so nothing was damaged"
