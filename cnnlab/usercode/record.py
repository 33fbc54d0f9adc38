"""What user code a run used, as its run directory records it, and importing it again.

A run's code.json lists every user file (its absolute path, SHA-256 and the copy kept in the
run's code/ folder, with the helper modules it imported from its folder), every module named by
`imports:` or a reference, and every object handed over from Python that no later process can
import. A command that reopens the run (evaluate, predict, resume, report, analyze, export)
checks the files first: one that is gone or changed since is one line saying which, unless
`--code stored` (execute the copies) or `--code current` (the files as they are now) says what
to do about it.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any, Literal

from cnnlab.config import SELECTORS
from cnnlab.errors import UserError
from cnnlab.usercode import imports
from cnnlab.usercode.blame import add_user_file
from cnnlab.usercode.live import is_live

CodeSource = Literal["check", "stored", "current"]
_POLICY: list[CodeSource] = ["check"]  # the process's choice (--code on the command line)


def set_policy(policy: CodeSource) -> None:
    if policy not in ("check", "stored", "current"):
        raise UserError(f"--code: '{policy}' is not one of check, stored, current")
    _POLICY[0] = policy


def policy() -> CodeSource:
    return _POLICY[0]


def references(cfg: Any) -> list[tuple[str, str]]:
    """(where, reference) of every user-code reference in a resolved config."""
    found = []
    for section, key in SELECTORS.items():
        value = getattr(getattr(cfg, section), key)
        if imports.is_reference(value):
            found.append((f"{section}.{key}", value))

    def ops(items: list[dict[str, Any]], where: str) -> None:
        for i, op in enumerate(items):
            if imports.is_reference(op.get("name")):
                found.append((f"{where}[{i}]", op["name"]))
            if isinstance(op.get("ops"), list):
                ops(op["ops"], f"{where}[{i}].ops")

    ops(cfg.augment, "augment")
    ops(cfg.callbacks, "callbacks")
    return found


def snapshot(cfg: Any, objects: dict[str, str] | None = None) -> dict[str, Any]:
    """code.json for a run of `cfg`: the files, modules and objects it uses (all imported by now).
    `objects`: where -> what, for things passed from Python that the config does not name."""
    files: dict[str, imports.Loaded] = {}
    modules: dict[str, imports.Loaded] = {}
    live: list[dict[str, str]] = []

    def add_source(source: str, where: str, ref: str | None = None) -> None:
        if imports.is_file_source(source):
            loaded = imports.loaded_file(source)
            if loaded is not None:
                files[loaded.path or source] = loaded
        elif source == imports.MAIN:
            live.append({"where": where, "what": ref or source, "why": "defined in a notebook or a script's __main__"})
        else:
            loaded = imports.loaded_module(source) or _module_record(source)
            if loaded is not None and _is_users(loaded):
                modules[source] = loaded

    for i, entry in enumerate(cfg.imports):
        add_source(entry, f"imports[{i}]")
    for where, ref in references(cfg):
        if is_live(ref):
            live.append({"where": where, "what": ref, "why": "an object passed from Python"})
        else:
            add_source(imports.split_reference(ref)[0], where, ref)
    said = {e["where"]: e for e in live}
    for where, what in (objects or {}).items():  # what the API knows of them: their type
        if where in said:
            said[where]["object"] = what
        else:
            live.append({"where": where, "what": what, "why": "an object passed from Python"})
    return {
        "files": [_file_entry(x) for x in files.values()],
        "modules": [_file_entry(x) for x in modules.values()],
        "objects": live,
    }


def _module_record(name: str) -> imports.Loaded | None:
    module = sys.modules.get(name)
    file = getattr(module, "__file__", None)
    if not file or not Path(file).is_file():
        return None
    return imports.Loaded("module", name, file, file, imports.sha256_of(file))


def _is_users(loaded: imports.Loaded) -> bool:
    """A module the user wrote, not an installed library's (site-packages) or cnnlab's own."""
    path = loaded.path or ""
    return bool(path) and "site-packages" not in path and "dist-packages" not in path \
        and not path.startswith(str(Path(__file__).resolve().parents[1]))


def _file_entry(x: imports.Loaded) -> dict[str, Any]:
    name = Path(x.path or x.name).name
    entry: dict[str, Any] = {"path": x.path, "module": x.name, "sha256": x.sha256,
                             "copy": f"code/{(x.sha256 or 'none')[:12]}/{name}"}
    if x.helpers:
        entry["helpers"] = [_file_entry(h) for h in sorted(x.helpers, key=lambda h: h.name)]
    return entry


def copies(manifest: dict[str, Any]) -> dict[str, str]:
    """copy (relative to the run) -> the file to copy there, for every file and helper."""
    out: dict[str, str] = {}
    for entry in [*manifest.get("files", []), *manifest.get("modules", [])]:
        for e in [entry, *entry.get("helpers", [])]:
            source = imports.substitute_of(e["path"]) if e.get("path") else None
            if e.get("path"):
                out[e["copy"]] = str(source or e["path"])
    return out


def fingerprint(manifest: dict[str, Any]) -> list[tuple[str, str]]:
    """(path, sha256) of every file: two runs used the same code when these are equal."""
    pairs = []
    for entry in [*manifest.get("files", []), *manifest.get("modules", [])]:
        for e in [entry, *entry.get("helpers", [])]:
            pairs.append((str(e.get("path")), str(e.get("sha256"))))
    return sorted(pairs)


# ----------------------------------------------------------------------------- reopening a run


def prepare(manifest: dict[str, Any] | None, run_path: Path, source: CodeSource | None = None) -> None:
    """Before a run's config is resolved again: check its files (or arrange for the stored
    copies to be used) so that the code imported is the code it ran, or one line says why not."""
    source = source or policy()
    if source != "stored":
        imports.clear_copies()  # a copy another run asked for earlier in this process is not this one's code
    if not manifest:
        return
    entries = [*manifest.get("files", []), *manifest.get("modules", [])]
    if source == "current":
        return
    if source == "stored":
        _use_stored(entries, run_path)
        return
    for entry in entries:
        for e in [entry, *entry.get("helpers", [])]:
            problem = _problem(e)
            if problem is not None:
                raise UserError(
                    f"{run_path}: {problem}; run it with --code stored to use the copy it kept "
                    f"({run_path / e['copy']}), or --code current to use the file as it is now "
                    "(Python: cnnlab.Run(path, code='stored'|'current'))")


def _problem(e: dict[str, Any]) -> str | None:
    path = e.get("path")
    if not path:
        return None
    if not Path(path).is_file():
        return f"{path}, user code this run was trained with, is gone"
    now = imports.sha256_of(path)
    if now != e.get("sha256"):
        return (f"{path} changed since this run was trained (sha256 {str(e.get('sha256'))[:12]} then, "
                f"{now[:12]} now)")
    return None


def _use_stored(entries: list[dict[str, Any]], run_path: Path) -> None:
    for entry in entries:
        copy = run_path / entry["copy"]
        if not copy.is_file():
            raise UserError(f"{copy}: missing; this run's stored copy of {entry['path']} is gone, so --code stored "
                            "cannot use it (try --code current)")
        for helper in entry.get("helpers", []):  # `import blocks` inside nets.py finds the stored blocks.py
            h = run_path / helper["copy"]
            if h.is_file() and helper["module"] not in sys.modules:
                _load_as(helper["module"], h)
        if entry["module"].startswith("cnnlab_user_"):
            imports.use_copies({entry["path"]: copy})
        elif entry["module"] not in sys.modules:
            _load_as(entry["module"], copy)


def _load_as(name: str, path: Path) -> None:
    """Execute a stored copy as module `name`."""
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UserError(f"{path}: cannot be imported as Python source")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    add_user_file(str(path))
    spec.loader.exec_module(module)
