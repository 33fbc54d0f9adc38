"""The issue's bad inputs of user code, through the command line: each is one line (what, which
file or key, what to do) and exit code 2, nothing written; when the user's own code raised, their
traceback frames (and none of cnnlab's) come first."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from conftest import write_config

from cnnlab.cli import main

pytestmark = pytest.mark.usefixtures("fresh_registries")


def project(tmp_path: Path, code: str, mnist_small: Path, **sections) -> Path:
    (tmp_path / "mine.py").write_text(textwrap.dedent(code))
    data = {"format": "idx", "path": str(mnist_small), "limit_train": 200, "limit_test": 100}
    sections.setdefault("train", {})
    sections["train"] = {"epochs": 1, "out_dir": str(tmp_path / "runs"), **sections["train"]}
    return write_config(tmp_path / "c.yaml", sections.pop("data", data), imports=["mine.py"], **sections)


def one_line(capsys, args: list, *words: str, out: Path | None = None, traceback: str | None = None) -> str:
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    if traceback is None:
        assert len(lines) == 1 and "Traceback" not in err, err
    else:  # the user's frames (or where their syntax breaks), then the one line
        shown = "\n".join(lines[:-1])
        assert traceback in shown and "cnnlab/" not in shown and "site-packages" not in shown, err
    for w in words:
        assert w in lines[-1], err
    if out is not None:
        assert not out.exists() or not any(out.iterdir()), "a run directory was left behind"
    return lines[-1]


MODEL = """
from torch import nn
class Net(nn.Module):
    def __init__(self, num_classes, in_channels, width: int = 4):
        super().__init__()
        self.f = nn.Sequential(nn.Conv2d(in_channels, width, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(width, num_classes)
    def forward(self, x):
        return self.fc(self.f(x))
"""


def test_a_missing_imports_file(tmp_path, mnist_small, capsys):
    path = write_config(tmp_path / "c.yaml", {"format": "idx", "path": str(mnist_small)}, imports=["nope.py"],
                        train={"out_dir": str(tmp_path / "runs")})
    one_line(capsys, ["train", path], "imports[0]:", "nope.py: no such file", out=tmp_path / "runs")


def test_a_file_with_a_syntax_error_shows_where(tmp_path, mnist_small, capsys):
    path = project(tmp_path, "x = 1\ndef broken(:\n    pass\n", mnist_small)
    line = one_line(capsys, ["train", path], "mine.py failed to import: SyntaxError", "line 2",
                    traceback="def broken(:", out=tmp_path / "runs")
    assert line.startswith("cnnlab: error:")


def test_a_name_the_file_does_not_define(tmp_path, mnist_small, capsys):
    path = project(tmp_path, MODEL, mnist_small, model={"name": "mine.py:Nett"})
    one_line(capsys, ["train", path], "model.name: mine.py defines no 'Nett' (did you mean 'Net'?)",
             out=tmp_path / "runs")


def test_a_parameter_nobody_supplies(tmp_path, mnist_small, capsys):
    code = MODEL.replace("def __init__(self, num_classes, in_channels, width: int = 4)",
                         "def __init__(self, num_classes, in_channels, depth, width: int = 4)")
    path = project(tmp_path, code, mnist_small, model={"name": "mine.py:Net"})
    one_line(capsys, ["train", path], "model.depth: mine.py:Net needs 'depth'", "set model.depth",
             out=tmp_path / "runs")


def test_a_model_whose_output_is_not_n_by_classes(tmp_path, mnist_small, capsys):
    code = MODEL.replace("nn.Linear(width, num_classes)", "nn.Linear(width, 7)")
    path = project(tmp_path, code, mnist_small, model={"name": "mine.py:Net"})
    one_line(capsys, ["train", path], "model.name: 'mine.py:Net' returned shape (2, 7) for 2 images, expected (N, 10)",
             out=tmp_path / "runs")


@pytest.mark.parametrize("body, words", [
    ("return [(np.zeros((8, 8), np.uint8), 0), (np.zeros((9, 9), np.uint8), 1)]",
     "mine.py:data (train split) item 1 is an image of (1, 9, 9) (C, H, W) but item 0 is (1, 8, 8)"),
    ("return [(np.zeros((8, 8), np.uint8), 0), ('not an image', 1)]",
     "mine.py:data (train split) item 1: the image is a str; return a PIL image, a NumPy array or a tensor"),
    ("return [(np.zeros((8, 8), np.uint8), 0.5)]", "the label is 0.5 (float); return an integer class index"),
    ("return [np.zeros((8, 8), np.uint8)]", "mine.py:data (train split) item 0 is a NumPy array; a dataset must return (image, label) pairs"),
    ("return 42", "mine.py:data (train split) returned an int; return a Dataset of (image, label) pairs"),
    ("return {'training': []}", "returned a dict with key 'training'; use train, val (or dev) and test"),
])
def test_a_dataset_returning_the_wrong_things(body, words, tmp_path, mnist_small, capsys):
    code = f"import numpy as np\ndef data(size: int = 8):\n    {body}\n"
    path = project(tmp_path, code, mnist_small, data={"format": "mine.py:data"})
    one_line(capsys, ["train", path], words, out=tmp_path / "runs")


def test_a_dataset_that_raises_shows_its_traceback(tmp_path, mnist_small, capsys):
    code = "def data():\n    return Broken()\nclass Broken:\n    def __len__(self):\n        return 3\n" \
           "    def __getitem__(self, i):\n        raise KeyError(f'no row {i}')\n"
    path = project(tmp_path, code, mnist_small, data={"format": "mine.py:data"})
    one_line(capsys, ["train", path], "data.format: mine.py:data (train split) item 0 raised: KeyError: 'no row 0'",
             traceback="raise KeyError", out=tmp_path / "runs")


def test_a_loss_returning_a_non_scalar(tmp_path, mnist_small, capsys):
    code = "import torch\ndef per_image(logits, targets):\n" \
           "    return torch.nn.functional.cross_entropy(logits, targets, reduction='none')\n"
    path = project(tmp_path, code, mnist_small, loss={"name": "mine.py:per_image"})
    one_line(capsys, ["train", path], "loss.name: 'mine.py:per_image' returned a tensor of shape (2,), expected a scalar",
             out=tmp_path / "runs")


def test_two_imports_registering_one_name(tmp_path, mnist_small, capsys):
    reg = "import cnnlab\n@cnnlab.register_model('twin')\ndef twin(num_classes):\n    '''A twin.'''\n"
    (tmp_path / "a.py").write_text(reg)
    (tmp_path / "b.py").write_text(reg)
    path = write_config(tmp_path / "c.yaml", {"format": "idx", "path": str(mnist_small)}, imports=["a.py", "b.py"],
                        train={"out_dir": str(tmp_path / "runs")})
    one_line(capsys, ["train", path], "model 'twin' is registered twice: by a.py and by b.py; rename one",
             out=tmp_path / "runs")


def test_the_numpy_engine_with_a_model_of_ones_own(tmp_path, mnist_small, capsys):
    path = project(tmp_path, MODEL, mnist_small, model={"name": "mine.py:Net"}, engine="scratch")
    one_line(capsys, ["train", path], "is your own nn.Module, which has no NumPy twin", out=tmp_path / "runs")


def test_an_object_from_python_cannot_be_rebuilt_by_a_later_command(tmp_path, mnist_small, capsys):
    import cnnlab

    net = __import__("torch").nn.Sequential(__import__("torch").nn.Flatten(), __import__("torch").nn.Linear(784, 10))
    run = cnnlab.train({"data": {"format": "idx", "path": str(mnist_small), "limit_train": 200, "limit_test": 100},
                        "device": "cpu", "train": {"epochs": 1, "out_dir": str(tmp_path / "runs")}},
                       model=net, quiet=True)
    from cnnlab.usercode import live

    live._OBJECTS.clear()  # as a new process would be
    line = one_line(capsys, ["evaluate", run.path], "model.name: 'object:Sequential#", "was an object passed to cnnlab "
                    "from Python in another process", "pass it again")
    assert "cnnlab.Run(path).model(model=net)" in line
    assert cnnlab.Run(run.path).evaluate(model=net)["samples"] == 100  # from Python, with the object again
