"""The data-format registry: `data.format` -> reader.

A reader takes the dataset path (plus its own options from the `data:` section) and
returns a RawDataset. It must fail with a DataError that names the file and says what
to do, never with a traceback.
"""

from __future__ import annotations

from cnnlab.registry import Registry

FORMATS = Registry("data format", "data", "format", context=("path", "cache_dir", "seed", "split"))
