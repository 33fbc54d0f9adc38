"""Figures as PNG bytes: drawn here (matplotlib) or read from a run, and made small enough to
inline in one HTML file (a dozen figures in well under 2 MB)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import cnnlab.plots  # noqa: F401  (selects the Agg backend)

MAX_WIDTH = 1600  # pixels: wider figures are scaled down for the page (the Markdown folder keeps the originals)
QUANTIZE_ABOVE = 120_000  # bytes: larger PNGs are tried with a 256-colour palette, kept when much smaller


def figure_png(fig: Any, dpi: int = 100) -> bytes:
    """A matplotlib figure as PNG bytes; the figure is closed."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


def read_png(path: Path) -> bytes | None:
    """A PNG file's bytes, or None when it is missing or is not a PNG."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return data if data.startswith(b"\x89PNG\r\n\x1a\n") else None


def for_page(png: bytes) -> bytes:
    """A smaller PNG for inlining: at most MAX_WIDTH wide and, for large files, a 256-colour
    palette (matplotlib's figures have few colours; photos barely change at this size)."""
    from PIL import Image

    try:
        image = Image.open(io.BytesIO(png))
        image.load()
    except (OSError, ValueError):
        return png
    changed = False
    if image.width > MAX_WIDTH:
        image = image.resize((MAX_WIDTH, round(image.height * MAX_WIDTH / image.width)), Image.Resampling.LANCZOS)
        changed = True
    best = _encode(image) if changed else png
    if len(best) > QUANTIZE_ABOVE:
        rgb = _on_white(image)
        palette = _encode(rgb.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG))
        if len(palette) < 0.7 * len(best):
            best = palette
    return best


def _encode(image: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _on_white(image: Any) -> Any:
    """RGB, with any transparency laid over white (as the page shows it)."""
    from PIL import Image

    if image.mode in ("RGBA", "LA", "P"):
        rgba = image.convert("RGBA")
        out = Image.new("RGB", rgba.size, "white")
        out.paste(rgba, mask=rgba.getchannel("A"))
        return out
    return image.convert("RGB") if image.mode != "RGB" else image
