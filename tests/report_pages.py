"""Reading a report back for the report tests: an HTML parser (the standard library's) that
collects what the tests check, and summary.json values by the paths the report's numbers carry."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any


@dataclass
class Page:
    csp: str = ""
    images: list[str] = field(default_factory=list)  # every <img src>
    urls: list[str] = field(default_factory=list)  # every src / href attribute
    values: list[tuple[str, float | None, str, str]] = field(default_factory=list)  # key, exact value, text, heading id
    tables: dict[str, list[list[str]]] = field(default_factory=dict)  # id (or table-N) -> rows of cell text
    ids: list[str] = field(default_factory=list)
    text: str = ""  # all text, in order
    pre: list[str] = field(default_factory=list)  # <pre> contents
    captions: list[str] = field(default_factory=list)


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = Page()
        self.heading = ""
        self.span: list[Any] | None = None
        self.table: list[list[str]] | None = None
        self.cell: list[str] | None = None
        self.pre: list[str] | None = None
        self.caption: list[str] | None = None
        self.chunks: list[str] = []
        self.skip = 0  # inside <style> or <script>

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag in ("style", "script"):
            self.skip += 1
        if tag == "meta" and a.get("http-equiv", "").lower() == "content-security-policy":
            self.page.csp = a.get("content", "")
        for key in ("src", "href"):
            if key in a:
                self.page.urls.append(a[key])
        if tag == "img":
            self.page.images.append(a.get("src", ""))
        if "id" in a:
            self.page.ids.append(a["id"])
            if tag in ("h2", "h3"):
                self.heading = a["id"]
        if tag == "span" and "data-key" in a:
            self.span = [a["data-key"], float(a["data-value"]) if "data-value" in a else None, []]
        if tag == "table":
            self.table = []
            self.page.tables[a.get("id") or f"table-{len(self.page.tables)}"] = self.table
        if tag == "tr" and self.table is not None:
            self.table.append([])
        if tag in ("td", "th"):
            self.cell = []
        if tag == "pre":
            self.pre = []
        if tag == "figcaption":
            self.caption = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script"):
            self.skip -= 1
        if tag == "span" and self.span is not None:
            self.page.values.append((self.span[0], self.span[1], "".join(self.span[2]), self.heading))
            self.span = None
        if tag in ("td", "th") and self.cell is not None and self.table is not None:
            self.table[-1].append("".join(self.cell).strip())
            self.cell = None
        if tag == "table":
            self.table = None
        if tag == "pre" and self.pre is not None:
            self.page.pre.append("".join(self.pre))
            self.pre = None
        if tag == "figcaption" and self.caption is not None:
            self.page.captions.append("".join(self.caption))
            self.caption = None
        if tag in ("p", "div", "li", "tr", "h1", "h2", "h3", "figcaption", "summary"):
            self.chunks.append("\n")

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        self.chunks.append(data)
        for target in (self.span[2] if self.span is not None else None, self.cell, self.pre, self.caption):
            if target is not None:
                target.append(data)


def parse(html: str) -> Page:
    p = _Parser()
    p.feed(html)
    p.page.text = "".join(p.chunks)
    return p.page


def summary_value(summary: dict[str, Any], path: str) -> float | None:
    """A number of summary.json by a report's data-key: 'test_acc', 'best.test_acc.value', '1-final.val_acc'."""
    flip = path.startswith("1-")
    node: Any = summary
    for part in path.removeprefix("1-").split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if node is None:
        return None
    return 1 - node if flip else float(node)


def png_size(src: str) -> tuple[int, int]:
    """The pixel size of an inlined PNG (Pillow decodes it: a broken one raises)."""
    from PIL import Image

    assert src.startswith("data:image/png;base64,"), src[:40]
    image = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
    image.load()
    return image.size
