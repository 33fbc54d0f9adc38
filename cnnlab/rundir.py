"""Run directories: the unit every other command reads. This module owns the contract:
every file name in a run directory, and every reader and writer of one.

runs/<name>-<timestamp>/
  config.yaml       resolved config (every default filled in)
  data.json         classes, label values, input shape, normalisation: what predict needs
  metrics.jsonl     one object per epoch
  steps.csv         the training loss of every step (step, epoch, train_loss)
  probe.csv         with train.probe: the loss-landscape probe, one row per probe and step size
  heldout.npz       a fold run of a cv study: the best checkpoint's probabilities of each held-out
                    (val) image, by its training-split index (HELDOUT)
  summary.json      headline numbers, status, versions, device, git commit
  best.pt last.pt   checkpoints of the torch engine (weights_only loadable); best.npz last.npz
                    with engine: scratch (no pickles); see cnnlab/checkpoints.py
  init.pt           the weights before the first step (init.npz with engine: scratch)
  init_from.json    with model.init_from: the source of the starting weights, its SHA-256, what was loaded
  analysis/<what>/  what `cnnlab analyze RUN WHAT` writes (figures, CSV, JSON)
  curves.png        loss per step, accuracy per epoch
  samples.png       a few training images per class after augmentation, written before the first step
  confusion-<split>-<checkpoint>.png, reliability-<split>-<checkpoint>.png, eval-<split>-<checkpoint>.json
                    written by `cnnlab evaluate`
  calibration.json  written by `cnnlab calibrate`: each calibrated checkpoint's temperature (and its epoch)
  traceback.txt     a study run that raised: what it raised
  lock.json         while a process trains the run: its lease (host, pid, heartbeat); see cnnlab/lease.py
  tb/               TensorBoard event files, with train.tensorboard: true
  code.json, code/  the user's own code the run used (imports: and references): each file's path and
                    SHA-256 and a copy of it, so the run explains itself and reopens with the same code
  report.html       written by `cnnlab report` (report.md and report_files/ with --format md)
  export/           what `cnnlab export` writes: model-<checkpoint>.onnx or model-<checkpoint>.torchscript.pt,
                    and beside each its JSON (input, classes, parity): model-<checkpoint>.<format>.json

Every file is written atomically (cnnlab/io.py).
"""

from __future__ import annotations

import contextlib
import csv
import json
import platform
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from cnnlab import checkpoints, lease
from cnnlab.config import Config, read_yaml
from cnnlab.errors import UserError
from cnnlab.io import atomic_path, writable_folder, write_bytes, write_json, write_jsonl, write_text

# libyaml's emitter when PyYAML has it (the wheels do): a study writes a config per run, and the Python
# emitter took 6 ms of each; the same YAML.
SAFE_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
CONFIG, DATA, METRICS, SUMMARY, CURVES, TRACEBACK, LOCK, STEPS, SAMPLES, PROBE, CODE = (
    "config.yaml", "data.json", "metrics.jsonl", "summary.json", "curves.png", "traceback.txt", "lock.json",
    "steps.csv", "samples.png", "probe.csv", "code.json")
# probe.csv's columns (cnnlab/training/probe.py says what each means); integers first.
PROBE_COLUMNS = ("step", "epoch", "lr", "size", "eta", "loss", "grad_change", "beta", "loss0", "grad_norm")
_PROBE_INTS = ("step", "epoch", "size")
CHECKPOINT_SUFFIX = {"torch": ".pt", "npz": ".npz"}  # checkpoint format -> file suffix
ANALYSIS, ANALYSIS_REPORT, TENSORBOARD = "analysis", "report.json", "tb"
REPORT = {"html": "report.html", "md": "report.md"}  # `cnnlab report RUN_DIR` by --format
EXPORT = "export"
EXPORT_SUFFIX = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}  # `cnnlab export --format` -> file suffix
CALIBRATION = "calibration.json"  # `cnnlab calibrate`: a fitted temperature per checkpoint
INIT_FROM = "init_from.json"  # model.init_from: where the starting weights came from (source, SHA-256, what loaded)
# A fold run of a `cv: K` study: the best
# checkpoint's probabilities for each held-out image, by its index in the training split before the
# carving (arrays index int64, probs float32 N x K, labels int64); `cnnlab data audit --labels` reads it.
HELDOUT = "heldout.npz"


def check_writable(folder: str | Path, key: str = "train.out_dir") -> Path:
    """The folder runs go into, or a UserError now (before any data is read); nothing is
    created until the run is (a config refused later must leave nothing behind)."""
    return writable_folder(folder, key, create=False)


def create(out_dir: str | Path, name: str) -> Run:
    """A new, empty run directory named after the run and the current time."""
    out = writable_folder(out_dir, "train.out_dir")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for k in range(1000):
        path = out / (f"{name}-{stamp}" if k == 0 else f"{name}-{stamp}-{k}")
        try:
            path.mkdir()
            return Run(path)
        except FileExistsError:
            continue
    raise UserError(f"{out}: cannot create a new run directory")


class Run:
    """One run directory: its files by name, read and written through here only."""

    writes = True  # False for the other processes of a distributed run (Follower)

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    @property
    def name(self) -> str:
        return self.path.name

    def check(self) -> Run:
        """This run, or a UserError saying why the folder is not one."""
        if not self.path.is_dir():
            raise UserError(f"{self.path}: no such run directory")
        if not (self.path / CONFIG).is_file():
            raise UserError(f"{self.path}: not a run directory (no {CONFIG}); pass the folder `cnnlab train` printed")
        return self

    # ------------------------------------------------------------------ reading

    def config_raw(self) -> dict[str, Any]:
        """config.yaml as plain data, ready to be resolved again (cnnlab/reopen.py does); a
        UserError naming the file when it is missing or not YAML."""
        path = self.check().path / CONFIG
        raw = read_yaml(path)  # its errors name the file
        data = raw.get("data")
        if isinstance(data, dict) and "limit_mode" not in data:
            # Written before data.limit_mode existed, when limit_train took the first N: keep
            # that, so the run resumes and evaluates on the images it started with.
            data["limit_mode"] = "first"
        return raw

    def code_manifest(self) -> dict[str, Any] | None:
        """code.json: the user code the run used (None for a run without any, or from before it existed)."""
        path = self.path / CODE
        return _read_json(path) if path.is_file() else None

    def code_copy(self, relative: str) -> Path:
        """Where a stored copy of a user file lives (code.json names it relative to the run)."""
        return self.path / relative

    def raw_config(self) -> dict[str, Any] | None:
        """config.yaml as written, or None when it is missing or damaged (studies compare it)."""
        try:
            data = yaml.safe_load((self.path / CONFIG).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            return None
        return data if isinstance(data, dict) else None

    @property
    def data_info(self) -> dict[str, Any]:
        """data.json: how the run's data was read, so evaluation and prediction read it alike."""
        return _read_json(self.path / DATA)

    @property
    def summary(self) -> dict[str, Any]:
        """summary.json, or a UserError when it is missing or damaged."""
        return _read_json(self.path / SUMMARY)

    def summary_if_written(self) -> dict[str, Any] | None:
        """summary.json, None before the run has written one, a UserError when it is damaged."""
        if not (self.path / SUMMARY).is_file():
            return None
        summary = self.summary
        if not isinstance(summary, dict):
            raise UserError(f"{self.path / SUMMARY}: damaged (not a JSON object)")
        return summary

    @property
    def config_file(self) -> Path:
        return self.path / CONFIG

    def config_text(self) -> str:
        """config.yaml as written."""
        try:
            return (self.check().path / CONFIG).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise UserError(f"{self.path / CONFIG}: cannot read it ({e})") from None

    def summary_or_none(self) -> dict[str, Any] | None:
        try:
            return self.summary
        except UserError:
            return None

    @property
    def history(self) -> list[dict[str, Any]]:
        """The per-epoch metrics (an empty list before the first epoch ends, or when damaged)."""
        try:
            lines = (self.path / METRICS).read_text(encoding="utf-8").splitlines()
            return [json.loads(line) for line in lines if line.strip()]
        except (OSError, json.JSONDecodeError):
            return []

    def probe(self) -> dict[str, list[float]] | None:
        """probe.csv as columns (PROBE_COLUMNS), or None when the run has none or it is damaged."""
        try:
            rows = list(csv.DictReader((self.path / PROBE).read_text(encoding="utf-8").splitlines()))
            return {c: [int(r[c]) if c in _PROBE_INTS else float(r[c]) for r in rows] for c in PROBE_COLUMNS}
        except (OSError, KeyError, ValueError, TypeError):
            return None

    def checkpoint_path(self, which: str) -> Path | None:
        """best or last, of whichever engine wrote it; None before the first epoch ends."""
        for suffix in CHECKPOINT_SUFFIX.values():
            path = self.path / f"{which}{suffix}"
            if path.is_file():
                return path
        return None

    def has_checkpoint(self, which: str) -> bool:
        return self.checkpoint_path(which) is not None

    def holder(self) -> str | None:
        """Who is training this run now ('pid 123 on host'), or None when no live process is."""
        try:
            held = json.loads((self.path / LOCK).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(held, dict) or lease.stale_reason(held, None) is not None:
            return None  # the process that held it is gone (kill -9, a crash, a lost machine)
        return f"pid {held.get('pid')} on {str(held.get('host', '?')).split(':')[0]}"

    def died(self) -> str | None:
        """Why the run stopped without a word (its summary says running, no live process holds
        it), or None: a run that finished, was interrupted cleanly, or is being trained."""
        summary = self.summary_or_none()
        if summary is None or summary.get("status") != "running" or self.holder() is not None:
            return None
        try:
            held = json.loads((self.path / LOCK).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            held = None
        reason = lease.stale_reason(held, None) if isinstance(held, dict) else None
        return reason or "its process is gone"

    @contextlib.contextmanager
    def training(self) -> Iterator[None]:
        """Hold the run's lock while a process trains it: a lease that beats, removed at the end."""
        held = self.holder()
        if held is not None:
            raise UserError(f"{self.path}: this run is being trained by {held}; wait for it, or stop that process")
        path = self.path / LOCK
        write_json(path, lease.new_lease())
        try:
            with lease.Heartbeat(lambda: write_json(path, lease.new_lease())):
                yield
        finally:
            path.unlink(missing_ok=True)

    def resumable(self) -> bool:
        """A last checkpoint and data.json are there: `cnnlab resume` can continue the run."""
        return self.has_checkpoint("last") and (self.path / DATA).is_file()

    def checkpoint(self, which: str, device: Any = "cpu") -> dict[str, Any]:
        """The payload of best or last (see cnnlab/checkpoints.py), or a UserError saying what to do."""
        path = self.checkpoint_path(which)
        if path is None:
            raise UserError(f"{self.path / which}.pt: not found; the run has not finished an epoch yet "
                            f"(try `cnnlab resume {self.path}`)")
        return checkpoints.load(path, device)

    # ------------------------------------------------------------------ writing

    def write_config(self, cfg: Config) -> None:
        write_text(self.path / CONFIG, yaml.dump(cfg.to_dict(), Dumper=SAFE_DUMPER, sort_keys=False))

    def write_data_info(self, info: dict[str, Any]) -> None:
        write_json(self.path / DATA, info)

    def write_code(self, manifest: dict[str, Any], copies: dict[str, str]) -> None:
        """code.json and the copies it names (relative path -> the file to copy there)."""
        for relative, source in copies.items():
            write_bytes(self.path / relative, Path(source).read_bytes())
        write_json(self.path / CODE, manifest)

    def write_history(self, history: list[dict[str, Any]]) -> None:
        write_jsonl(self.path / METRICS, history)

    def write_steps(self, losses: list[float], steps_per_epoch: int) -> None:
        """steps.csv: the training loss of every optimizer step, for plots of one's own."""
        per = max(1, steps_per_epoch)
        rows = "".join(f"{i},{(i - 1) // per + 1},{v:.6g}\n" for i, v in enumerate(losses, start=1))
        write_text(self.path / STEPS, "step,epoch,train_loss\n" + rows)

    def write_probe(self, columns: dict[str, list[float]]) -> None:
        """probe.csv: one row per probe and step size, columns PROBE_COLUMNS."""
        n = len(columns[PROBE_COLUMNS[0]])
        cells = [[str(int(v)) if c in _PROBE_INTS else f"{v:.9g}" for v in columns[c]] for c in PROBE_COLUMNS]
        rows = "".join(",".join(cell[i] for cell in cells) + "\n" for i in range(n))
        write_text(self.path / PROBE, ",".join(PROBE_COLUMNS) + "\n" + rows)

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json(self.path / SUMMARY, summary)

    def write_checkpoint(self, which: str, payload: dict[str, Any], fmt: str) -> None:
        checkpoints.save(self.path / f"{which}{CHECKPOINT_SUFFIX[fmt]}", payload, fmt)

    def write_traceback(self, text: str) -> None:
        write_text(self.path / TRACEBACK, text)

    def write_heldout(self, index: Any, probs: Any, labels: Any) -> None:
        """heldout.npz: the held-out images' training-split indices, class probabilities and given labels."""
        import numpy as np

        arrays = {"index": np.asarray(index, dtype=np.int64), "probs": np.asarray(probs, dtype=np.float32),
                  "labels": np.asarray(labels, dtype=np.int64)}
        with atomic_path(self.path / HELDOUT) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)  # a file object: savez would append .npz to the temporary name

    def has_heldout(self) -> bool:
        return (self.path / HELDOUT).is_file()

    def heldout(self) -> dict[str, Any] | None:
        """heldout.npz as arrays (index, probs, labels), None when the run has none, a UserError
        naming the file when it is damaged."""
        import numpy as np

        path = self.path / HELDOUT
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                out = {k: z[k] for k in ("index", "probs", "labels")}
        except (OSError, ValueError, KeyError, EOFError) as e:
            raise UserError(f"{path}: damaged ({e}); delete it and reopen the run to compute it again") from None
        n = len(out["index"])
        if out["probs"].ndim != 2 or len(out["probs"]) != n or len(out["labels"]) != n:
            raise UserError(f"{path}: damaged (arrays of different lengths); delete it to compute it again")
        return out

    def write_init_from(self, report: dict[str, Any]) -> None:
        write_json(self.path / INIT_FROM, report)

    def init_from(self) -> dict[str, Any] | None:
        """What model.init_from loaded into the run's starting weights, or None (random start)."""
        path = self.path / INIT_FROM
        return _read_json(path) if path.is_file() else None

    def write_eval(self, split: str, which: str, report: dict[str, Any]) -> None:
        write_json(self.path / f"eval-{split}-{which}.json", report)

    def eval_report(self, split: str, which: str) -> dict[str, Any] | None:
        """What `cnnlab evaluate` wrote for a split and checkpoint, or None (not run, or damaged)."""
        try:
            report = json.loads((self.path / f"eval-{split}-{which}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return report if isinstance(report, dict) else None

    def calibration(self, which: str) -> dict[str, Any] | None:
        """What `cnnlab calibrate` stored for a checkpoint (temperature, before/after), or None."""
        path = self.path / CALIBRATION
        if not path.is_file():
            return None
        entry = _read_json(path).get(which)
        return entry if isinstance(entry, dict) and isinstance(entry.get("temperature"), (int, float)) else None

    def write_calibration(self, which: str, entry: dict[str, Any]) -> None:
        path = self.path / CALIBRATION
        stored = _read_json(path) if path.is_file() else {}
        write_json(path, {**stored, which: entry})

    def steps(self) -> list[float]:
        """The training loss of every step from steps.csv (empty when missing or damaged)."""
        try:
            lines = (self.path / STEPS).read_text(encoding="utf-8").splitlines()[1:]
            return [float(line.split(",")[2]) for line in lines if line.strip()]
        except (OSError, ValueError, IndexError):
            return []

    def analysis_file(self, what: str, name: str) -> Path:
        """Where analysis `what` keeps file `name` (the caller writes it atomically)."""
        return self.path / ANALYSIS / what / name

    def analysis_files(self, what: str) -> list[Path]:
        folder = self.path / ANALYSIS / what
        return sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []

    def analyses(self) -> list[str]:
        """The analyses `cnnlab analyze` has written into this run, by name."""
        folder = self.path / ANALYSIS
        return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []

    def analysis_report(self, what: str) -> dict[str, Any] | None:
        """An analysis's own account (options, findings, cost), or None when missing or damaged."""
        try:
            report = json.loads(self.analysis_file(what, ANALYSIS_REPORT).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return report if isinstance(report, dict) else None

    @property
    def tensorboard_dir(self) -> Path:
        """Where train.tensorboard writes its event files (TensorBoard's SummaryWriter appends to them)."""
        return self.path / TENSORBOARD

    def report_path(self, fmt: str) -> Path:
        """Where `cnnlab report` writes by default (html or md)."""
        return self.path / REPORT[fmt]

    def export_file(self, which: str, fmt: str) -> Path:
        """Where `cnnlab export` puts checkpoint `which` in format `fmt` (the caller writes it atomically)."""
        return self.path / EXPORT / f"model-{which}{EXPORT_SUFFIX[fmt]}"

    def export_info_file(self, which: str, fmt: str) -> Path:
        """The JSON beside an exported model: its input, output, classes and parity check."""
        return self.path / EXPORT / f"model-{which}.{fmt}.json"

    @property
    def curves_png(self) -> Path:
        return self.path / CURVES

    @property
    def samples_png(self) -> Path:
        """Where the figure of training images after augmentation goes (the caller writes it atomically)."""
        return self.path / SAMPLES

    def confusion_png(self, split: str, which: str) -> Path:
        return self.path / f"confusion-{split}-{which}.png"

    def reliability_png(self, split: str, which: str) -> Path:
        return self.path / f"reliability-{split}-{which}.png"

    def is_run(self) -> bool:
        return (self.path / CONFIG).is_file()


class Follower(Run):
    """The run directory as the processes of a distributed run other than rank 0 see it: rank 0
    writes every file (cnnlab/distributed.py); the others read it and write nothing."""

    writes = False

    @contextlib.contextmanager
    def training(self) -> Iterator[None]:
        yield  # rank 0 holds the lock

    def write_config(self, cfg: Config) -> None:
        pass

    def write_data_info(self, info: dict[str, Any]) -> None:
        pass

    def write_code(self, manifest: dict[str, Any], copies: dict[str, str]) -> None:
        pass

    def write_history(self, history: list[dict[str, Any]]) -> None:
        pass

    def write_steps(self, losses: list[float], steps_per_epoch: int) -> None:
        pass

    def write_summary(self, summary: dict[str, Any]) -> None:
        pass

    def write_checkpoint(self, which: str, payload: dict[str, Any], fmt: str) -> None:
        pass

    def write_traceback(self, text: str) -> None:
        pass

    def write_probe(self, columns: dict[str, list[float]]) -> None:
        pass

    def write_heldout(self, index: Any, probs: Any, labels: Any) -> None:
        pass

    def write_init_from(self, report: dict[str, Any]) -> None:
        pass


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON file of a run directory, or a UserError saying which one is missing."""
    if not path.is_file():
        raise UserError(f"{path}: missing; is {path.parent} a complete run directory?")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"{path}: damaged JSON") from None


def environment() -> dict[str, Any]:
    """Library versions and the git commit of the working directory, when there is one."""
    # Imported here, not at the top: reading a run directory (a study's --status) needs no torch.
    import numpy
    import torch

    import cnnlab

    return {
        "versions": {
            "cnnlab": cnnlab.__version__, "python": platform.python_version(), "torch": torch.__version__,
            "torchvision": _installed("torchvision"), "numpy": numpy.__version__,
        },
        "git_commit": _git_commit(),
        "host": platform.node(),
    }


def _installed(package: str) -> str | None:
    """A package's installed version, read from its metadata: importing torchvision to ask cost a
    run that does not use it (the NumPy engine's, the CNNs on tensors) a second or more."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None
