"""A run directory's config, resolved again with the code the run was trained with.

rundir.py is the file layer (it reads config.yaml as plain data); this module sits above the
registries and the user's code: it checks the run's user files against code.json (gone or
changed: one line, unless the code source says to use the stored copies or the current files,
cnnlab/usercode/record.py), then resolves the config exactly as training did. Every command that
reopens a run (evaluate, predict, resume, report, analyze, export) gets its config here.
"""

from __future__ import annotations

from cnnlab.config import Config
from cnnlab.errors import ConfigError, UserError
from cnnlab.resolve import resolve
from cnnlab.rundir import Run
from cnnlab.usercode.record import CodeSource, prepare


def run_config(run: Run, code: CodeSource | None = None) -> Config:
    """The run's resolved config; `code`: check (default), stored or current (see record.py)."""
    raw = run.config_raw()
    prepare(run.code_manifest(), run.path, code)
    try:
        return resolve(raw)
    except ConfigError as e:
        raise UserError(f"{run.config_file}: {e}") from None
