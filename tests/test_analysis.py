"""`cnnlab analyze` on runs trained here on real images: kernels, features, errors, cam,
and the refusals (no checkpoint, unknown layer or option, cam on a NumPy-engine run)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.cli import main

pytestmark = pytest.mark.slow


def analyze(capsys, run: Path, *args: str) -> tuple[int, str, str]:
    code = main(["analyze", str(run), *args])
    out, err = capsys.readouterr()
    return code, out, err


def rows(path: Path) -> list[dict]:
    return list(csv.DictReader(path.open()))


def png_ok(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        return im.size


def test_kernels_are_the_checkpoints_weights(cifar_run, capsys):
    code, out, _ = analyze(capsys, cifar_run, "kernels")
    assert code == 0, out
    folder = cifar_run / "analysis" / "kernels"
    weights = torch.load(cifar_run / "best.pt", weights_only=True)["model"]
    first = next(k for k, v in weights.items() if k.endswith("weight") and v.dim() == 4)
    layer = first.rsplit(".", 1)[0]
    saved = np.load(folder / f"{layer.replace('.', '_')}.npz", allow_pickle=False)["weight"]
    assert np.array_equal(saved, weights[first].numpy())
    norms = [float(r["l2_norm"]) for r in rows(folder / f"{layer.replace('.', '_')}-norms.csv")]
    assert np.allclose(norms, np.linalg.norm(saved.reshape(len(saved), -1), axis=1), rtol=1e-5)
    assert png_ok(folder / f"{layer.replace('.', '_')}.png")[0] > 300
    report = json.loads((folder / "report.json").read_text())
    assert report["checkpoint"] == "best" and report["findings"][0].startswith(f"{layer}: 8 filters of 3x3x3")
    assert out.strip().splitlines()[-1] == str(folder)


def test_kernels_of_a_deeper_layer_and_of_a_numpy_engine_run(cifar_run, scratch_run, capsys):
    weights = torch.load(cifar_run / "best.pt", weights_only=True)["model"]
    convs = [k for k, v in weights.items() if k.endswith("weight") and v.dim() == 4]
    second = convs[1].rsplit(".", 1)[0]
    assert analyze(capsys, cifar_run, "kernels", "--layer", second, "--filters", "4")[0] == 0
    assert png_ok(cifar_run / "analysis" / "kernels" / f"{second.replace('.', '_')}.png")
    code, out, err = analyze(capsys, scratch_run, "kernels")
    assert code == 0, err
    saved = np.load(next((scratch_run / "analysis" / "kernels").glob("*.npz")), allow_pickle=False)["weight"]
    with np.load(scratch_run / "best.npz", allow_pickle=False) as ckpt:
        engine_weights = [ckpt[k] for k in ckpt.files if ckpt[k].ndim == 4]
    assert any(w.shape == saved.shape and np.allclose(w, saved) for w in engine_weights)


def test_features_one_image_per_class_through_hooks(cifar_run, capsys):
    code, out, err = analyze(capsys, cifar_run, "features", "--maps", "4")
    assert code == 0, err
    folder = cifar_run / "analysis" / "features"
    saved = sorted(folder.glob("*.npz"))
    assert len(saved) == 2  # the first and the last conv layer, after their activations
    for path in saved:
        z = np.load(path, allow_pickle=False)
        assert sorted(z["labels"].tolist()) == list(range(10))  # one test image of every class
        assert z["activations"].ndim == 4 and len(z["activations"]) == 10
        assert (z["activations"] >= 0).all()  # seen after a ReLU
        assert png_ok(path.with_suffix(".png"))
    assert "maps of" in out


def test_errors_agree_with_evaluate(cifar_run, capsys):
    assert main(["evaluate", str(cifar_run)]) == 0
    capsys.readouterr()
    code, out, err = analyze(capsys, cifar_run, "errors", "--top", "6")
    assert code == 0, err
    folder = cifar_run / "analysis" / "errors"
    evaluated = json.loads((cifar_run / "eval-test-best.json").read_text())
    found = json.loads((folder / "errors.json").read_text())
    assert found["confusion"] == evaluated["confusion"] and found["accuracy"] == pytest.approx(evaluated["acc"])
    mistakes = rows(folder / "mistakes.csv")
    assert len(mistakes) == found["mistakes"] == found["images"] - sum(np.diag(evaluated["confusion"]))
    p = [float(r["p_predicted"]) for r in mistakes]
    assert p == sorted(p, reverse=True) and all(r["true"] != r["predicted"] for r in mistakes)
    # The most confident mistake's probability, recomputed from the checkpoint on that image alone.
    from cnnlab.analysis.subject import load

    s = load(cifar_run)
    _, test = s.split("test")
    x, y = s.batch(test, [int(mistakes[0]["index"])])
    with torch.inference_mode():
        prob = torch.softmax(s.model(x), 1)[0]
    assert float(prob.max()) == pytest.approx(p[0], abs=1e-5)
    assert s.classes[int(prob.argmax())] == mistakes[0]["predicted"] and s.classes[int(y[0])] == mistakes[0]["true"]
    per_class = rows(folder / "per-class.csv")
    assert [r["class"] for r in per_class] == s.classes
    from sklearn.metrics import f1_score

    cm = np.array(evaluated["confusion"])
    truth = np.repeat(np.arange(10), cm.sum(1))
    pred = np.concatenate([np.repeat(np.arange(10), row) for row in cm])
    f1 = f1_score(truth, pred, average=None, labels=list(range(10)), zero_division=0)
    assert np.allclose([float(r["f1"]) for r in per_class], f1, atol=1e-6)
    pairs = rows(folder / "confused-pairs.csv")
    counts = [int(r["count"]) for r in pairs]
    assert counts == sorted(counts, reverse=True)
    assert counts[0] == max(cm[a, b] for a in range(10) for b in range(10) if a != b)
    for name in ("mistakes.png", "per-class-accuracy.png"):
        png_ok(folder / name)


def test_cam_maps_and_the_randomisation_check(cifar_run, capsys):
    code, out, err = analyze(capsys, cifar_run, "cam", "--images", "4")
    assert code == 0, err
    folder = cifar_run / "analysis" / "cam"
    info = json.loads((folder / "cam.json").read_text())
    from cnnlab.analysis.cam import randomised
    from cnnlab.analysis.subject import load

    s = load(cifar_run)
    convs = list(s.layers())
    assert info["layer"] == convs[-1]  # 32 px through two stages: the last conv still sees 16x16
    z = np.load(folder / "maps.npz", allow_pickle=False)
    for k in ("gradcam", "hirescam", "saliency"):
        assert z[k].shape == (4, 32, 32) and (z[k] >= 0).all()
        assert -1 <= info["median_spearman"][k] <= 1
        assert info["unreliable"][k] == (info["median_spearman"][k] >= 0.5)
    assert not np.allclose(z["gradcam"], z["randomised_gradcam"])
    # The cascade re-initialises the target layer and what follows it, nothing before.
    shuffled = randomised(s.model, info["layer"], 0)
    before, after = dict(s.model.named_parameters()), dict(shuffled.named_parameters())
    first = convs[0] + ".weight"
    assert torch.equal(before[first], after[first])
    assert not torch.equal(before[info["layer"] + ".weight"], after[info["layer"] + ".weight"])
    head = [n for n, m in s.model.named_modules() if isinstance(m, torch.nn.Linear)][-1] + ".weight"
    assert not torch.equal(before[head], after[head])
    assert len(rows(folder / "randomisation.csv")) == 4 and png_ok(folder / "cam.png")


def test_cam_on_a_numpy_engine_run(scratch_run, capsys):
    """The NumPy engine's weights in the torch LeNet: the same function, so torch's gradients."""
    code, out, err = analyze(capsys, scratch_run, "cam", "--images", "3")
    assert code == 0, err
    z = np.load(scratch_run / "analysis" / "cam" / "maps.npz", allow_pickle=False)
    assert z["gradcam"].shape == (3, 28, 28) and np.isfinite(z["gradcam"]).all()


def test_refusals_are_one_line_and_write_nothing(cifar_run, scratch_run, tmp_path, capsys):
    cases = [
        ((cifar_run, "kernels", "--layer", "nope"), "--layer nope: no Conv2d layer of that name; the model has: "),
        ((cifar_run, "kernels", "--filtrs", "3"), "--filtrs: unknown option for kernels (did you mean '--filters'?)"),
        ((cifar_run, "kernels", "--filters", "0"), "--filters: Input should be greater than or equal to 1"),
        ((cifar_run, "kernel"), "analyze: unknown analysis 'kernel' (did you mean 'kernels'?)"),
    ]
    for args, message in cases:
        before = sorted(p.relative_to(args[0]) for p in args[0].rglob("*"))
        code, _, err = analyze(capsys, *args)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
        assert sorted(p.relative_to(args[0]) for p in args[0].rglob("*")) == before
    bare = tmp_path / "bare"
    shutil.copytree(cifar_run, bare, ignore=shutil.ignore_patterns("*.pt", "analysis"))
    code, _, err = analyze(capsys, bare, "errors")
    assert code == 2 and "best.pt: not found" in err and not (bare / "analysis").exists()
