"""cnnlab: image-classification experiments with convolutional networks.

The Python API (the command line is a thin layer over it):

    import cnnlab
    run = cnnlab.train("configs/fashion_mnist_cnn.yaml", train={"epochs": 3})   # or a dict, a Config
    run = cnnlab.train(cfg, model=MyNet, data=my_dataset, callbacks=[MyCallback()])
    run.history, run.summary, run.model(), run.predict("images/"), run.evaluate("test"), run.plot()
    cnnlab.Run("runs/fashion_mnist_cnn-20261207-101500")      # any run directory
    table = cnnlab.study("configs/studies/my_ablation.yaml", workers=2)   # a pandas DataFrame
    cnnlab.compare(run_a, run_b), cnnlab.analyze(run, "kernels"), cnnlab.report(run)

Your own code: `@cnnlab.register_model("tiny")` (and register_format, register_loss,
register_augment, register_optimizer, register_schedule, register_callback, register_analysis),
`cnnlab.Callback` for callbacks. Importing cnnlab is cheap: each name loads its module on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "train": "cnnlab.api.training", "build": "cnnlab.api.training", "resume": "cnnlab.api.training",
    "Experiment": "cnnlab.api.training",
    "Run": "cnnlab.api.run",
    "study": "cnnlab.api.studies", "compare": "cnnlab.api.studies", "analyze": "cnnlab.api.studies",
    "report": "cnnlab.api.studies",
    "audit": "cnnlab.api.audit",
    "load_config": "cnnlab.resolve",
    "Callback": "cnnlab.callbacks", "RunContext": "cnnlab.callbacks", "StopTraining": "cnnlab.callbacks",
    "register_model": "cnnlab.registries", "register_format": "cnnlab.registries",
    "register_loss": "cnnlab.registries", "register_augment": "cnnlab.registries",
    "register_optimizer": "cnnlab.registries", "register_schedule": "cnnlab.registries",
    "register_callback": "cnnlab.registries", "register_analysis": "cnnlab.registries",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'cnnlab' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later reads are plain attribute hits
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
