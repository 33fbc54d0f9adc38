"""Sequential container with torch-style dotted parameter names ("0.weight", "1.running_var")."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .base import Layer, Parameter, _check_keys


class Sequential(Layer):
    """Apply layers in order; backward runs them in reverse.

    ``params``, ``grads`` and ``buffers`` are flat dicts keyed "<index>.<name>", the same keys
    as a torch ``nn.Sequential`` built with the same layer order (parameter-free layers such as
    ReLU or Flatten take an index but contribute no keys, exactly as in torch).
    """

    def __init__(self, *layers: Layer) -> None:
        # No Layer.__init__: the children own every array; the dicts below are views of them.
        self.layers: list[Layer] = list(layers)

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, index: int) -> Layer:
        return self.layers[index]

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers)

    def __repr__(self) -> str:
        body = "".join(f"\n  ({i}): {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential({body}\n)"

    def append(self, layer: Layer) -> Sequential:
        """Add a layer at the end; returns self."""
        self.layers.append(layer)
        return self

    # --- computation -------------------------------------------------------------------------
    def forward(self, x: np.ndarray, training: bool = True) -> np.ndarray:
        for layer in self.layers:
            x = layer.forward(x, training)
        return x

    def backward(self, grad_out: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        """Backpropagate through all layers.

        With ``input_grad=False`` (a data batch needs no gradient) the layers before the first
        parameterised one are skipped and that layer computes only its parameter gradients,
        which saves the most expensive col2im of the network.
        """
        first = 0
        if not input_grad:
            with_params = [i for i, layer in enumerate(self.layers) if layer.parameters()]
            first = with_params[0] if with_params else len(self.layers)
        grad = grad_out
        for index in range(len(self.layers) - 1, first, -1):
            grad = self.layers[index].backward(grad)
        if input_grad:
            return self.layers[0].backward(grad) if self.layers else grad
        if first < len(self.layers):
            self.layers[first].backward_params_only(grad)
        return None

    def backward_params_only(self, grad_out: np.ndarray) -> None:
        self.backward(grad_out, input_grad=False)

    # --- named state -----------------------------------------------------------------------------
    def _named(self, attribute: str) -> dict[str, np.ndarray]:
        """Merge one per-layer dict (params, grads or buffers) under dotted names."""
        merged: dict[str, np.ndarray] = {}
        for index, layer in enumerate(self.layers):
            for key, value in getattr(layer, attribute).items():
                merged[f"{index}.{key}"] = value
        return merged

    @property
    def params(self) -> dict[str, np.ndarray]:  # type: ignore[override]
        """All parameters under dotted names (the layers' own arrays, not copies)."""
        return self._named("params")

    @property
    def grads(self) -> dict[str, np.ndarray]:  # type: ignore[override]
        """All gradients under the same dotted names as ``params``."""
        return self._named("grads")

    @property
    def buffers(self) -> dict[str, np.ndarray]:  # type: ignore[override]
        """All buffers (BatchNorm running statistics) under dotted names."""
        return self._named("buffers")

    def parameters(self) -> list[Parameter]:
        return [p for layer in self.layers for p in layer.parameters()]

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        for index, layer in enumerate(self.layers):
            yield from layer.named_parameters(f"{prefix}{index}.")

    def zero_grad(self) -> None:
        for layer in self.layers:
            layer.zero_grad()

    def state_dict(self) -> dict[str, np.ndarray]:
        state: dict[str, np.ndarray] = {}
        for index, layer in enumerate(self.layers):
            for key, value in layer.state_dict().items():
                state[f"{index}.{key}"] = value
        return state

    def load_state_dict(self, state: dict[str, np.ndarray], strict: bool = True) -> None:
        _check_keys(self.state_dict(), state, strict)
        for index, layer in enumerate(self.layers):
            prefix = f"{index}."
            own = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            layer.load_state_dict(own, strict=False)

    def astype(self, dtype: np.dtype | type) -> Sequential:
        for layer in self.layers:
            layer.astype(dtype)
        return self
