"""The user's own code in a config: `imports:`, FILE.py:NAME and MODULE:NAME references, validated
from the signature exactly like a built-in; paths relative to the config; edited files imported
again; two files registering one name refused. (No training here: tests/test_user_code_runs.py.)"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from cnnlab.errors import ConfigError, UserError
from cnnlab.models import MODELS, build_model
from cnnlab.resolve import load_config, resolve
from cnnlab.usercode.blame import UserCodeError

NETS = '''
import torch
from torch import nn

import cnnlab


class TinyNet(nn.Module):
    """A net of my own."""

    def __init__(self, num_classes: int, in_channels: int = 1, width: int = 8, act: str = "relu"):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, width, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.fc(self.pool(torch.relu(self.conv(x))).flatten(1))


@cnnlab.register_model("tiny_registered")
def tiny(num_classes: int, input_shape: tuple, width: int = 4):
    """Registered by name."""
    return TinyNet(num_classes, input_shape[0], width)
'''


pytestmark = pytest.mark.usefixtures("fresh_registries")


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def config(folder: Path, **sections) -> Path:
    cfg = {"data": {"format": "idx", "path": str(folder)}, "model": {"name": "cnn"}, **sections}
    path = folder / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_a_class_in_a_file_is_validated_from_its_signature(tmp_path):
    write(tmp_path / "code", "nets.py", NETS)
    path = config(tmp_path / "code", model={"name": "nets.py:TinyNet", "width": 16})
    cfg = load_config(path)
    assert cfg.model.name == f"{tmp_path / 'code' / 'nets.py'}:TinyNet"  # absolute: any later process finds it
    assert cfg.model.model_dump()["width"] == 16 and cfg.model.model_dump()["act"] == "relu"  # defaults resolved
    assert "num_classes" not in cfg.model.model_dump()  # cnnlab supplies it
    net = build_model(cfg.model, (1, 28, 28), 10)
    assert net.fc.out_features == 10 and net.conv.out_channels == 16
    with pytest.raises(ConfigError, match=r"model\.widht: unknown key for nets\.py:TinyNet \(did you mean 'model\.width'\?\)"):
        load_config(path, ["model.widht=3"])
    with pytest.raises(ConfigError, match=r"model\.width: Input should be a valid integer"):
        load_config(path, ["model.width=wide"])
    with pytest.raises(ConfigError, match="model.num_classes: cnnlab supplies num_classes"):
        load_config(path, ["model.num_classes=3"])


def test_imports_register_names_known_to_every_command(tmp_path):
    write(tmp_path / "code", "nets.py", NETS)
    path = config(tmp_path / "code", imports=["nets.py"], model={"name": "tiny_registered"})
    cfg = load_config(path)
    assert cfg.imports == [str(tmp_path / "code" / "nets.py")] and cfg.model.model_dump()["width"] == 4
    assert build_model(cfg.model, (3, 8, 8), 5).conv.in_channels == 3  # input_shape supplied by name
    # The config file's folder, not the current one, anchors relative paths.
    assert Path.cwd() != tmp_path / "code"
    with pytest.raises(ConfigError, match="unknown model 'tiny_registerd' \\(did you mean 'tiny_registered'\\?\\)"):
        load_config(path, ["model.name=tiny_registerd"])


def test_a_module_name_works_like_a_file(tmp_path, monkeypatch):
    write(tmp_path / "pkg" / "mynets", "__init__.py", "")
    write(tmp_path / "pkg" / "mynets", "zoo.py", NETS)
    monkeypatch.syspath_prepend(str(tmp_path / "pkg"))
    cfg = resolve({"imports": ["mynets.zoo"], "data": {"format": "idx", "path": "x"},
                   "model": {"name": "mynets.zoo:TinyNet", "width": 2}})
    assert cfg.model.name == "mynets.zoo:TinyNet"
    with pytest.raises(ConfigError, match="imports\\[0\\]: no module named 'mynets.nope'"):
        resolve({"imports": ["mynets.nope"], "data": {"format": "idx", "path": "x"}, "model": {"name": "cnn"}})


def test_a_parameter_cnnlab_cannot_supply_must_be_set(tmp_path):
    write(tmp_path, "needs.py", '''
        from torch import nn
        class Needs(nn.Module):
            def __init__(self, num_classes, depth):
                super().__init__()
    ''')
    path = config(tmp_path, model={"name": "needs.py:Needs"})
    with pytest.raises(ConfigError, match=r"model\.depth: needs\.py:Needs needs 'depth' \(no default in its signature\), "
                                          r"the config does not set it and cnnlab cannot supply it"):
        load_config(path)
    assert load_config(path, ["model.depth=3"]).model.model_dump()["depth"] == 3  # unannotated: any value


def test_a_name_the_file_does_not_define(tmp_path):
    write(tmp_path, "nets.py", NETS)
    with pytest.raises(ConfigError, match=r"model\.name: nets\.py defines no 'TinyNett' \(did you mean 'TinyNet'\?\)"):
        load_config(config(tmp_path, model={"name": "nets.py:TinyNett"}))


def test_a_missing_file_and_a_syntax_error(tmp_path):
    with pytest.raises(ConfigError, match=r"imports\[0\]: .*gone\.py: no such file"):
        load_config(config(tmp_path, imports=["gone.py"]))
    write(tmp_path, "broken.py", "def f(:\n    pass\n")
    with pytest.raises(UserCodeError) as e:
        load_config(config(tmp_path, imports=["broken.py"]))
    assert "broken.py failed to import: SyntaxError" in str(e.value) and "line 1" in str(e.value)
    assert "broken.py" in e.value.details and "cnnlab/" not in e.value.details  # their frames, not ours
    write(tmp_path, "raises.py", "import os\n\ndef helper():\n    return 1 / 0\n\nhelper()\n")
    with pytest.raises(UserCodeError) as e:
        load_config(config(tmp_path, imports=["raises.py"]))
    assert "ZeroDivisionError" in str(e.value)
    frames = [line for line in e.value.details.splitlines() if line.strip().startswith("File ")]
    assert len(frames) == 2 and all("raises.py" in f for f in frames), e.value.details
    assert "raises" not in {m.split("_")[2] for m in sys.modules if m.startswith("cnnlab_user_")}  # nothing left


def test_two_imports_registering_one_name_are_refused(tmp_path):
    for name in ("a.py", "b.py"):
        write(tmp_path, name, '''
            import cnnlab
            @cnnlab.register_loss("same_loss_name")
            def loss(num_classes):
                """A loss."""
        ''')
    with pytest.raises(ConfigError, match=r"imports\[1\]: .*b\.py: loss 'same_loss_name' is registered twice: by a\.py "
                                          r"and by b\.py; rename one"):
        load_config(config(tmp_path, imports=["a.py", "b.py"]))
    write(tmp_path, "c.py", '''
        import cnnlab
        @cnnlab.register_model("resnet")
        def mine(num_classes):
            """Mine."""
    ''')
    with pytest.raises(ConfigError, match="model 'resnet' is registered twice: by cnnlab and by c.py"):
        load_config(config(tmp_path / "", imports=["c.py"]))


def test_an_edited_file_is_imported_again_and_its_old_names_forgotten(tmp_path):
    nets = write(tmp_path, "nets.py", NETS)
    load_config(config(tmp_path, imports=["nets.py"], model={"name": "tiny_registered"}))
    nets.write_text(NETS.replace("tiny_registered", "tiny_renamed").replace("width: int = 4", "width: int = 6"))
    cfg = load_config(config(tmp_path, imports=["nets.py"], model={"name": "tiny_renamed"}))
    assert cfg.model.model_dump()["width"] == 6
    assert "tiny_registered" not in MODELS.names() and "tiny_renamed" in MODELS.names()


def test_relative_paths_in_overrides_are_relative_to_the_current_folder(tmp_path, monkeypatch):
    write(tmp_path / "elsewhere", "nets.py", NETS)
    path = config(tmp_path)
    monkeypatch.chdir(tmp_path / "elsewhere")
    cfg = load_config(path, ["model.name=nets.py:TinyNet"])
    assert cfg.model.name == f"{tmp_path / 'elsewhere' / 'nets.py'}:TinyNet"


def test_a_user_model_must_return_logits_of_the_right_shape(tmp_path):
    write(tmp_path, "bad.py", '''
        import torch
        from torch import nn
        class Wrong(nn.Module):
            def __init__(self, num_classes):
                super().__init__()
                self.fc = nn.Linear(4, num_classes + 1)
            def forward(self, x):
                return self.fc(x.mean((2, 3)).repeat(1, 4)[:, :4])
        class Pair(Wrong):
            def forward(self, x):
                return (super().forward(x), x)
        class Crash(Wrong):
            def forward(self, x):
                return self.fc(x)   # 4 features expected, images given
    ''')
    base = {"data": {"format": "idx", "path": "x"}}
    cfg = resolve({**base, "model": {"name": f"{tmp_path}/bad.py:Wrong"}})
    with pytest.raises(ConfigError, match=r"returned shape \(2, 11\) for 2 images, expected \(N, 10\) = \(2, 10\); "
                                          r"its last layer must give num_classes=10 outputs"):
        build_model(cfg.model, (1, 28, 28), 10)
    cfg = resolve({**base, "model": {"name": f"{tmp_path}/bad.py:Pair"}})
    with pytest.raises(ConfigError, match="returned a tuple from forward"):
        build_model(cfg.model, (1, 28, 28), 10)
    cfg = resolve({**base, "model": {"name": f"{tmp_path}/bad.py:Crash"}})
    with pytest.raises(UserCodeError) as e:
        build_model(cfg.model, (1, 28, 28), 10)
    assert "failed on a batch of 2 1x28x28 images: RuntimeError" in str(e.value)
    assert "bad.py" in e.value.details and "return self.fc(x)" in e.value.details


def test_a_user_loss_must_return_a_scalar_with_a_gradient(tmp_path):
    from cnnlab.training.losses import build_loss

    write(tmp_path, "losses.py", '''
        import torch
        def per_sample(logits, targets):
            return torch.nn.functional.cross_entropy(logits, targets, reduction="none")
        def constant(logits, targets):
            return torch.tensor(1.0)
        def focal(logits, targets, gamma: float = 2.0):
            ce = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
            return ((1 - torch.exp(-ce)) ** gamma * ce).mean()
    ''')
    base = {"data": {"format": "idx", "path": "x"}, "model": {"name": "cnn"}}
    cfg = resolve({**base, "loss": {"name": f"{tmp_path}/losses.py:per_sample"}})
    with pytest.raises(ConfigError, match=r"returned a tensor of shape \(2,\), expected a scalar \(0-d\); reduce it"):
        build_loss(cfg.loss, 10)
    cfg = resolve({**base, "loss": {"name": f"{tmp_path}/losses.py:constant"}})
    with pytest.raises(ConfigError, match="does not depend on the logits"):
        build_loss(cfg.loss, 10)
    cfg = resolve({**base, "loss": {"name": f"{tmp_path}/losses.py:focal", "gamma": 0.0}})
    import torch

    logits, y = torch.randn(4, 10), torch.tensor([1, 2, 3, 4])
    assert torch.allclose(build_loss(cfg.loss, 10)(logits, y), torch.nn.functional.cross_entropy(logits, y))
    with pytest.raises(ConfigError, match="loss.gamma: Input should be a valid number"):
        resolve({**base, "loss": {"name": f"{tmp_path}/losses.py:focal", "gamma": "x"}})


def test_the_numpy_engine_refuses_a_user_model(tmp_path):
    from cnnlab.training.numpy_engine import NumpyEngine

    write(tmp_path, "nets.py", NETS)
    cfg = resolve({"engine": "scratch", "data": {"format": "idx", "path": "x"},
                   "model": {"name": f"{tmp_path}/nets.py:TinyNet"}})
    with pytest.raises(ConfigError, match="model.name: 'nets.py:TinyNet' is your own nn.Module, which has no NumPy twin"):
        NumpyEngine.check(cfg)


def test_a_config_typo_is_answered_before_the_users_code_runs(tmp_path):
    write(tmp_path, "slow.py", "raise SystemExit('imported')\n")
    with pytest.raises(ConfigError, match="train.epoch: unknown key"):
        load_config(config(tmp_path, imports=["slow.py"], train={"epoch": 3}))


def test_reference_forms_and_bad_imports_entries(tmp_path):
    with pytest.raises(ConfigError, match=r"imports\[0\]: '3bad' is neither a \.py file nor a module name"):
        resolve({"imports": ["3bad"], "data": {"format": "idx", "path": "x"}, "model": {"name": "cnn"}})
    with pytest.raises(UserError, match="unknown model 'nope'.*or name your own as FILE.py:NAME"):
        resolve({"data": {"format": "idx", "path": "x"}, "model": {"name": "nope"}})


def test_a_user_net_that_views_conv_outputs_keeps_nchw():
    """`hidden.view(-1, n)` (the CIFAR write-up's net) fails on a channels_last batch: auto keeps NCHW for it."""
    import torch
    from torch import nn

    from cnnlab.training.session import works_channels_last

    class Views(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.fc = nn.Linear(4 * 8 * 8, 10)

        def forward(self, x):
            return self.fc(self.conv(x).view(-1, 4 * 8 * 8))

    class Flattens(Views):
        def forward(self, x):
            return self.fc(self.conv(x).flatten(1))

    views, flattens = Views(), Flattens()
    before = torch.get_rng_state()
    assert not works_channels_last(views, (3, 8, 8)) and works_channels_last(flattens, (3, 8, 8))
    assert torch.equal(torch.get_rng_state(), before) and views.training
    assert views.conv.weight.is_contiguous()  # put back as it was


def test_a_misspelt_option_is_answered_from_the_files_syntax_before_it_runs(tmp_path):
    """The user's file (which would import torch: seconds) is not executed to answer a typo in an option."""
    write(tmp_path, "slow.py", '''
        raise SystemExit("this file ran")

        class Net:
            def __init__(self, num_classes, width: int = 8):
                pass

        def op(images, std: float = 0.1):
            return images
    ''')
    with pytest.raises(ConfigError, match=r"model\.widht: unknown key for slow\.py:Net \(did you mean 'model\.width'\?\)"):
        load_config(config(tmp_path, model={"name": "slow.py:Net", "widht": 4}))
    with pytest.raises(ConfigError, match=r"augment\[0\]\.sdt: unknown key for slow\.py:op \(did you mean 'augment\[0\]\.std'\?\)"):
        load_config(config(tmp_path, augment=[{"slow.py:op": {"sdt": 1}}]))
    with pytest.raises(UserCodeError, match="this file ran"):  # a correct key: the file is imported and runs
        load_config(config(tmp_path, model={"name": "slow.py:Net", "width": 4}))
