"""`python -m cnnlab` is the `cnnlab` command."""

from cnnlab.cli import _entry

_entry()
