"""Extracting downloaded .tar.gz / .zip archives without letting any member escape the target folder."""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from cnnlab.errors import DataError


def safe_member(archive: Path, name: str) -> PurePosixPath:
    """A member name as a relative path that stays inside the target, or a DataError."""
    rel = PurePosixPath(name.replace("\\", "/"))
    if rel.is_absolute() or ".." in rel.parts or (rel.parts and ":" in rel.parts[0]):
        raise DataError(f"{archive}: member '{name}' would be written outside the target folder; refusing to extract")
    parts = [p for p in rel.parts if p not in ("", ".")]
    return PurePosixPath(*parts) if parts else PurePosixPath()


def extract(archive: Path, target: Path) -> list[str]:
    """Unpack into `target` (via a temporary folder beside it); return the top-level names written."""
    target.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=target))
    try:
        if zipfile.is_zipfile(archive):
            _unzip(archive, tmp)
        elif tarfile.is_tarfile(archive):
            _untar(archive, tmp)
        else:
            raise DataError(f"{archive}: neither a zip nor a tar archive")
        tops = sorted(p.name for p in tmp.iterdir())
        for name in tops:  # move into place only once everything unpacked
            dest = target / name
            if dest.is_dir() and not dest.is_symlink():
                shutil.rmtree(dest)
            elif dest.exists() or dest.is_symlink():
                dest.unlink()
            os.replace(tmp / name, dest)
        return tops
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write(stream, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "wb") as out:
        shutil.copyfileobj(stream, out, 1 << 20)


def _untar(archive: Path, root: Path) -> None:
    try:
        with tarfile.open(archive) as tar:
            for m in tar:
                rel = safe_member(archive, m.name)
                if m.isdir():
                    (root / rel).mkdir(parents=True, exist_ok=True)
                elif m.isfile():
                    src = tar.extractfile(m)
                    assert src is not None
                    with src:
                        _write(src, root / rel)
                else:  # links, devices, fifos: nothing a dataset needs, and links can point anywhere
                    raise DataError(f"{archive}: member '{m.name}' is a link or special file; refusing to extract")
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DataError(f"{archive}: cannot extract ({e}); the archive is damaged, delete it and fetch again") from None


def _unzip(archive: Path, root: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as z:
            for info in z.infolist():
                rel = safe_member(archive, info.filename)
                if info.is_dir():
                    (root / rel).mkdir(parents=True, exist_ok=True)
                    continue
                with z.open(info) as src:  # written as a plain file even if flagged as a symlink
                    _write(src, root / rel)
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        raise DataError(f"{archive}: cannot extract ({e}); the archive is damaged, delete it and fetch again") from None
