"""`cnnlab lr-find`: the learning-rate range test (Smith 2017, "Cyclical learning rates").

The lr grows exponentially from `start` to `end` over `steps` optimizer steps on training
batches, built exactly as a training run builds them (session.py: data, model, engine,
optimizer, loss, batch size; the schedule is ignored, the sweep sets the lr of every step
through the engine seam, so both engines run it). The loss of each step is smoothed with
TensorBoard's bias-corrected moving average (analysis.curves.smooth); the sweep stops once
the smoothed loss exceeds 4 times its lowest value so far, or a loss is NaN or infinite.

The suggestion is the lr where the smoothed loss falls fastest against log(lr), looked for
between the first tenth of the sweep and the lowest smoothed loss. With several seeds each
seed gets a fresh model and its own batch order; the median (in log lr) is the suggestion.

Nothing is left behind but the figure (and, with an output folder, the CSV of every step and
the JSON of the suggestions): no run directory is made.
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.config import Config
from cnnlab.errors import UserError
from cnnlab.io import save_figure, writable_folder, write_json, write_text
from cnnlab.plots.curves import smooth
from cnnlab.progressbar import Bar

BLOW_UP = 4.0  # stop once the smoothed loss exceeds this many times its best so far
SMOOTHING = 0.9  # smooth()'s weight for the default 100 steps; scaled with the sweep's length
SKIP = 0.1  # the suggestion ignores the first tenth of the sweep (the loss has not moved yet)


@dataclass
class Sweep:
    """One seed's sweep: the lr and loss of every step taken."""

    seed: int
    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestion: float
    stop: str  # why the sweep ended, in words
    seconds: float  # wall-clock: building the session (data, model) and the sweep
    build_seconds: float = 0.0
    cpu_seconds: float = 0.0  # this process's CPU time over both (all threads)
    note: str = ""  # when no descent was found

    @property
    def steps(self) -> int:
        return len(self.losses)

    @property
    def lowest_lr(self) -> float:
        """The lr of the lowest smoothed loss."""
        return self.lrs[int(np.nanargmin(self.smoothed))]


@dataclass
class LrFindResult:
    figure: Path
    sweeps: list[Sweep]
    table: Path | None = None  # the CSV (with an output folder)
    report: Path | None = None  # the JSON (with an output folder)
    config_lr: float = 0.0
    files: list[Path] = field(default_factory=list)

    @property
    def suggestions(self) -> list[float]:
        return [s.suggestion for s in self.sweeps]

    @property
    def suggestion(self) -> float:
        """The median of the seeds' suggestions, in log lr (for an even count: the geometric mean of the middle two)."""
        return float(np.exp(np.median(np.log(self.suggestions))))


def run_lr_find(cfg: Config, *, start: float = 1e-7, end: float = 10.0, steps: int = 100, seeds: int = 1,
                out_dir: Path | None = None, say: Callable[[str], Any] = print) -> LrFindResult:
    """Sweep, suggest, draw; see the module's docstring."""
    _check(start, end, steps, seeds)
    stem = f"lr-find-{cfg.name or 'run'}"
    # Where the files go is checked before any data is read.
    folder = writable_folder(out_dir, "--out") if out_dir is not None else \
        writable_folder(Path.cwd(), "--out (default: the current folder)", create=False)
    from cnnlab.training.session import (
        build_session,  # torch, once the arguments are known to be good
    )

    sweeps = []
    for seed in range(cfg.seed, cfg.seed + seeds):
        began, cpu = time.perf_counter(), time.process_time()
        session = build_session(cfg.model_copy(update={"seed": seed}))
        built = time.perf_counter() - began
        sweep = _sweep(session, seed, start, end, steps)
        sweep.seconds, sweep.build_seconds = time.perf_counter() - began, built
        sweep.cpu_seconds = time.process_time() - cpu
        sweeps.append(sweep)
        say(f"seed {seed}: optim.lr={lr_text(sweep.suggestion)}  ({sweep.steps} of {steps} steps, {sweep.stop}; "
            f"lowest loss at lr {lr_text(sweep.lowest_lr)}; {sweep.seconds:.1f} s)" + (f"; {sweep.note}" if sweep.note else ""))

    result = LrFindResult(figure=folder / f"{stem}.png", sweeps=sweeps, config_lr=cfg.optim.lr)
    _plot(result, cfg, start, end)
    result.files.append(result.figure)
    if out_dir is not None:
        result.table, result.report = folder / f"{stem}.csv", folder / f"{stem}.json"
        write_text(result.table, _csv(sweeps))
        write_json(result.report, _report(result, cfg, start, end, steps))
        result.files += [result.table, result.report]
    suggestion = lr_text(result.suggestion)
    if seeds > 1:
        low, high = min(result.suggestions), max(result.suggestions)
        say(f"suggestions over {seeds} seeds: {', '.join(lr_text(s) for s in result.suggestions)}; "
            f"range {lr_text(low)}..{lr_text(high)} (x{high / low:.2g}); median optim.lr={suggestion}")
    say(f"suggestion: optim.lr={suggestion}  (the config has optim.lr={lr_text(cfg.optim.lr)}"
        + (f", the peak of its {cfg.schedule.name} schedule" if cfg.schedule.name in ("onecycle",) else "") + ")")
    return result


def lr_text(lr: float) -> str:
    """An lr to 3 significant digits, as an override YAML reads as a number (1.0e-05, not 1e-05)."""
    text = f"{lr:.3g}"
    mantissa, e, exponent = text.partition("e")
    if e and "." not in mantissa:
        text = f"{mantissa}.0e{exponent}"
    return text


def suggest(lrs: np.ndarray, smoothed: np.ndarray) -> tuple[float, str]:
    """The lr of the steepest descent of the smoothed loss against log(lr), between the first
    tenth of the sweep and the lowest loss; with no such descent, the lr of the lowest loss / 10."""
    finite = np.isfinite(smoothed)
    if not finite.any():
        raise UserError(f"lr-find: the loss was not finite from the first step at lr {lr_text(lrs[0])}; "
                        "lower --start")
    lrs, smoothed = lrs[finite], smoothed[finite]
    lowest = int(np.argmin(smoothed))
    first = max(1, int(SKIP * len(smoothed)))
    fallback = float(lrs[lowest]) / 10, "no descent before the lowest loss: its lr / 10 (try a lower --start)"
    if lowest - first < 2:
        return fallback
    grad = np.gradient(smoothed, np.log(lrs))
    i = first + int(np.argmin(grad[first : lowest + 1]))
    return (float(lrs[i]), "") if grad[i] < 0 else fallback


# ----------------------------------------------------------------------------- internals


def _check(start: float, end: float, steps: int, seeds: int) -> None:
    if not (math.isfinite(start) and start > 0):
        raise UserError(f"--start: must be a positive learning rate, got {start:g}")
    if not math.isfinite(end) or end <= start:
        raise UserError(f"--start {start:g} --end {end:g}: the sweep goes up, so --end must be larger than --start")
    if steps < 5:
        raise UserError(f"--steps: at least 5 steps, got {steps}")
    if seeds < 1:
        raise UserError(f"--seeds: at least 1, got {seeds}")


def weight(steps: int) -> float:
    """smooth()'s weight: 0.9 for 100 steps, the same span of the lr axis for other lengths."""
    return min(0.98, max(0.6, 1 - (1 - SMOOTHING) * 100 / steps))


def _sweep(session: Any, seed: int, start: float, end: float, steps: int) -> Sweep:
    engine = session.engine
    lrs = start * (end / start) ** (np.arange(steps) / (steps - 1))
    w = weight(steps)
    losses: list[float] = []
    best, stop = math.inf, "reached --end"
    bar = Bar(f"lr-find, seed {seed}", steps, lr="-", loss="-")
    with engine.running(), bar:
        batches = _cycle(session.train_loader)
        for lr in lrs:
            x, y = next(batches)
            engine.set_lr(float(lr))
            loss = float(engine.train_step(x, y).loss)
            losses.append(loss)
            if not math.isfinite(loss):
                stop = f"stopped at lr {lr_text(lr)}: the loss is {loss}"
                break
            current = float(smooth(np.asarray(losses), w)[-1])
            bar.advance(lr=f"{float(lr):.2e}", loss=f"{loss:.4f}")
            if current > BLOW_UP * best:
                stop = f"stopped at lr {lr_text(lr)}: the loss blew up"
                break
            best = min(best, current)
    raw = np.asarray(losses, dtype=float)
    smoothed = _smoothed(raw, w)
    taken = lrs[: len(raw)]
    suggestion, note = suggest(taken, smoothed)
    return Sweep(seed, [float(v) for v in taken], raw.tolist(), smoothed.tolist(), suggestion, stop, 0.0, note=note)


def _smoothed(raw: np.ndarray, w: float) -> np.ndarray:
    """smooth() over the finite losses; NaN where a step's loss was not finite (the last one)."""
    out = np.full(len(raw), np.nan)
    finite = np.isfinite(raw)
    out[finite] = smooth(raw[finite], w)
    return out


def _cycle(loader: Any) -> Iterator[tuple[Any, Any]]:
    """The training batches, epoch after epoch (each a new order from the run's generator)."""
    while True:
        empty = True
        for batch in loader.batches():
            empty = False
            yield batch
        if empty:
            raise UserError("data: the training split has no images")


def _csv(sweeps: list[Sweep]) -> str:
    buf = io.StringIO()
    rows = csv.writer(buf, lineterminator="\n")
    rows.writerow(["seed", "step", "lr", "loss", "smoothed"])
    for s in sweeps:
        for i, (lr, loss, sm) in enumerate(zip(s.lrs, s.losses, s.smoothed), start=1):
            rows.writerow([s.seed, i, f"{lr:.6g}", f"{loss:.6g}", f"{sm:.6g}"])
    return buf.getvalue()


def _report(result: LrFindResult, cfg: Config, start: float, end: float, steps: int) -> dict[str, Any]:
    return {
        "config": cfg.name, "engine": cfg.engine, "model": cfg.model.name, "optim": cfg.optim.name,
        "batch_size": cfg.train.batch_size, "start": start, "end": end, "steps": steps,
        "smoothing": weight(steps), "blow_up_factor": BLOW_UP,
        "suggestion": result.suggestion, "override": f"optim.lr={lr_text(result.suggestion)}",
        "suggestions": result.suggestions,
        "range": [min(result.suggestions), max(result.suggestions)],
        "config_lr": cfg.optim.lr, "config_schedule": cfg.schedule.name,
        "seeds": [{"seed": s.seed, "suggestion": s.suggestion, "steps": s.steps, "stop": s.stop,
                   "lowest_loss_lr": s.lowest_lr, "seconds": round(s.seconds, 2),
                   "build_seconds": round(s.build_seconds, 2), "cpu_seconds": round(s.cpu_seconds, 2),
                   **({"note": s.note} if s.note else {})} for s in result.sweeps],
        "figure": result.figure.name,
    }


def _plot(result: LrFindResult, cfg: Config, start: float, end: float) -> None:
    import matplotlib.pyplot as plt  # the Agg backend: cnnlab.plots (imported with curves) selected it

    sweeps = result.sweeps
    fig, ax = plt.subplots(figsize=(8.5, 5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    many = len(sweeps) > 1
    for k, s in enumerate(sweeps):
        c = colors[k % len(colors)]
        ax.plot(s.lrs, s.losses, color=c, alpha=0.22, linewidth=0.8)
        ax.plot(s.lrs, s.smoothed, color=c, linewidth=1.8,
                label=f"seed {s.seed}: {lr_text(s.suggestion)}" if many else "smoothed loss")
        at = int(np.argmin(np.abs(np.log(s.lrs) - math.log(s.suggestion))))
        ax.plot([s.suggestion], [s.smoothed[at]], "o", color=c, markersize=7, markeredgecolor="black", zorder=5)
    if many:  # the spread: min..max of the smoothed losses over the seeds, where at least two got
        n = max(s.steps for s in sweeps)
        grid = np.full((len(sweeps), n), np.nan)
        for k, s in enumerate(sweeps):
            grid[k, : s.steps] = s.smoothed
        shared = np.sum(np.isfinite(grid), axis=0) >= 2
        lrs = max(sweeps, key=lambda s: s.steps).lrs
        with np.errstate(all="ignore"):
            low, high = np.nanmin(grid[:, shared], axis=0), np.nanmax(grid[:, shared], axis=0)
        ax.fill_between(np.asarray(lrs)[shared], low, high, color="gray", alpha=0.2, linewidth=0, label="min..max over seeds")
        lo, hi = min(result.suggestions), max(result.suggestions)
        ax.axvspan(lo, hi, color="tab:green", alpha=0.12, label=f"suggestions {lr_text(lo)}..{lr_text(hi)}")
    ax.axvline(result.suggestion, color="tab:green", linewidth=2, linestyle="--",
               label=f"{'median ' if many else ''}suggestion optim.lr={lr_text(result.suggestion)}")
    if start <= cfg.optim.lr <= end:
        ax.axvline(cfg.optim.lr, color="dimgray", linewidth=1.2, linestyle=":",
                   label=f"the config's optim.lr={lr_text(cfg.optim.lr)}")
    # The y range: from the lowest smoothed loss to a little above the start; the blow-up leaves the top.
    smoothed = np.concatenate([np.asarray(s.smoothed) for s in sweeps])
    smoothed = smoothed[np.isfinite(smoothed)]
    if smoothed.size:
        first = [v for s in sweeps for v in s.smoothed[: max(1, s.steps // 5)] if math.isfinite(v)]
        raw = np.concatenate([np.asarray(s.losses) for s in sweeps])
        raw = raw[np.isfinite(raw)]
        low = min(float(smoothed.min()), float(np.percentile(raw, 3)))  # the faint raw losses dip below
        high = max(first + [low])
        span = max(high - low, 1e-3 * max(abs(high), 1.0))
        ax.set_ylim(low - 0.08 * span, high + 0.45 * span)
    ax.set_xscale("log")
    ax.set_xlim(start, end)
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel(f"training loss ({cfg.loss.name}); faint: per step")
    taken = sorted({s.steps for s in sweeps})
    steps = f"{taken[0]}" if len(taken) == 1 else f"{taken[0]}-{taken[-1]}"
    ax.set_title(f"lr range test: {cfg.name or 'run'}  ({cfg.model.name}, {cfg.optim.name}, batch {cfg.train.batch_size}, "
                 f"{steps} steps{', ' + str(len(sweeps)) + ' seeds' if many else ''})", fontsize=10)
    ax.grid(alpha=0.35)
    ax.grid(alpha=0.12, which="minor")
    ax.legend(fontsize=8, loc="lower left")  # the curves start flat at the top left and fall to the right
    fig.tight_layout()
    save_figure(fig, result.figure, dpi=110)
    plt.close(fig)
