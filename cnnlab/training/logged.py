"""The names of the metrics a run logs each epoch, and which way each is better."""

from __future__ import annotations

from typing import Literal


def metric_mode(name: str, mode: Literal["auto", "min", "max"] = "auto") -> Literal["min", "max"]:
    """Whether larger or smaller values of a logged metric are better ('auto': by its name)."""
    if mode != "auto":
        return mode
    return "max" if name.endswith(("_acc", "_top5", "_f1")) else "min"


def logged_metrics(eval_splits: list[str], num_classes: int, l2: bool = False) -> list[str]:
    """Names of the per-epoch metrics a run with these evaluated splits logs."""
    names = ["train_loss", "train_acc", "train_balanced_acc", "train_macro_f1"] + (["train_l2"] if l2 else [])
    for split in eval_splits:
        names += [f"{split}_loss", f"{split}_acc"] + ([f"{split}_top5"] if num_classes >= 5 else [])
        names += [f"{split}_balanced_acc", f"{split}_macro_f1", f"{split}_ece"]
    return names
