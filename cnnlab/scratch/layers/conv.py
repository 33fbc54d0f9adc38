"""2-D convolution as im2col + one matrix product, chunked over the batch to bound memory."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided, sliding_window_view

from ..init import init_weight_and_bias
from .base import DEFAULT_DTYPE, Layer, pair

# Upper bound for one column matrix (bytes). Batches whose columns would be larger are processed
# in chunks of samples, so memory stays flat however large the batch is. Tests lower it.
COLUMN_BUDGET_BYTES = 64 * 2**20


def pad_images(x: np.ndarray, ph: int, pw: int) -> np.ndarray:
    """Zero-pad the two spatial axes of an NCHW array (no copy when there is no padding)."""
    if ph == 0 and pw == 0:
        return x
    n, c, h, w = x.shape
    out = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=x.dtype)
    out[:, :, ph:ph + h, pw:pw + w] = x
    return out


def planes(flat: np.ndarray, hp: int, wp: int) -> np.ndarray:
    """View (C, N, L >= hp*wp) flat planes as (C, N, hp, wp) images, guaranteed without a copy."""
    c, n = flat.shape[:2]
    return as_strided(flat, (c, n, hp, wp), (*flat.strides[:2], wp * flat.itemsize, flat.itemsize))


def output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Spatial output length of a convolution or pooling window (floor mode, like torch)."""
    out = (size + 2 * padding - kernel) // stride + 1
    if out < 1:
        raise ValueError(f"input size {size} too small for kernel {kernel} with padding {padding}")
    return out


def chunk_size(per_sample_bytes: int, batch: int) -> int:
    """How many samples fit in COLUMN_BUDGET_BYTES (at least one)."""
    return max(1, min(batch, COLUMN_BUDGET_BYTES // max(per_sample_bytes, 1)))


class Conv2d(Layer):
    """Cross-correlation of NCHW input with (out, in, kh, kw) filters, plus a bias per filter.

    Columns are laid out as (C*kh*kw, N*Ho*Wo): rows are the filter taps, columns the output
    pixels. Then forward is ``W @ cols``, the weight gradient is ``dY @ cols.T`` and the column
    gradient is ``W.T @ dY``, three plain BLAS calls with no transposed copy of the big matrix.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0, *,
                 init: str = "default", rng: np.random.Generator | None = None,
                 dtype=DEFAULT_DTYPE) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = pair(kernel_size), pair(stride), pair(padding)
        shape = (out_channels, in_channels, *self.kernel_size)
        weight, bias = init_weight_and_bias(shape, init, rng, dtype)
        self._add_param("weight", weight)
        self._add_param("bias", bias)
        self._x: np.ndarray | None = None
        self._cols: np.ndarray | None = None

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}")

    # --- im2col ------------------------------------------------------------------------------
    def _windows(self, x: np.ndarray) -> np.ndarray:
        """Strided view (C, kh, kw, N, Ho, Wo) of every receptive field; no data is copied."""
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        view = sliding_window_view(pad_images(x, ph, pw), (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]
        return view.transpose(1, 4, 5, 0, 2, 3)

    def _columns(self, windows: np.ndarray, start: int, stop: int,
                 buffer: np.ndarray) -> np.ndarray:
        """Copy the windows of samples [start, stop) into a (C*kh*kw, n*Ho*Wo) matrix.

        The copy lands in ``buffer``, shared by all chunks, so only one chunk's columns exist.
        """
        part = windows[:, :, :, start:stop]
        cols = buffer[:part.size].reshape(part.shape)
        np.copyto(cols, part)
        return cols.reshape(-1, part.shape[3] * part.shape[4] * part.shape[5])

    def bytes_per_sample(self, x: np.ndarray, ho: int, wo: int) -> int:
        """Size of one sample's share of the largest column-shaped matrix.

        That is the column matrix itself, or for stride 1 the column gradient, which backward
        lays out on the output grid widened to the padded input width.
        """
        rows = self.in_channels * self.kernel_size[0] * self.kernel_size[1]
        width = x.shape[3] + 2 * self.padding[1] if self.stride == (1, 1) else wo
        return rows * ho * width * x.itemsize

    def _chunk(self, x: np.ndarray, ho: int, wo: int) -> int:
        """Samples per chunk so that one column matrix stays within the memory budget."""
        return chunk_size(self.bytes_per_sample(x, ho, wo), x.shape[0])

    def _buffer(self, x: np.ndarray, step: int, ho: int, wo: int) -> np.ndarray:
        """Flat storage for one chunk of columns."""
        rows = self.in_channels * self.kernel_size[0] * self.kernel_size[1]
        return np.empty(rows * step * ho * wo, dtype=x.dtype)

    # --- forward / backward --------------------------------------------------------------------
    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        """Convolve a batch; keeps the column matrix for backward when it fits in one chunk."""
        n, c, h, w = x.shape
        if c != self.in_channels:
            raise ValueError(f"expected {self.in_channels} input channels, got {c}")
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        ho, wo = output_size(h, kh, sh, ph), output_size(w, kw, sw, pw)
        weight = self.params["weight"].reshape(self.out_channels, -1)
        bias = self.params["bias"][:, None]
        self._x, self._cols = x, None  # drop the previous batch's columns before allocating
        windows = self._windows(x)
        step = self._chunk(x, ho, wo)
        buffer = self._buffer(x, step, ho, wo)
        out = np.empty((n, self.out_channels, ho, wo), dtype=np.result_type(x, weight))
        for start in range(0, n, step):
            stop = min(start + step, n)
            cols = self._columns(windows, start, stop, buffer)
            y = weight @ cols
            y += bias
            # (O, n*Ho*Wo) -> (n, O, Ho, Wo): a copy of the output only, which is small.
            y = y.reshape(self.out_channels, stop - start, ho, wo)
            out[start:stop] = y.transpose(1, 0, 2, 3)
        if training and step >= n:
            self._cols = cols  # one chunk: reuse in backward instead of rebuilding
        return out

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        """Weight, bias and input gradients; the input gradient is a col2im scatter-add."""
        return self._backward(grad_out, need_input_grad=True)

    def backward_params_only(self, grad_out: np.ndarray) -> None:
        """Weight and bias gradients only (the first layer needs no input gradient)."""
        self._backward(grad_out, need_input_grad=False)

    def _backward(self, grad_out: np.ndarray, need_input_grad: bool) -> np.ndarray | None:
        x = self._x
        if x is None:
            raise RuntimeError("backward called before forward")
        n, c, h, w = x.shape
        kw, (ph, pw) = self.kernel_size[1], self.padding
        hp, wp = h + 2 * ph, w + 2 * pw
        weight = self.params["weight"].reshape(self.out_channels, -1)
        grad_t = grad_out.transpose(1, 0, 2, 3)  # (O, N, Ho, Wo) view, matches column order
        grad_w = np.zeros(weight.shape, dtype=np.result_type(grad_out, weight))
        grad_flat = None
        if need_input_grad:
            # Channel-major (C, N, plane) so each tap's block of columns adds in without a
            # transpose; kw-1 spare elements per plane absorb the row-shift trick's overflow.
            grad_flat = np.zeros((c, n, hp * wp + kw - 1), dtype=grad_w.dtype)
        ho, wo = grad_out.shape[2:]
        if self._cols is not None:
            step, windows, buffer = n, None, None
        else:  # several chunks (or an eval-mode forward): rebuild the columns chunk by chunk
            step, windows = self._chunk(x, ho, wo), self._windows(x)
            buffer = self._buffer(x, step, ho, wo)
        for start in range(0, n, step):
            stop = min(start + step, n)
            cols = self._cols if windows is None else self._columns(windows, start, stop, buffer)
            g = grad_t[:, start:stop]
            grad_w += g.reshape(self.out_channels, -1) @ cols.T
            if grad_flat is not None:
                self._col2im(weight, g, grad_flat[:, start:stop], hp, wp)
        self._set_grad("weight", grad_w.reshape(self.params["weight"].shape))
        self._set_grad("bias", grad_out.sum(axis=(0, 2, 3)))
        if grad_flat is None:
            return None
        grad_xp = planes(grad_flat, hp, wp)
        return np.ascontiguousarray(grad_xp[:, :, ph:ph + h, pw:pw + w].transpose(1, 0, 2, 3))

    def _col2im(self, weight: np.ndarray, g: np.ndarray, grad_flat: np.ndarray,
                hp: int, wp: int) -> None:
        """Scatter-add the column gradients W^T dY back onto the padded input planes.

        Overlapping windows share input pixels, so contributions are summed one kernel tap at a
        time: kh*kw vectorised additions (25 for 5x5), never a loop over pixels or samples.
        For stride 1 the output grid is widened to the padded width Wp (extra columns get a
        zero gradient); then tap (i, j) maps output pixel q = y*Wp + x to input pixel
        q + i*Wp + j, so every addition is one long contiguous run per plane instead of many
        short rows -- about twice as fast for small feature maps.
        """
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        o, n, ho, wo = g.shape
        c = grad_flat.shape[0]
        if (sh, sw) == (1, 1):
            g_wide = np.zeros((o, n, ho, wp), dtype=g.dtype)
            g_wide[..., :wo] = g
            grad_cols = (weight.T @ g_wide.reshape(o, -1)).reshape(c, kh, kw, n, ho * wp)
            for i in range(kh):
                for j in range(kw):
                    offset = i * wp + j
                    grad_flat[:, :, offset:offset + ho * wp] += grad_cols[:, i, j]
            return
        grad_cols = (weight.T @ g.reshape(o, -1)).reshape(c, kh, kw, n, ho, wo)
        grad_xp = planes(grad_flat, hp, wp)
        for i in range(kh):
            for j in range(kw):
                grad_xp[:, :, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw] += (
                    grad_cols[:, i, j])
