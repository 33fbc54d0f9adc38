"""The stratified, seeded validation split used when a dataset ships without one."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.model_selection import train_test_split


def stratified_split(y: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, val indices): `fraction` of every class goes to validation."""
    index = np.arange(len(y))
    labels = y.numpy()
    counts = np.bincount(labels)
    # Stratification needs two samples per class and at least one val sample per class.
    n_val = max(1, round(fraction * len(y)))
    can_stratify = counts[counts > 0].min() >= 2 and n_val >= (counts > 0).sum()
    train_idx, val_idx = train_test_split(
        index, test_size=n_val, random_state=seed, stratify=labels if can_stratify else None
    )
    return torch.from_numpy(np.sort(train_idx)), torch.from_numpy(np.sort(val_idx))
