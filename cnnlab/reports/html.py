"""A Doc as ONE self-contained HTML file: images inlined as data: URIs, CSS and the one line of
script inline, and a Content-Security-Policy that forbids every network load (default-src
'none'; images only from data:, the style and script only by their hashes). It reads offline
and prints to PDF whole: folded sections open for printing.
"""

from __future__ import annotations

import base64
import hashlib
import time
from html import escape
from typing import Any

import cnnlab
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
    plain,
)
from cnnlab.reports.images import for_page

STYLE = """
:root { --ink: #1d232b; --muted: #5b6570; --line: #d5dae0; --accent: #1f5fa8; --best: #e2f2e5; --base: #e6edf8;
  --warn: #fff4d6; --warn-line: #e0b341; --bad: #fde4e1; --bad-line: #d9534f; --ok: #e2f2e5; --ok-line: #4f9d5d; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #fff; line-height: 1.45;
  font: 15px/1.45 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "Noto Sans", "DejaVu Sans", sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 1.7em; margin: 0 0 4px; overflow-wrap: anywhere; }
h2 { font-size: 1.3em; margin: 34px 0 10px; padding-bottom: 4px; border-bottom: 2px solid var(--line); }
h3 { font-size: 1.08em; margin: 24px 0 8px; }
.subtitle { color: var(--muted); margin: 0 0 14px; overflow-wrap: anywhere; }
p.lead { font-size: 1.22em; margin: 12px 0 14px; }
a { color: var(--accent); }
code, pre { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 0.88em; }
code { background: #f2f4f7; padding: 1px 4px; border-radius: 3px; overflow-wrap: anywhere; }
pre code { background: none; padding: 0; font-size: 1em; }
pre { background: #f6f8fa; border: 1px solid var(--line); border-radius: 4px; padding: 10px 12px; overflow-x: auto;
  white-space: pre-wrap; overflow-wrap: anywhere; }
.notice { border-left: 5px solid var(--warn-line); background: var(--warn); padding: 8px 12px; margin: 10px 0;
  border-radius: 3px; }
.notice.bad { border-color: var(--bad-line); background: var(--bad); }
.notice.ok { border-color: var(--ok-line); background: var(--ok); }
.notice.info { border-color: var(--accent); background: #eef3fa; }
.scroll { overflow-x: auto; margin: 8px 0 14px; }
table { border-collapse: collapse; font-size: 0.92em; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: #eef1f4; font-weight: 600; white-space: nowrap; }
td.r, th.r { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.best td { background: var(--best); }
tr.base td { background: var(--base); }
tr.bad td { color: var(--muted); }
table#headline { font-size: 1.02em; }
table#headline td.r { font-size: 1.08em; }
.table-note { color: var(--muted); font-size: 0.85em; margin: -6px 0 14px; max-width: 100ch; }
figure { margin: 14px 0 22px; }
figure img { max-width: 100%; height: auto; border: 1px solid #eceff2; }
figcaption { color: var(--muted); font-size: 0.88em; margin-top: 4px; max-width: 110ch; }
details { margin: 8px 0; }
summary { cursor: pointer; color: var(--accent); }
nav.toc { font-size: 0.92em; margin: 14px 0 0; color: var(--muted); }
nav.toc a { margin-right: 12px; white-space: nowrap; }
ul { margin: 6px 0 12px; padding-left: 22px; }
footer { color: var(--muted); font-size: 0.82em; margin-top: 40px; border-top: 1px solid var(--line); padding-top: 8px; }
@media print {
  body { font-size: 10pt; }
  main { max-width: none; padding: 0; }
  h2 { break-after: avoid; }
  figure, tr, pre { break-inside: avoid; }
  .scroll { overflow: visible; }
  table { font-size: 8pt; }
  details::details-content { content-visibility: visible; display: block; }
  details > summary { list-style: none; color: var(--ink); font-weight: 600; }
  nav.toc { display: none; }
  a { color: inherit; text-decoration: none; }
  @page { margin: 14mm; }
}
""".strip()

# Opens every folded section before printing (browsers without ::details-content in print CSS).
SCRIPT = "addEventListener('beforeprint',()=>document.querySelectorAll('details').forEach(d=>d.open=true));"


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


CSP = (f"default-src 'none'; img-src data:; style-src {_sha256(STYLE)}; script-src {_sha256(SCRIPT)}; "
       "base-uri 'none'; form-action 'none'")


def render(doc: Doc) -> str:
    """The whole page."""
    body = "\n".join(_block(b, doc) for b in doc.blocks)
    stamp = time.strftime("%Y-%m-%d %H:%M")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<meta name=\"generator\" content=\"cnnlab {cnnlab.__version__}\">\n"
        f"<title>{escape(doc.title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n"
        f"<h1>{escape(doc.title)}</h1>\n"
        + (f"<p class=\"subtitle\">{_inline(doc.subtitle)}</p>\n" if doc.subtitle else "")
        + body
        + f"\n<footer>Written by <code>cnnlab report</code> (cnnlab {cnnlab.__version__}) on {stamp}. "
        "One file: every figure is inside it, nothing is fetched from anywhere.</footer>\n"
        f"</main>\n<script>{SCRIPT}</script>\n</body>\n</html>\n"
    )


def _inline(content: Any) -> str:
    if isinstance(content, list):
        return "".join(_inline(c) for c in content)
    if isinstance(content, str):
        return escape(content)
    if isinstance(content, Link):
        return f"<a href=\"{escape(content.href)}\">{escape(content.text)}</a>"
    if isinstance(content, Mono):
        return f"<code>{escape(content.text)}</code>"
    if isinstance(content, Strong):
        return f"<strong>{escape(content.text)}</strong>"
    if isinstance(content, Value):
        exact = "" if content.value is None else f" data-value=\"{content.value!r}\""
        return f"<span data-key=\"{escape(content.key)}\"{exact}>{escape(content.text)}</span>"
    raise TypeError(f"not inline content: {type(content).__name__}")


def _block(block: Any, doc: Doc) -> str:
    if isinstance(block, Heading):
        anchor = f" id=\"{escape(block.anchor)}\"" if block.anchor else ""
        return f"<h{block.level}{anchor}>{escape(block.text)}</h{block.level}>"
    if isinstance(block, Text):
        return f"<p class=\"lead\">{_inline(block.content)}</p>" if block.lead else f"<p>{_inline(block.content)}</p>"
    if isinstance(block, Notice):
        return f"<div class=\"notice {escape(block.kind)}\">{_inline(block.content)}</div>"
    if isinstance(block, Items):
        return "<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in block.items) + "</ul>"
    if isinstance(block, Table):
        return _table(block)
    if isinstance(block, Figure):
        data = base64.b64encode(for_page(block.png)).decode()
        return (f"<figure><img src=\"data:image/png;base64,{data}\" alt=\"{escape(plain(block.caption) or block.name)}\">"
                + (f"<figcaption>{_inline(block.caption)}</figcaption>" if block.caption else "") + "</figure>")
    if isinstance(block, Code):
        pre = f"<pre><code>{escape(block.text)}</code></pre>"
        return f"<details><summary>{escape(block.summary)}</summary>{pre}</details>" if block.summary else pre
    if isinstance(block, Details):
        inner = "\n".join(_block(b, doc) for b in block.blocks)
        return f"<details><summary>{escape(block.summary)}</summary>\n{inner}\n</details>"
    if isinstance(block, Toc):
        links = [f"<a href=\"#{escape(b.anchor)}\">{escape(b.text)}</a>" for b in doc.blocks
                 if isinstance(b, Heading) and b.level == 2 and b.anchor]
        return f"<nav class=\"toc\">Contents: {' '.join(links)}</nav>" if links else ""
    raise TypeError(f"not a block: {type(block).__name__}")


def _table(t: Table) -> str:
    align = t.align or "l" + "r" * (len(t.head or (t.rows or [[]])[0]) - 1)
    cls = lambda j: " class=\"r\"" if j < len(align) and align[j] == "r" else ""
    ident = f" id=\"{escape(t.id)}\"" if t.id else ""
    head = "".join(f"<th{cls(j)}>{escape(h)}</th>" for j, h in enumerate(t.head))
    thead = f"<thead><tr>{head}</tr></thead>" if t.head else ""
    rows = []
    for i, row in enumerate(t.rows):
        kind = t.row_class[i] if i < len(t.row_class) and t.row_class[i] else ""
        tr = f"<tr class=\"{kind}\">" if kind else "<tr>"
        rows.append(tr + "".join(f"<td{cls(j)}>{_inline(c)}</td>" for j, c in enumerate(row)) + "</tr>")
    note = f"<p class=\"table-note\">{_inline(t.note)}</p>" if t.note else ""
    return (f"<div class=\"scroll\"><table{ident}>{thead}"
            f"<tbody>{''.join(rows)}</tbody></table></div>{note}")
