"""Every callback cnnlab ships, registered by name (importing the modules registers them): what
`callbacks:` and `cnnlab list callbacks` know besides the user's own. train.early_stop and
train.tensorboard are the same callbacks written as train options; the landscape probe
(train.probe) is one too, built by the session because it needs the engine."""

from cnnlab.callbacks import CALLBACKS
from cnnlab.training import early_stop, tensorboard  # noqa: F401  (registers them)

__all__ = ["CALLBACKS"]
