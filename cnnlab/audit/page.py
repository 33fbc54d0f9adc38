"""audit.html: one self-contained page (inline PNG thumbnails, no outside file) of what the audit found."""

from __future__ import annotations

import base64
import io
from html import escape
from typing import Any

from PIL import Image

from cnnlab.audit.source import DatasetImages

MAX_GROUPS = 200  # groups drawn on the page (audit.json has them all)
MAX_MEMBERS = 24  # members drawn per group
MAX_SINGLES = 60  # images drawn per single-image problem
SIDE = 72  # thumbnails are drawn this many pixels on their longer side

_STYLE = """body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}th{background:#f3f3f3}
.group{border:1px solid #ddd;margin:8px 0;padding:6px}.bad{border-color:#c33;background:#fff5f5}
.m{display:inline-block;vertical-align:top;margin:4px;width:170px;font-size:11px;word-break:break-all}
.m img{image-rendering:pixelated;display:block}.note{color:#666}"""


def thumbnail(images: DatasetImages, split: str, row: int) -> str:
    """An <img> of one image as a data: URL (or the reason it cannot be shown)."""
    arr = images.splits[split].pixels(row)
    if isinstance(arr, str):
        return f"<i>{escape(arr)}</i>"
    im = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)
    scale = SIDE / max(im.size)
    size = (max(1, round(im.size[0] * scale)), max(1, round(im.size[1] * scale)))
    im = im.resize(size, Image.Resampling.NEAREST if scale > 1 else Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return f'<img src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}" alt="">'


def _member(images: DatasetImages, m: dict[str, Any]) -> str:
    where = escape(m["path"] or m["id"] or "")
    label = "unlabelled" if m["label"] is None else f"{escape(str(m['class']))} ({m['label']})"
    sim = "" if "similarity" not in m else f"<br>similarity {m['similarity']:.3f}, pHash bits {m['phash_bits']}"
    return (f'<div class="m">{thumbnail(images, m["split"], m["index"])}<b>{m["split"]}:{m["index"]}</b> '
            f"{label}<br>{where}{sim}</div>")


def render(report: dict[str, Any], images: DatasetImages, labels_page: str | None) -> str:
    d = report["dataset"]
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>audit: {escape(d['path'])}</title>"
             f"<style>{_STYLE}</style></head><body><h1>Data audit</h1>",
             f"<p>{escape(d['format'])} at {escape(d['path'])}: "
             + ", ".join(f"{k} {v}" for k, v in d["audited"].items()) + " images audited.</p>"]
    parts.append(_counts(report))
    if labels_page:
        parts.append(f'<p>Label issues: <a href="{escape(labels_page)}">{escape(labels_page)}</a></p>')
    groups = report["groups"]
    parts.append(f"<h2>Duplicate groups ({len(groups)})</h2>")
    if len(groups) > MAX_GROUPS:
        parts.append(f"<p class='note'>The first {MAX_GROUPS} of {len(groups)} groups are shown (differing labels "
                     "and cross-split groups first); audit.json lists every one.</p>")
    for n, g in enumerate(groups[:MAX_GROUPS]):
        flag = " labels differ" if g["labels_differ"] else ""
        parts.append(f'<div class="group{" bad" if g["labels_differ"] else ""}"><b>#{n + 1} {g["kind"]}</b> '
                     f'{g["size"]} images in {", ".join(g["splits"])}{flag}<br>'
                     + "".join(_member(images, m) for m in g["members"][:MAX_MEMBERS])
                     + (f"<p class='note'>and {g['size'] - MAX_MEMBERS} more (audit.json)</p>" if g["size"] > MAX_MEMBERS else "")
                     + "</div>")
    parts.append(_singles(report, images))
    parts.append("</body></html>")
    return "\n".join(parts)


def _counts(report: dict[str, Any]) -> str:
    counts = report["counts"]
    pairs = list(next(iter(counts.values())))
    rows = "".join(f"<tr><th>{k}</th>" + "".join(f"<td>{c[p]['groups']} ({c[p]['images']})</td>" for p in pairs) + "</tr>"
                   for k, c in counts.items())
    s = report["summary"]
    singles = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in s.items() if k not in ("images", "leaked"))
    leaks = ", ".join(f"{v} {k} image(s) with a copy in train" for k, v in s["leaked"].items()) or "no val/test image has a copy in train"
    return ("<h2>Counts</h2><p>Groups (images in them) per split pair:</p><table><tr><th></th>"
            + "".join(f"<th>{p}</th>" for p in pairs) + f"</tr>{rows}</table><p>{escape(leaks)}; {escape(singles)}.</p>")


def _singles(report: dict[str, Any], images: DatasetImages) -> str:
    q = report["quality"]
    out = []
    for kind in ("constant", "near_constant", "dark", "bright", "odd_size"):
        items = q[kind]
        if not items:
            continue
        more = f" (the first {MAX_SINGLES} shown)" if len(items) > MAX_SINGLES else ""
        out.append(f"<h2>{kind.replace('_', ' ')}: {len(items)}{more}</h2><div>"
                   + "".join(_member(images, m) for m in items[:MAX_SINGLES]) + "</div>")
    if q["undecodable"]:
        out.append(f"<h2>undecodable: {len(q['undecodable'])}</h2><ul>" + "".join(
            f"<li>{escape(str(u['path'] or (u['split'], u['index'])))}: {escape(u['reason'])}</li>" for u in q["undecodable"])
            + "</ul>")
    if q["rare_classes"]:
        out.append("<h2>rare classes</h2><ul>" + "".join(
            f"<li>{escape(c['class'])}: {c['train_images']} training images</li>" for c in q["rare_classes"]) + "</ul>")
    return "\n".join(out)


