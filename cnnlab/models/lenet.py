"""LeNet-style net for MNIST-sized digits, laid out for weight exchange with the NumPy engine."""

from __future__ import annotations

from cnnlab.errors import ConfigError
from cnnlab.lazy import lazy
from cnnlab.models.layers import Activation, Bias, Init, Prob, initialize, make_activation
from cnnlab.models.registry import CONTEXT, MODELS

nn = lazy("torch.nn")


def lenet_flat_size(input_size: tuple[int, int]) -> int:
    """Features entering the FC layer: 16 maps after two (5x5 valid conv, 2x2 max pool) stages."""
    h, w = input_size
    for _ in range(2):
        h, w = (h - 4) // 2, (w - 4) // 2
    return 16 * h * w if h > 0 and w > 0 else 0


@MODELS.register("lenet", context=CONTEXT)
def lenet(
    in_channels: int,
    num_classes: int,
    input_size: tuple[int, int],
    batch_norm: bool = True,
    dropout: Prob = 0.0,
    activation: Activation = "relu",
    bias: Bias = "auto",
    init: Init = "default",
) -> nn.Sequential:
    """conv 5x5x6 -> BN -> act -> dropout -> max pool -> conv 5x5x16 -> act -> max pool -> FC.

    No padding, so 28x28 inputs go 28 -> 24 -> 12 -> 8 -> 4 and the FC layer maps
    16*4*4 = 256 features to the classes (32x32 inputs give 16*5*5 = 400).

    The layout is one flat nn.Sequential whose indices never move with the options (a
    disabled BN is an Identity, dropout 0 is a no-op Dropout), so its state_dict keys are:
      0.weight (6, C, 5, 5)   0.bias (6,)  [only with batch_norm: false or bias: always; a bias before BN is redundant]
      1.weight, 1.bias, 1.running_mean, 1.running_var (6,), 1.num_batches_tracked  [only with batch_norm]
      5.weight (16, 6, 5, 5)  5.bias (16,)
      9.weight (K, 256)       9.bias (K,)
    Indices 2, 3, 4, 6, 7, 8 are activation, dropout, pool, activation, pool and flatten.
    init applies to both engines: engine: scratch copies this net's initial weights.
    """
    flat = lenet_flat_size(input_size)
    if flat == 0:
        h, w = input_size
        raise ConfigError(f"model.name: lenet needs images of at least 16x16 pixels, this data has {h}x{w}; "
                          "choose a model that suits small inputs")
    model = nn.Sequential(
        nn.Conv2d(in_channels, 6, 5, bias=bias == "always" or not batch_norm),
        nn.BatchNorm2d(6) if batch_norm else nn.Identity(),
        make_activation(activation),
        nn.Dropout(dropout),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5),
        make_activation(activation),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(flat, num_classes),
    )
    initialize(model, init, activation)
    return model
