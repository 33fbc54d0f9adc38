"""`cnnlab report RUN_DIR`: one run's report, answer first.

Top: the run's status (in progress, died, interrupted, diverged ... said at once) and its
headline numbers, every one read from summary.json. Then the command that reproduces the run
and its resolved config, the data, the model, the curves, the confusion matrix and per-class
table (computed when `cnnlab evaluate` has not been run), every analysis in RUN_DIR/analysis/,
and the environment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cnnlab.errors import UserError
from cnnlab.reopen import run_config
from cnnlab.reports import analyses, sections
from cnnlab.reports.doc import (
    Code,
    Doc,
    Mono,
    Notice,
    Strong,
    Table,
    Text,
    Toc,
    Value,
    duration,
    percent,
)
from cnnlab.rundir import Run

SPLITS = ("val", "test")


@dataclass
class RunInfo:
    """What the report reads once: the run's files and whether a process still trains it."""

    run: Run
    summary: dict[str, Any] | None
    history: list[dict[str, Any]]
    data: dict[str, Any] | None
    holder: str | None  # 'pid 123 on host' while a live process trains it
    died: str | None
    cfg: Any = None  # the resolved Config, None when config.yaml no longer validates
    cfg_problem: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def in_progress(self) -> bool:
        return self.holder is not None

    @property
    def status(self) -> str:
        return (self.summary or {}).get("status") or ("running" if self.in_progress else "not started")


def read(run_dir: Any) -> RunInfo:
    """The run's files, or one UserError line: not a run, or a damaged summary.json."""
    run = Run(run_dir).check()
    summary = run.summary_if_written()
    try:
        data = run.data_info
    except UserError:
        data = None
    info = RunInfo(run, summary, run.history, data, run.holder(), run.died())
    try:
        info.cfg = run_config(run)
    except UserError as e:
        info.cfg_problem = str(e)
    return info


def build(run_dir: Any, evaluate: bool = True) -> Doc:
    info = read(run_dir)
    run = info.run
    doc = Doc(f"Run {run.name}", subtitle=_subtitle(info))
    doc.add(*status_notices(info))
    headline(doc, info)
    doc.add(Toc())
    reproduce(doc, info)
    sections.data(doc, info)
    sections.model(doc, info)
    sections.curves(doc, info)
    sections.evaluation(doc, info, compute=evaluate)
    analyses.section(doc, run)
    environment(doc, info)
    return doc


def _subtitle(info: RunInfo) -> str:
    s = info.summary or {}
    parts = [f"status: {info.status}"]
    if s.get("epochs_planned"):
        parts.append(f"{s.get('epochs', 0)} of {s['epochs_planned']} epochs")
    if s.get("wall_seconds") is not None:
        parts.append(f"training time {duration(s['wall_seconds'])}")
    parts.append(str(info.run.path.resolve()))
    return " · ".join(parts)


def status_notices(info: RunInfo) -> list[Notice]:
    """What a reader must know before trusting the numbers, first thing on the page."""
    s, run = info.summary or {}, info.run
    status = s.get("status")
    if info.in_progress:
        done = f"{s.get('epochs', 0)} of {s.get('epochs_planned', '?')} epochs done" if s else "no epoch done yet"
        return [Notice(["In progress: this run is being trained now (", done, f", {info.holder}). This report "
                        "shows what exists at this moment; run ", Mono(f"cnnlab report {run.path}"),
                        " again when it has finished."])]
    if info.died is not None:
        return [Notice([f"This run's process died without a word ({info.died}): the numbers are those of the "
                        "last finished epoch. ", Mono(f"cnnlab resume {run.path}"), " continues it."], "bad")]
    if info.summary is None:
        return [Notice(["This run has not written summary.json: it never started training, or its process "
                        "died before. Only its configuration is shown."], "bad")]
    reason = s.get("reason") or ""
    if status == "interrupted":
        return [Notice(["Interrupted: ", reason, ". ", Mono(f"cnnlab resume {run.path}"), " continues it."])]
    if status in ("diverged", "failed"):
        return [Notice([f"{status.capitalize()}: ", reason], "bad")]
    if status in ("early_stopped", "pruned"):
        return [Notice([f"Stopped early ({status}): ", reason], "info")]
    return []


def _value(summary: dict[str, Any], path: str) -> float | None:
    """A number of summary.json by its path: 'test_acc', 'best.test_acc.value', '1-final.test_acc' (an error)."""
    flip = path.startswith("1-")
    node: Any = summary
    for part in path.removeprefix("1-").split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if not isinstance(node, (int, float)) or isinstance(node, bool):
        return None
    return 1 - node if flip else float(node)


def _cell(summary: dict[str, Any], path: str, epoch: Any = None) -> Any:
    value = _value(summary, path)
    if value is None:
        return "n/a"
    shown = Value(percent(value), path, value)
    return [shown, f" (epoch {epoch})"] if epoch is not None else shown


def headline(doc: Doc, info: RunInfo) -> None:
    """The answer: the selected checkpoint's accuracy and error, then best and final per split."""
    s = info.summary
    if not s or not s.get("epochs"):
        doc.add(Text("No epoch has finished yet: there are no numbers to report."))
        return
    best_epoch, final = s.get("best_epoch"), s.get("final") or {}
    lead = next((sp for sp in ("test", "val") if s.get(f"{sp}_acc") is not None), None)
    selected = ("the last epoch (no validation split to select by)" if s.get("selected_by") == "last epoch"
                else f"the checkpoint selected by {s.get('selected_by')}")
    if lead is not None:
        doc.add(Text(lead=True, content=[f"{lead.capitalize()} accuracy ", Strong(percent(s[f"{lead}_acc"])),
                      f" (error {percent(1 - s[f'{lead}_acc'])}) at epoch {best_epoch}, {selected}"
                      + (f"; val accuracy {percent(s['val_acc'])}." if lead == "test" and s.get("val_acc") is not None
                         else ".")]))
    rows = []
    for split in SPLITS:
        if s.get(f"{split}_acc") is None and _value(s, f"final.{split}_acc") is None:
            continue
        best = (s.get("best") or {}).get(f"{split}_acc") or {}
        best_err = s.get(f"best_{split}_error_epoch")
        rows.append([f"{split} accuracy", _cell(s, f"{split}_acc"), _cell(s, f"best.{split}_acc.value", best.get("epoch")),
                     _cell(s, f"final.{split}_acc")])
        rows.append([f"{split} error", _cell(s, f"1-{split}_acc"), _cell(s, f"best_{split}_error", best_err),
                     _cell(s, f"1-final.{split}_acc")])
        if s.get(f"{split}_top5") is not None:
            top5 = (s.get("best") or {}).get(f"{split}_top5") or {}
            rows.append([f"{split} top-5 accuracy", _cell(s, f"{split}_top5"),
                         _cell(s, f"best.{split}_top5.value", top5.get("epoch")), _cell(s, f"final.{split}_top5")])
    train = (s.get("best") or {}).get("train_acc") or {}
    rows.append(["train accuracy (during the epoch)", _cell(s, "final.train_acc") if best_epoch == final.get("epoch")
                 else "", _cell(s, "best.train_acc.value", train.get("epoch")), _cell(s, "final.train_acc")])
    doc.add(Table(["", f"selected checkpoint (epoch {best_epoch})", "best over epochs",
                   f"final (epoch {final.get('epoch', '?')})"], rows, id="headline",
                  note=("Selected checkpoint: best.pt, the last epoch (no validation split to choose by)."
                        if s.get("selected_by") == "last epoch" else
                        f"Selected checkpoint: best.pt, chosen by {s.get('selected_by')}.") + " Best over epochs: each "
                       "number's own best epoch (so they may come from different epochs). Errors are 1 - accuracy. "
                       "Every number is read from summary.json."))
    facts = [f"{s.get('epochs')} of {s.get('epochs_planned')} epochs", f"{s.get('params', 0):,} parameters",
             f"training time {duration(s.get('wall_seconds'))}", f"engine {s.get('engine')}", f"device {s.get('device')}"]
    doc.add(Text(" · ".join(facts)))


def reproduce(doc: Doc, info: RunInfo) -> None:
    doc.section("Reproduce", "reproduce")
    run, s = info.run, info.summary or {}
    lines = [f"cnnlab train {run.config_file.resolve()}   # the same run again, into a new run directory"]
    if info.status in ("interrupted",) or info.died:
        lines.append(f"cnnlab resume {run.path.resolve()}   # or continue this one")
    commit = s.get("git_commit")
    if commit:
        dirty = commit.endswith("-dirty")
        lines.insert(0, f"git checkout {commit.removesuffix('-dirty')}"
                     + ("   # the code had uncommitted changes then: this is the nearest commit" if dirty else ""))
    doc.add(Code("\n".join(lines), lang="sh"))
    doc.add(Text(["config.yaml is the resolved config: every default filled in, so the run does not depend on "
                  "the defaults of a later cnnlab."]))
    doc.add(Code(run.config_text(), summary="Resolved config (config.yaml)", lang="yaml"))
    user_code(doc, run)
    if info.cfg_problem:
        doc.add(Notice(["This cnnlab no longer accepts the config: ", info.cfg_problem]))


def user_code(doc: Doc, run: Run) -> None:
    """The user's own files and objects the run was trained with (code.json), when it had any."""
    try:
        code = run.code_manifest()
    except UserError:
        code = None
    if not code:
        return
    rows = []
    for entry in [*code.get("files", []), *code.get("modules", [])]:
        for e in [entry, *entry.get("helpers", [])]:
            rows.append([Mono(str(e.get("path"))), Mono(str(e.get("sha256", ""))[:12]), Mono(str(e.get("copy")))])
    if rows:
        doc.add(Text("The run's own code (imports: and FILE.py:NAME references), with the copy the run keeps "
                     "(`--code stored` uses it when the file has changed or gone):"))
        doc.add(Table(["file", "sha256", "copy in the run"], rows, align="lll"))
    for obj in code.get("objects", []):
        doc.add(Notice([f"{obj.get('where')}: {obj.get('object') or obj.get('what')} ({obj.get('why', '')}); another "
                        "process cannot rebuild it: open the run from Python and pass it again"]))


def environment(doc: Doc, info: RunInfo) -> None:
    s = info.summary or {}
    doc.section("Environment", "environment")
    versions = s.get("versions") or {}
    rows = [[name, str(v)] for name, v in versions.items()]
    device = str(s.get("device", "n/a")) + (f" ({s['device_name']})" if s.get("device_name") else "")
    rows += [["device", device], ["engine", str(s.get("engine", "n/a"))], ["host", str(s.get("host", "n/a"))],
             ["git commit", str(s.get("git_commit") or "not recorded (not run from a git checkout)")],
             ["seed", str(s.get("seed", "n/a"))], ["wall time (training)", duration(s.get("wall_seconds"))]]
    doc.add(Table([], rows, align="ll"))
    if info.run.tensorboard_dir.is_dir():
        doc.add(Text(["TensorBoard event files: ", Mono(f"tensorboard --logdir {info.run.tensorboard_dir}")]))
