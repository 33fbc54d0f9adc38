"""The config schema, YAML reading and dotted overrides: plain data, no registry.

The fixed sections are pydantic models. The options of registered things (a data format,
a model, an optimizer, a schedule, a loss, an augmentation) are extra keys of their section
here; cnnlab/resolve.py, which sits above the registries, checks them against the function
registered under that name, so adding one needs no edit here.
"""

from __future__ import annotations

import copy
import math
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from cnnlab.errors import ConfigError, suggest


class _Strict(BaseModel):
    # Each field's docstring (the string under it) is its description: docs/reference.md is
    # generated from them (cnnlab/reference.py), so every option is documented once, here.
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class _Open(BaseModel):
    """A section whose extra keys belong to the registered function it names."""

    model_config = ConfigDict(extra="allow", use_attribute_docstrings=True)


class DataConfig(_Open):
    format: str
    """The dataset format (docs/reference.md#formats lists them and their own options)."""
    path: str = ""
    """Where the data is: a file, folder or .zip. Every built-in format needs it; a format of your own may read from elsewhere."""
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0)
    """A stratified, seeded validation split carved from train when the data has no val/dev split (0: none)."""
    limit_train: int | None = Field(None, gt=0)
    """Use N training images (quick runs), picked as limit_mode says."""
    limit_val: int | None = Field(None, gt=0)
    """Use N validation images."""
    limit_test: int | None = Field(None, gt=0)
    """Use N test images."""
    limit_mode: Literal["stratified", "first"] = "stratified"
    """How limit_* pick their N: a seeded subset with the split's class proportions (every class present when N allows), or the first N in file order (runs made before this key existed)."""
    train_per_class: int | None = Field(None, gt=0)
    """Train on N images of every class (learning curves): each class's training images in a seeded order, the first N taken, so for one seed a smaller N's images are among a larger N's; drawn after the validation (or fold) split, which stays the same for every N."""
    train_fraction: float | None = Field(None, gt=0.0, le=1.0)
    """Train on this fraction of every class's training images (rounded, at least one), drawn as train_per_class draws: a smaller fraction's images are among a larger one's for the same seed."""
    test_fraction: float | None = Field(None, gt=0.0, lt=1.0)
    """A stratified, seeded test split carved from train, for datasets without a labelled test split (Tiny ImageNet's test/ is unlabelled); taken before limit_train and val_fraction."""
    shuffle: bool = False
    """Shuffle all labelled data (seeded) before a fixed split point (the format's test_from): the MNIST write-up shuffles all 70,000 images of mnist-original.mat, then takes 600 / 1,000."""
    normalize: bool = True
    """Normalise inputs by the training split's per-channel mean and std (stored in the run for predict and export)."""
    mean: list[float] | None = None
    """Fixed per-channel means (0-1 scale) to normalise with instead of the training split's, e.g. ImageNet's [0.485, 0.456, 0.406]; a pretrained timm/torchvision model fills it (and std) from its weights unless set. Three values for one-channel images are averaged."""
    std: list[float] | None = None
    """Fixed per-channel standard deviations (0-1 scale), with mean."""
    cache: bool = True
    """Keep decoded images (and file listings) in a cache, so the next run skips decoding."""
    cache_dir: str | None = None
    """Where the cache lives (default: $CNNLAB_CACHE_DIR, else $XDG_CACHE_HOME/cnnlab, else ~/.cache/cnnlab)."""
    in_memory: Literal["auto", True, False] = "auto"
    """auto: decoded images stay in memory when they take under a quarter of the free RAM (and GPU memory); otherwise (or with false) images are decoded per batch from the files."""
    workers: int | None = Field(None, ge=0)
    """Loader processes of the file-backed path (None: one per CPU core)."""
    sampler: Literal["shuffle", "balanced"] = "shuffle"
    """How an epoch's training images are drawn: every image once, shuffled; or balanced: as many draws as images, every class equally often (each class's images picked at random with replacement), for imbalanced classes. Seeded, and replayed exactly on resume."""
    folds: int | None = Field(None, ge=2)
    """Cross-validation: split train into this many stratified folds (a study's cv: sets it)."""
    fold: int | None = Field(None, ge=0)
    """Cross-validation: which fold becomes the validation split."""
    exclude: list[str] | str | None = None
    """Images left out of the dataset as read, before any split or limit (`cnnlab data audit --write-clean` writes this list): entries `SPLIT:N` (row N, from 0, of the dataset's train, val or test split as read) or `SPLIT:NAME` (the image's file path inside its split folder, e.g. `test:cat/0001.jpg`), or one string naming a text file of such entries, one a line (relative to the working directory)."""


class ModelConfig(_Open):
    name: str
    """The network (docs/reference.md#models lists them and their own options), or FILE.py:NAME."""
    sync_bn: bool = False
    """Distributed runs on GPUs: BatchNorm layers become SyncBatchNorm (statistics over the global batch, not each process's part); checkpoints keep plain BatchNorm names and shapes."""
    init_from: str | None = None
    """Start from another run's weights instead of random ones: a cnnlab run directory (its best checkpoint), a checkpoint, or a state dict (.pt/.pth/.bin, .safetensors). Tensors whose name and shape match are copied; the others (a head for other classes) keep their fresh initialisation; the banner and init_from.json say which, with the file's SHA-256."""
    init_head: Literal["keep", "new"] = "keep"
    """With init_from: keep copies the source's head (the last Linear layer) when its shape fits; new leaves it freshly initialised, for a source trained on other classes of the same number (fine-tuning CIFAR-10 classes 5-9 from a net of classes 0-4)."""


class OptimConfig(_Open):
    name: str = "sgd"
    """The optimizer (docs/reference.md#optimizers)."""
    lr: float = Field(0.01, gt=0.0)
    """The learning rate (the peak one, for schedules that move it)."""
    lr_mult: dict[str, float] = Field(default_factory=dict)
    """Learning-rate multipliers by parameter-name pattern (fnmatch), e.g. {"fc.*": 10, "stem.*": 0.1}: a fine-tuned backbone slower than a new head. Multipliers of every matching pattern multiply."""
    layer_decay: float | None = Field(None, gt=0.0, le=1.0)
    """timm-style layer-wise lr decay: the model's last top-level block (the head) trains at the full lr, each block before it at layer_decay times the rate of the one after."""


class ScheduleConfig(_Open):
    name: str = "none"
    """The learning-rate schedule (docs/reference.md#schedules)."""
    warmup_epochs: float = Field(0.0, ge=0.0)
    """Linear warm-up over this many epochs (fractions allowed), counted in optimizer steps; the named schedule starts when it ends."""


class LossConfig(_Open):
    name: str = "cross_entropy"
    """The loss (docs/reference.md#losses)."""
    l2: float = Field(0.0, ge=0.0)
    """Explicit L2 penalty l2/2 * sum(w**2), added to the data loss and logged as train_l2 (to compare with optim.weight_decay)."""
    l2_params: Literal["weights", "all"] = "weights"
    """Which parameters the L2 penalty covers: conv/linear weights only, or every trainable parameter."""
    class_weights: Literal["balanced", "effective"] | list[float] | None = None
    """Weight each class's images in the loss, for imbalanced classes: balanced (N / (K * images of the class): inverse frequency), effective (Cui et al. 2019's effective number of images, (1 - beta) / (1 - beta^n), with class_weights_beta), or one weight per class; none by default. The built-in losses only; the reported losses are weighted too."""
    class_weights_beta: float = Field(0.999, gt=0.0, lt=1.0)
    """beta of class_weights: effective (0.999 for classes of thousands of images; nearer 1 weighs rare classes more)."""


class EarlyStopConfig(_Strict):
    monitor: str = "val_acc"
    """The logged metric to watch."""
    patience: int = Field(5, ge=1)
    """Epochs without improvement before the run stops."""
    mode: Literal["auto", "min", "max"] = "auto"
    """auto: max for *_acc and *_top5, min otherwise."""
    min_delta: float = Field(0.0, ge=0.0)
    """The least change that counts as an improvement."""


class ProbeConfig(_Strict):
    """train.probe: the loss-landscape probe of cnnlab/training/probe.py (Santurkar et al. 2018).

    Before every `every`-th optimizer step (the first included) it steps along the batch's
    gradient by `steps` sizes spaced geometrically over `range` x the current lr, and records
    the loss, the gradient change and their ratio to the step length; the run is left as it was.
    """

    every: int = Field(25, ge=1)
    """Optimizer steps between probes."""
    steps: int = Field(8, ge=2)
    """Step sizes per probe."""
    range: tuple[float, float] = (0.5, 4.0)
    """The smallest and largest step size, in multiples of the lr."""

    @field_validator("range", mode="before")
    @classmethod
    def _range(cls, value: Any) -> Any:
        ok = (isinstance(value, (list, tuple)) and len(value) == 2
              and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value))
        if not ok or not 0 < value[0] < value[1] or not all(math.isfinite(v) for v in value):
            raise PydanticCustomError("probe_range", "give [low, high], two multiples of the lr with 0 < low < high, "
                                      "e.g. [0.5, 4.0]")
        return value


class FreezeConfig(_Strict):
    epochs: int = Field(1, ge=1)
    """Epochs trained with the frozen part held fixed; every parameter trains after them."""
    until: str = "head"
    """What trains while frozen: head (the last linear layer), the name of the first layer that trains (e.g. layer4): every parameter before it is frozen, or stageN for a timm model: its feature_info stages 0..N frozen (stage1 of a ResNet: the stem and layer1), the rest trains."""


class TrainConfig(_Strict):
    epochs: int = Field(10, gt=0)
    """Passes over the training split."""
    select: str | None = None
    """The logged metric that picks the best checkpoint (best.pt and the summary's numbers), in its own direction (accuracies and F1 up, losses and ECE down): e.g. val_macro_f1 or val_balanced_acc for imbalanced classes. Default: val_acc when there is a validation split, else the last epoch."""
    batch_size: int = Field(128, gt=0)
    """Images per optimizer step (over all processes of a distributed run)."""
    eval_batch_size: int = Field(1024, gt=0)
    """Images per batch when evaluating."""
    out_dir: str = "runs"
    """Where run directories are made (relative to the working directory)."""
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"
    """Mixed precision: autocast where the device supports it (auto), or off, or the given type."""
    channels_last: Literal["auto"] | bool = "auto"
    """auto: NHWC memory on CUDA, and on the CPU for models without a strided 1x1 convolution (docs/training.md says why), else NCHW."""
    grad_clip: float | None = Field(None, gt=0.0)
    """Clip the global gradient norm to this value."""
    grad_clip_value: float | None = Field(None, gt=0.0)
    """Clamp every gradient element to +-value."""
    ema: float | None = Field(None, gt=0.0, lt=1.0)
    """Decay of an exponential moving average of the weights; evaluation and checkpoints use the average."""
    early_stop: EarlyStopConfig | None = None
    """Stop when a metric stops improving (train.early_stop.*, below)."""
    tta: Literal["none", "hflip"] = "none"
    """Test-time augmentation in every evaluation: hflip averages the image and its mirror."""
    compile: bool = False
    """torch.compile the model for training steps."""
    compile_mode: Literal["default", "reduce-overhead", "max-autotune"] = "default"
    """torch.compile's mode."""
    threads: int | None = Field(None, gt=0)
    """CPU threads for torch (None: torch's choice)."""
    checkpoint_every: int | None = Field(None, gt=0)
    """Also save last.pt every N optimizer steps inside an epoch: a run that dies loses at most N steps."""
    diverge_factor: float | None = Field(1000.0, gt=1.0)
    """Stop as diverged when the smoothed training loss exceeds this many times its first step's (None: only NaN and infinity stop a run)."""
    tensorboard: bool = False
    """TensorBoard event files in RUN_DIR/tb/: scalars per step and epoch, lr, hparams with the final metrics."""
    probe: ProbeConfig | None = None
    """The loss-landscape probe (train.probe.*, below; true takes its defaults, null is off)."""
    freeze: FreezeConfig | None = None
    """Fine-tuning: train only the head (or the layers from train.freeze.until on) for the first train.freeze.epochs epochs, frozen BatchNorm layers in eval mode, then everything (train.freeze.*, below)."""

    @field_validator("probe", mode="before")
    @classmethod
    def _probe_switch(cls, value: Any) -> Any:
        if value is True:
            return {}
        return None if value is False else value


class Config(_Strict):
    imports: list[str] = Field(default_factory=list)
    """Your own code, imported before anything else is checked: Python files (relative to the config file) and module names; what they register is known to every command."""
    name: str | None = None
    """The run directory's prefix (default: the config file's name)."""
    seed: int = 0
    """The seed of everything random; runs are deterministic on the CPU for a given seed."""
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    """auto: a GPU when there is one, else the CPU."""
    engine: Literal["torch", "scratch"] = "torch"
    """scratch: the NumPy engine (docs/numpy-engine.md)."""
    data: DataConfig
    """The dataset (data.*, below)."""
    augment: list[Any] = Field(default_factory=list)
    """Training augmentations in order: names, or {name: {options}} (docs/reference.md#augment)."""
    model: ModelConfig
    """The network (model.*, below)."""
    optim: OptimConfig = Field(default_factory=OptimConfig)
    """The optimizer (optim.*, below)."""
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    """The learning-rate schedule (schedule.*, below)."""
    loss: LossConfig = Field(default_factory=LossConfig)
    """The loss (loss.*, below)."""
    train: TrainConfig = Field(default_factory=TrainConfig)
    """How to train (train.*, below)."""
    callbacks: list[Any] = Field(default_factory=list)
    """Callbacks (cnnlab.Callback subclasses) by name or FILE.py:NAME, written like augment ops (docs/reference.md#callbacks)."""

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form: the resolved config written into every run directory."""
        return self.model_dump(mode="json")


SECTIONS = list(Config.model_fields)
# Open sections and the key that picks their registered function.
SELECTORS = {"model": "name", "optim": "name", "schedule": "name", "loss": "name", "data": "format"}
# The pydantic model of each open section (its fixed keys are not the function's options).
OPEN_SECTIONS: dict[str, type[BaseModel]] = {"model": ModelConfig, "optim": OptimConfig, "schedule": ScheduleConfig,
                                             "loss": LossConfig, "data": DataConfig}


# ----------------------------------------------------------------------------- reading and overrides


# Extensions of dataset files (never of a config), for the hint when one is passed as the config.
DATA_SUFFIXES = frozenset({".zip", ".npy", ".npz", ".mat", ".csv", ".gz", ".tar", ".pkl", ".png", ".jpg", ".jpeg"})


def read_yaml(path: Path) -> dict[str, Any]:
    """Parse a YAML mapping, turning every failure into one clear line."""
    if path.is_dir() or path.suffix.lower() in DATA_SUFFIXES:
        # A common first try is `cnnlab data inspect my_dataset/`: say what goes where.
        raise ConfigError(f"{path}: this is data, not a config; pass a YAML config and point it at the data, "
                          f"e.g. configs/fashion_mnist_cnn.yaml data.path={path} data.format=FORMAT (a wrong FORMAT lists them)")
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file; a config is a YAML file") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a YAML mapping of sections, got {type(data).__name__}")
    return data


def apply_overrides(raw: dict[str, Any], items: list[str] | tuple[str, ...],
                    accepted: Callable[[str, Any], set[str] | None] = lambda section, name: None) -> None:
    """Apply KEY=VALUE overrides in order.

    An override that switches a section to another function (optim.name=adam over a file that
    sets optim.momentum) drops the file's options the new function does not take, so switching
    works from the command line and in studies; options given as overrides are always kept.
    `accepted(section, name)` is the set of keys the named function's section takes (None when
    unknown); resolve.apply_overrides supplies it from the registries.
    """
    before = copy.deepcopy(raw)
    given = [apply_override(raw, item) for item in items]
    for section, selector in SELECTORS.items():
        node = raw.get(section)
        old = before.get(section)
        if f"{section}.{selector}" not in given or not isinstance(node, dict) or not isinstance(old, dict):
            continue
        if node.get(selector) == old.get(selector):
            continue
        keys = accepted(section, node.get(selector))
        if keys is None:
            continue  # an unknown name: validation will say so
        for key in list(node):
            if key not in keys and f"{section}.{key}" not in given and key in old:
                del node[key]


def apply_override(raw: dict[str, Any], item: str) -> str:
    """Set a dotted key from 'a.b.c=VALUE'; VALUE is parsed as YAML (numbers, lists, bools)."""
    if "=" not in item:
        raise ConfigError(f"override '{item}': expected KEY=VALUE, e.g. optim.lr=0.01")
    key, _, text = item.partition("=")
    key = key.strip()
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        value = text
    parts = key.split(".")
    if not key or any(not p for p in parts):
        raise ConfigError(f"override '{item}': '{key}' is not a dotted config key")
    if parts[0] not in SECTIONS:
        # `epochs=3` or `out_dir=x`: a section's key written without its section.
        home = [f"{section}.{key}" for section in SECTIONS if parts[0] in fields_at((section,))]
        if home:
            raise ConfigError(f"override '{key}': '{parts[0]}' is not a section; did you mean '{home[0]}'?")
        raise ConfigError(f"override '{key}': unknown section '{parts[0]}'{suggest(parts[0], SECTIONS)}")
    node = raw
    for p in parts[:-1]:
        if not isinstance(node.get(p), dict):
            node[p] = {}
        node = node[p]
    node[parts[-1]] = value
    return key


def fields_at(loc: tuple) -> list[str]:
    """Field names of the (possibly nested, possibly optional) section at `loc`, for hints."""
    model: Any = Config
    for key in loc:
        info = getattr(model, "model_fields", {}).get(key)
        if info is None:
            return []
        ann = info.annotation
        # `EarlyStopConfig | None`: the section is the non-None member of the union.
        model = next((a for a in typing.get_args(ann) if hasattr(a, "model_fields")), ann)
    return list(getattr(model, "model_fields", {}))
