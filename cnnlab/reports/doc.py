"""A report as plain data: headings, paragraphs, tables, figures, code. The run, study and compare
builders produce a Doc; html.py and markdown.py render the same Doc, so both formats hold the
same content.

Inline content (a paragraph, a table cell) is a string or a list of strings and inline parts
(Link, Mono, Strong, Value).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Link:
    text: str
    href: str  # "#anchor" inside the page


@dataclass
class Mono:
    text: str  # inline code: a command, a file name, a config key


@dataclass
class Strong:
    text: str


@dataclass
class Value:
    """A number shown as text; HTML keeps its key and exact value (data-key, data-value), so a
    reader (or a test) can check it against the file it came from."""

    text: str
    key: str
    value: float | None = None


Inline = str | Link | Mono | Strong | Value | list


@dataclass
class Heading:
    level: int  # 2 or 3 (the title is level 1)
    text: str
    anchor: str | None = None


@dataclass
class Text:
    content: Inline
    lead: bool = False  # the answer: set larger, first thing on the page


@dataclass
class Notice:
    """A line that must be seen: a run in progress, a failure, something left out."""

    content: Inline
    kind: str = "warn"  # warn | info | ok


@dataclass
class Items:
    """A bulleted list."""

    items: list[Inline]


@dataclass
class Table:
    head: list[str]  # [] for a key-value table without a heading row
    rows: list[list[Inline]]
    align: str = ""  # one letter per column, l or r (default: first column left, others right)
    row_class: list[str] = field(default_factory=list)  # per row: "", "best", "base", "bad"
    id: str | None = None
    note: str = ""  # a legend under the table


@dataclass
class Figure:
    png: bytes
    name: str  # file name in the Markdown output's folder
    caption: Inline = ""


@dataclass
class Code:
    text: str
    summary: str | None = None  # collapsible under this line (HTML <details>); None: always shown
    lang: str = ""


@dataclass
class Details:
    """Blocks folded under a summary line (opened when printed)."""

    summary: str
    blocks: list[Any]


@dataclass
class Toc:
    """Links to the level-2 sections, wherever the builder places it."""


Block = Heading | Text | Notice | Items | Table | Figure | Code | Details | Toc


@dataclass
class Doc:
    title: str
    blocks: list[Any] = field(default_factory=list)
    subtitle: str = ""

    def add(self, *blocks: Any) -> None:
        self.blocks.extend(b for b in blocks if b is not None)

    def section(self, text: str, anchor: str | None = None, level: int = 2) -> None:
        self.blocks.append(Heading(level, text, anchor or slug(text)))


def slug(text: str) -> str:
    """An anchor from any text: letters, digits, '-', '_', '.'."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-").lower() or "section"


def plain(content: Inline) -> str:
    """Inline content as plain text."""
    if isinstance(content, list):
        return "".join(plain(c) for c in content)
    if isinstance(content, str):
        return content
    return content.text


def percent(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value * 100:.{digits}f}%"


def duration(seconds: float | None) -> str:
    """'4 min 12 s', '1 h 02 min', '12.3 s'."""
    if seconds is None:
        return "n/a"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, s = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {s:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def si(n: float) -> str:
    """1234567 -> '1.23M' (FLOPs)."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(int(n))
