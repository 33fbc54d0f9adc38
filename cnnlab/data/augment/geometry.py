"""Geometric ops: flips, crops, shifts, rotation, resizing. Bilinear sampling, zero fill."""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import Field

from cnnlab.data.augment.base import (
    AUGMENTATIONS,
    ImageOp,
    Interval,
    NonNegative,
    PositiveInt,
    Probability,
    Rng,
    Shape,
    chosen,
    maybe_apply,
    size2,
    uniform,
)
from cnnlab.lazy import lazy

torch = lazy("torch")
F = lazy("torch.nn.functional")
T = lazy("torchvision.transforms.v2")
tv_ops = lazy("torchvision.ops")

Size = PositiveInt | Annotated[list[PositiveInt], Field(min_length=2, max_length=2)]


def crop_at(padded: torch.Tensor, top: torch.Tensor, left: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Per-sample (h, w) windows of `padded` at integer offsets (top[i], left[i])."""
    b, c, ph, pw = padded.shape
    rows = (top[:, None] + torch.arange(h, device=padded.device)).view(b, 1, h, 1)
    cols = (left[:, None] + torch.arange(w, device=padded.device)).view(b, 1, 1, w)
    out = padded.gather(2, rows.expand(b, c, h, pw))
    return out.gather(3, cols.expand(b, c, h, w))


@AUGMENTATIONS.register("hflip")
def hflip(p: Probability = 0.5) -> ImageOp:
    """Mirror left-right with probability p."""
    return ImageOp(lambda x, rng: torch.where(chosen(p, x, rng.device), x.flip(3), x),
                   lambda chw: T.RandomHorizontalFlip(p))


@AUGMENTATIONS.register("vflip")
def vflip(p: Probability = 0.5) -> ImageOp:
    """Mirror top-bottom with probability p."""
    return ImageOp(lambda x, rng: torch.where(chosen(p, x, rng.device), x.flip(2), x),
                   lambda chw: T.RandomVerticalFlip(p))


@AUGMENTATIONS.register("random_crop")
def random_crop(padding: Annotated[int, Field(ge=0)] = 4, padding_mode: Literal["zero", "reflect"] = "zero") -> ImageOp:
    """Pad by `padding` on every side, then crop back to the original size at a random offset."""

    def image(x: torch.Tensor, rng: Rng) -> torch.Tensor:
        if padding <= 0:
            return x
        b, _, h, w = x.shape
        padded = F.pad(x, (padding,) * 4, mode="constant" if padding_mode == "zero" else "reflect")
        dy = torch.randint(0, 2 * padding + 1, (b,), device=x.device, generator=rng.device)
        dx = torch.randint(0, 2 * padding + 1, (b,), device=x.device, generator=rng.device)
        return crop_at(padded, dy, dx, h, w)

    def shape(chw: Shape) -> Shape:
        if padding_mode == "reflect" and padding >= min(chw[1:]):
            raise ValueError(f"reflect padding of {padding} needs images larger than {padding} px, got {chw[1]}x{chw[2]}")
        return chw

    return ImageOp(image, lambda chw: T.RandomCrop(
        chw[1:], padding=padding or None, padding_mode="constant" if padding_mode == "zero" else "reflect"), shape)


@AUGMENTATIONS.register("translate")
def translate(fraction: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.125) -> ImageOp:
    """Shift by whole pixels, up to `fraction` of the height and width each way, filling with zeros."""

    def image(x: torch.Tensor, rng: Rng) -> torch.Tensor:
        b, _, h, w = x.shape
        pad = math.ceil(fraction * max(h, w))
        if pad == 0:
            return x
        # torchvision's RandomAffine: uniform shift, rounded half-to-even to a whole pixel.
        dy = torch.round(uniform(b, -fraction * h, fraction * h, x, rng.device)).long()
        dx = torch.round(uniform(b, -fraction * w, fraction * w, x, rng.device)).long()
        return crop_at(F.pad(x, (pad,) * 4), pad - dy, pad - dx, h, w)

    return ImageOp(image, lambda chw: T.RandomAffine(degrees=0.0, translate=(fraction, fraction)))


@AUGMENTATIONS.register("rotation")
def rotation(degrees: NonNegative = 10.0, p: Probability = 1.0) -> ImageOp:
    """Rotate each image by a uniform angle in [-degrees, degrees], filling with zeros."""

    def image(x: torch.Tensor, rng: Rng) -> torch.Tensor:
        b, _, h, w = x.shape
        angle = uniform(b, -degrees, degrees, x, rng.device) * (math.pi / 180.0)
        angle = torch.where(chosen(p, x, rng.device).view(-1), angle, torch.zeros_like(angle))
        cos, sin = torch.cos(angle), torch.sin(angle)
        theta = torch.zeros(b, 2, 3, device=x.device, dtype=x.dtype)
        # affine_grid works in [-1, 1] coordinates; the h/w factors keep non-square images undistorted.
        theta[:, 0, 0], theta[:, 0, 1] = cos, -sin * h / w
        theta[:, 1, 0], theta[:, 1, 1] = sin * w / h, cos
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    return ImageOp(image, lambda chw: maybe_apply(p, T.RandomRotation(degrees, interpolation=T.InterpolationMode.BILINEAR)))


@AUGMENTATIONS.register("random_resized_crop")
def random_resized_crop(
    size: Size | None = None,
    scale: Interval = (0.08, 1.0),
    ratio: Interval = (3 / 4, 4 / 3),
) -> ImageOp:
    """Crop a random area fraction in `scale` with aspect (w/h) in `ratio`, resized to `size` (default: input size).

    torchvision's RandomResizedCrop sampling (10 tries, then a central crop); the crop is
    resampled bilinearly with roi_align, averaging over the crop when it shrinks.
    """
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))

    def out_hw(chw: Shape) -> tuple[int, int]:
        return chw[1:] if size is None else size2(size)  # type: ignore[return-value]

    def image(x: torch.Tensor, rng: Rng) -> torch.Tensor:
        b, _, h, w = x.shape
        g = rng.device
        target = h * w * (torch.rand(b, 10, device=x.device, generator=g) * (scale[1] - scale[0]) + scale[0])
        aspect = torch.exp(torch.rand(b, 10, device=x.device, generator=g) * (log_ratio[1] - log_ratio[0]) + log_ratio[0])
        cw = torch.round(torch.sqrt(target * aspect))
        ch = torch.round(torch.sqrt(target / aspect))
        ok = (cw > 0) & (cw <= w) & (ch > 0) & (ch <= h)
        first = ok.to(torch.uint8).argmax(1, keepdim=True)  # the first try that fits, as torchvision takes
        found = ok.any(1)
        fh, fw = _central(h, w, ratio)
        cw = torch.where(found, cw.gather(1, first).squeeze(1), torch.full_like(found, fw, dtype=cw.dtype))
        ch = torch.where(found, ch.gather(1, first).squeeze(1), torch.full_like(found, fh, dtype=ch.dtype))
        top = torch.floor(torch.rand(b, device=x.device, generator=g) * (h - ch + 1))
        left = torch.floor(torch.rand(b, device=x.device, generator=g) * (w - cw + 1))
        top = torch.where(found, top, torch.div(h - ch, 2, rounding_mode="floor"))
        left = torch.where(found, left, torch.div(w - cw, 2, rounding_mode="floor"))
        index = torch.arange(b, device=x.device, dtype=x.dtype)
        boxes = torch.stack([index, left, top, left + cw, top + ch], 1).to(x.dtype)
        return tv_ops.roi_align(x, boxes, out_hw((0, h, w)), spatial_scale=1.0, sampling_ratio=-1, aligned=True)

    return ImageOp(
        image,
        lambda chw: T.RandomResizedCrop(out_hw(chw), scale=scale, ratio=ratio, antialias=True),
        lambda chw: (chw[0], *out_hw(chw)),
    )


def _central(h: int, w: int, ratio: tuple[float, float]) -> tuple[int, int]:
    """torchvision's fallback crop (height, width) when no random try fits."""
    in_ratio = w / h
    if in_ratio < min(ratio):
        return int(round(w / min(ratio))), w
    if in_ratio > max(ratio):
        return h, int(round(h * max(ratio)))
    return h, w


def resized_shape(hw: tuple[int, int], size: int | list[int]) -> tuple[int, int]:
    """torchvision's Resize output: an int sets the shorter side (aspect kept), [h, w] sets both."""
    h, w = hw
    if not isinstance(size, int):
        return int(size[0]), int(size[1])
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    return (new_long, new_short) if w <= h else (new_short, new_long)


@AUGMENTATIONS.register("resize")
def resize(size: Size) -> ImageOp:
    """Resize (bilinear, antialiased): `size` sets the shorter side, `[h, w]` both. Also at evaluation."""

    def image(x: torch.Tensor, rng: Rng) -> torch.Tensor:
        hw = resized_shape(x.shape[2:], size)  # type: ignore[arg-type]
        if hw == tuple(x.shape[2:]):
            return x
        return F.interpolate(x, size=hw, mode="bilinear", align_corners=False, antialias=True)

    return ImageOp(
        image,
        lambda chw: T.Resize([size] if isinstance(size, int) else list(size), antialias=True),
        lambda chw: (chw[0], *resized_shape(chw[1:], size)),
        always=True,
    )


@AUGMENTATIONS.register("center_crop")
def center_crop(size: Size) -> ImageOp:
    """Cut the central `size` (or `[h, w]`) window. Also at evaluation."""
    ch, cw = size2(size)

    def image(x: torch.Tensor, rng: Rng) -> torch.Tensor:
        h, w = x.shape[2:]
        top, left = int(round((h - ch) / 2.0)), int(round((w - cw) / 2.0))  # torchvision's rounding
        return x[:, :, top : top + ch, left : left + cw]

    def shape(chw: Shape) -> Shape:
        if ch > chw[1] or cw > chw[2]:
            raise ValueError(f"a {ch}x{cw} crop does not fit {chw[1]}x{chw[2]} images; resize them first or crop less")
        return chw[0], ch, cw

    return ImageOp(image, lambda chw: T.CenterCrop([ch, cw]), shape, always=True)
