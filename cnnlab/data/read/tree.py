"""Files of an image dataset, from a folder or straight from a .zip archive."""

from __future__ import annotations

import hashlib
import os
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Any

from cnnlab.errors import DataError

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
# An archive member is read whole into memory: one that declares more than this is refused
# before reading (an image dataset's files are kilobytes to a few megabytes).
MAX_MEMBER_BYTES = 256 * 2**20


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
            self._files = self._zip_listing() if self.is_zip else self._folder_listing()
        return self._files

    def _zip_listing(self) -> list[str]:
        names = []
        for info in self._archive().infolist():
            rel = PurePosixPath(info.filename.replace("\\", "/"))
            if rel.is_absolute() or ".." in rel.parts or (rel.parts and ":" in rel.parts[0]):
                raise DataError(f"{self.path}: member '{info.filename}' has an absolute path or climbs out with '..'; "
                                "cnnlab refuses such archives: pack the dataset again with relative paths")
            if info.is_dir() or _hidden(info.filename):
                continue
            if info.flag_bits & 0x1:
                raise DataError(f"{self.path}: member '{info.filename}' is encrypted; cnnlab reads archives without "
                                "passwords: extract them and point data.path at the folder")
            names.append(info.filename)
        return sorted(names)

    def _folder_listing(self) -> list[str]:
        def fail(e: OSError) -> None:
            raise DataError(f"{e.filename}: cannot list this folder ({e.strerror}); fix its permissions or remove it")

        found = sorted(
            str(PurePosixPath(Path(root).relative_to(self.path), f))
            for root, dirs, files in os.walk(self.path, onerror=fail)
            for f in files
            if not _hidden(f)
        )
        return [f[2:] if f.startswith("./") else f for f in found]

    def read(self, rel: str) -> bytes:
        """The bytes of one file."""
        try:
            if self.is_zip:
                archive = self._archive()
                size = archive.getinfo(rel).file_size
                if size > MAX_MEMBER_BYTES:
                    raise DataError(f"{self.describe(rel)}: declares {size:,} bytes, more than an image file of a "
                                    f"dataset ({MAX_MEMBER_BYTES:,}); the archive is damaged or not a dataset")
                return archive.read(rel)
            return (self.path / rel).read_bytes()
        except (OSError, zipfile.BadZipFile, KeyError, RuntimeError, EOFError, zlib.error) as e:
            # RuntimeError: zipfile's "encrypted, password required" and unsupported compression
            hint = " (a broken or looping symbolic link?)" if isinstance(e, OSError) and (self.path / rel).is_symlink() else ""
            raise DataError(f"{self.describe(rel)}: cannot read ({e}){hint}") from None

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
                try:
                    st = (self.path / rel).stat()
                except OSError as e:
                    raise DataError(f"{self.path / rel}: cannot read ({e.strerror}); a broken or looping symbolic link? "
                                    "remove it or point it at a file") from None
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
