"""Atomic file writes: a reader sees either the old file or the complete new one."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cnnlab.errors import UserError


def _current_umask() -> int:
    mask = os.umask(0)  # the only way to read it; set back at once (at import, before any threads)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; move it into place only if the block succeeds.

    A file system that refuses (full, read-only, a file too large, a folder in the way) is a
    UserError naming the file; the file as it was before stays untouched.
    """
    path = Path(path)
    tmp_path: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; the finished file gets the usual mode
        os.close(fd)
        tmp_path = Path(tmp)
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except OSError as e:
        raise UserError(f"{path}: cannot write ({write_problem(e)}); the previous version, if any, is kept") from None
    finally:
        if tmp_path is not None:
            tmp_path.unlink(missing_ok=True)


def writable_folder(folder: str | os.PathLike, key: str, create: bool = True) -> Path:
    """`folder`, created if needed, once a file can be written in it; else a UserError naming `key`.
    With create=False nothing is made: the folder, or the nearest existing folder above it
    (where it would be made), must accept a file."""
    out = Path(folder).expanduser()
    if not create:
        probe = out
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if probe.exists() and not probe.is_dir():
            shown = out if probe == out else f"{probe} (above {out})"
            raise UserError(f"{key}: {shown} is a file, not a folder; point it at a folder")
        try:
            with tempfile.TemporaryFile(dir=probe):
                pass
        except OSError as e:
            raise UserError(f"{key}: cannot write into {probe} ({write_problem(e)}); "
                            "choose a folder you can write to") from None
        return out
    try:
        out.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UserError(f"{key}: {out} is a file, not a folder; point it at a folder") from None
    except OSError as e:
        raise UserError(f"{key}: cannot create {out} ({write_problem(e)}); choose a folder you can write to") from None
    try:
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as e:
        raise UserError(f"{key}: cannot write into {out} ({write_problem(e)}); choose a folder you can write to") from None
    return out


def writable_file(path: str | os.PathLike, key: str) -> Path:
    """`path` once it can be written (its folder exists or can be made, and it is not a folder)."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise UserError(f"{key}: {path} is a folder; give a file name, e.g. {path / 'submission.csv'}")
    writable_folder(path.parent if str(path.parent) else ".", key)
    return path


def write_problem(e: OSError) -> str:
    """An OS error as a few words a user acts on."""
    hints = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is full", errno.EFBIG: "file too large",
             errno.EROFS: "read-only file system", errno.EACCES: "permission denied", errno.EISDIR: "it is a folder",
             errno.ENOTDIR: "a file is in the way"}
    return hints.get(e.errno, e.strerror or str(e))


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write a binary file atomically (its folder made if needed)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON atomically, indented for people to read."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def write_jsonl(path: str | os.PathLike, rows: list[dict]) -> None:
    """Write one JSON object per line, atomically (the whole file is rewritten)."""
    write_text(path, "".join(json.dumps(r, default=_json_default) + "\n" for r in rows))


# zlib level 1 instead of Pillow's 6: the PNG encoder was a quarter of curves.png's cost, which a study
# pays for every run, for files about 15% larger (bench/RESULTS.md, "Study overhead"; reports re-encode
# what they inline: reports/images.py).
PNG_OPTIONS = {"compress_level": 1}


def save_figure(fig: Any, path: str | os.PathLike, **kwargs: Any) -> None:
    """Save a matplotlib figure atomically as PNG."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", **{"pil_kwargs": PNG_OPTIONS, **kwargs})


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
