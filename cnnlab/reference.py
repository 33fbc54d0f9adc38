"""`cnnlab list`: every registered name with its options, types and defaults, read from the
registries themselves (the user's own included when a config with `imports:` is given), as text
for the terminal or as Markdown tables. README.md's option tables are these tables: between
`<!-- cnnlab list KIND -->` and `<!-- end cnnlab list -->` they are generated (`python -m
cnnlab.reference README.md` rewrites them; tests/test_reference.py fails when they drift).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from cnnlab.registries import KINDS, describe
from cnnlab.usercode.imports import short

TITLES = {"models": "model.name", "formats": "data.format", "losses": "loss.name", "optimizers": "optim.name",
          "schedules": "schedule.name", "augment": "augment: ops", "callbacks": "callbacks:",
          "analyses": "cnnlab analyze RUN WHAT"}
BEGIN = re.compile(r"<!-- cnnlab list (\w+) -->\n.*?<!-- end cnnlab list -->", re.S)


def _value(v: Any) -> str:
    if isinstance(v, str):
        return repr(v) if v == "" else v
    if isinstance(v, tuple):
        v = list(v)
    return str(v).replace("'", "")


def option_text(o: dict[str, Any]) -> str:
    """'patience: int = 5', or 'size: int (required)'."""
    tail = " (required)" if o["required"] else f" = {_value(o['default'])}"
    return f"{o['name']}: {o['type']}{tail}"


def origin_text(e: dict[str, Any]) -> str:
    origin = e["origin"]
    if origin is None:
        return ""
    return "your code" if origin.startswith("<") else Path(origin).name


def text(kinds: list[str]) -> str:
    """The terminal listing."""
    lines = []
    for kind in kinds:
        lines.append(f"{kind} ({TITLES[kind]})")
        for e in describe(kind):
            source = origin_text(e)
            head = f"  {short(e['name'])}" + (f"   [from {source}]" if source and ':' not in e['name'] else "")
            lines.append(head + (f"  {e['doc']}" if e["doc"] else ""))
            for o in e["options"]:
                lines.append(f"      {option_text(o)}")
            if e["fixed"]:
                lines.append(f"      (set in Python only: {', '.join(e['fixed'])})")
            if e["context"]:
                lines.append(f"      (supplied by cnnlab: {', '.join(e['context'])})")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def markdown(kind: str, builtin_only: bool = True) -> str:
    """One kind as a Markdown table: name | options (type = default) | what it does."""
    rows = ["| name | options (type = default) | what |", "| --- | --- | --- |"]
    for e in describe(kind):
        if builtin_only and e["origin"] is not None:
            continue
        name = e["name"] + "NAME" if e["name"].endswith(":") else short(e["name"])
        options = "<br>".join(f"`{option_text(o)}`".replace("|", "\\|") for o in e["options"]) or "-"
        doc = e["doc"].replace("|", "\\|")
        rows.append(f"| `{name}` | {options} | {doc} |")
    return "\n".join(rows) + "\n"


def rewrite(text_in: str) -> str:
    """A document with every generated block regenerated."""
    def block(m: re.Match[str]) -> str:
        kind = m.group(1)
        if kind not in KINDS:
            raise ValueError(f"<!-- cnnlab list {kind} -->: unknown kind; use one of {', '.join(KINDS)}")
        return f"<!-- cnnlab list {kind} -->\n{markdown(kind)}<!-- end cnnlab list -->"

    return BEGIN.sub(block, text_in)


def main(argv: list[str]) -> int:
    """`python -m cnnlab.reference FILE...`: regenerate the tables in place."""
    from cnnlab.io import write_text

    for name in argv:
        path = Path(name)
        before = path.read_text(encoding="utf-8")
        after = rewrite(before)
        if after != before:
            write_text(path, after)
            print(f"{path}: tables regenerated")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
