"""Opening a Hugging Face dataset offline, and reading its images row by row (data.format: hf).

Three layouts on disk, each opened with the `datasets` library (imported here, and only when a
dataset is opened): a `save_to_disk` folder (`dataset_dict.json`, or `state.json` for a lone
split), a folder of Parquet/Arrow files, or an "imagefolder" directory (`[split/]<class>/<image>`).
`datasets` converts the last two to Arrow files once, in its cache folder (`hf/` in cnnlab's).

`HFRows` is to a dataset what FileTree is to a folder of images: `read("train/17")` gives the
encoded bytes of row 17's image in the split `train`, so decode.py decodes both alike and the
file-backed path decodes rows lazily, by index. The Arrow files are memory-mapped, so opening is
cheap: it happens on first use in whichever process reads (a DataLoader worker too; pickling
carries only the source description).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cnnlab.data.read.tree import IMAGE_EXTENSIONS
from cnnlab.errors import DataError

SOURCE_PREFIX = "hf:"  # FileSplit.source of an hf split: this, then the JSON that HFRows reopens it from


def hf_source(path: Path, image_column: str, cache_dir: Path) -> str:
    """The FileSplit.source of a split of the dataset at `path` (any split: rows are 'SPLIT/ROW')."""
    return SOURCE_PREFIX + json.dumps({"path": str(path.resolve()), "image": image_column, "cache": str(cache_dir)})


def is_hf_source(source: str) -> bool:
    return source.startswith(SOURCE_PREFIX)


def layout_of(path: Path) -> str:
    """'save_to_disk', 'parquet/arrow' or 'imagefolder'; one line when the folder is none of them."""
    if path.is_dir() and ((path / "dataset_dict.json").is_file() or (path / "state.json").is_file()):
        return "save_to_disk"
    if path.is_dir():
        for _, dirs, files in os.walk(path):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            suffixes = {Path(f).suffix.lower() for f in files if not f.startswith(".")}
            if suffixes & {".parquet", ".arrow"}:
                return "parquet/arrow"
            if suffixes & IMAGE_EXTENSIONS:
                return "imagefolder"
    raise DataError(f"{path}: not a Hugging Face dataset: data.format: hf reads a save_to_disk folder (dataset_dict.json "
                    "or state.json), a folder of .parquet/.arrow files, or an imagefolder directory "
                    "([split/]<class>/<image>); point data.path at one")


def open_splits(path: Path, cache_dir: Path) -> dict[str, Any]:
    """HF split name -> datasets.Dataset (memory-mapped Arrow), in the dataset's own order."""
    kind = layout_of(path)
    datasets = _library()
    with _offline(datasets):
        try:
            if kind == "save_to_disk":
                loaded = datasets.load_from_disk(str(path))
            else:  # datasets infers Parquet, Arrow or imagefolder (and a README's configs) as it does for the Hub
                loaded = datasets.load_dataset(str(path.resolve()), cache_dir=str(cache_dir))
        except Exception as e:  # noqa: BLE001 - datasets and pyarrow raise many kinds for a damaged dataset
            reason = (str(e).strip().splitlines() or [""])[0]
            raise DataError(f"{path}: datasets cannot read this {kind} dataset ({type(e).__name__}: {reason})") from None
    if isinstance(loaded, datasets.DatasetDict):
        return dict(loaded)
    return {"train": loaded}


def _library() -> Any:
    import datasets

    datasets.disable_progress_bars()  # cnnlab prints its own progress; -q means quiet
    datasets.logging.set_verbosity_error()
    return datasets


@contextlib.contextmanager
def _offline(datasets: Any) -> Iterator[None]:
    """No network while a local dataset is opened (HF_DATASETS_OFFLINE=1 for these calls only: the
    user's own code in the same process may still reach the Hub)."""
    saved = datasets.config.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE = saved


class HFRows:
    """Read-only view of a dataset's image column with FileTree's reading side: `read(rel)` and
    `describe(rel)` for rel = 'SPLIT/ROW' (the dataset's own split names)."""

    def __init__(self, source: str):
        spec = json.loads(source[len(SOURCE_PREFIX):])
        self.path = Path(spec["path"])
        self.image, self.cache = spec["image"], Path(spec["cache"])
        self._splits: dict[str, Any] | None = None
        self._columns: dict[str, Any] = {}
        self._pid: int | None = None
        self._lock = threading.Lock()  # decode.py reads from a thread pool; one opening, not eight

    def _opened(self) -> dict[str, Any]:
        """The dataset's splits, opened once per process (call it holding the lock)."""
        if self._splits is None or self._pid != os.getpid():
            self._splits, self._columns, self._pid = open_splits(self.path, self.cache), {}, os.getpid()
        return self._splits

    def _column(self, split: str) -> Any:
        """The split's image column, a pyarrow ChunkedArray over the memory-mapped Arrow files."""
        with self._lock:
            splits = self._opened()
            if split not in self._columns:
                if split not in splits or self.image not in splits[split].column_names:
                    raise DataError(f"{self.path}: split '{split}' or its column '{self.image}' is gone; "
                                    "the dataset changed while cnnlab read it?")
                self._columns[split] = splits[split].data.column(self.image)
            return self._columns[split]

    @property
    def files(self) -> list[str]:
        """Every row of every split, as 'SPLIT/ROW'."""
        with self._lock:
            return [f"{s}/{i}" for s, ds in self._opened().items() for i in range(len(ds))]

    def read(self, rel: str) -> bytes:
        """The encoded image of one row (a missing image: no bytes, which decoding then names)."""
        split, _, row = rel.rpartition("/")
        value = self._column(split)[int(row)].as_py()
        if not isinstance(value, dict):  # a binary column holds the encoded bytes themselves
            return value or b""
        if value.get("bytes") is not None:
            return value["bytes"]
        if value.get("path"):  # an imagefolder's rows point at its files
            file = Path(value["path"])
            file = file if file.is_absolute() else self.path / file
            try:
                return file.read_bytes()
            except OSError as e:
                raise DataError(f"{self.describe(rel)}: cannot read its image file {file} ({e.strerror})") from None
        return b""

    def describe(self, rel: str) -> str:
        """Where a person finds the row: the dataset, the split and the row number."""
        split, _, row = rel.rpartition("/")
        return f"{self.path} split '{split}' row {row}"

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_splits": None, "_columns": {}, "_pid": None, "_lock": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
