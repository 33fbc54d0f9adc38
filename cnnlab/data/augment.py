"""Batched augmentations: tensor ops on a whole (B, C, H, W) batch in [0, 1], on its device.

Each registered function takes its YAML options and returns `op(x, generator) -> x`.
Randomness is drawn per sample from the loader's generator, so runs are reproducible and
resumable. Ops run before normalisation, so colour ops see real [0, 1] intensities.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from cnnlab.registry import Registry

Op = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]
NonNegative = Annotated[float, Field(ge=0.0)]
AUGMENTATIONS = Registry("augmentation", "augment[].name")


def _uniform(n: int, low: float, high: float, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return torch.rand(n, device=x.device, generator=g, dtype=x.dtype) * (high - low) + low


def _chosen(p: float, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """A (B, 1, 1, 1) mask: which samples this op applies to."""
    return (torch.rand(x.shape[0], device=x.device, generator=g) < p).view(-1, 1, 1, 1)


@AUGMENTATIONS.register("hflip")
def hflip(p: Probability = 0.5) -> Op:
    """Mirror left-right with probability p."""
    return lambda x, g: torch.where(_chosen(p, x, g), x.flip(3), x)


@AUGMENTATIONS.register("random_crop")
def random_crop(padding: Annotated[int, Field(ge=0)] = 4, padding_mode: Literal["zero", "reflect"] = "zero") -> Op:
    """Pad by `padding` on every side, then crop back to the original size at a random offset."""

    def op(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        if padding <= 0:
            return x
        b, c, h, w = x.shape
        mode = "constant" if padding_mode == "zero" else "reflect"
        padded = F.pad(x, (padding,) * 4, mode=mode)
        dy = torch.randint(0, 2 * padding + 1, (b,), device=x.device, generator=g)
        dx = torch.randint(0, 2 * padding + 1, (b,), device=x.device, generator=g)
        rows = (dy[:, None] + torch.arange(h, device=x.device)).view(b, 1, h, 1)
        cols = (dx[:, None] + torch.arange(w, device=x.device)).view(b, 1, 1, w)
        out = padded.gather(2, rows.expand(b, c, h, w + 2 * padding))
        return out.gather(3, cols.expand(b, c, h, w))

    return op


@AUGMENTATIONS.register("rotation")
def rotation(degrees: NonNegative = 10.0, p: Probability = 1.0) -> Op:
    """Rotate each image by a uniform angle in [-degrees, degrees], filling with zeros."""

    def op(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        b, _, h, w = x.shape
        angle = _uniform(b, -degrees, degrees, x, g) * (math.pi / 180.0)
        angle = torch.where(_chosen(p, x, g).view(-1), angle, torch.zeros_like(angle))
        cos, sin = torch.cos(angle), torch.sin(angle)
        theta = torch.zeros(b, 2, 3, device=x.device, dtype=x.dtype)
        # affine_grid works in [-1, 1] coordinates; the h/w factors keep non-square images undistorted.
        theta[:, 0, 0], theta[:, 0, 1] = cos, -sin * h / w
        theta[:, 1, 0], theta[:, 1, 1] = sin * w / h, cos
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    return op


# RGB <-> YIQ: hue is a rotation of the (I, Q) chroma plane.
_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_LUMA = torch.tensor([0.299, 0.587, 0.114])


@AUGMENTATIONS.register("color_jitter")
def color_jitter(
    brightness: NonNegative = 0.0,
    contrast: NonNegative = 0.0,
    saturation: NonNegative = 0.0,
    hue: Annotated[float, Field(ge=0.0, le=0.5)] = 0.0,
    p: Probability = 1.0,
) -> Op:
    """Random brightness, contrast, saturation (factors in [1-v, 1+v]) and hue shift (in [-hue, hue] turns)."""

    def factor(v: float, x: torch.Tensor, g: torch.Generator, keep: torch.Tensor) -> torch.Tensor:
        f = _uniform(x.shape[0], max(0.0, 1 - v), 1 + v, x, g).view(-1, 1, 1, 1)
        return torch.where(keep, f, torch.ones_like(f))

    def op(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        keep = _chosen(p, x, g)
        rgb = x.shape[1] == 3
        if brightness > 0:
            x = (x * factor(brightness, x, g, keep)).clamp(0, 1)
        if contrast > 0:
            gray = _gray(x) if rgb else x
            mean = gray.mean(dim=(1, 2, 3), keepdim=True)
            x = ((x - mean) * factor(contrast, x, g, keep) + mean).clamp(0, 1)
        if saturation > 0 and rgb:
            gray = _gray(x)
            x = ((x - gray) * factor(saturation, x, g, keep) + gray).clamp(0, 1)
        if hue > 0 and rgb:
            turn = _uniform(x.shape[0], -hue, hue, x, g) * keep.view(-1)
            x = _rotate_hue(x, turn * 2 * math.pi).clamp(0, 1)
        return x

    return op


def _gray(x: torch.Tensor) -> torch.Tensor:
    return torch.einsum("bchw,c->bhw", x, _LUMA.to(x)).unsqueeze(1)


def _rotate_hue(x: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    to_yiq = _TO_YIQ.to(x)
    cos, sin = torch.cos(angle), torch.sin(angle)
    rot = torch.zeros(x.shape[0], 3, 3, device=x.device, dtype=x.dtype)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
    m = torch.linalg.inv(to_yiq) @ rot @ to_yiq  # (B, 3, 3) per-sample RGB -> RGB
    return torch.einsum("bij,bjhw->bihw", m, x)


def build_pipeline(items: list[dict]) -> list[Op]:
    """Ops for the resolved `augment:` list, in order."""
    return [AUGMENTATIONS.build(it["name"], {k: v for k, v in it.items() if k != "name"}) for it in items]
