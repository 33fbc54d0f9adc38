"""The "loop design" baseline: a typical first from-scratch CNN, for the benchmark only.

Convolution builds im2col one sample at a time with Python loops over output positions, and
2x2 max pooling walks every (sample, channel, row, column) in four nested Python loops. The
other layers are the engine's own vectorised ones, so the comparison isolates conv/pool design.
"""

from __future__ import annotations

import numpy as np

from cnnlab.scratch.layers import Conv2d, MaxPool2d, Sequential


class LoopConv2d(Conv2d):
    """Conv2d computed sample by sample, with a Python-loop im2col (stride 1, no padding)."""

    def _im2col(self, image: np.ndarray) -> np.ndarray:
        c, h, w = image.shape
        k = self.kernel_size[0]
        ho, wo = h - k + 1, w - k + 1
        cols = np.empty((c * k * k, ho * wo), dtype=image.dtype)
        for i in range(ho):
            for j in range(wo):
                cols[:, i * wo + j] = image[:, i:i + k, j:j + k].ravel()
        return cols

    def _col2im(self, cols: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
        c, h, w = shape
        k = self.kernel_size[0]
        ho, wo = h - k + 1, w - k + 1
        image = np.zeros(shape, dtype=cols.dtype)
        for i in range(ho):
            for j in range(wo):
                image[:, i:i + k, j:j + k] += cols[:, i * wo + j].reshape(c, k, k)
        return image

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        n, _, h, w = x.shape
        k = self.kernel_size[0]
        weight = self.params["weight"].reshape(self.out_channels, -1)
        out = np.empty((n, self.out_channels, h - k + 1, w - k + 1), dtype=x.dtype)
        self._x, self._cols_list = x, []
        for s in range(n):
            cols = self._im2col(x[s])
            self._cols_list.append(cols)
            out[s] = (weight @ cols + self.params["bias"][:, None]).reshape(out.shape[1:])
        return out

    def _backward(self, grad_out: np.ndarray, need_input_grad: bool) -> np.ndarray | None:
        weight = self.params["weight"].reshape(self.out_channels, -1)
        grad_w = np.zeros_like(weight)
        grad_x = np.zeros_like(self._x) if need_input_grad else None
        for s in range(grad_out.shape[0]):
            g = grad_out[s].reshape(self.out_channels, -1)
            grad_w += g @ self._cols_list[s].T
            if grad_x is not None:
                grad_x[s] = self._col2im(weight.T @ g, self._x.shape[1:])
        self._set_grad("weight", grad_w.reshape(self.params["weight"].shape))
        self._set_grad("bias", grad_out.sum(axis=(0, 2, 3)))
        return grad_x


class LoopMaxPool2d(MaxPool2d):
    """Max pooling with four nested Python loops over n, c, i, j."""

    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        n, c, h, w = x.shape
        k, s = self.kernel_size[0], self.stride[0]
        ho, wo = (h - k) // s + 1, (w - k) // s + 1
        out = np.empty((n, c, ho, wo), dtype=x.dtype)
        self._argmax = np.empty((n, c, ho, wo), dtype=np.int64)
        for b in range(n):
            for ch in range(c):
                for i in range(ho):
                    for j in range(wo):
                        window = x[b, ch, i * s:i * s + k, j * s:j * s + k]
                        index = int(np.argmax(window))
                        self._argmax[b, ch, i, j] = index
                        out[b, ch, i, j] = window.flat[index]
        self._shape = x.shape
        return out

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        n, c, ho, wo = grad_out.shape
        k, s = self.kernel_size[0], self.stride[0]
        grad_x = np.zeros(self._shape, dtype=grad_out.dtype)
        for b in range(n):
            for ch in range(c):
                for i in range(ho):
                    for j in range(wo):
                        di, dj = divmod(int(self._argmax[b, ch, i, j]), k)
                        grad_x[b, ch, i * s + di, j * s + dj] += grad_out[b, ch, i, j]
        return grad_x


def loop_version(model: Sequential) -> Sequential:
    """Same layers and weights, with Conv2d/MaxPool2d swapped for the loop implementations."""
    layers = []
    for layer in model.layers:
        if isinstance(layer, Conv2d):
            twin = LoopConv2d(layer.in_channels, layer.out_channels, layer.kernel_size,
                              dtype=layer.params["weight"].dtype)
            twin.load_state_dict(layer.state_dict())
            layers.append(twin)
        elif isinstance(layer, MaxPool2d):
            layers.append(LoopMaxPool2d(layer.kernel_size, layer.stride))
        else:
            layers.append(layer)
    return Sequential(*layers)
