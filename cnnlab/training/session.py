"""Everything a run needs, built from its config before any file is written.

Data, the augmentation pipeline, the model (built by its registered builder, then handed to
the engine the config names), loaders, schedule, loss and callbacks: whatever can fail on
user input fails here, so bad input never leaves a half-made run directory behind. In a
distributed run (torchrun) each process builds the same session: its loaders give it its rows
of every batch and its engine is the data-parallel one (data_parallel.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from cnnlab import distributed
from cnnlab.callbacks import Callback, as_callback
from cnnlab.config import Config
from cnnlab.data.augment import Pipeline, build_pipeline
from cnnlab.data.batches import LoaderOptions, make_loader
from cnnlab.data.batches.memory import Loader, default_workers
from cnnlab.data.build import build_data
from cnnlab.data.inspect import class_counts
from cnnlab.data.types import DataBundle
from cnnlab.device import Autocast, autocast, memory_format
from cnnlab.device import setup as device_setup
from cnnlab.distributed import SINGLE, World
from cnnlab.errors import ConfigError
from cnnlab.models import MODELS, build_model, pretrained
from cnnlab.models.init_from import describe as describe_init
from cnnlab.models.init_from import initialise
from cnnlab.rundir import Run
from cnnlab.training.callbacks import CALLBACKS
from cnnlab.training.data_parallel import DataParallelEngine, sync_batchnorm
from cnnlab.training.engine import Engine
from cnnlab.training.engines import engine_type
from cnnlab.training.freeze import Freeze
from cnnlab.training.logged import logged_metrics
from cnnlab.training.losses import build_loss
from cnnlab.training.param_groups import describe as describe_lrs
from cnnlab.training.probe import Probe, check_restorable
from cnnlab.training.progress import Reporter
from cnnlab.training.schedule import Schedule, build_schedule
from cnnlab.training.trainer import Trainer


@dataclass
class Session:
    """A run's parts, ready to train."""

    cfg: Config
    device: torch.device
    bundle: DataBundle
    pipeline: Pipeline
    model: nn.Module  # as its builder made it; the engine trains it (or its NumPy copy)
    engine: Engine
    label: str  # the engine's words for the banner
    schedule: Schedule
    loss_fn: nn.Module  # the data loss evaluation reports (the engine trains with its own)
    train_loader: Loader
    eval_loaders: dict[str, Loader]
    generator: torch.Generator
    autocast: Autocast
    callbacks: list[Callback] = field(default_factory=list)  # early stopping, TensorBoard, callbacks:, the API's
    world: World = SINGLE  # this process's place in a distributed run
    notes: list[str] = field(default_factory=list)  # things the banner says about how the run was set up
    init_report: dict[str, Any] | None = None  # model.init_from: what the starting weights came from
    freeze: Freeze | None = None  # train.freeze: the callback that holds the frozen part fixed

    def data_info(self) -> dict[str, Any]:
        """data.json: the bundle's description, with the model's input shape (after augment's always-ops)."""
        return {**self.bundle.info(), "input_shape": list(self.pipeline.input_shape)}

    def meta(self) -> dict[str, Any]:
        """Plain data stored in every checkpoint so it explains itself."""
        return {"engine": self.cfg.engine, "config": self.cfg.to_dict(), "data": self.data_info()}

    def trainer(self, run: Run, reporter: Reporter, callbacks: list[Any] = (),
                stop_requested: Callable[[], int | None] = lambda: None) -> Trainer:
        t = self.cfg.train
        # The probe first: it writes probe.csv at an epoch's end even when early stopping ends the run there.
        own = [Probe(t.probe, self.engine, self.schedule, run, len(self.train_loader))] if t.probe is not None else []
        own += [self.freeze] if self.freeze is not None else []  # before the user's: they see the epoch as it trains
        return Trainer(engine=self.engine, schedule=self.schedule, loss_fn=self.loss_fn,
                       train_loader=self.train_loader, eval_loaders=self.eval_loaders,
                       num_classes=self.bundle.num_classes, epochs=t.epochs, run=run,
                       generator=self.generator, autocast=self.autocast, reporter=reporter, meta=self.meta(),
                       callbacks=own + self.callbacks + list(callbacks), checkpoint_every=t.checkpoint_every,
                       diverge_factor=t.diverge_factor, select=t.select,
                       # Every process stops after the same step (on a GPU, asked every 25 steps).
                       stop_requested=distributed.agreed_stop(stop_requested, self.world,
                                                              every=1 if self.device.type == "cpu" else 25))


def build_session(cfg: Config, bundle: DataBundle | None = None, callbacks: list[Any] = (),
                  initial_weights: bool = True) -> Session:
    """Data, model, engine, loaders, schedule, loss and callbacks for `cfg` (data may be passed in;
    `callbacks`: objects handed over from Python, after the config's own). `initial_weights`: load
    model.init_from (not when resuming from last.pt: the run's own weights replace them)."""
    kind = engine_type(cfg)
    kind.check(cfg)
    if distributed.from_env().distributed and not kind.data_parallel:
        raise ConfigError(f"engine: '{cfg.engine}' trains in one process; start it without torchrun or --nproc")
    if distributed.from_env().distributed and cfg.train.freeze is not None:
        raise ConfigError("train.freeze: DistributedDataParallel fixes the trained parameters when it starts; "
                          "fine-tune in one process, or remove train.freeze")
    if distributed.from_env().distributed and cfg.train.probe is not None:
        raise ConfigError("train.probe: the landscape probe measures one process's network; start the run without "
                          "torchrun or --nproc, or remove train.probe")
    device = device_setup(kind.device(cfg), cfg.seed, kind.torch_threads(cfg), compiles=cfg.train.compile)
    world = distributed.current()
    bundle = bundle or build_data(cfg.data, cfg.seed, device)
    # Shapes through the augment ops are checked here, before any file is written.
    pipeline = build_pipeline(cfg.augment, bundle.image_shape, bundle.num_classes)
    torch.manual_seed(cfg.seed)  # the same seed gives the same initial weights, whatever came before
    model = build_model(cfg.model, pipeline.input_shape, bundle.num_classes)
    notes: list[str] = []
    init_report = None
    choice = pretrained.choice_of(cfg.model)
    if choice is not None:
        notes.append(pretrained.describe_inputs(cfg, pipeline.input_shape))
        if initial_weights:
            init_report = pretrained.load(model, choice, bundle.image_shape[0], bundle.num_classes)
            notes.append(describe_init(init_report))
    if cfg.model.init_from is not None and initial_weights:
        init_report = initialise(model, cfg.model.init_from, cfg.model.init_head)  # over pretrained weights
        notes.append(describe_init(init_report))
    nhwc = kind.channels_last(cfg, device, model)
    if nhwc and cfg.train.channels_last == "auto" and MODELS.get(cfg.model.name).origin is not None \
            and not works_channels_last(model, pipeline.input_shape):
        nhwc = False  # a user's net written for NCHW (.view on a conv's output): keep it as written
        notes.append("NCHW memory: your model's forward fails on channels_last batches (a .view of a conv output?); "
                     ".reshape or .flatten would let it run in the faster NHWC layout")
    model = model.to(device, memory_format=memory_format(nhwc))
    model = sync_batchnorm(model, cfg.model.sync_bn, device, world)

    generator = torch.Generator(device=device)
    generator.manual_seed(cfg.seed)
    workers = cfg.data.workers
    if workers is None and world.distributed:  # the cores shared between this machine's processes
        workers = max(1, default_workers() // int(os.environ.get("LOCAL_WORLD_SIZE", world.size)))
    options = LoaderOptions(device, bundle.scale, bundle.mean, bundle.std, nhwc, workers, world, cfg.data.sampler)
    train_loader = make_loader(bundle.train, pipeline, cfg.train.batch_size, options, train=True, generator=generator)
    eval_loaders = {name: make_loader(split, pipeline, cfg.train.eval_batch_size, options)
                    for name, split in bundle.splits().items() if name != "train"}

    loss_fn = build_loss(cfg.loss, bundle.num_classes, class_counts(bundle).get("train"))
    if isinstance(loss_fn, nn.Module):
        loss_fn = loss_fn.to(device)  # class weights live on the batches' device
    if cfg.loss.class_weights is not None:
        weights = ", ".join(f"{w:.3g}" for w in loss_fn.weight.tolist()[:10])
        notes.append(f"class weights ({cfg.loss.class_weights if isinstance(cfg.loss.class_weights, str) else 'given'}): "
                     f"{weights}{', ...' if bundle.num_classes > 10 else ''}")
    if cfg.data.sampler == "balanced":
        notes.append("balanced sampler: every class drawn equally often each epoch")
    amp = autocast(cfg.train.amp, device)
    engine = kind(cfg, model, device, loss_fn, amp)  # type: ignore[operator]
    if cfg.train.probe is not None:
        check_restorable(engine, pipeline.input_shape, bundle.num_classes, device)
    freeze = Freeze(cfg.train.freeze, model, engine) if cfg.train.freeze is not None else None
    if freeze is not None:
        notes.append(freeze.line())
    lrs = describe_lrs(model, cfg.optim)
    if lrs is not None:
        notes.append(lrs)
    if world.distributed:
        engine = DataParallelEngine(engine, bundle.num_classes, world)
    distributed.seed_rank(cfg.seed, "start", world)  # after the weights: their own dropout masks
    schedule = build_schedule(cfg.schedule, cfg.optim.lr, cfg.train.epochs, len(train_loader))
    logged = logged_metrics(list(eval_loaders), bundle.num_classes, l2=cfg.loss.l2 > 0)
    _check_monitor("schedule.monitor", schedule.monitor, logged)
    _check_monitor("train.select", cfg.train.select, logged)
    own = build_callbacks(cfg, logged) + [as_callback(cb) for cb in callbacks]
    return Session(cfg, device, bundle, pipeline, model, engine, kind.label, schedule, loss_fn, train_loader, eval_loaders,
                   generator, amp, own, world, notes, init_report, freeze)


def works_channels_last(model: nn.Module, input_shape: tuple[int, ...]) -> bool:
    """Whether the model's forward (eval mode, no gradients, on the CPU) accepts a channels_last batch;
    the model and torch's random state are left as they were."""
    was = model.training
    state = torch.get_rng_state()
    try:
        model.eval().to(memory_format=torch.channels_last)
        with torch.no_grad():
            model(torch.zeros(2, *input_shape).to(memory_format=torch.channels_last))
        return True
    except RuntimeError:
        return False
    finally:
        model.to(memory_format=torch.contiguous_format).train(was)
        torch.set_rng_state(state)


def build_callbacks(cfg: Config, logged: list[str]) -> list[Callback]:
    """The config's callbacks, built before any file is written: TensorBoard (before early stopping,
    which may end the run at an epoch it still has to write), early stopping, then `callbacks:`."""
    items: list[dict[str, Any]] = []
    if cfg.train.tensorboard:
        items.append({"name": "tensorboard"})
    if cfg.train.early_stop is not None:
        _check_monitor("train.early_stop.monitor", cfg.train.early_stop.monitor, logged)
        items.append({"name": "early_stop", **cfg.train.early_stop.model_dump()})
    built = [CALLBACKS.build(item) for item in items]
    for i, item in enumerate(cfg.callbacks):
        if item["name"] == "early_stop":
            _check_monitor(f"callbacks[{i}].monitor", item["monitor"], logged)
        built.append(as_callback(CALLBACKS.build(item), f"callbacks[{i}]"))
    return built


def _check_monitor(key: str, monitor: str | None, known: list[str]) -> None:
    if monitor is None or monitor in known:
        return
    hint = " (this run has no validation split: set data.val_fraction > 0)" if monitor.startswith("val") else ""
    raise ConfigError(f"{key}: '{monitor}' is not logged{hint}; choose one of: {', '.join(known)}")
