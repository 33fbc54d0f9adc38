"""A misspelt option of the user's own class or function, answered before their file runs.

A user's file usually imports torch (seconds); reading its syntax tree takes milliseconds. For
`model: {name: nets.py:TinyVGG, widht: 32}` the parameter names of TinyVGG's __init__ are read
from nets.py without executing it, and a key that is none of them (and no **kwargs takes) is the
same one line the full check gives, "did you mean" included. Anything this cannot see (a class
without its own __init__, a name built at run time) is left to the full check, after the import.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from cnnlab.config import OPEN_SECTIONS, SELECTORS
from cnnlab.errors import ConfigError, suggest
from cnnlab.usercode.imports import is_file_source, is_reference, short, split_reference

_TREES: dict[tuple[str, float], ast.Module | None] = {}


def check_option_names(raw: dict[str, Any]) -> None:
    """Every section and op naming a FILE.py:NAME: its keys against NAME's parameters (see above)."""
    for section, key in SELECTORS.items():
        node = raw.get(section)
        if isinstance(node, dict) and is_reference(node.get(key)):
            fixed = set(OPEN_SECTIONS[section].model_fields)
            _check(node[key], {k for k in node if k not in fixed}, section)
    for where in ("augment", "callbacks"):
        items = raw.get(where)
        for i, item in enumerate(items if isinstance(items, list) else []):
            if isinstance(item, dict) and "name" in item and is_reference(item["name"]):
                _check(item["name"], set(item) - {"name"}, f"{where}[{i}]")
            elif isinstance(item, dict) and len(item) == 1:
                (name, opts), = item.items()
                if is_reference(name) and isinstance(opts, dict):
                    _check(name, set(opts), f"{where}[{i}]")


def _check(ref: str, keys: set[str], where: str) -> None:
    if not keys or ref.startswith("object:"):
        return
    source, attr = split_reference(ref)
    if not is_file_source(source) or "." in attr:
        return
    params = parameters(Path(source), attr)
    if params is None:
        return
    unknown = sorted(k for k in keys if k not in params)
    if unknown:
        hint = suggest(unknown[0], sorted(params))
        if hint:
            hint = f" (did you mean '{where}.{hint.split(chr(39))[1]}'?)"
        raise ConfigError(f"{where}.{unknown[0]}: unknown key for {short(ref)}{hint}")


def parameters(path: Path, name: str) -> set[str] | None:
    """The parameter names of top-level function `name`, or of class `name`'s own __init__ (self left
    out), read from the file's syntax; None when they cannot be known that way (**kwargs, no
    __init__ of its own, not found, not parseable: the full check will say)."""
    tree = _tree(path)
    if tree is None:
        return None
    node = next((n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name == name), None)
    if isinstance(node, ast.ClassDef):
        init = next((n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
        if init is None or node.decorator_list:  # inherited __init__, or a dataclass-style decorator
            return None
        args, drop_first = init.args, True
    elif isinstance(node, ast.FunctionDef):
        if node.decorator_list and not all(_is_register(d) for d in node.decorator_list):
            return None  # a decorator may change the signature
        args, drop_first = node.args, False
    else:
        return None
    if args.kwarg is not None:
        return None
    names = [a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]]
    return set(names[1:] if drop_first else names)


def _is_register(decorator: ast.expr) -> bool:
    """`@cnnlab.register_model("x")` and the like leave the function as it is."""
    func = decorator.func if isinstance(decorator, ast.Call) else decorator
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    return name.startswith("register")


def _tree(path: Path) -> ast.Module | None:
    try:
        key = (str(path), path.stat().st_mtime)
    except OSError:
        return None
    if key not in _TREES:
        try:
            _TREES[key] = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
            _TREES[key] = None  # importing it will say what is wrong, with the user's line
    return _TREES[key]
