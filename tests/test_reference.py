"""`cnnlab list` reads the registries (the user's own code too), and README.md's option tables are
exactly what it generates: a builder's new option, a changed default or docstring fails here until
`python -m cnnlab.reference README.md` is run."""

from __future__ import annotations

import textwrap

import pytest
from conftest import ROOT, write_config

from cnnlab import reference
from cnnlab.cli import main
from cnnlab.registries import KINDS, describe

pytestmark = pytest.mark.usefixtures("fresh_registries")


def test_the_readmes_tables_are_generated_from_the_registries():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = reference.BEGIN.findall(text)
    assert sorted(blocks) == sorted(KINDS), "every kind has its generated table in the README"
    assert reference.rewrite(text) == text, "README tables drifted: run `python -m cnnlab.reference README.md`"


def test_a_changed_default_shows_as_drift(monkeypatch):
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    from cnnlab.training import optim

    entry = optim.OPTIMIZERS.get("sgd")
    monkeypatch.setattr(entry, "_schema", None)
    monkeypatch.setattr(entry, "fn", lambda params, lr, momentum=0.5, nesterov=False, weight_decay=0.0,
                        dampening=0.0: None)
    assert reference.rewrite(text) != text


def test_list_shows_names_options_types_defaults_and_the_users_own(tmp_path, mnist_small, capsys):
    (tmp_path / "mine.py").write_text(textwrap.dedent('''
        import cnnlab
        from torch import nn

        @cnnlab.register_model("my_net")
        class MyNet(nn.Module):
            """A net of mine."""
            def __init__(self, num_classes: int, depth: int = 3, act: str = "relu"):
                super().__init__()
    '''))
    path = write_config(tmp_path / "c.yaml", {"format": "idx", "path": str(mnist_small)}, imports=["mine.py"])
    assert main(["list", "models", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "  my_net   [from mine.py]  A net of mine." in out and "      depth: int = 3" in out
    assert "  resnet  " in out and "(supplied by cnnlab: num_classes)" in out
    assert main(["list", "losses"]) == 0
    out = capsys.readouterr().out
    assert "label_smoothing: float = 0.0" in out and "my_net" not in out
    assert main(["list", "model"]) == 2
    assert "did you mean 'models'" in capsys.readouterr().err


def test_every_builtin_says_what_it_does():
    missing = [(kind, e["name"]) for kind in KINDS for e in describe(kind) if e["origin"] is None and not e["doc"]]
    assert missing == []
