"""What a file-backed split's images are read from (FileSplit.source): a folder or .zip of image
files (tree.py), or the rows of a Hugging Face dataset (hf_rows.py, data.format: hf). Both give
`read(rel)` -> encoded bytes and `describe(rel)`, which is all decoding needs."""

from __future__ import annotations

from pathlib import Path

from cnnlab.data.read.hf_rows import HFRows, is_hf_source
from cnnlab.data.read.tree import FileTree


def open_source(source: str) -> FileTree | HFRows:
    """The reader of FileSplit.source."""
    return HFRows(source) if is_hf_source(source) else FileTree(Path(source))
