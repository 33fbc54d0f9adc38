"""The rules the package is built by (docs/architecture.md), checked on its source.

- no import circle (top-level or function-local imports);
- a config is checked, every registry included, without importing torch;
- only rundir.py spells the names of a run directory's files;
- only engines.py picks an engine.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "cnnlab"


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """cnnlab modules `name` imports anywhere in its body (TYPE_CHECKING blocks left out)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and getattr(child.test, "id", "") == "TYPE_CHECKING":
                continue
            targets: list[str] = []
            if isinstance(child, ast.Import):
                targets = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                    base = ".".join(package[: len(package) - child.level + 1] + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in child.names]
            for t in targets:
                while t and t not in known:
                    t = t.rpartition(".")[0]
                if t and t != name:
                    found.add(t)
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


def test_no_import_circle():
    known = modules()
    graph = {m: imports_of(m, p, known) for m, p in known.items()}
    # A submodule's implicit import of its own package is not an edge: Python imports the
    # package first, and registries' __init__ files import their members by design.
    graph = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []
    sys.setrecursionlimit(10_000)

    def strongconnect(v: str) -> None:  # Tarjan
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            strongconnect(v)
    assert cycles == []


def test_every_preset_and_study_is_checked_without_torch():
    code = """
import sys, glob
from cnnlab.resolve import load_config
from cnnlab.studies.spec import load_study
from cnnlab.studies.plan import build_plan
for f in sorted(glob.glob('configs/*.yaml')):
    if 'finetune' not in f:  # pretrained weights: their metadata is read from timm (torch) once the checks pass
        load_config(f)
    else:  # ... so a typo there is still answered before torch
        try:
            load_config(f, ['model.pretraind=x'])
            print('TYPO ACCEPTED', f)
        except Exception as e:
            assert 'pretraind' in str(e), e
for f in sorted(glob.glob('configs/studies/*.yaml')):
    build_plan(load_study(f))
heavy = [m for m in ('torch', 'torchvision', 'sklearn', 'scipy.stats', 'matplotlib') if m in sys.modules]
print('HEAVY', heavy)
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "HEAVY []" in p.stdout and "TYPO ACCEPTED" not in p.stdout


RUN_FILES = ("config.yaml", "data.json", "metrics.jsonl", "summary.json", "curves.png", "traceback.txt",
             "best.pt", "last.pt", "best.npz", "last.npz", "heldout.npz")


def test_only_rundir_spells_run_directory_files():
    offenders = []
    for name, path in modules().items():
        if name == "cnnlab.rundir":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value in RUN_FILES \
                    and (name, node.value) != ("cnnlab.studies.figures", "curves.png"):  # the study folder's own figure
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value!r}")
            if isinstance(node, ast.JoinedStr):  # f"{which}.pt", f"eval-{split}-..."
                text = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
                if text in (".pt", ".npz") or text.startswith(("eval-", "confusion-")):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} f-string {text!r}")
    assert offenders == []


def test_only_engines_picks_an_engine():
    offenders = []
    for name, path in modules().items():
        if name == "cnnlab.training.engines":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare) and any(
                    isinstance(c, ast.Constant) and c.value in ("torch", "scratch") for c in node.comparators) and \
                    "engine" in ast.unparse(node.left):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {ast.unparse(node)}")
    assert offenders == []


def test_both_engines_implement_the_seam():
    from cnnlab.training.engine import Engine, EngineType
    from cnnlab.training.engines import ENGINES

    wanted = [n for n in vars(Engine) if not n.startswith("_")] + [n for n in vars(EngineType) if not n.startswith("_")]
    wanted += list(Engine.__annotations__)
    for name, cls in ENGINES.items():
        missing = [w for w in wanted if not hasattr(cls, w) and w not in ("eval_tag",)]
        assert missing == [], (name, missing)


# Layers, lowest first: a module may import its own layer and those below, never one above.
LAYERS = [
    ("base", ("cnnlab.errors", "cnnlab.io", "cnnlab.lazy", "cnnlab.config", "cnnlab.lease", "cnnlab.checkpoints",
              "cnnlab.usercode", "cnnlab.registry", "cnnlab.callbacks", "cnnlab.rundir", "cnnlab.device",
              "cnnlab.distributed", "cnnlab.progressbar", "cnnlab.scratch")),
    ("builders", ("cnnlab.data", "cnnlab.models", "cnnlab.plots")),
    ("training", ("cnnlab.training", "cnnlab.resolve", "cnnlab.reopen", "cnnlab.registries", "cnnlab.reference")),
    ("readers", ("cnnlab.evaluate", "cnnlab.calibrate", "cnnlab.predict", "cnnlab.export", "cnnlab.analysis",
                 "cnnlab.audit")),
    ("above", ("cnnlab.studies", "cnnlab.reports", "cnnlab.api", "cnnlab.cli", "cnnlab.cli_tools", "cnnlab.__main__")),
]


def layer_of(module: str) -> int | None:
    for i, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return i
    return None


def test_data_flows_one_way():
    """No arrow from a lower layer to a higher one: figures (plots/) sit below training/ and analysis/;
    rundir.py, the file layer, resolves nothing; training never imports analysis, reports or studies."""
    known = modules()
    offenders = []
    for name, path in known.items():
        here = layer_of(name)
        if here is None:
            continue
        for target in imports_of(name, path, known):
            there = layer_of(target)
            if there is not None and there > here and not name.startswith(target + "."):
                offenders.append(f"{name} ({LAYERS[here][0]}) imports {target} ({LAYERS[there][0]})")
    assert offenders == []


def test_every_module_has_a_layer():
    assert [m for m in modules() if m != "cnnlab" and layer_of(m) is None] == []


def test_every_command_reopens_a_run_through_open_run():
    """Only cnnlab/reopen.py checks a run's code, resolves its config and loads its trained network
    (evaluate, predict, export, resume, the analyses and the API's Run all call open_run)."""
    offenders = []
    for name, path in modules().items():
        if name in ("cnnlab.reopen", "cnnlab.usercode.record") or name.startswith("cnnlab.training.") and \
                name.endswith(("engine", "engines")):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                method = node.func.attr if isinstance(node.func, ast.Attribute) else ""
                function = getattr(node.func, "id", "")  # record.prepare, imported by name
                if method in ("inference_model", "torch_model") or function == "prepare":
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {method or function}()")
    assert offenders == []
    for reader in ("evaluate", "calibrate", "predict", "export", "analysis.subject", "training.runner", "api.run"):
        assert "open_run" in (PACKAGE / (reader.replace(".", "/") + ".py")).read_text(), reader
