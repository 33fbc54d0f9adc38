"""Downloading one file: mirrors in order, resumable `.part` files, md5 verified before it is moved into place."""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from cnnlab import __version__
from cnnlab.errors import DataError

CHUNK = 1 << 20
RETRIES = 3  # attempts per mirror while each attempt makes progress


class _Dropped(Exception):
    """The connection ended before the announced number of bytes arrived."""


def md5sum(path: Path) -> str:
    """Hex md5 of a file, read in chunks."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


class Progress:
    """Download progress: a Rich bar on a terminal, a line at start and end otherwise."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self._bar = None
        self._task = None

    def start(self, label: str, total: int | None, done: int) -> None:
        if self.stream.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

            self._bar = Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                                 TransferSpeedColumn(), console=Console(file=self.stream), transient=True)
            self._bar.start()
            self._task = self._bar.add_task(label, total=total, completed=done)
        else:
            size = f" ({_mb(total)})" if total else ""
            resumed = f", resuming at {_mb(done)}" if done else ""
            print(f"downloading {label}{size}{resumed}", file=self.stream, flush=True)

    def advance(self, n: int) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, n)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def download(urls: Sequence[str], dest: Path, md5: str, progress: Progress | None = None) -> None:
    """Fetch `dest` from the first mirror that delivers a file with the right md5."""
    progress = progress or Progress()
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    for url in urls:
        for _ in range(RETRIES):
            resumed = part.exists() and part.stat().st_size > 0
            before = part.stat().st_size if part.exists() else 0
            try:
                _stream(url, part, progress)
            except (urllib.error.URLError, http.client.HTTPException, OSError, _Dropped) as e:
                problems.append(f"{url}: {_reason(e)}")
                if part.exists() and part.stat().st_size > before:
                    continue  # the connection broke after some progress: resume from here
                break  # this mirror gives nothing: try the next one
            finally:
                progress.stop()
            digest = md5sum(part)
            if digest == md5:
                os.replace(part, dest)
                return
            part.unlink()
            problems.append(f"{url}: checksum mismatch (md5 {digest}, expected {md5})")
            if not resumed:
                break  # a whole download with the wrong content: this mirror serves another file
            # A stale .part from an earlier, different file: start again from zero.
    raise DataError(
        f"could not download {dest.name}: " + "; ".join(problems[-3:])
        + ("; the partial file is kept, run the command again to resume" if part.exists() else "; nothing was saved")
    )


def _stream(url: str, part: Path, progress: Progress) -> None:
    """Append the rest of `url` to `part` (HTTP Range), or rewrite it when the server ignores the range."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": f"cnnlab/{__version__} (+urllib)"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:
            return  # nothing left to send: the .part may be complete, the md5 decides
        raise
    with resp:
        length = resp.headers.get("Content-Length")
        remaining = int(length) if length and length.isdigit() else None
        if offset and resp.status == 206:
            match = re.match(r"bytes (\d+)-", resp.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != offset:
                part.unlink()  # an unexpected range: start over rather than guess
                raise _Dropped(f"server answered with range {resp.headers.get('Content-Range')!r}")
            mode = "ab"
        else:  # 200: the server sends the whole file, ignoring (or never given) the Range header
            offset, mode = 0, "wb"
        total = offset + remaining if remaining is not None else None
        progress.start(url, total, offset)
        received = 0
        with open(part, mode) as f:
            while chunk := resp.read(CHUNK):
                f.write(chunk)
                received += len(chunk)
                progress.advance(len(chunk))
        # http.client does not always raise when a connection closes early: count the bytes.
        if remaining is not None and received < remaining:
            raise _Dropped(f"connection closed after {offset + received} of {total} bytes")


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.1f} kB"


def _reason(e: Exception) -> str:
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        return str(e.reason)
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
