"""`cnnlab.audit`: the data audit from Python (what `cnnlab data audit` prints comes from its result).

`cnnlab.audit` is the package cnnlab/audit/ made callable: `cnnlab.audit(config, out=..., write_clean=...,
labels=..., overrides=...)` calls cnnlab.audit.run.audit and returns audit.json's content with "folder".
"""

from __future__ import annotations

import importlib

audit = importlib.import_module("cnnlab.audit")  # the callable package (see its __init__)
