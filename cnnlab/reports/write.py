"""What `cnnlab report` and `cnnlab compare` call: check the input and the output place first,
build the document, render it, and write it atomically (a failure leaves no half-written file)."""

from __future__ import annotations

from pathlib import Path

from cnnlab.errors import UserError
from cnnlab.io import writable_file, write_text
from cnnlab.reports.doc import Doc
from cnnlab.rundir import Run

FORMATS = ("html", "md")
STUDY_REPORT = {"html": "report.html", "md": "report.md"}  # a study folder's, beside its table.md
COMPARE = {"html": "compare.html", "md": "compare.md"}  # in the current folder


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise UserError(f"--format: '{fmt}' is not one of {', '.join(FORMATS)}")


def report(target: Path, out: Path | None = None, fmt: str = "html", evaluate: bool = True) -> Path:
    """A run's or a study's report; returns the file written."""
    from cnnlab.studies.saved import (
        is_study,  # light: the heavy study modules load only for a study
    )

    check_format(fmt)
    target = Path(target)
    if not target.is_dir():
        raise UserError(f"{target}: no such folder; give a run directory or a study folder")
    run = Run(target)
    if run.is_run():
        path = writable_file(out or run.report_path(fmt), "--out")
        from cnnlab.reports import run as run_report

        doc = run_report.build(target, evaluate=evaluate)
    elif is_study(target):
        path = writable_file(out or target / STUDY_REPORT[fmt], "--out")
        from cnnlab.reports import study

        doc = study.build(target)
    else:
        raise UserError(f"{target}: neither a run directory (no config.yaml) nor a study folder (no study.json); "
                        "give a folder that `cnnlab train` or `cnnlab study` printed")
    return save(doc, path, fmt)


def compare(run_dirs: list[Path], out: Path | None = None, fmt: str = "html") -> Path:
    check_format(fmt)
    for d in run_dirs:
        if not Run(d).is_run():
            raise UserError(f"{d}: not a run directory (no config.yaml); give folders that `cnnlab train` printed")
    path = writable_file(out or Path(COMPARE[fmt]), "--out")
    from cnnlab.reports import compare as compare_report

    return save(compare_report.build(list(run_dirs)), path, fmt)


def save(doc: Doc, path: Path, fmt: str) -> Path:
    if fmt == "html":
        from cnnlab.reports import html

        write_text(path, html.render(doc))
        return path
    from cnnlab.io import atomic_path
    from cnnlab.reports import markdown

    folder = f"{path.stem}_files"
    text, files = markdown.render(doc, folder)
    for name, data in files.items():  # the figures first: the Markdown never points at a missing one
        with atomic_path(path.parent / folder / name) as tmp:
            tmp.write_bytes(data)
    write_text(path, text)
    return path
