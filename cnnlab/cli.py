"""The `cnnlab` command: parsing and printing only; the work lives in the modules it calls."""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from cnnlab.cli_tools import (
    CodeFlag,
    Overrides,
    data_app,
    list_names,
    model_app,
    out,
    scratch_app,
    use_code,
)
from cnnlab.errors import (
    DivergedError,
    Interrupted,
    PeerLost,
    UserError,
    is_main_process,
    note_exit,
)

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Train, evaluate and compare CNNs on image-classification data, from one YAML config.")
app.add_typer(data_app, name="data")
app.add_typer(model_app, name="model")
app.add_typer(scratch_app, name="scratch")
app.command("list")(list_names)

Nproc = Annotated[int | None, typer.Option(
    "--nproc", min=1, help="train in N processes on this machine (DDP, launched by torchrun's own launcher): "
    "one per GPU, or CPU processes sharing the cores; for several machines use torchrun (docs/distributed.md)")]


@app.command()
def train(
    config: Annotated[Path, typer.Argument(help="YAML config file")],
    overrides: Overrides = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress output")] = False,
    nproc: Nproc = None,
) -> None:
    """Train a model; the last line printed is the run directory."""
    from cnnlab.resolve import load_config

    cfg = load_config(config, overrides or [])  # checked before torch is imported: a typo costs no start-up
    if nproc is not None and nproc > 1:
        _launch(["train", str(config), *(overrides or []), *(["-q"] if quiet else [])], nproc)
    from cnnlab.api.training import train as api_train

    with _stoppable():
        run = api_train(cfg, quiet=quiet)
    if is_main_process():
        _print_result(run.summary)
        print(run.path)


@app.command()
def resume(run_dir: Annotated[Path, typer.Argument(help="run directory to continue")],
           quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False, nproc: Nproc = None,
           code: CodeFlag = "check") -> None:
    """Continue an interrupted run from its last checkpoint (with any number of processes)."""
    use_code(code)
    if nproc is not None and nproc > 1:
        _launch(["resume", str(run_dir), "--code", code, *(["-q"] if quiet else [])], nproc)
    from cnnlab.api.training import resume as api_resume

    with _stoppable():
        run = api_resume(run_dir, quiet=quiet, code=code)
    if is_main_process():
        _print_result(run.summary)
        print(run.path)


def _launch(command: list[str], nproc: int) -> None:
    """`--nproc N`: the same command in N processes (torchrun's launcher); exits with their code."""
    import os

    if "WORLD_SIZE" in os.environ:
        raise UserError("--nproc: this command already runs under torchrun; give the processes to torchrun only")
    from cnnlab.distributed import launch

    code = launch(command, nproc)
    _LAUNCHED.append(code)  # the processes have said what happened
    raise typer.Exit(code)


@app.command()
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="run directory")],
    split: Annotated[str | None, typer.Option(help="test, val or train (default: test if present, else val)")] = None,
    checkpoint: Annotated[str, typer.Option(help="best or last")] = "best",
    code: CodeFlag = "check",
) -> None:
    """Loss, top-1, top-5, per-class accuracy and calibration (ECE, NLL, Brier); writes the confusion
    matrix and the reliability diagram as PNGs into the run."""
    use_code(code)
    from cnnlab.evaluate import evaluate_run

    _check_choice("--split", split, ("test", "val", "train"))
    _check_choice("--checkpoint", checkpoint, ("best", "last"))
    r = evaluate_run(run_dir, split, checkpoint)  # type: ignore[arg-type]
    out.print(f"{r['split']} split, {r['checkpoint']} checkpoint (epoch {r['epoch']}), {r['samples']} images")
    out.print(f"loss {r['loss']:.4f}   top-1 {r['acc'] * 100:.2f}%" + (f"   top-5 {r['top5'] * 100:.2f}%" if r["top5"] is not None else ""))
    table = Table("class", "accuracy", "images", box=None)
    totals = [sum(row) for row in r["confusion"]]
    for (name, acc), n in zip(r["per_class_acc"].items(), totals):
        table.add_row(name, "-" if acc is None else f"{acc * 100:.2f}%", str(n))
    out.print(table)
    t = r["temperature"]
    out.print(f"calibration: ECE {r['ece'] * 100:.2f}% (15 equal-width bins)   NLL {r['nll']:.4f}   Brier {r['brier']:.4f}"
              + (f"   at temperature {t:.3g} (uncalibrated: ECE {r['uncalibrated']['ece'] * 100:.2f}%, NLL "
                 f"{r['uncalibrated']['nll']:.4f})" if t != 1.0 else f"   (`cnnlab calibrate {run_dir}` fits a temperature)"))
    print(r["reliability_figure"])
    print(r["figure"])


@app.command()
def calibrate(
    run_dir: Annotated[Path, typer.Argument(help="run directory")],
    checkpoint: Annotated[str, typer.Option(help="best or last")] = "best",
    code: CodeFlag = "check",
) -> None:
    """Fit a temperature on the validation split (never the test split) and store it in the run:
    evaluate, predict, export and the report apply it from then on."""
    use_code(code)
    from cnnlab.calibrate import calibrate_run

    _check_choice("--checkpoint", checkpoint, ("best", "last"))
    r = calibrate_run(run_dir, checkpoint)  # type: ignore[arg-type]
    b, a = r["before"], r["after"]
    out.print(f"temperature {r['temperature']:.4g}, fitted on {r['images']} val images ({checkpoint} checkpoint, "
              f"epoch {r['epoch']})")
    out.print(f"val ECE {b['ece'] * 100:.2f}% -> {a['ece'] * 100:.2f}%   NLL {b['nll']:.4f} -> {a['nll']:.4f}   "
              f"Brier {b['brier']:.4f} -> {a['brier']:.4f}")
    print(run_dir)


@app.command()
def predict(
    run_dir: Annotated[Path, typer.Argument(help="run directory")],
    input: Annotated[Path, typer.Argument(help=".npy array, pixel .csv, folder/.zip of images, or (a csv_images run) a CSV of image paths")],
    out_file: Annotated[Path, typer.Option("--out", help="CSV to write")] = Path("submission.csv"),
    checkpoint: Annotated[str, typer.Option(help="best or last")] = "best",
    code: CodeFlag = "check",
) -> None:
    """Write a submission CSV (image_id,label) for new images."""
    use_code(code)
    from cnnlab.predict import predict_run

    _check_choice("--checkpoint", checkpoint, ("best", "last"))
    path, n = predict_run(run_dir, input, out_file, checkpoint)  # type: ignore[arg-type]
    print(f"{n} predictions written", file=sys.stderr)
    print(path)


@app.command()
def export(
    run_dir: Annotated[Path, typer.Argument(help="run directory")],
    format: Annotated[str, typer.Option("--format", help="onnx or torchscript")] = "onnx",
    checkpoint: Annotated[str, typer.Option(help="best or last")] = "best",
    code: CodeFlag = "check",
) -> None:
    """Write the model as ONNX or TorchScript into RUN_DIR/export/: it takes float32 images in [0, 1]
    (normalisation folded in) and returns logits; class names in the JSON beside it; checked
    against the run's model on real images (refused when they disagree). The last line is the file."""
    use_code(code)
    _check_choice("--format", format, ("onnx", "torchscript"))
    _check_choice("--checkpoint", checkpoint, ("best", "last"))
    from cnnlab.export import export_run

    target, sidecar, parity = export_run(run_dir, format, checkpoint)  # type: ignore[arg-type]
    out.print(parity.line(), highlight=False)
    out.print(f"input: float32 images in [0, 1], N x {' x '.join(map(str, parity_shape(sidecar)))}, "
              "normalisation inside the model; classes and details in " + str(sidecar), highlight=False)
    print(target)


def parity_shape(sidecar: Path) -> list[int]:
    import json

    return json.loads(sidecar.read_text())["input"]["shape"][1:]


ANALYZE_HELP = """Look inside a trained run; writes figures and numbers into RUN_DIR/analysis/WHAT/.

WHAT and its options (--name VALUE):

kernels: a conv layer's filters as a grid (--layer NAME, --filters 64, --channels 8).

features: feature maps for one image per class (--layer A,B, --images 10, --maps 16, --split, --seed).

errors: most confident mistakes, confused pairs, per-class precision/recall/F1 (--split, --top 16, --pairs 20).

cam: Grad-CAM, HiResCAM and saliency, with a model-randomisation check (--layer, --images 8, --split, --seed).

landscape: loss on the init->final line and on filter-normalised random directions (--images 2048, --steps 51, --grid 21, --span 1.0, --seed 0, --batch 256, --se-batch 64, --compile auto|true|false).
"""


@app.command(help=ANALYZE_HELP, context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def analyze(
    ctx: typer.Context,
    run_dir: Annotated[Path, typer.Argument(help="run directory")],
    what: Annotated[str, typer.Argument(help="kernels, features, errors, cam, landscape, or FILE.py:NAME")],
    checkpoint: Annotated[str, typer.Option(help="best or last")] = "best",
    code: CodeFlag = "check",
) -> None:
    use_code(code)
    from cnnlab.analysis.command import analyze as run_analysis
    from cnnlab.analysis.command import check, know, parse_options

    _check_choice("--checkpoint", checkpoint, ("best", "last"))
    options = parse_options(list(ctx.args))
    what = know(run_dir, what)  # the run's own code registers its own analyses
    check(what, options)  # a typo is answered before the run is loaded
    found, written = run_analysis(run_dir, what, options, checkpoint)
    for line in found:
        out.print(line, highlight=False, markup=False)
    out.print(f"[dim]{written.forward_passes:,} images through the network, {written.seconds():.1f} s[/]")
    print(written.run.analysis_file(written.what, "report.json").parent)


@app.command()
def report(
    folder: Annotated[Path, typer.Argument(help="a run directory or a study folder")],
    out_file: Annotated[Path | None, typer.Option("--out", help="file to write (default: FOLDER/report.html, or report.md)")] = None,
    fmt: Annotated[str, typer.Option("--format", help="html (one self-contained file) or md (Markdown, PNGs beside it)")] = "html",
    code: CodeFlag = "check",
) -> None:
    """One file that holds a run's or a study's results, figures and config; the last line printed is the file."""
    use_code(code)
    from cnnlab.reports.write import report as write_report

    print(write_report(folder, out_file, fmt))


@app.command()
def compare(
    run_dirs: Annotated[list[Path], typer.Argument(help="two run directories or more")],
    out_file: Annotated[Path | None, typer.Option("--out", help="file to write (default: compare.html here)")] = None,
    fmt: Annotated[str, typer.Option("--format", help="html or md")] = "html",
    code: CodeFlag = "check",
) -> None:
    """Runs side by side: their numbers, the config keys that differ, their curves overlaid; prints the file."""
    use_code(code)
    from cnnlab.reports.write import compare as write_compare

    print(write_compare(run_dirs, out_file, fmt))


@app.command("lr-find")
def lr_find(
    config: Annotated[Path, typer.Argument(help="YAML config file")],
    overrides: Overrides = None,
    start: Annotated[float, typer.Option(help="first learning rate", min=0.0)] = 1e-7,
    end: Annotated[float, typer.Option(help="last learning rate", min=0.0)] = 10.0,
    steps: Annotated[int, typer.Option(help="steps of the exponential sweep", min=5)] = 100,
    seeds: Annotated[int, typer.Option(help="repeat the sweep with this many seeds", min=1)] = 1,
    out_dir: Annotated[Path | None, typer.Option("--out", help="folder for the curve and numbers (default: none kept but the PNG in the current folder)")] = None,
) -> None:
    """Learning-rate range test (Smith 2017): sweep the lr up exponentially, suggest one."""
    from cnnlab.resolve import load_config

    cfg = load_config(config, overrides or [])  # before torch is imported
    from cnnlab.training.lr_find import run_lr_find

    result = run_lr_find(cfg, start=start, end=end, steps=steps, seeds=seeds, out_dir=out_dir, say=out.print)
    print(result.figure)


@app.command()
def study(
    study_file: Annotated[Path, typer.Argument(help="study YAML file: a base config and how to vary it")],
    overrides: Annotated[list[str] | None, typer.Argument(help="KEY=VALUE overrides of the base config, e.g. train.epochs=2")] = None,
    workers: Annotated[int | None, typer.Option("--workers", "-w", min=1, help="worker processes (default: the file's workers, else 1)")] = None,
    storage: Annotated[str | None, typer.Option(help="database URL shared by workers on several machines, e.g. postgresql://user@host/db (default: a journal file in the study folder)")] = None,
    status: Annotated[bool, typer.Option("--status", help="show progress and the current table (and the study's Slurm jobs); run nothing")] = False,
    slurm: Annotated[bool, typer.Option("--slurm", help="submit the workers to Slurm as a job array and return (docs/studies.md#slurm)")] = False,
    partition: Annotated[str | None, typer.Option(help="with --slurm: the partition (default: the cluster's)")] = None,
    time: Annotated[str | None, typer.Option("--time", help="with --slurm: each worker's time limit, e.g. 4:00:00; a worker stopped by it is requeued and resumes its run")] = None,
    gpus_per_worker: Annotated[int, typer.Option("--gpus-per-worker", min=0, help="with --slurm: 1 for a GPU per worker")] = 0,
    cpus_per_worker: Annotated[int | None, typer.Option("--cpus-per-worker", min=1, help="with --slurm: CPUs (and torch threads) per worker (default: the cluster's)")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="with --slurm: wait for the jobs, then write and print the table")] = False,
    cancel: Annotated[bool, typer.Option("--cancel", help="scancel the study's Slurm jobs (their runs are saved and resume when it runs again)")] = False,
    worker: Annotated[bool, typer.Option("--worker", hidden=True)] = False,
    threads: Annotated[int | None, typer.Option("--threads", hidden=True, min=1)] = None,
    worker_index: Annotated[int, typer.Option("--worker-index", hidden=True)] = 0,
) -> None:
    """Run an ablation, grid or search study (resumable, parallel, or on Slurm); the last line printed is its folder."""
    from cnnlab.studies import launch

    if worker:
        try:
            launch.run_worker(study_file, overrides or [], storage, threads, worker_index, say=_say, in_slurm=slurm)
        except KeyboardInterrupt as e:  # the parent reports the interruption once
            sys.stdout.flush()
            if slurm and isinstance(e, Interrupted):  # no parent: the job's log says where the run stopped
                print(f"cnnlab: stopped by {signal.Signals(e.signum).name} {e.where}; last.pt saved in {e.run}; "
                      "its trial goes back to the queue and the run resumes there", file=sys.stderr, flush=True)
            raise typer.Exit(130) from None
        return
    given = [flag for flag, on in (("--partition", partition), ("--time", time), ("--wait", wait),
                                   ("--gpus-per-worker", gpus_per_worker), ("--cpus-per-worker", cpus_per_worker)) if on]
    if given and not slurm:
        raise UserError(f"{given[0]} goes with --slurm (add --slurm to submit the study's workers to Slurm)")
    if cancel:
        folder, jobs = launch.cancel_study(study_file, overrides or [])
        print(f"cancelled job{'s' if len(jobs) > 1 else ''} {', '.join(jobs)}; their workers saved their runs and "
              f"handed their trials back: `cnnlab study {study_file}` (with or without --slurm) finishes the study"
              if jobs else "no job of this study is queued or running")
        print(folder)
        return
    if status:
        opened, snap = launch.study_status(study_file, overrides or [], storage)
        if snap is None:
            total = len(opened.plan.units) if opened.plan.study.mode != "search" else opened.plan.study.spec.search.n_trials
            out.print(f"study {opened.plan.study.name}: not started ({total} to run); state would live in {opened.storage}")
        else:
            _print_study(opened, snap)
        _print_slurm_tasks(opened.folder)
        for name, why, resumable in launch.dead_runs(opened.folder):
            then = "resumes it from its last checkpoint" if resumable else "runs it again (no checkpoint yet)"
            out.print(f"[bold yellow]died[/] {name}: {why}; `cnnlab study {study_file}` {then}")
        print(opened.folder)
        return
    if slurm:
        from cnnlab.studies.slurm import Request

        request = Request(workers or 0, partition, time, gpus_per_worker, cpus_per_worker)
        opened, snap, job = launch.submit_study(study_file, overrides or [], storage, request, wait=wait, say=_say)
        if job is None or wait:
            _print_study(opened, snap)
        if job is not None and not wait:
            print(f"`cnnlab study {study_file} --status` shows its jobs and the table; `--cancel` stops them")
        print(opened.folder)
        if wait and snap.progress.left + snap.progress.running > 0:
            raise typer.Exit(1)  # the jobs ended (cancelled, failed) with runs left
        return
    with _stoppable(study=True):
        opened, snap = launch.run_study(study_file, overrides or [], workers, storage, say=_say)
    _print_study(opened, snap)
    print(opened.folder)


_STOPPED: list[Interrupted] = []  # a stop a command has already reported
_LAUNCHED: list[int] = []  # exit codes of `--nproc` launches, whose processes reported for themselves


@contextlib.contextmanager
def _stoppable(study: bool = False) -> Iterator[None]:
    """A run stopped by SIGINT/SIGTERM after saving: one line and exit code 130 or 143. In a
    study (whose first worker trains in this process) the line says how to finish the study."""
    try:
        yield
    except Interrupted as e:
        _STOPPED.append(e)
        name = signal.Signals(e.signum).name
        note_exit(e.exit_code)
        if not is_main_process():
            pass  # rank 0 of a distributed run says it
        elif study:
            print(STUDY_INTERRUPTED, file=sys.stderr)
        elif e.run is not None:
            print(f"cnnlab: stopped by {name} {e.where}, last.pt saved there; `cnnlab resume {e.run}` continues it",
                  file=sys.stderr)
        else:
            print(f"cnnlab: stopped by {name}; {STUDY_INTERRUPTED.split('; ', 1)[1]}", file=sys.stderr)
        raise typer.Exit(e.exit_code) from None


def _say(line: str) -> None:
    print(line, flush=True)


def _print_slurm_tasks(folder: Path) -> None:
    """--status: the study's Slurm array tasks, queued, running and ended (nothing without --slurm)."""
    from cnnlab.studies import launch

    try:
        tasks = launch.slurm_tasks(folder)
    except UserError as e:  # squeue failed (controller down): the table above still stands
        out.print(f"slurm: {e}")
        return
    if not tasks:
        return
    counts = {"queued": sum(t.queued for t in tasks), "running": sum(t.live and not t.queued for t in tasks),
              "finished": sum(not t.live for t in tasks)}
    print(f"slurm: {len(tasks)} tasks: " + ", ".join(f"{n} {what}" for what, n in counts.items()))
    for t in tasks:
        print(f"  {t.id:<14} {t.state:<10} {t.detail}")


def _print_study(opened: Any, snap: Any) -> None:
    """The study's table as Markdown (as in table.md: it pastes into a report as it is)."""
    from cnnlab.studies.results import title
    from cnnlab.studies.table import to_markdown

    if snap.orphans:
        print(f"({snap.orphans} finished runs belong to an earlier version of the study file and are not shown)")
    print(to_markdown(snap.table, title(opened.plan, snap)), end="")


def _check_choice(flag: str, value: str | None, choices: tuple[str, ...]) -> None:
    if value is not None and value not in choices:
        raise UserError(f"{flag}: '{value}' is not one of {', '.join(choices)}")


def _print_result(s: dict) -> None:
    parts = [f"{s['status']} after {s['epochs']}/{s['epochs_planned']} epochs in {s['wall_seconds']:.0f}s"]
    for key in ("val_acc", "test_acc"):
        if s.get(key) is not None:
            parts.append(f"{key} {s[key] * 100:.2f}%")
    if s.get("best_epoch"):
        parts.append(f"(best epoch {s['best_epoch']}, by {s['selected_by']})")
    print("  ".join(parts))


INTERRUPTED = "cnnlab: interrupted; `cnnlab resume RUN_DIR` continues a training run from its last checkpoint"
STUDY_INTERRUPTED = "cnnlab: study interrupted; run the same command again to finish only what is missing"
INTERRUPTED_BY_COMMAND = (
    ("train", INTERRUPTED), ("resume", INTERRUPTED), ("study", STUDY_INTERRUPTED),
    ("data fetch", "cnnlab: interrupted; run the same command again to resume the download"),
)


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors become one line on stderr and an exit code, never a traceback."""
    args = sys.argv[1:] if argv is None else argv
    command = " ".join(a for a in args[:2] if not a.startswith("-"))
    interrupted = next((text for prefix, text in INTERRUPTED_BY_COMMAND if command.startswith(prefix)),
                       "cnnlab: interrupted")
    try:
        app(args=argv, prog_name="cnnlab")  # Typer exits itself on usage errors and --help
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if code == 130 and "--worker" not in args and not _STOPPED and not _LAUNCHED:  # Typer turns Ctrl-C into exit code 130
            return _one_line(interrupted, 130)
        return code
    except UserError as e:
        details = getattr(e, "details", "")  # the user's own traceback, when their code raised
        if details and is_main_process():
            print(details, file=sys.stderr)
        return _one_line(f"cnnlab: error: {e}", e.exit_code)
    except DivergedError as e:
        return _one_line(f"cnnlab: diverged: {e}", e.exit_code)
    except PeerLost as e:
        run = getattr(e, "run", None)
        then = (f"; `cnnlab resume {run}` continues it from its last checkpoint, with any number of processes"
                if run is not None else "")
        return _one_line(f"cnnlab: error: {e}{then}", e.exit_code)
    except KeyboardInterrupt:
        return _one_line(interrupted, 130)
    return 0


def _one_line(text: str, code: int) -> int:
    """Print an error's one line and return its exit code; in a distributed run only rank 0 prints
    (every process meets the same bad input; a peer's death is rank 0's to report)."""
    if is_main_process():
        print(text, file=sys.stderr, flush=True)
        note_exit(code)
    return code


def _entry() -> None:
    code = main()
    # Everything is written: leave the objects to the process's end instead of a last walk of the cyclic
    # collector over every one torch and matplotlib made (about a second at the exit of each command).
    import gc

    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    _entry()
