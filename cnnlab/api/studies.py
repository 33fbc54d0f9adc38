"""`cnnlab.study`, `cnnlab.compare`, `cnnlab.analyze`, `cnnlab.report`: the rest of the command
line, from Python, returning what a notebook wants to look at (DataFrames, findings, paths).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from cnnlab.errors import ConfigError
from cnnlab.usercode.paths import absolutize


def study(spec: str | Path | dict[str, Any], *, workers: int | None = None, storage: str | None = None,
          overrides: list[str] | tuple[str, ...] = (), quiet: bool = False) -> Any:
    """Run (or finish) a study and return its table as a pandas DataFrame, one row per variant,
    ranked by the study metric (table.csv's columns: mean, std, 95% CI, difference from the base,
    p-values). `spec`: a study file, or the same as a dict (written into the study's folder as
    study.yaml, so its worker processes read it too). `df.attrs["folder"]` is the study folder and
    `df.attrs["runs"]` the per-run results (results.csv)."""
    import pandas as pd

    from cnnlab.studies.launch import run_study
    from cnnlab.studies.results import RESULTS, TABLE_CSV

    path = _study_file(spec)
    say = (lambda line: None) if quiet else (lambda line: print(line, flush=True))
    opened, _ = run_study(path, list(overrides), workers, storage, say=say)
    table = pd.read_csv(opened.folder / TABLE_CSV)
    table.attrs["folder"] = opened.folder
    results = opened.folder / RESULTS
    table.attrs["runs"] = pd.read_csv(results) if results.is_file() else None
    return table


def _study_file(spec: str | Path | dict[str, Any]) -> Path:
    if not isinstance(spec, dict):
        return Path(spec)
    raw = copy.deepcopy(spec)
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError("study: a study given as a dict needs a name (its folder is studies/NAME)")
    if isinstance(raw.get("base"), str):
        base = Path(raw["base"]).expanduser()
        raw["base"] = str(base if base.is_absolute() else (Path.cwd() / base).resolve())
    elif isinstance(raw.get("base"), dict):
        absolutize(raw["base"], Path.cwd())
    folder = Path(raw.get("out_dir", "studies")).expanduser() / name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "study.yaml"
    from cnnlab.io import write_text

    write_text(path, yaml.safe_dump(raw, sort_keys=False))
    return path


def compare(*runs: Any, out: str | Path | None = None, format: str = "html") -> Any:
    """Runs side by side as a DataFrame (one row per run: status, val/test accuracy at the chosen
    epoch, best epoch, parameters, time, and every config key whose value differs between them);
    with `out`, also the comparison page `cnnlab compare` writes (HTML or Markdown)."""
    import pandas as pd

    from cnnlab.reports.compare import flatten

    paths = [Path(getattr(r, "path", r)) for r in (runs[0] if len(runs) == 1 and isinstance(runs[0], list) else runs)]
    if len(paths) < 2:
        raise ConfigError("compare: give two runs or more")
    from cnnlab.rundir import Run as RunFiles

    infos = [RunFiles(p).check() for p in paths]
    flat = [flatten(r.raw_config() or {}) for r in infos]
    keys = sorted({k for f in flat for k in f if len({repr(g.get(k)) for g in flat}) > 1} - {"name"})
    rows = []
    for r, f in zip(infos, flat):
        s = r.summary_or_none() or {}
        rows.append({"run": r.name, "status": s.get("status"), "val_acc": s.get("val_acc"), "test_acc": s.get("test_acc"),
                     "best_epoch": s.get("best_epoch"), "epochs": s.get("epochs"), "params": s.get("params"),
                     "wall_seconds": s.get("wall_seconds"), **{k: f.get(k) for k in keys}})
    table = pd.DataFrame(rows)
    if out is not None:
        from cnnlab.reports.write import compare as write_compare

        table.attrs["file"] = write_compare(paths, Path(out), format)
    return table


def analyze(run: Any, what: str, *, checkpoint: str = "best", **options: Any) -> list[str]:
    """Run one analysis on a run (kernels, features, errors, cam, landscape, or one of your own:
    FILE.py:NAME or a registered name); its files go to RUN/analysis/WHAT/. Options as in
    `cnnlab analyze` (layer="conv1", images=8, ...). Returns the lines of what it found."""
    from cnnlab.analysis.command import analyze as run_analysis

    found, _ = run_analysis(Path(getattr(run, "path", run)), what, options, checkpoint)
    return found


def report(target: Any, *, out: str | Path | None = None, format: str = "html") -> Path:
    """The report of a run or a study folder (one self-contained HTML file, or Markdown with its
    PNGs beside it); returns the file's path."""
    from cnnlab.reports.write import report as write_report

    return write_report(Path(getattr(target, "path", target)), Path(out) if out is not None else None, format)


__all__ = ["analyze", "compare", "report", "study"]
