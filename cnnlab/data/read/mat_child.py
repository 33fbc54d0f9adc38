"""Reading named variables of a MATLAB .mat file in a child process.

scipy's C reader can crash the whole process on a damaged file (a segmentation fault found
by tests/fuzz_readers.py, scipy 1.17), so it runs in a short-lived child that hands the
arrays back as .npy files; a crash there is one line here. The child is `python -m
cnnlab.data.read.mat_child`, which imports NumPy and SciPy only (not torch, not the caller's
__main__ as multiprocessing's spawn would).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from cnnlab.errors import DataError

PROBLEM = "problem.txt"


def read_variables(path: Path, names: list[str]) -> dict[str, np.ndarray]:
    """The named variables as arrays; a DataError lists what the file holds when one is missing."""
    with tempfile.TemporaryDirectory(prefix="cnnlab-mat-") as tmp:
        child = subprocess.run([sys.executable, "-m", "cnnlab.data.read.mat_child", str(path), tmp, *names],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        problem = Path(tmp) / PROBLEM
        if problem.is_file():
            raise DataError(problem.read_text(encoding="utf-8"))
        if child.returncode != 0:
            code = child.returncode
            how = f"signal {-code}" if code < 0 else f"exit code {code}"
            raise DataError(f"{path}: scipy's .mat reader crashed on it ({how}); the file is damaged, "
                            "download or save it again")
        return {n: np.load(Path(tmp) / f"{i}.npy", allow_pickle=False) for i, n in enumerate(names)}


def _read(path: Path, names: list[str]) -> dict[str, np.ndarray]:
    import scipy.io
    import scipy.sparse

    try:
        present = {name: (shape, kind) for name, shape, kind in scipy.io.whosmat(str(path))}
        missing = [n for n in names if n not in present]
        if missing:
            have = ", ".join(f"{n} ({'x'.join(map(str, s))} {k})" for n, (s, k) in present.items()) or "nothing"
            raise DataError(f"{path}: no variable '{missing[0]}'; the file holds {have}; "
                            "set data.data_var / data.label_var (and test_*_var) to the right names")
        mat = scipy.io.loadmat(str(path), variable_names=names)
    except NotImplementedError:
        # scipy reads up to v7; v7.3 files are HDF5 containers.
        raise DataError(f"{path}: a MATLAB v7.3 (HDF5) file, which cnnlab cannot read; re-save it in MATLAB "
                        "with save(file, ..., '-v7')") from None
    except DataError:
        raise
    except (ValueError, TypeError, OSError, EOFError, IndexError, KeyError, MemoryError,
            AttributeError, UnicodeDecodeError, scipy.io.matlab.MatReadError) as e:
        # scipy's readers fail on a damaged file in all these ways
        raise DataError(f"{path}: not a readable .mat file ({type(e).__name__}: {str(e)[:120]})") from None
    out = {}
    for n in names:
        v = mat[n]
        if scipy.sparse.issparse(v):
            v = v.toarray()
        if not isinstance(v, np.ndarray) or not (np.issubdtype(v.dtype, np.number) or v.dtype == bool):
            raise DataError(f"{path}: variable '{n}' is a {getattr(v, 'dtype', type(v).__name__)} (cell or struct?); "
                            "expected a numeric matrix")
        out[n] = v.astype(np.uint8) if v.dtype == bool else v
    return out


def _child(argv: list[str]) -> int:
    """In the child: save the variables as FOLDER/<i>.npy, or the one-line problem."""
    path, folder, names = Path(argv[0]), Path(argv[1]), argv[2:]
    try:
        for i, v in enumerate(_read(path, names).values()):
            np.save(folder / f"{i}.npy", v, allow_pickle=False)
    except DataError as e:
        (folder / PROBLEM).write_text(str(e), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
