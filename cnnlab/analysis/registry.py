"""Analyses of a trained run: name -> function, for `cnnlab analyze RUN_DIR WHAT [--option V]`.

An analysis is one function registered here by name, in its own module (kernels.py,
features.py, mistakes.py, cam.py, landscape.py). Its keyword parameters are the command's
options (`--layer conv1` is `layer="conv1"`; type hints and pydantic `Field`s validate them);
`subject` (the loaded run, subject.py) and `out` (where its files go, outputs.py) are passed
by the command. It returns a few lines saying what it found.
"""

from __future__ import annotations

from cnnlab.registry import Registry

CONTEXT = ("subject", "out")
ANALYSES = Registry("analysis", "analyze", "what", context=CONTEXT)
