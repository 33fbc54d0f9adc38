"""`cnnlab compare RUN_DIR RUN_DIR ...`: hand-picked runs side by side. Their headline numbers
(each from its summary.json), the config keys that differ between them (only those), and their
curves overlaid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnnlab.errors import UserError
from cnnlab.reports import figures
from cnnlab.reports.doc import Doc, Figure, Mono, Notice, Table, Text, Value, duration, percent
from cnnlab.reports.run import RunInfo, read, status_notices

ROWS = (("val_acc", "val accuracy (selected epoch)"), ("test_acc", "test accuracy (selected epoch)"),
        ("val_top5", "val top-5 (selected epoch)"), ("test_top5", "test top-5 (selected epoch)"),
        ("best_val_error", "best val error"), ("best_test_error", "best test error"))


def build(run_dirs: list[Path]) -> Doc:
    if len(run_dirs) < 2:
        raise UserError("compare: give two run directories or more, e.g. cnnlab compare runs/a runs/b")
    infos = [read(p) for p in run_dirs]
    names = labels(infos)
    doc = Doc(f"Compare {len(infos)} runs", subtitle=" · ".join(names))
    for name, info in zip(names, infos):
        for notice in status_notices(info):
            doc.add(Notice([f"{name}: ", notice.content], notice.kind))
    doc.add(metrics_table(infos, names))
    doc.add(Text("Each column is one run, every number read from its summary.json; the selected epoch is the "
                 "checkpoint each run chose (by val_acc, else its last epoch). Errors are 1 - accuracy."))
    differences(doc, infos, names)
    png = figures.overlaid({n: i.history for n, i in zip(names, infos)})
    if png is not None:
        doc.section("Curves", "curves")
        doc.add(Figure(png, "compare.png", "Per-epoch curves of every run overlaid (metrics.jsonl): the epoch's mean "
                                           "training loss, val and test accuracy, val loss and the learning rate."))
    doc.section("Runs", "runs")
    for name, info in zip(names, infos):
        doc.add(Text([name, ": ", Mono(str(info.run.path.resolve())), " (", Mono(f"cnnlab report {info.run.path}"),
                      " writes its own report)"]))
    return doc


def labels(infos: list[RunInfo]) -> list[str]:
    """Column names: the run folders' names, numbered when two are the same."""
    names = [i.run.name for i in infos]
    return [f"{n} ({k + 1})" if names.count(n) > 1 else n for k, n in enumerate(names)]


def metrics_table(infos: list[RunInfo], names: list[str]) -> Table:
    rows: list[list[Any]] = [["status", *(i.status for i in infos)]]
    for key, label in ROWS:
        values = [(i.summary or {}).get(key) for i in infos]
        if all(v is None for v in values):
            continue
        rows.append([label, *(Value(percent(v), key, v) if isinstance(v, (int, float)) else "n/a" for v in values)])
    s = [i.summary or {} for i in infos]
    rows += [["best epoch", *(str(x.get("best_epoch", "n/a")) for x in s)],
             ["epochs", *(f"{x.get('epochs', 0)}/{x.get('epochs_planned', '?')}" for x in s)],
             ["parameters", *(f"{x['params']:,}" if isinstance(x.get("params"), int) else "n/a" for x in s)],
             ["training time", *(duration(x.get("wall_seconds")) for x in s)]]
    return Table(["", *names], rows, id="compare")


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def differences(doc: Doc, infos: list[RunInfo], names: list[str]) -> None:
    doc.section("Config differences", "config")
    flat = [flatten(i.run.raw_config() or {}) for i in infos]
    keys = sorted({k for f in flat for k in f})
    missing = object()
    differing = [k for k in keys if len({repr(f.get(k, missing)) for f in flat}) > 1]
    if not differing:
        doc.add(Text("The resolved configs are identical: the runs differ only in when and where they ran."))
        return
    rows = [[Mono(k), *("(not set)" if k not in f else str(f[k]) for f in flat)] for k in differing]
    doc.add(Table(["key", *names], rows, align="l" * (len(names) + 1),
                  note=f"Only the {len(differing)} of {len(keys)} keys of config.yaml whose values differ."))
