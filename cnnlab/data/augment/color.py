"""Colour ops on [0, 1] intensities: jitter and grayscale. Single-channel images pass through
the ops that need colour."""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import Field

from cnnlab.data.augment.base import (
    AUGMENTATIONS,
    ImageOp,
    NonNegative,
    Probability,
    Rng,
    chosen,
    maybe_apply,
    uniform,
)
from cnnlab.lazy import lazy

torch = lazy("torch")
T = lazy("torchvision.transforms.v2")

# torchvision's luma weights (rgb_to_grayscale), so both data paths agree exactly.
LUMA = (0.2989, 0.587, 0.114)
# RGB <-> YIQ: hue is a rotation of the (I, Q) chroma plane.
TO_YIQ = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))


def gray(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) luma of RGB images, computed as torchvision does."""
    r, g, b = x.unbind(1)
    return r.mul(LUMA[0]).add_(g, alpha=LUMA[1]).add_(b, alpha=LUMA[2]).unsqueeze(1)


@AUGMENTATIONS.register("grayscale")
def grayscale(p: Probability = 0.1) -> ImageOp:
    """Replace an RGB image by its luma in all three channels with probability p (the channel count stays)."""

    def image(x: torch.Tensor, rng: Rng) -> torch.Tensor:
        if x.shape[1] != 3:
            return x
        return torch.where(chosen(p, x, rng.device), gray(x).expand_as(x), x)

    return ImageOp(image, lambda chw: T.RandomGrayscale(p))


@AUGMENTATIONS.register("color_jitter")
def color_jitter(
    brightness: NonNegative = 0.0,
    contrast: NonNegative = 0.0,
    saturation: NonNegative = 0.0,
    hue: Annotated[float, Field(ge=0.0, le=0.5)] = 0.0,
    p: Probability = 1.0,
) -> ImageOp:
    """Random brightness, contrast, saturation (factors in [1-v, 1+v]) and hue shift (in [-hue, hue] turns).

    In memory the four are applied in that order and hue rotates the YIQ chroma plane;
    torchvision's ColorJitter (the file-backed path) draws the same factors but applies
    them in a random order and shifts hue in HSV.
    """

    def factor(v: float, x: torch.Tensor, g: torch.Generator | None, keep: torch.Tensor) -> torch.Tensor:
        f = uniform(x.shape[0], max(0.0, 1 - v), 1 + v, x, g).view(-1, 1, 1, 1)
        return torch.where(keep, f, torch.ones_like(f))

    def image(x: torch.Tensor, rng: Rng) -> torch.Tensor:
        g = rng.device
        keep = chosen(p, x, g)
        rgb = x.shape[1] == 3
        if brightness > 0:
            x = (x * factor(brightness, x, g, keep)).clamp(0, 1)
        if contrast > 0:
            mean = (gray(x) if rgb else x).mean(dim=(1, 2, 3), keepdim=True)
            x = ((x - mean) * factor(contrast, x, g, keep) + mean).clamp(0, 1)
        if saturation > 0 and rgb:
            luma = gray(x)
            x = ((x - luma) * factor(saturation, x, g, keep) + luma).clamp(0, 1)
        if hue > 0 and rgb:
            turn = uniform(x.shape[0], -hue, hue, x, g) * keep.view(-1)
            x = _rotate_hue(x, turn * 2 * math.pi).clamp(0, 1)
        return x

    def v2(chw: tuple[int, int, int]) -> T.Transform:
        return maybe_apply(p, T.ColorJitter(brightness=brightness or None, contrast=contrast or None,
                                       saturation=saturation or None, hue=hue or None))

    return ImageOp(image, v2)


def _rotate_hue(x: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    to_yiq = torch.tensor(TO_YIQ, dtype=x.dtype, device=x.device)
    cos, sin = torch.cos(angle), torch.sin(angle)
    rot = torch.zeros(x.shape[0], 3, 3, device=x.device, dtype=x.dtype)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
    m = torch.linalg.inv(to_yiq) @ rot @ to_yiq  # (B, 3, 3) per-sample RGB -> RGB
    return torch.einsum("bij,bjhw->bihw", m, x)
