"""Pretrained weights of the two model zoos: `timm:NAME` with `pretrained:` and `torchvision:NAME`
with `weights:`.

Two things come from the weights, at two moments:
- before any data is read (config resolution, `inputs_for`): the input size and normalisation the
  weights were trained with, from their own metadata (timm's `pretrained_cfg`, torchvision's
  weights transforms), which fill `data.mean`/`data.std` and append a `resize` op unless the
  config sets them, so a pretrained net is never silently fed other statistics;
- after the network is built for the data's classes (`load`, called once when a run starts, not
  when a run is reopened: its checkpoint replaces them): the tensors themselves, with the head
  left new for the data's classes. What was loaded, adapted and left new is reported with the
  file's SHA-256, like model.init_from.

Where the weights come from: a local file (.safetensors, .pth, .pt, .bin; torch files with
weights_only=True), or the zoo's own download and cache (timm: the Hugging Face hub cache;
torchvision: torch.hub's checkpoints folder). Offline with an empty cache, one line says which
file to fetch and where to point the config.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab.errors import ConfigError
from cnnlab.lazy import lazy

torch = lazy("torch")

FILE_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
SIZE_OPS = ("resize", "center_crop", "random_resized_crop")  # ops that set the network's input size


@dataclass(frozen=True)
class Inputs:
    """What the weights expect: per-channel mean and std (0-1 scale), square input size, and whose metadata said so."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    size: int
    source: str


@dataclass(frozen=True)
class Choice:
    """A model section's choice of pretrained weights."""

    zoo: str  # "timm" or "torchvision"
    arch: str
    value: Any  # True, a weight name/tag, or a file path
    key: str  # the option that chose them: "pretrained" or "weights"

    @property
    def file(self) -> Path | None:
        """The local weights file, when the choice names one."""
        if isinstance(self.value, str) and (self.value.lower().endswith(FILE_SUFFIXES) or "/" in self.value):
            return Path(self.value).expanduser()
        return None


def choice_of(model: Any) -> Choice | None:
    """The pretrained weights a `model:` section asks for, or None (random initialisation)."""
    settings = model if isinstance(model, dict) else model.model_dump()
    name = str(settings.get("name", ""))
    for zoo, key in (("timm", "pretrained"), ("torchvision", "weights")):
        if name.startswith(zoo + ":"):
            value = settings.get(key)
            if value in (None, False, "", "none"):
                return None
            return Choice(zoo, name.split(":", 1)[1], value, key)
    return None


# ------------------------------------------------------------------ metadata (no download)


def inputs_for(choice: Choice) -> Inputs:
    """The input size and normalisation the chosen weights were trained with."""
    if choice.zoo == "timm":
        return _timm_inputs(choice)
    return _torchvision_inputs(choice)


def _timm_cfg(choice: Choice) -> Any:
    from timm.models import get_pretrained_cfg

    tag = choice.value if isinstance(choice.value, str) and choice.file is None else None
    name = f"{choice.arch}.{tag}" if tag and "." not in choice.arch else choice.arch
    try:
        cfg = get_pretrained_cfg(name)
    except RuntimeError:  # an unknown tag for a known architecture
        cfg = None
    if cfg is None:
        raise ConfigError(f"model.{choice.key}: timm has no pretrained weights '{name}' (tags are listed by "
                          f"timm.list_pretrained('{choice.arch}*'))")
    return cfg


def _timm_inputs(choice: Choice) -> Inputs:
    cfg = _timm_cfg(choice)
    tag = f"{cfg.architecture}.{cfg.tag}" if cfg.tag else cfg.architecture
    return Inputs(tuple(cfg.mean), tuple(cfg.std), int(cfg.input_size[-1]), f"timm pretrained_cfg of {tag}")


def _torchvision_weights(choice: Choice) -> Any:
    import torchvision

    try:
        enum = torchvision.models.get_model_weights(choice.arch)
    except (KeyError, ValueError):
        raise ConfigError(f"model.name: torchvision has no pretrained weights for '{choice.arch}'") from None
    if choice.value is True or choice.file is not None:
        return enum.DEFAULT
    name = str(choice.value).split(".")[-1]
    if name.upper() == "DEFAULT":
        return enum.DEFAULT
    try:
        return enum[name]
    except KeyError:
        raise ConfigError(f"model.weights: '{choice.value}' is not one of {choice.arch}'s weights "
                          f"({', '.join(w.name for w in enum)})") from None


def _torchvision_inputs(choice: Choice) -> Inputs:
    weights = _torchvision_weights(choice)
    t = weights.transforms()
    return Inputs(tuple(t.mean), tuple(t.std), int(t.crop_size[0]), f"torchvision {weights}")


def fill_inputs(cfg: Any) -> None:
    """Config resolution: data.mean/std and a final `resize` from the weights' own metadata, unless
    the config sets them (data.mean/std given, data.normalize: false, an op that sets the size in
    augment:, or model.input_size: data / a number). Runs on the resolved augment list. Idempotent:
    a resolved config resolves to itself."""
    choice = choice_of(cfg.model)
    if choice is None:
        return
    inputs = inputs_for(choice)
    if cfg.data.normalize and cfg.data.mean is None and cfg.data.std is None:
        cfg.data.mean, cfg.data.std = list(inputs.mean), list(inputs.std)
    wanted = getattr(cfg.model, "input_size", "weights")
    size = inputs.size if wanted == "weights" else wanted if isinstance(wanted, int) else None
    if size is not None and not any(op.get("name") in SIZE_OPS for op in cfg.augment):
        from cnnlab.data.augment.pipeline import normalize_augment, resolve_ops

        cfg.augment = [*cfg.augment, *resolve_ops(normalize_augment([{"resize": size}]))]


def describe_inputs(cfg: Any, image_shape: tuple[int, int, int]) -> str | None:
    """The banner's line: which normalisation and input size a pretrained net is fed, and from where."""
    choice = choice_of(cfg.model)
    if choice is None:
        return None
    inputs = inputs_for(choice)
    same = cfg.data.mean is not None and [round(v, 6) for v in cfg.data.mean] == [round(v, 6) for v in inputs.mean]
    origin = f"the weights' own, from {inputs.source}" if same else "set in the config, not the weights'"
    stats = (f"mean {_short(cfg.data.mean)} std {_short(cfg.data.std)} ({origin})" if cfg.data.mean is not None else
             "the training split's statistics (data.normalize), not the weights' own" if cfg.data.normalize else
             "no normalisation (data.normalize: false), not the weights' own")
    return (f"pretrained inputs: {image_shape[1]}x{image_shape[2]} (the weights were trained at {inputs.size}), "
            f"normalised with {stats}")


def _short(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.3f}" for v in values) + "]"


# ------------------------------------------------------------------ the tensors


def weights_file(choice: Choice) -> Path:
    """The local file holding the chosen weights: the config's own, or the zoo's cached download."""
    if choice.file is not None:
        if not choice.file.is_file():
            raise ConfigError(f"model.{choice.key}: {choice.file}: no such weights file")
        if choice.file.suffix.lower() not in FILE_SUFFIXES:
            raise ConfigError(f"model.{choice.key}: {choice.file}: not a weights file ({', '.join(FILE_SUFFIXES)})")
        return choice.file
    if choice.zoo == "timm":
        return _timm_download(choice)
    return _torchvision_download(choice)


def _timm_download(choice: Choice) -> Path:
    cfg = _timm_cfg(choice)
    tag = f"{cfg.architecture}.{cfg.tag}" if cfg.tag else cfg.architecture
    if cfg.hf_hub_id:
        from huggingface_hub import hf_hub_download

        filename = cfg.hf_hub_filename or "model.safetensors"
        try:
            return Path(hf_hub_download(cfg.hf_hub_id, filename))
        except Exception:
            url = f"https://huggingface.co/{cfg.hf_hub_id}/resolve/main/{filename}"
            raise ConfigError(f"model.pretrained: timm's weights {tag} are not in the Hugging Face cache and cannot "
                              f"be downloaded (offline?): fetch {url} and set model.pretrained: /path/to/{filename}") from None
    if cfg.url:
        return _hub_file(cfg.url, "pretrained", tag)
    raise ConfigError(f"model.pretrained: timm's {tag} has no downloadable weights; give a weights file")


def _torchvision_download(choice: Choice) -> Path:
    weights = _torchvision_weights(choice)
    return _hub_file(weights.url, "weights", str(weights))


def _hub_file(url: str, key: str, what: str) -> Path:
    """torch.hub's cached copy of `url`, downloaded when missing."""
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    path = folder / Path(url).name
    if path.is_file():
        return path
    try:
        folder.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(path), progress=False)
    except Exception:
        raise ConfigError(f"model.{key}: {what} is not in torch.hub's cache and cannot be downloaded (offline?): "
                          f"fetch {url} and place it at {path}, or set model.{key}: /path/to/{path.name}") from None
    return path


def load(model: Any, choice: Choice, in_channels: int, num_classes: int) -> dict[str, Any]:
    """Copy the chosen weights into `model` (built for the data: its own head and input channels);
    the report of what was loaded, adapted and left new."""
    from cnnlab.models.init_from import copy_matching, read_weights

    path = weights_file(choice)
    if choice.zoo == "timm":
        return _timm_load(model, choice, path, in_channels, num_classes)
    inner = getattr(model, "model", model) if type(model).__name__ == "ChannelAdapter" else model
    return copy_matching(inner, read_weights(path, f"model.{choice.key}"), path, f"torchvision:{choice.arch} {choice.key}",
                         f"model.{choice.key}")


def _timm_load(model: Any, choice: Choice, path: Path, in_channels: int, num_classes: int) -> dict[str, Any]:
    """timm's own loader (its filter_fn converts old checkpoints, its first-conv adaptation takes
    grayscale input, the head is dropped for another class count), then the report from the file."""
    from timm.models import load_pretrained

    from cnnlab.models.init_from import file_report, read_weights

    weights = read_weights(path, "model.pretrained")  # read once, by cnnlab's loader (weights_only)
    cfg = dict(_timm_cfg(choice).to_dict())
    # timm gets the tensors, not the file: its adaptation edits the dict it is given, so a copy
    cfg.update(state_dict=dict(weights), source="", file=None, hf_hub_id=None, url=None)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    try:
        load_pretrained(model, pretrained_cfg=cfg, num_classes=num_classes, in_chans=in_channels,
                        filter_fn=getattr(model, "checkpoint_filter_fn", None), strict=False)
    except Exception as e:
        raise ConfigError(f"model.pretrained: {path} does not fit timm's {choice.arch} "
                          f"({type(e).__name__}: {str(e).splitlines()[0][:160]})") from None
    after = model.state_dict()
    changed = [k for k in after if after[k].is_floating_point() and not torch.equal(before[k], after[k])]
    adapted = [k for k in changed if k in weights and tuple(weights[k].shape) != tuple(after[k].shape)]
    loaded = [k for k in after if k in weights and tuple(weights[k].shape) == tuple(after[k].shape)]
    skipped = {k: (list(weights[k].shape), list(after[k].shape)) for k in after
               if k in weights and k not in loaded and k not in adapted}  # the head, for other classes
    new = [k for k in after if k not in loaded and k not in adapted]
    return file_report(path, f"timm:{choice.arch} pretrained", loaded, adapted, new,
                       sorted(set(weights) - set(after)), skipped)
