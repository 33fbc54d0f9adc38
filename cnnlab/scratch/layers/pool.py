"""Max and average pooling, vectorised by looping over the kh*kw window offsets only."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .base import Layer, pair
from .conv import output_size


class _Pool2d(Layer):
    """Shared geometry: each window offset (i, j) picks one strided slice of the input."""

    def __init__(self, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] | None = None) -> None:
        super().__init__()
        self.kernel_size = pair(kernel_size)
        self.stride = self.kernel_size if stride is None else pair(stride)
        self._shape: tuple[int, ...] | None = None

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"

    def _out_hw(self, x: np.ndarray) -> tuple[int, int]:
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        return output_size(x.shape[2], kh, sh, 0), output_size(x.shape[3], kw, sw, 0)

    def _offsets(self, ho: int, wo: int) -> Iterator[tuple[int, tuple[slice, slice]]]:
        """Yield (flat offset, spatial slices) for every window position (i, j).

        Slice (i, j) holds element (i, j) of every window at once, shape (N, C, Ho, Wo).
        """
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        for i in range(kh):
            for j in range(kw):
                yield i * kw + j, (slice(i, i + sh * (ho - 1) + 1, sh),
                                   slice(j, j + sw * (wo - 1) + 1, sw))


class MaxPool2d(_Pool2d):
    """Max over each window; remembers which window offset held the (first) maximum."""

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        """Running maximum over the window offsets, then the argmax offset per output."""
        ho, wo = self._out_hw(x)
        slices = [x[:, :, rows, cols] for _, (rows, cols) in self._offsets(ho, wo)]
        out = slices[0].copy()
        for candidate in slices[1:]:
            np.maximum(out, candidate, out=out)
        # argmax = number of leading offsets that did not hold the maximum, i.e. the first
        # maximum on ties -- the element torch picks. Counting with boolean masks is several
        # times faster than masked assignment. int8 is enough for windows up to 127 elements.
        index_dtype = np.int8 if len(slices) <= 127 else np.int32
        argmax = np.zeros(out.shape, dtype=index_dtype)
        searching = np.ones(out.shape, dtype=bool)
        for candidate in slices[:-1]:
            searching &= candidate != out
            argmax += searching
        self._shape, self._argmax = x.shape, argmax
        return out

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        """Route each output gradient to the input element that won the max."""
        if self._shape is None:
            raise RuntimeError("backward called before forward")
        ho, wo = grad_out.shape[2:]
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        # Windows that tile the input (stride >= kernel) write disjoint slices, so each offset
        # can store its share directly; overlapping windows must accumulate.
        disjoint = sh >= kh and sw >= kw
        grad_x = np.zeros(self._shape, dtype=grad_out.dtype)
        for offset, (rows, cols) in self._offsets(ho, wo):
            share = grad_out * (self._argmax == offset)
            if disjoint:
                grad_x[:, :, rows, cols] = share
            else:
                grad_x[:, :, rows, cols] += share
        return grad_x


class AvgPool2d(_Pool2d):
    """Mean over each window (no padding, floor mode, as torch's defaults)."""

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        """Sum the window offsets' slices and divide by the window size."""
        ho, wo = self._out_hw(x)
        out = np.zeros((*x.shape[:2], ho, wo), dtype=x.dtype)
        for _, (rows, cols) in self._offsets(ho, wo):
            out += x[:, :, rows, cols]
        out /= self.kernel_size[0] * self.kernel_size[1]
        self._shape = x.shape
        return out

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        """Spread each output gradient evenly over its window."""
        if self._shape is None:
            raise RuntimeError("backward called before forward")
        share = grad_out / (self.kernel_size[0] * self.kernel_size[1])
        grad_x = np.zeros(self._shape, dtype=grad_out.dtype)
        ho, wo = grad_out.shape[2:]
        for _, (rows, cols) in self._offsets(ho, wo):
            grad_x[:, :, rows, cols] += share
        return grad_x
