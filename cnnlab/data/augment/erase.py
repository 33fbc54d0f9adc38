"""Occlusion ops: cutout (fixed square holes) and random erasing (torchvision's semantics).

Both run before normalisation, so a fill value of 0 is black, not the dataset mean.
"""

from __future__ import annotations

import math
from typing import Literal

from cnnlab.data.augment.base import (
    AUGMENTATIONS,
    ImageOp,
    Interval,
    PerImage,
    PositiveInt,
    Probability,
    Rng,
    Shape,
    chosen,
)
from cnnlab.lazy import lazy

torch = lazy("torch")
T = lazy("torchvision.transforms.v2")


def box_mask(top: torch.Tensor, left: torch.Tensor, bh: torch.Tensor | int, bw: torch.Tensor | int,
             h: int, w: int) -> torch.Tensor:
    """(B, 1, H, W) True inside each sample's box [top, top + bh) x [left, left + bw)."""
    rows = torch.arange(h, device=top.device)
    cols = torch.arange(w, device=top.device)
    bh = torch.as_tensor(bh, device=top.device)
    bw = torch.as_tensor(bw, device=top.device)
    in_rows = (rows >= top[:, None]) & (rows < (top + bh)[:, None])
    in_cols = (cols >= left[:, None]) & (cols < (left + bw)[:, None])
    return (in_rows[:, None, :, None] & in_cols[:, None, None, :])


@AUGMENTATIONS.register("cutout")
def cutout(size: PositiveInt = 8, holes: PositiveInt = 1, p: Probability = 1.0) -> ImageOp:
    """Black out `holes` squares of side `size` px, centred anywhere in the image (clipped at the border)."""

    def image(x: torch.Tensor, rng: Rng) -> torch.Tensor:
        b, _, h, w = x.shape
        g = rng.device
        mask = torch.zeros(b, 1, h, w, dtype=torch.bool, device=x.device)
        for _ in range(holes):
            cy = torch.randint(0, h, (b,), device=x.device, generator=g)
            cx = torch.randint(0, w, (b,), device=x.device, generator=g)
            mask |= box_mask(cy - size // 2, cx - size // 2, size, size, h, w)
        return x.masked_fill(mask & chosen(p, x, g), 0.0)

    op = ImageOp(image, lambda chw: PerImage(op))  # torchvision has no cutout: the same code, per image
    return op


@AUGMENTATIONS.register("random_erasing")
def random_erasing(
    p: Probability = 0.5,
    scale: Interval = (0.02, 0.33),
    ratio: Interval = (0.3, 3.3),
    value: float | list[float] | Literal["random"] = 0.0,
) -> ImageOp:
    """torchvision's RandomErasing: with probability p, fill a box of area fraction in `scale`, aspect (h/w) in `ratio`.

    `value`: one number, one per channel, or "random" (standard-normal noise per pixel).
    Ten tries per image; when none fits the image is left alone.
    """
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))

    def image(x: torch.Tensor, rng: Rng) -> torch.Tensor:
        b, c, h, w = x.shape
        g = rng.device
        apply = chosen(p, x, g).view(-1)
        target = h * w * (torch.rand(b, 10, device=x.device, generator=g) * (scale[1] - scale[0]) + scale[0])
        aspect = torch.exp(torch.rand(b, 10, device=x.device, generator=g) * (log_ratio[1] - log_ratio[0]) + log_ratio[0])
        eh = torch.round(torch.sqrt(target * aspect))
        ew = torch.round(torch.sqrt(target / aspect))
        ok = (eh < h) & (ew < w)
        first = ok.to(torch.uint8).argmax(1, keepdim=True)
        apply &= ok.any(1)
        eh, ew = eh.gather(1, first).squeeze(1), ew.gather(1, first).squeeze(1)
        top = torch.floor(torch.rand(b, device=x.device, generator=g) * (h - eh + 1)).long()
        left = torch.floor(torch.rand(b, device=x.device, generator=g) * (w - ew + 1)).long()
        mask = box_mask(top, left, eh.long(), ew.long(), h, w) & apply.view(-1, 1, 1, 1)
        if value == "random":
            fill = torch.randn(x.shape, device=x.device, generator=g, dtype=x.dtype)
        else:
            fill = torch.tensor(value if isinstance(value, list) else [value], device=x.device, dtype=x.dtype)
            fill = fill.view(1, -1, 1, 1)
        return torch.where(mask, fill, x)

    def shape(chw: Shape) -> Shape:
        if isinstance(value, list) and len(value) not in (1, chw[0]):
            raise ValueError(f"value has {len(value)} entries but the images have {chw[0]} channel(s); give 1 or {chw[0]}")
        return chw

    return ImageOp(image, lambda chw: T.RandomErasing(p=p, scale=scale, ratio=ratio, value=value), shape)
