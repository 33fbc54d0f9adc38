"""Reading pickled datasets (the CIFAR Python version) without running code from the file.

A pickle can name any importable callable and call it while loading. This unpickler
resolves only the few names that NumPy array pickles use; anything else is refused
before it is looked up, so a hostile file never gets to call os.system or eval.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.errors import DataError

# Take the reconstruction functions from NumPy itself: their module moved from numpy.core
# to numpy._core in NumPy 2, and pickles written by either version name the one they knew.
_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]
_SCALAR = np.int64(0).__reduce__()[0]


def _latin1_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """Python 3 writes bytes in a protocol-2 pickle as _codecs.encode(str, 'latin1')."""
    if encoding.replace("-", "").replace("_", "").lower() not in ("latin1", "iso88591"):
        raise pickle.UnpicklingError(f"refusing to unpickle _codecs.encode with encoding {encoding!r}")
    return text.encode("latin-1", errors)


def _empty_bytes(*args: Any) -> bytes:
    """Python 3 writes b'' in a protocol-2 pickle as bytes(); nothing else is allowed."""
    if args:
        raise pickle.UnpicklingError("refusing to unpickle builtins.bytes with arguments")
    return b""


_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy.core.multiarray", "scalar"): _SCALAR,
    ("numpy._core.multiarray", "scalar"): _SCALAR,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
    ("builtins", "bytes"): _empty_bytes,
    ("__builtin__", "bytes"): _empty_bytes,
}


class _Refused(Exception):
    pass


class ArrayUnpickler(pickle.Unpickler):
    """An Unpickler whose only importable names are those NumPy arrays need."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise _Refused(f"{module}.{name}") from None


def load_pickle(path: Path, data: bytes | None = None) -> Any:
    """Unpickle a file of plain data and NumPy arrays; anything else is a DataError."""
    if data is None:
        try:
            data = path.read_bytes()
        except OSError as e:
            raise DataError(f"{path}: cannot read ({e})") from None
    try:
        # encoding="bytes": Python 2 strings (the original CIFAR files) stay bytes, as written.
        obj = ArrayUnpickler(io.BytesIO(data), encoding="bytes").load()
    except _Refused as e:
        raise DataError(
            f"{path}: refusing to unpickle {e}: the file holds code, not just data; "
            "use the official dataset files"
        ) from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            KeyError, MemoryError, OverflowError) as e:
        raise DataError(f"{path}: not a readable pickle ({type(e).__name__}: {e}); the file may be truncated, download it again") from None
    _check_plain(obj, path)
    return obj


def _check_plain(obj: Any, path: Path, depth: int = 0) -> None:
    """Only dicts, lists, tuples, str, bytes, numbers and numeric arrays may come out."""
    if depth > 20:
        raise DataError(f"{path}: pickle nests deeper than a dataset file does")
    if isinstance(obj, (str, bytes, bool, int, float, type(None), np.generic)):
        return
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise DataError(f"{path}: holds an array of Python objects; expected numeric arrays")
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            _check_plain(k, path, depth + 1)
            _check_plain(v, path, depth + 1)
        return
    if isinstance(obj, (list, tuple)):
        for v in obj:
            _check_plain(v, path, depth + 1)
        return
    raise DataError(f"{path}: holds a {type(obj).__name__}; expected plain data and arrays")
