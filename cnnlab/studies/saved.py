"""A study read back from its folder alone (for `cnnlab report STUDY_DIR`): the plan rebuilt from
the study file named in study.json with the base config study.json recorded (the study's and the
command line's overrides already applied), and the results from its storage, read only.

Nothing is written and nothing is recomputed differently: the snapshot is results.snapshot(),
the same rows and table `cnnlab study` prints. When the study file is gone or has changed since
(the storage refuses the plan), `problem` says so and the caller shows the tables as written.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cnnlab.errors import UserError
from cnnlab.studies import STUDY_JSON


@dataclass
class SavedStudy:
    folder: Path
    meta: dict[str, Any]  # study.json
    plan: Any = None  # plan.Plan
    snap: Any = None  # results.Snapshot
    optuna_study: Any = None  # for a search's figures
    problem: str | None = None  # why plan/snap are None

    @property
    def name(self) -> str:
        return str(self.meta.get("name") or self.folder.name)

    def table_md(self) -> str | None:
        """The compact table as `cnnlab study` last wrote it."""
        from cnnlab.studies.results import TABLE_MD

        try:
            return (self.folder / TABLE_MD).read_text(encoding="utf-8")
        except OSError:
            return None


def is_study(folder: Path) -> bool:
    return (Path(folder) / STUDY_JSON).is_file()


def read_meta(folder: Path) -> dict[str, Any]:
    path = Path(folder) / STUDY_JSON
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise UserError(f"{path}: damaged JSON; run the study again (`cnnlab study FILE`) to rewrite it") from None
    if not isinstance(meta, dict):
        raise UserError(f"{path}: damaged (not a JSON object); run the study again to rewrite it")
    return meta


def read_study(folder: Path) -> SavedStudy:
    # Imported here: telling a study folder from a run needs none of Optuna, torch or the registries.
    from cnnlab.studies.plan import build_plan
    from cnnlab.studies.results import snapshot
    from cnnlab.studies.spec import load_study
    from cnnlab.studies.store import JOURNAL, Store, make_storage

    folder = Path(folder)
    out = SavedStudy(folder, read_meta(folder))
    meta = out.meta
    try:
        study = load_study(Path(str(meta["study_file"])))
        if isinstance(meta.get("base_config"), dict):
            study = dataclasses.replace(study, base_raw=meta["base_config"])
        plan = build_plan(study, check_data=False)  # a learning curve's data need not be here to read its results
        storage = str(meta.get("storage") or "")
        if "://" not in storage:  # a journal file: the folder's own (it may have moved), else the one recorded
            journal = folder / JOURNAL
            storage = str(journal if journal.exists() or not storage or not Path(storage).exists() else storage)
        backend = make_storage(storage, folder, create=False)
        if backend is None:
            raise UserError(f"{folder}: no results stored yet (no optuna-journal.log)")
        store = Store(backend, study.name, study.direction, plan.fingerprint, str(study.path), create=False)
        out.plan, out.snap, out.optuna_study = plan, snapshot(plan, store), store.study
    except (UserError, KeyError, ValueError) as e:  # ConfigError is a UserError; Optuna's missing study a KeyError
        out.problem = str(e).strip("'\"")
    return out
