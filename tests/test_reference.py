"""`cnnlab list` reads the registries (the user's own code too), and docs/reference.md is exactly what
cnnlab.reference generates from the config schema and the registries: a new config key or builder
option, a changed default or docstring fails here until `python -m cnnlab.reference` is run."""

from __future__ import annotations

import textwrap

import pytest
from conftest import ROOT, write_config

from cnnlab import reference
from cnnlab.cli import main
from cnnlab.registries import KINDS, describe

pytestmark = pytest.mark.usefixtures("fresh_registries")


def test_the_reference_is_generated_from_the_schema_and_the_registries():
    text = (ROOT / "docs" / "reference.md").read_text(encoding="utf-8")
    assert text == reference.document(), "docs/reference.md drifted: run `python -m cnnlab.reference`"
    for kind in KINDS:
        assert f'<a id="{kind}"></a>' in text
    assert "| `train.checkpoint_every` | `int \\| None` | `null` | Also save last.pt every N optimizer steps" in text
    assert "| `sgd` | `momentum: float = 0.0`" in text


def test_every_config_key_says_what_it_does():
    assert reference.undocumented() == []


def test_a_changed_default_shows_as_drift(monkeypatch):
    text = reference.document()
    from cnnlab.training import optim

    entry = optim.OPTIMIZERS.get("sgd")
    monkeypatch.setattr(entry, "_schema", None)
    monkeypatch.setattr(entry, "fn", lambda params, lr, momentum=0.5, nesterov=False, weight_decay=0.0,
                        dampening=0.0: None)
    assert reference.document() != text


def test_a_changed_config_key_shows_as_drift(monkeypatch):
    from cnnlab.config import TrainConfig

    text = reference.document()
    monkeypatch.setattr(TrainConfig.model_fields["epochs"], "description", "Something else.")
    assert reference.document() != text


def test_every_guide_links_to_files_that_exist():
    import re

    broken = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text(encoding="utf-8")):
            if "://" not in target and not (doc.parent / target).exists():
                broken.append(f"{doc.name}: {target}")
    assert broken == []


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
