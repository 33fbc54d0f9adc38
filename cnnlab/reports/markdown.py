"""A Doc as Markdown (GitHub's flavour: pipe tables, <details>) with its figures as PNG files in
a folder beside it, for pasting into a write-up. The PNGs are the originals, not the smaller
copies the HTML page inlines."""

from __future__ import annotations

from typing import Any

from cnnlab.reports.doc import (
    Code,
    Details,
    Doc,
    Figure,
    Heading,
    Items,
    Link,
    Mono,
    Notice,
    Strong,
    Table,
    Text,
    Toc,
    Value,
)


def render(doc: Doc, folder: str) -> tuple[str, dict[str, bytes]]:
    """(the Markdown text, {file name: PNG bytes}) with figures referenced as folder/NAME."""
    files: dict[str, bytes] = {}
    out = [f"# {_escape(doc.title)}", ""]
    if doc.subtitle:
        out += [_inline(doc.subtitle), ""]
    for block in doc.blocks:
        out += _block(block, doc, folder, files)
    return "\n".join(out).rstrip() + "\n", files


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;")


def _inline(content: Any) -> str:
    if isinstance(content, list):
        return "".join(_inline(c) for c in content)
    if isinstance(content, str):
        return _escape(content)
    if isinstance(content, Link):
        return f"[{_escape(content.text)}]({content.href})"
    if isinstance(content, Mono):
        return f"`{content.text}`"
    if isinstance(content, Strong):
        return f"**{_escape(content.text)}**"
    if isinstance(content, Value):
        return _escape(content.text)
    raise TypeError(f"not inline content: {type(content).__name__}")


def _unique(name: str, files: dict[str, bytes]) -> str:
    stem, dot, ext = name.rpartition(".")
    candidate, k = name, 2
    while candidate in files:
        candidate = f"{stem}-{k}{dot}{ext}"
        k += 1
    return candidate


def _block(block: Any, doc: Doc, folder: str, files: dict[str, bytes]) -> list[str]:
    if isinstance(block, Heading):
        anchor = f'<a id="{block.anchor}"></a>' if block.anchor else ""
        return [f"{'#' * block.level} {anchor}{_escape(block.text)}", ""]
    if isinstance(block, Text):
        return [_inline(block.content), ""]
    if isinstance(block, Notice):
        return [f"> **{'Note' if block.kind in ('info', 'ok') else 'Attention'}:** {_inline(block.content)}", ""]
    if isinstance(block, Items):
        return [f"- {_inline(i)}" for i in block.items] + [""]
    if isinstance(block, Table):
        head = block.head or [""] * len((block.rows or [[]])[0])  # Markdown tables need a heading row
        align = block.align or "l" + "r" * (len(head) - 1)
        rule = "|" + "".join("--:|" if j < len(align) and align[j] == "r" else "---|" for j in range(len(head)))
        lines = ["| " + " | ".join(_escape(h) for h in head) + " |", rule]
        lines += ["| " + " | ".join(_inline(c).replace("\n", " ") for c in row) + " |" for row in block.rows]
        return lines + ([""] + [_inline(block.note)] if block.note else []) + [""]
    if isinstance(block, Figure):
        name = _unique(block.name, files)
        files[name] = block.png
        caption = _inline(block.caption)
        return [f"![{caption or name}]({folder}/{name})", ""] + ([f"*{caption}*", ""] if caption else [])
    if isinstance(block, Code):
        fence = ["```" + block.lang, block.text.rstrip("\n"), "```"]
        if block.summary:
            return [f"<details><summary>{_escape(block.summary)}</summary>", "", *fence, "", "</details>", ""]
        return [*fence, ""]
    if isinstance(block, Details):
        inner: list[str] = []
        for b in block.blocks:
            inner += _block(b, doc, folder, files)
        return [f"<details><summary>{_escape(block.summary)}</summary>", "", *inner, "</details>", ""]
    if isinstance(block, Toc):
        links = [f"[{_escape(b.text)}](#{b.anchor})" for b in doc.blocks
                 if isinstance(b, Heading) and b.level == 2 and b.anchor]
        return ["Contents: " + " · ".join(links), ""] if links else []
    raise TypeError(f"not a block: {type(block).__name__}")
