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


# The .mat reader hands every file to a child process (scipy's reader can crash; cnnlab/data/read/mat_child.py),
# about 0.7 s an input where the other readers take milliseconds: `make test` fuzzes it with 12 inputs (every
# one goes through the child and back), `make test-all` with the 40 of the other formats.
@pytest.mark.parametrize("fewer", [pytest.param({"mat": 12}, id="mat-12"),
                                   pytest.param({}, marks=pytest.mark.heavy, id="40-each")])
def test_every_reader_reads_or_refuses_damaged_files_in_one_line(tmp_path, fewer):
    report = tmp_path / "fuzz.json"
    r = subprocess.run([sys.executable, str(ROOT / "tests" / "fuzz_readers.py"), "--examples", "40",
                        *[f"--examples-of={fmt}={n}" for fmt, n in fewer.items()],
                        "--seed", "1", "--json", str(report)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    import json

    counts = json.loads(report.read_text())
    assert set(counts) == set(FORMATS)
    for fmt, c in counts.items():
        assert c["ok"] + c["refused"] == fewer.get(fmt, 40), (fmt, c)
        assert c["refused"] > 0, f"{fmt}: no damaged input was refused, so nothing was damaged"
