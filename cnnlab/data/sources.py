"""Files of an image dataset, from a folder or straight from a .zip archive."""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

from cnnlab.errors import DataError

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


class FileTree:
    """Read-only view of a folder or a zip archive with '/'-separated relative paths.

    Readers in DataLoader worker processes use it too: a zip handle shared across fork()
    shares one file offset between processes, so the handle is (re)opened lazily in whichever
    process reads, and pickling (to a worker) carries only the path. The listing is made on
    first use of `files`.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        if not self.path.exists():
            raise DataError(f"{self.path}: no such file or folder")
        self.is_zip = self.path.is_file()
        if self.is_zip and not zipfile.is_zipfile(self.path):
            raise DataError(f"{self.path}: expected a folder of images or a .zip archive of one")
        self._zip: zipfile.ZipFile | None = None
        self._pid: int | None = None
        self._files: list[str] | None = None

    def _archive(self) -> zipfile.ZipFile:
        if self._zip is None or self._pid != os.getpid():
            try:
                self._zip, self._pid = zipfile.ZipFile(self.path), os.getpid()
            except (zipfile.BadZipFile, OSError) as e:
                raise DataError(f"{self.path}: unreadable zip archive ({e})") from None
        return self._zip

    @property
    def files(self) -> list[str]:
        """Every file's relative path, sorted; hidden files and __MACOSX left out."""
        if self._files is None:
            if self.is_zip:
                names = [n for n in self._archive().namelist() if not n.endswith("/")]
                self._files = sorted(n for n in names if not _hidden(n))
            else:
                found = sorted(
                    str(PurePosixPath(Path(root).relative_to(self.path), f))
                    for root, dirs, files in os.walk(self.path)
                    for f in files
                    if not _hidden(f)
                )
                self._files = [f[2:] if f.startswith("./") else f for f in found]
        return self._files

    def read(self, rel: str) -> bytes:
        """The bytes of one file."""
        try:
            if self.is_zip:
                return self._archive().read(rel)
            return (self.path / rel).read_bytes()
        except (OSError, zipfile.BadZipFile, KeyError) as e:
            raise DataError(f"{self.describe(rel)}: cannot read ({e})") from None

    def describe(self, rel: str) -> str:
        """A path a person can find: 'archive.zip:member' or the full file path."""
        return f"{self.path}:{rel}" if self.is_zip else str(self.path / rel)

    def fingerprint(self) -> str:
        """Changes whenever a file is added, removed or modified (for the decode cache)."""
        h = hashlib.sha256(str(self.path.resolve()).encode())
        if self.is_zip:
            st = self.path.stat()
            h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
        else:
            for rel in self.files:
                st = (self.path / rel).stat()
                h.update(f"{rel}:{st.st_size}:{st.st_mtime_ns}".encode())
        return h.hexdigest()[:20]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_zip": None, "_pid": None, "_files": None}


def _hidden(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


def is_image(name: str) -> bool:
    """True for file names with a known image extension (case-insensitive)."""
    return PurePosixPath(name).suffix.lower() in IMAGE_EXTENSIONS
