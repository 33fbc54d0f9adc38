"""Files of an image dataset, from a folder or straight from a .zip archive."""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path, PurePosixPath

from cnnlab.errors import DataError

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


class FileTree:
    """Read-only view of a folder or a zip archive with '/'-separated relative paths."""

    def __init__(self, path: Path):
        self.path = path
        if not path.exists():
            raise DataError(f"{path}: no such file or folder")
        self._zip: zipfile.ZipFile | None = None
        if path.is_file():
            if not zipfile.is_zipfile(path):
                raise DataError(f"{path}: expected a folder of images or a .zip archive of one")
            try:
                self._zip = zipfile.ZipFile(path)
                names = [n for n in self._zip.namelist() if not n.endswith("/")]
            except (zipfile.BadZipFile, OSError) as e:
                raise DataError(f"{path}: unreadable zip archive ({e})") from None
            self._files = sorted(n for n in names if not _hidden(n))
        else:
            self._files = sorted(
                str(PurePosixPath(Path(root).relative_to(path), f))
                for root, dirs, files in os.walk(path)
                for f in files
                if not _hidden(f)
            )
            self._files = [f[2:] if f.startswith("./") else f for f in self._files]

    @property
    def files(self) -> list[str]:
        return self._files

    def read(self, rel: str) -> bytes:
        """The bytes of one file."""
        try:
            if self._zip is not None:
                return self._zip.read(rel)
            return (self.path / rel).read_bytes()
        except (OSError, zipfile.BadZipFile, KeyError) as e:
            raise DataError(f"{self.describe(rel)}: cannot read ({e})") from None

    def describe(self, rel: str) -> str:
        """A path a person can find: 'archive.zip:member' or the full file path."""
        return f"{self.path}:{rel}" if self._zip is not None else str(self.path / rel)

    def fingerprint(self) -> str:
        """Changes whenever a file is added, removed or modified (for the decode cache)."""
        h = hashlib.sha256(str(self.path.resolve()).encode())
        if self._zip is not None:
            st = self.path.stat()
            h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
        else:
            for rel in self._files:
                st = (self.path / rel).stat()
                h.update(f"{rel}:{st.st_size}:{st.st_mtime_ns}".encode())
        return h.hexdigest()[:20]


def _hidden(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


def is_image(name: str) -> bool:
    """True for file names with a known image extension (case-insensitive)."""
    return PurePosixPath(name).suffix.lower() in IMAGE_EXTENSIONS
