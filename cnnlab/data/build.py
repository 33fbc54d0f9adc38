"""From a `data:` section to a DataBundle: read the format (or list its files), limit, split, measure statistics."""

from __future__ import annotations

import functools
from dataclasses import replace
from pathlib import Path

import numpy as np

from cnnlab.config import DataConfig
from cnnlab.data import memo
from cnnlab.data.exclude import apply_exclude
from cnnlab.data.read.cache import default_cache_dir
from cnnlab.data.read.catalog import FORMATS
from cnnlab.data.read.listing import (
    STATS_SAMPLE,
    FileListing,
    fits_in_memory,
    memory_budget,
    sample_stats,
)
from cnnlab.data.read.user import read_user_format
from cnnlab.data.split import kfold_split, nested_subset, stratified_split, stratified_subset
from cnnlab.data.stats import channel_stats, value_scale
from cnnlab.data.types import AnySplit, DataBundle, RawDataset, Split
from cnnlab.errors import ConfigError, DataError
from cnnlab.lazy import lazy
from cnnlab.usercode.imports import is_reference, short

torch = lazy("torch")

def read_raw(data: DataConfig, seed: int = 0) -> RawDataset:
    """Run the configured format reader on the configured path (a user's format: on whatever it takes);
    or take the read that memo.hand_over kept for it."""
    kept = memo.take_over(data, seed)
    if kept is not None:
        return kept
    entry = FORMATS.get(data.format)
    path = Path(data.path).expanduser() if data.path else None
    if path is not None and not path.exists():
        raise DataError(f"data.path: {path} does not exist; point it at your dataset")
    context = {"path": path, "cache_dir": _cache_dir(data), "seed": seed}
    if entry.origin is None:
        raw = FORMATS.build(data, **context)
    else:
        label = short(data.format)
        call = functools.partial(FORMATS.build, data, **context)
        raw = read_user_format(call, "split" in entry.context, label)
    _check_shapes(raw, path or Path(short(data.format)))
    return raw


def build_data(data: DataConfig, seed: int, device: torch.device | None = None) -> DataBundle:
    """Read the dataset (decoded in memory, or listed for file-backed loading: data.in_memory),
    apply limit_train and the validation split, compute normalisation statistics. Inside
    memo.shared() (a study worker's runs) a bundle built before for the same data is reused."""
    return memo.recall(data, seed, device, lambda: _build_data(data, seed, device))


def _build_data(data: DataConfig, seed: int, device: torch.device | None) -> DataBundle:
    lister = FORMATS.get(data.format).attrs.get("lister")  # image files can be read per batch instead
    if lister is None or data.in_memory is True:
        if data.in_memory is False:
            what = (f"the {data.format} format holds arrays, not image files, so it is" if not is_reference(data.format)
                    else f"a format of your own ({short(data.format)}) is")
            raise ConfigError(f"data.in_memory: {what} always read into memory; remove data.in_memory or set it to auto")
        return _in_memory(data, seed)
    options = _format_options(data)
    path = Path(data.path).expanduser()
    if not path.exists():
        raise DataError(f"data.path: {path} does not exist; point it at your dataset")
    if data.in_memory == "auto":
        nbytes = lister(path, **options, estimate=True).decoded_bytes(data.limit_train)
        if fits_in_memory("auto", nbytes, memory_budget(device)):
            return _in_memory(data, seed)
    return _file_backed(data, seed, lister(path, cache_dir=_cache_dir(data), **options))


def _in_memory(data: DataConfig, seed: int) -> DataBundle:
    raw = _without_excluded(data, read_raw(data, seed))
    if data.shuffle:
        raw = _shuffled(raw, data, seed)
    train, test, test_notes = _test_split(data, seed, raw.train, raw.test)
    train, val, val_source, val_index = _splits(data, seed, train, raw.val)
    scale = value_scale(train.x)
    fixed, fixed_notes = fixed_stats(data, train.x.shape[1])
    if fixed is not None:
        mean, std = fixed
    elif data.normalize:
        mean, std = channel_stats(train.x, scale)
    else:
        mean, std = [0.0] * train.x.shape[1], [1.0] * train.x.shape[1]
    return DataBundle(
        train=train, val=val, test=limit(test, data.limit_test, "limit_test", data, seed), classes=raw.classes, label_values=raw.label_values,
        mean=mean, std=std, scale=scale, format=data.format, path=_where(data),
        val_source=val_source, notes=[*raw.notes, *test_notes, *fixed_notes], val_index=val_index,
    )


def _without_excluded(data: DataConfig, raw: RawDataset) -> RawDataset:
    """The dataset as read less the data.exclude images (their rows and ids refer to it as read)."""
    kept, notes = apply_exclude(data, {"train": raw.train, "val": raw.val, "test": raw.test})
    if not notes:
        return raw
    return replace(raw, train=kept["train"], val=kept["val"], test=kept["test"], notes=[*raw.notes, *notes])


def _file_backed(data: DataConfig, seed: int, listing: FileListing) -> DataBundle:
    if data.shuffle:
        raise ConfigError(f"data.shuffle: the {data.format} format has no fixed split point (data.test_from) to "
                          "shuffle before; remove data.shuffle (use data.test_fraction for a seeded test split)")
    kept, exclude_notes = apply_exclude(data, listing.splits)
    train, test, test_notes = _test_split(data, seed, kept["train"], kept.get("test"))
    train, val, val_source, val_index = _splits(data, seed, train, kept.get("val"))
    c = train.shape[0]
    notes = [*listing.notes, *exclude_notes, *test_notes, "file-backed: images are decoded from their files for every batch"]
    fixed, fixed_notes = fixed_stats(data, c)
    notes += fixed_notes
    if fixed is not None:
        mean, std = fixed
    elif data.normalize:
        mean, std = sample_stats(train, seed)
        notes.append(f"normalisation statistics from {min(STATS_SAMPLE, len(train))} sampled training images")
    else:
        mean, std = [0.0] * c, [1.0] * c
    return DataBundle(
        train=train, val=val, test=limit(test, data.limit_test, "limit_test", data, seed),
        classes=listing.classes,
        label_values=listing.label_values, mean=mean, std=std, scale=1.0 / 255.0, format=data.format,
        path=str(Path(data.path).expanduser().resolve()), val_source=val_source, notes=notes, val_index=val_index,
    )


def fixed_stats(data: DataConfig, channels: int) -> tuple[tuple[list[float], list[float]] | None, list[str]]:
    """data.mean/std when the config (or a pretrained model's weights) fixes them; three values
    for one-channel images are averaged, as the weights' first conv sees a grey image."""
    if data.mean is None and data.std is None:
        return None, []
    if data.mean is None or data.std is None:
        raise ConfigError(f"data.{'std' if data.mean is None else 'mean'}: set with data.{'mean' if data.mean is None else 'std'}; give both, one value per channel")
    mean, std, notes = list(data.mean), list(data.std), []
    if channels == 1 and len(mean) == 3 and len(std) == 3:
        mean, std = [sum(mean) / 3], [sum(std) / 3]
        notes.append("data.mean/std: three values averaged for one-channel images")
    for key, values in (("mean", mean), ("std", std)):
        if len(values) != channels:
            raise ConfigError(f"data.{key}: {len(values)} values for {channels}-channel images; give one per channel")
    if any(v <= 0 for v in std):
        raise ConfigError("data.std: every value must be above 0")
    return (mean, std), notes


def _splits(data: DataConfig, seed: int, train: AnySplit,
            val: AnySplit | None) -> tuple[AnySplit, AnySplit | None, str, np.ndarray | None]:
    """The validation split carved (_carve), then train_per_class / train_fraction drawn from what is
    left: every size of a learning curve is measured on the same validation images."""
    train, val, val_source, val_index = _carve(data, seed, train, val)
    return nested(train, data, seed), val, val_source, val_index


def nested(train: AnySplit, data: DataConfig, seed: int) -> AnySplit:
    """data.train_per_class or data.train_fraction: the nested, seeded per-class subset (split.nested_subset)."""
    if data.train_per_class is None and data.train_fraction is None:
        return train
    if data.train_per_class is not None and data.train_fraction is not None:
        raise ConfigError("data.train_fraction: set either data.train_per_class or data.train_fraction, not both")
    try:
        return train.subset(nested_subset(train.y, data.train_per_class, data.train_fraction, seed))
    except ValueError as e:
        raise DataError(f"data.train_per_class: {e} (after the validation split); lower it") from None


def _carve(data: DataConfig, seed: int, train: AnySplit,
           val: AnySplit | None) -> tuple[AnySplit, AnySplit | None, str, np.ndarray | None]:
    """limit_train, then one fold of K (data.folds: cross-validation, in place of any other
    validation split) or a stratified validation split when the dataset has none. The last item:
    where each validation image sits in the training split before it was carved (None for a
    dataset's own val split), so held-out predictions map back to training images (heldout.npz)."""
    _check_folds(data)
    val_source = "folder" if val is not None else "none"
    train = limit(train, data.limit_train, "limit_train", data, seed)
    if data.folds is not None:
        try:
            tr, va = kfold_split(train.y, data.folds, data.fold, seed)
        except ValueError as e:
            raise DataError(f"{data.path}: cannot make {data.folds} stratified folds: {e}; lower data.folds") from None
        held, index = _limited_val(train, va, data, seed)
        return train.subset(tr), held, "fold", index
    if val is None and data.val_fraction > 0:
        if len(train) < 2:
            raise DataError(f"{data.path}: only {len(train)} training sample(s); cannot split off validation")
        tr, va = stratified_split(train.y, data.val_fraction, seed)
        held, index = _limited_val(train, va, data, seed)
        return train.subset(tr), held, "split", index
    return train, limit(val, data.limit_val, "limit_val", data, seed), val_source, None


def _limited_val(train: AnySplit, va: torch.Tensor, data: DataConfig, seed: int) -> tuple[AnySplit, np.ndarray]:
    """The validation split carved from train at `va`, cut by data.limit_val, and its images'
    positions in train (the same subset `limit` takes, found by limiting the positions alongside)."""
    val = train.subset(va)
    positions = Split(va.reshape(-1, 1, 1, 1), val.y, None)  # limit() picks by labels and count only
    return limit(val, data.limit_val, "limit_val", data, seed), limit(positions, data.limit_val, "limit_val", data,
                                                                       seed).x.reshape(-1).numpy().astype(np.int64)


def _shuffled(raw: RawDataset, data: DataConfig, seed: int) -> RawDataset:
    """All labelled samples in a seeded random order, cut again at data.test_from: the first
    test_from are train, the rest test (their ids keep the original row numbers)."""
    cut = _format_options(data).get("test_from")
    if cut is None or raw.test is None or raw.test.y is None:
        raise ConfigError("data.shuffle: shuffles all labelled data before the fixed split at data.test_from; "
                          "set data.test_from (e.g. 60000 for mnist-original.mat) or remove data.shuffle")
    train, test = raw.train, raw.test
    x, y = torch.cat([train.x, test.x]), torch.cat([train.y, test.y])
    ids = [*(train.ids or map(str, range(len(train)))), *(test.ids or map(str, range(len(train), len(x))))]
    order = np.random.default_rng(seed).permutation(len(x))
    pooled = Split(x[order], y[order], [ids[i] for i in order])
    cut = len(train)
    notes = [*raw.notes, f"all {len(x)} labelled samples shuffled (seed {seed}) before the split at data.test_from={cut}"]
    return replace(raw, train=pooled.subset(list(range(cut))), test=pooled.subset(list(range(cut, len(x)))), notes=notes)


def _test_split(data: DataConfig, seed: int, train: AnySplit,
                test: AnySplit | None) -> tuple[AnySplit, AnySplit | None, list[str]]:
    """(train left, test split, notes): with data.test_fraction, that fraction of every class is
    held out of train as the test split (seeded), for datasets whose test split is missing or
    unlabelled; else train and the dataset's own test split."""
    if data.test_fraction is None:
        return train, test, []
    if test is not None and test.y is not None:
        raise ConfigError(f"data.test_fraction: {data.path} has a labelled test split of {len(test)} images already; "
                          "remove data.test_fraction (or use data.val_fraction for a validation split)")
    counts = np.bincount(train.y.numpy())
    tr, te = stratified_split(train.y, data.test_fraction, seed)
    left = np.bincount(train.y[tr].numpy(), minlength=len(counts))
    held = np.bincount(train.y[te].numpy(), minlength=len(counts))
    for k in np.flatnonzero(counts):
        if left[k] == 0 or held[k] == 0:
            side = "test" if held[k] == 0 else "training"
            raise DataError(f"data.test_fraction: {data.test_fraction:g} of the training images leaves the {side} split "
                            f"without class {k} ({counts[k]} image(s)); choose a fraction that leaves every class at "
                            "least one image on each side")
    note = (f"test split: {len(te)} images held out of train ({data.test_fraction:g} of every class, seed {seed}; "
            "data.test_fraction)")
    if test is not None:
        note += f"; the dataset's unlabelled test split ({len(test)} images) is not used"
    return train.subset(tr), train.subset(te), [note]


def limit(split: AnySplit | None, n: int | None, key: str, data: DataConfig, seed: int) -> AnySplit | None:
    """The split cut to data.<key> samples: a seeded, stratified subset (the same on resume and
    in every study run with this seed), or the first n with data.limit_mode: first."""
    if split is None or n is None:
        return split
    if n > len(split):
        raise DataError(f"data.{key}: {n} is more than the {len(split)} images of the split; lower it or remove it")
    if data.limit_mode == "first":
        return split.subset(list(range(n)))
    if split.y is None:  # unlabelled (a competition's test set): a seeded random n
        return split.subset(sorted(np.random.default_rng(seed).choice(len(split), n, replace=False).tolist()))
    return split.subset(stratified_subset(split.y, n, seed))


def _check_folds(data: DataConfig) -> None:
    if (data.folds is None) != (data.fold is None):
        raise ConfigError("data.fold: data.fold and data.folds go together; set both (e.g. data.folds=5 data.fold=0) or neither")
    if data.folds is not None and data.fold >= data.folds:
        raise ConfigError(f"data.fold: {data.fold} is out of range for data.folds={data.folds}; use 0..{data.folds - 1}")


def _where(data: DataConfig) -> str:
    """The dataset's path as data.json records it (a user format without one: its reference)."""
    return str(Path(data.path).expanduser().resolve()) if data.path else data.format


def _format_options(data: DataConfig) -> dict:
    return {k: v for k, v in data.model_dump().items() if k not in DataConfig.model_fields}


def _cache_dir(data: DataConfig) -> Path | None:
    return None if not data.cache else Path(data.cache_dir) if data.cache_dir else default_cache_dir()


def _check_shapes(raw: RawDataset, path: Path) -> None:
    shape = tuple(raw.train.x.shape[1:])
    if len(raw.train) == 0:
        raise DataError(f"{path}: the training split is empty")
    for name in ("val", "test"):
        split: Split | None = getattr(raw, name)
        if split is not None and tuple(split.x.shape[1:]) != shape:
            raise DataError(
                f"{path}: {name} images are {tuple(split.x.shape[1:])} but train images are {shape} (C, H, W)"
            )
