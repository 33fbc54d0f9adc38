"""Subsets and validation splits: a stratified subset of N (data.limit_*), a stratified
hold-out fraction carved from train, or one fold of K."""

from __future__ import annotations

import numpy as np

from cnnlab.lazy import lazy

torch = lazy("torch")
model_selection = lazy("sklearn.model_selection")  # scikit-learn takes a second to import


def stratified_split(y: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, val indices): `fraction` of every class goes to validation."""
    index = np.arange(len(y))
    labels = y.numpy()
    counts = np.bincount(labels)
    # Stratification needs two samples per class and at least one val sample per class.
    n_val = max(1, round(fraction * len(y)))
    can_stratify = counts[counts > 0].min() >= 2 and n_val >= (counts > 0).sum()
    train_idx, val_idx = model_selection.train_test_split(
        index, test_size=n_val, random_state=seed, stratify=labels if can_stratify else None
    )
    return torch.from_numpy(np.sort(train_idx)), torch.from_numpy(np.sort(val_idx))


def kfold_split(y: torch.Tensor, folds: int, fold: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, val indices) of fold `fold` of a seeded, stratified `folds`-fold partition."""
    labels = y.numpy()
    counts = np.bincount(labels)
    if counts[counts > 0].min() < folds:
        raise ValueError(f"the smallest class has {counts[counts > 0].min()} training images, fewer than {folds} folds")
    splitter = model_selection.StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    train_idx, val_idx = list(splitter.split(np.zeros(len(labels)), labels))[fold]
    return torch.from_numpy(np.sort(train_idx)), torch.from_numpy(np.sort(val_idx))


def stratified_subset(y: torch.Tensor, n: int, seed: int) -> list[int]:
    """n sorted indices keeping the class proportions (largest remainders), every class that
    has samples getting at least one while n allows; seeded."""
    rng = np.random.default_rng(seed)
    labels = y.numpy()
    counts = np.bincount(labels)
    present = np.flatnonzero(counts)
    take = np.zeros(len(counts), dtype=int)
    if n >= len(present):
        take[present] = 1  # every class present
    share = counts / counts.sum() * (n - take.sum())
    extra = np.minimum(np.floor(share).astype(int), counts - take)
    take += extra
    left = n - take.sum()
    order = np.argsort(-(share - np.floor(share)), kind="stable")
    while left > 0:  # the largest remainders first; classes that run out give way
        for k in order:
            if left and take[k] < counts[k]:
                take[k] += 1
                left -= 1
    chosen = [rng.choice(np.flatnonzero(labels == k), size=int(t), replace=False) for k, t in enumerate(take) if t]
    return sorted(np.concatenate(chosen).tolist()) if chosen else []


def nested_subset(y: torch.Tensor, per_class: int | None, fraction: float | None, seed: int) -> list[int]:
    """Sorted indices of the first `per_class` (or round(fraction x count), at least one) images
    of every class, each class in its own seeded order: for one seed a smaller subset lies
    inside every larger one, and a class's draw does not depend on the others' counts.
    ValueError names a class with fewer than `per_class` images."""
    labels = y.numpy()
    chosen = []
    for k in np.unique(labels):
        members = np.flatnonzero(labels == k)
        n = per_class if per_class is not None else max(1, round(fraction * len(members)))
        if n > len(members):
            raise ValueError(f"{n} is more than the {len(members)} training images of class {int(k)}")
        chosen.append(np.random.default_rng([seed, int(k)]).permutation(members)[:n])
    return sorted(np.concatenate(chosen).tolist()) if chosen else []
