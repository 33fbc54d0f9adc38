"""From `data:` config to a DataBundle: read the format, limit, split, measure statistics."""

from __future__ import annotations

from pathlib import Path

from cnnlab.config import DataConfig
from cnnlab.data.cache import default_cache_dir
from cnnlab.data.formats import FORMATS
from cnnlab.data.split import stratified_split
from cnnlab.data.stats import channel_stats, value_scale
from cnnlab.data.types import DataBundle, RawDataset, Split
from cnnlab.errors import DataError

__all__ = ["build_data", "read_raw", "DataBundle", "Split", "RawDataset"]


def read_raw(data: DataConfig) -> RawDataset:
    """Run the configured format reader on the configured path."""
    path = Path(data.path).expanduser()
    if not path.exists():
        raise DataError(f"data.path: {path} does not exist; point it at your dataset")
    options = {k: v for k, v in data.model_dump().items() if k not in DataConfig.model_fields}
    cache = None if not data.cache else Path(data.cache_dir) if data.cache_dir else default_cache_dir()
    raw = FORMATS.build(data.format, options, path=path, cache_dir=cache)
    _check_shapes(raw, path)
    return raw


def build_data(data: DataConfig, seed: int) -> DataBundle:
    """Read the dataset, apply limit_train and the validation split, compute normalisation."""
    raw = read_raw(data)
    train, val, val_source = raw.train, raw.val, "folder" if raw.val is not None else "none"
    if data.limit_train is not None and data.limit_train < len(train):
        train = train.subset(list(range(data.limit_train)))
    if val is None and data.val_fraction > 0:
        if len(train) < 2:
            raise DataError(f"{data.path}: only {len(train)} training sample(s); cannot split off validation")
        tr, va = stratified_split(train.y, data.val_fraction, seed)
        train, val, val_source = train.subset(tr), train.subset(va), "split"
    scale = value_scale(train.x)
    if data.normalize:
        mean, std = channel_stats(train.x, scale)
    else:
        mean, std = [0.0] * train.x.shape[1], [1.0] * train.x.shape[1]
    return DataBundle(
        train=train, val=val, test=raw.test, classes=raw.classes, label_values=raw.label_values,
        mean=mean, std=std, scale=scale, format=data.format, path=str(Path(data.path).expanduser().resolve()),
        val_source=val_source, notes=list(raw.notes),
    )


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
