"""Per-channel mean and standard deviation of the training split, in the [0, 1] scale."""

from __future__ import annotations

from cnnlab.lazy import lazy

torch = lazy("torch")



def value_scale(x: torch.Tensor) -> float:
    """1/255 for uint8 (and float data that looks like 0..255), else 1."""
    if x.dtype == torch.uint8:
        return 1.0 / 255.0
    return 1.0 / 255.0 if float(x.max()) > 1.5 else 1.0


def channel_stats(x: torch.Tensor, scale: float, chunk: int = 8192) -> tuple[list[float], list[float]]:
    """Mean and std per channel over every pixel of every image (chunked to bound memory)."""
    c = x.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    for start in range(0, len(x), chunk):
        part = x[start : start + chunk].to(torch.float64) * scale
        total += part.sum(dim=(0, 2, 3))
        total_sq += (part * part).sum(dim=(0, 2, 3))
    n = len(x) * x.shape[2] * x.shape[3]
    mean = total / n
    std = (total_sq / n - mean * mean).clamp_min(0).sqrt().clamp_min(1e-6)
    return mean.tolist(), std.tolist()
