"""Importing the user's own code: Python files and modules named by `imports:`, and references
such as `nets.py:TinyVGG` or `mypkg.nets:TinyVGG` wherever a registry name is accepted.

A file is imported under a private module name derived from its absolute path, so two files
called `nets.py` in different folders never clash, and importing it again is free while it is
unchanged. A file edited since it was imported (a notebook user changing their net) is imported
afresh, and what its old version registered is forgotten first (registry.forget_file). Modules
its import pulls in from its own folder (`from blocks import Block` beside nets.py) are the
user's code too: they are recorded with it (record.py) and their frames shown in tracebacks.

`substitute` maps a file to a stored copy (a run's code/ folder, `--code stored`): the copy is
executed under the original's module name, so references written against the original resolve.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from cnnlab.errors import ConfigError, UserError, suggest
from cnnlab.usercode import live
from cnnlab.usercode.blame import add_user_file, user_code_error
from cnnlab.usercode.live import (
    OBJECT,  # an object handed to the Python API (live.py): never importable later
)

# "file.py:Name" (any path ending in .py) or "dotted.module:Name", Name possibly dotted (Outer.Inner).
_REFERENCE = re.compile(r"^(?P<source>.+\.py|[A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)*):(?P<attr>[A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)*)$")

MAIN = "__main__"  # a notebook's or script's own namespace


@dataclass
class Loaded:
    """One user file or module as imported in this process."""

    kind: str  # "file" or "module"
    name: str  # the key in sys.modules
    path: str | None  # the file as the config names it (absolute); a module's own file
    source: str | None  # the file executed: `path`, or a stored copy standing in for it
    sha256: str | None
    helpers: list[Loaded] = field(default_factory=list)  # modules from the file's folder it imported


_FILES: dict[str, Loaded] = {}  # absolute path -> the file's import
_MODULES: dict[str, Loaded] = {}  # module name -> its import (imports: of a module name)
_SUBSTITUTES: dict[str, Path] = {}  # absolute path -> the stored copy executed in its place


def sha256_of(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def is_reference(name: Any) -> bool:
    """Whether a selector value names user code rather than a registered name."""
    return isinstance(name, str) and (name.startswith(OBJECT) or _REFERENCE.match(name) is not None)


def split_reference(ref: str) -> tuple[str, str]:
    """('nets.py' or 'mypkg.nets', 'TinyVGG') of 'nets.py:TinyVGG'."""
    m = _REFERENCE.match(ref)
    if m is None:
        raise ConfigError(f"'{ref}': not a reference; write FILE.py:NAME or MODULE:NAME")
    return m.group("source"), m.group("attr")


def is_file_source(source: str) -> bool:
    return source.endswith(".py")


def short(ref: str) -> str:
    """A reference as people read it: the file's name, not its whole path."""
    if not is_reference(ref) or ref.startswith(OBJECT):
        return ref
    source, attr = split_reference(ref)
    return f"{Path(source).name}:{attr}" if is_file_source(source) else ref


# ----------------------------------------------------------------------------- substitutes


def use_copies(copies: dict[str, Path]) -> None:
    """Execute these stored copies in place of the files they were taken from (`--code stored`)."""
    for original, copy in copies.items():
        # import_file runs the copy when next asked for the original (unless what it imported already
        # is that very code: the same SHA-256), forgetting what the other version registered.
        _SUBSTITUTES[original] = copy


def clear_copies() -> None:
    """Back to the files themselves (a new training run, or a run reopened with --code check or
    current): a file imported from a copy is imported again from the file if their code differs."""
    _SUBSTITUTES.clear()


def substitute_of(path: str) -> Path | None:
    return _SUBSTITUTES.get(path)


# ----------------------------------------------------------------------------- importing


def import_file(path: str | Path, where: str) -> ModuleType:
    """The module of a user .py file (absolute path), imported now unless it is already, unchanged."""
    path = str(Path(path).expanduser().resolve())
    source = _SUBSTITUTES.get(path, Path(path))
    if not Path(source).is_file():
        hint = "" if Path(path).parent.is_dir() else f" (nor its folder {Path(path).parent})"
        raise ConfigError(f"{where}: {path}: no such file{hint}; paths in a config are relative to the config file")
    digest = sha256_of(source)
    done = _FILES.get(path)
    if done is not None and done.sha256 == digest and done.name in sys.modules:
        return sys.modules[done.name]
    name = module_name(path)
    if done is not None:
        forget(done)
    before = set(sys.modules)
    folder = str(Path(path).parent)
    if folder not in sys.path:
        sys.path.append(folder)  # `import helpers` beside the file works, as it does for a script there
    spec = importlib.util.spec_from_file_location(name, source)
    if spec is None or spec.loader is None:
        raise ConfigError(f"{where}: {path}: cannot be imported as Python source")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # before running it: dataclasses and pickling look classes up there
    add_user_file(str(source))
    try:
        spec.loader.exec_module(module)
    except UserError as e:  # e.g. two imports registering one name: cnnlab's own words
        _undo(name, str(source), before)
        raise ConfigError(f"{where}: {path}: {e}") from None
    except BaseException as e:
        _undo(name, str(source), before)
        if isinstance(e, KeyboardInterrupt):
            raise
        raise user_code_error(e, f"{where}: {path} failed to import") from None
    helpers = [_helper(m, folder) for m in set(sys.modules) - before - {name}]
    _FILES[path] = Loaded("file", name, path, str(source), digest, [h for h in helpers if h is not None])
    return module


def import_module(name: str, where: str) -> ModuleType:
    """An importable module the config names (imports: [mypkg.nets], or mypkg.nets:TinyVGG)."""
    if name == MAIN:
        return sys.modules[MAIN]
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name is not None and (name == e.name or name.startswith(e.name + ".")):
            raise ConfigError(f"{where}: no module named '{name}'; install it, put its folder on PYTHONPATH, "
                              "or name a file instead (imports: [path/to/file.py])") from None
        raise user_code_error(e, f"{where}: module {name} failed to import") from None
    except UserError as e:
        raise ConfigError(f"{where}: module {name}: {e}") from None
    except Exception as e:
        raise user_code_error(e, f"{where}: module {name} failed to import") from None
    file = getattr(module, "__file__", None)
    if name not in _MODULES:
        if file:
            add_user_file(file)
        _MODULES[name] = Loaded("module", name, file, file, sha256_of(file) if file and Path(file).is_file() else None)
    return module


def module_name(path: str) -> str:
    """The private sys.modules name of a user file: its stem and a digest of its absolute path."""
    stem = re.sub(r"\W", "_", Path(path).stem)
    return f"cnnlab_user_{stem}_{hashlib.sha1(path.encode()).hexdigest()[:10]}"


def _helper(name: str, folder: str) -> Loaded | None:
    """A module a user file imported from its own folder (or below it): user code as well."""
    file = getattr(sys.modules.get(name), "__file__", None)
    if not isinstance(file, str) or not Path(file).is_absolute() or not Path(file).is_file():
        return None  # a built-in, a namespace package, or a library's odd __file__ (torch._classes)
    if not str(Path(file).resolve()).startswith(folder.rstrip("/") + "/") or "site-packages" in file:
        return None
    add_user_file(file)
    return Loaded("helper", name, str(Path(file).resolve()), file, sha256_of(file))


_FORGET: list[Any] = []  # called with a file's path when what it defined must be forgotten (registry.py)


def on_forget(fn: Any) -> None:
    """Have `fn(path)` called whenever a user file is dropped (edited and imported again, or failed):
    the registries forget the names it registered. (They sit above this module: it cannot call them.)"""
    _FORGET.append(fn)


def _forget_file(path: str) -> None:
    for fn in _FORGET:
        fn(path)


def _undo(name: str, source: str, before: set[str]) -> None:
    """A file that failed to import leaves nothing behind: no module, no registered names."""
    for m in set(sys.modules) - before:
        sys.modules.pop(m, None)
    _forget_file(source)


def forget(done: Loaded) -> None:
    """Drop an import (an edited file about to be imported again) and what it registered."""
    sys.modules.pop(done.name, None)
    if done.source:
        _forget_file(done.source)
    for h in done.helpers:  # an edited helper must be read again too
        sys.modules.pop(h.name, None)
    _FILES.pop(done.path or "", None)


def loaded_file(path: str) -> Loaded | None:
    return _FILES.get(str(Path(path).expanduser().resolve()))


def loaded_module(name: str) -> Loaded | None:
    return _MODULES.get(name)


# ----------------------------------------------------------------------------- references


def import_entry(entry: str, where: str) -> ModuleType:
    """One item of `imports:`: a .py file (absolute by now) or a module name."""
    if not isinstance(entry, str) or not entry.strip():
        raise ConfigError(f"{where}: expected a .py file or a module name, got {entry!r}")
    if entry.endswith(".py") or "/" in entry or "\\" in entry:
        return import_file(entry, where)
    if not re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*", entry):
        raise ConfigError(f"{where}: '{entry}' is neither a .py file nor a module name (such as mypkg.nets)")
    return import_module(entry, where)


def resolve_reference(ref: str, where: str) -> Any:
    """The class or function a reference names, importing its file or module first."""
    if ref.startswith(OBJECT) or live.bound(ref):
        return live.lookup(ref, where)
    source, attr = split_reference(ref)
    if is_file_source(source):
        module = import_file(source, where)
        label = Path(source).name
    else:
        module = import_module(source, where)
        label = source
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            if source == MAIN:
                raise ConfigError(
                    f"{where}: '{ref}' was defined in a notebook or in a script run as __main__, which a new process "
                    "cannot import; open the run from Python and pass the object again (e.g. "
                    "cnnlab.Run(path).model(model=TinyVGG)), or move it into a file and name it in imports:")
            names = [n for n in dir(obj) if not n.startswith("_")]
            raise ConfigError(f"{where}: {label} defines no '{part}'{suggest(part, names)}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"{where}: {short(ref)} is a {type(obj).__name__}, not a class or function")
    return obj


def reference_to(obj: Any) -> str | None:
    """The reference that imports `obj` again in another process, or None when nothing can (a
    nested or local class, a lambda). A class defined in a notebook cell or a script's __main__
    gets '__main__:Name', which only resolves in this process; one from a file of the user's
    (imported as `import nets`) gets the file's absolute path, so any process finds it."""
    module = getattr(obj, "__module__", None)
    qual = getattr(obj, "__qualname__", None)
    if not module or not qual or "<locals>" in qual or "<lambda>" in qual:
        return None
    for loaded in _FILES.values():
        if loaded.name == module and loaded.path:
            return f"{loaded.path}:{qual}"
    file = getattr(sys.modules.get(module), "__file__", None)
    if module != MAIN and _is_users_file(file):
        return f"{Path(file).resolve()}:{qual}"  # type: ignore[arg-type]
    return f"{module}:{qual}"


def adopt(obj: Any) -> None:
    """The module that defined obj, imported by the user (`import nets`), stands as the import of its
    file: naming the file later finds these very classes instead of executing the file again."""
    module = sys.modules.get(getattr(obj, "__module__", "") or "")
    file = getattr(module, "__file__", None)
    if module is None or module.__name__ == MAIN or not _is_users_file(file):
        return
    path = str(Path(file).resolve())  # type: ignore[arg-type]
    done = _FILES.get(path)
    digest = sha256_of(path)
    if done is None or done.sha256 != digest:
        add_user_file(path)
        _FILES[path] = Loaded("file", module.__name__, path, path, digest)


def _is_users_file(file: Any) -> bool:
    """A .py file that is neither an installed library's nor cnnlab's own."""
    if not isinstance(file, str) or not file.endswith(".py") or not Path(file).is_file():
        return False
    resolved = str(Path(file).resolve())
    package = str(Path(__file__).resolve().parents[1])
    return "site-packages" not in resolved and "dist-packages" not in resolved and not resolved.startswith(package) \
        and not resolved.startswith(sys.base_prefix) and not resolved.startswith(sys.prefix)
