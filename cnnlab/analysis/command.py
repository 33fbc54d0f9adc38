"""`cnnlab analyze RUN_DIR WHAT [--option VALUE ...]`: one registered analysis of a trained run.

The options are checked against the analysis's signature before the run or its data are
loaded, so a typo costs nothing and nothing is written; then the analysis writes its files
into RUN_DIR/analysis/WHAT/ and a summary.json of what it found and cost.
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import pydantic
import yaml

from cnnlab.errors import UserError
from cnnlab.registry import format_validation_error
from cnnlab.reopen import run_config
from cnnlab.rundir import Run
from cnnlab.usercode.imports import is_reference, split_reference


def know(run_dir: Path, what: str) -> str:
    """`what` as the registry knows it: a reference made absolute, or a name the run's own code
    registers (its imports: are loaded, which checks its files first); built-ins cost nothing."""
    from cnnlab.analysis.catalog import ANALYSES

    what = _absolute(what)
    if not is_reference(what) and what not in ANALYSES.names():
        run_config(Run(run_dir).check())
    return what


def folder_name(what: str) -> str:
    """Where an analysis's files go in RUN/analysis/: its name (a reference's function name)."""
    return split_reference(what)[1] if is_reference(what) else what


def _absolute(what: str) -> str:
    if is_reference(what) and not what.startswith("object:"):
        source, attr = split_reference(what)
        if source.endswith(".py"):
            return f"{Path(source).expanduser().resolve()}:{attr}"
    return what


def parse_options(args: list[str]) -> dict[str, Any]:
    """['--layer', 'conv1', '--grid=21'] -> {'layer': 'conv1', 'grid': '21'} (typed by check())."""
    options: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or len(arg) == 2:
            raise UserError(f"'{arg}': expected an option such as --layer NAME (see cnnlab analyze --help)")
        key, eq, text = arg[2:].partition("=")
        if not eq:
            if i + 1 >= len(args) or args[i + 1].startswith("--"):
                raise UserError(f"--{key}: needs a value, e.g. --{key} VALUE")
            text = args[i + 1]
            i += 1
        options[key.replace("-", "_")] = text
        i += 1
    return options


def _typed(text: Any, annotation: Any) -> Any:
    """A command-line value as its option's type: text for a str option (a layer named 0.4),
    else read as YAML (21, 1e-3, [a, b], true)."""
    if not isinstance(text, str):
        return text
    if annotation is str or str in typing.get_args(annotation):
        return text
    try:
        return yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        return text


def check(what: str, options: dict[str, Any]) -> dict[str, Any]:
    """The options with defaults filled in, or one line naming the bad --option."""
    from cnnlab.analysis.catalog import ANALYSES

    entry = ANALYSES.get(what, where="analyze")
    fields = entry.schema().model_fields
    options = {k: _typed(v, fields[k].annotation) if k in fields else v for k, v in options.items()}
    try:
        model = entry.schema().model_validate(options)
    except pydantic.ValidationError as e:
        known = entry.options()
        message = format_validation_error(e, "", known, what)
        for k in known:
            message = message.replace(f"'{k}'", f"'--{k.replace('_', '-')}'")
        message = message.replace("unknown key", "unknown option")
        key, _, rest = message.partition(":")
        raise UserError(f"--{key.replace('_', '-')}:{rest}") from None
    return model.model_dump()


def analyze(run_dir: Path, what: str, options: dict[str, Any], which: str = "best") -> tuple[list[str], Any]:
    """Run analysis `what` on the run; returns its findings (lines) and its Outputs. `what` may be
    the user's own: FILE.py:NAME (relative to the current folder), MODULE:NAME, or a name their
    code registers (the run's imports: are loaded first to know it)."""
    from cnnlab.analysis.catalog import ANALYSES

    what = know(run_dir, what)
    settings = check(what, options)
    Run(run_dir).check()
    from cnnlab.analysis.outputs import Outputs
    from cnnlab.analysis.subject import load

    subject = load(run_dir, which)
    out = Outputs(subject.run, folder_name(what))
    found = ANALYSES.build({"what": what, **settings}, subject=subject, out=out) or []
    out.json("report.json", {
        "analysis": what, "options": settings, "checkpoint": which, "epoch": subject.payload.get("epoch"),
        "findings": list(found), "forward_passes": out.forward_passes, "seconds": round(out.seconds(), 2),
        "files": [p.name for p in out.written if p.name != "report.json"],
    })
    return list(found), out
