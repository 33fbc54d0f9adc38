"""samples.png (training images after augmentation, written when a run starts), the per-class
counts of the run banner and `data inspect`, and the warning about classes the training split
lacks: on real MNIST and CIFAR-10 images."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CIFAR_ZIP, write_config
from PIL import Image

from cnnlab.cli import main
from cnnlab.data.inspect import count_lines, train_warning
from cnnlab.data.read.decode import decode_one
from cnnlab.data.read.tree import FileTree
from cnnlab.plots.samples import (
    PER_CLASS,
    draw_samples,
    plot_samples,
    shown_classes,
    write_samples,
)
from cnnlab.resolve import resolve
from cnnlab.training import runner
from cnnlab.training.session import build_session


def _cfg(tmp_path: Path, data: dict, **sections):
    import yaml

    path = write_config(tmp_path / "c.yaml", data, **sections)
    return resolve(yaml.safe_load(path.read_text()))


# ----------------------------------------------------------------------------- per-class counts


def test_ten_classes_are_listed_on_one_line_per_split():
    counts = {"train": [197, 225, 199, 204, 195, 181, 197, 209, 195, 198], "test": [49, 57, 52, 50, 49, 45, 48, 51, 49, 50]}
    lines = count_lines(counts, [str(i) for i in range(10)])
    assert lines == ["train 0=197, 1=225, 2=199, 3=204, 4=195, 5=181, 6=197, 7=209, 8=195, 9=198",
                     "test 0=49, 1=57, 2=52, 3=50, 4=49, 5=45, 6=48, 7=51, 8=49, 9=50"]


def test_balanced_splits_share_one_line():
    lines = count_lines({"train": [90] * 10, "val": [10] * 10, "test": [20] * 10}, [f"c{i}" for i in range(10)])
    assert lines == ["train 90 each; val 10 each; test 20 each"]


def test_long_class_names_wrap_onto_a_second_line():
    names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    lines = count_lines({"train": [180 + i for i in range(10)]}, names)
    assert len(lines) == 2 and all(len(line) <= 100 for line in lines)
    assert "Ankle boot=189" in " ".join(lines) and "T-shirt/top=180" in lines[0]


def test_five_hundred_classes_are_summed_up_not_listed():
    c = [500] * 500
    c[37], c[400], c[2] = 3, 0, 499
    lines = count_lines({"train": c, "val": [50] * 500}, [f"n{i:08d}" for i in range(500)])
    assert lines == ["train min 0 median 500 max 500 (fewest: n00000400=0, n00000037=3, n00000002=499), 1 empty",
                     "val 50 each"]


def test_warning_rule():
    names = ["a", "b", "c", "d", "e", "f"]
    assert train_warning({"train": [100, 1]}, names[:2]).startswith("warning: ")
    assert "'b' (1)" in train_warning({"train": [100, 1]}, names[:2])
    assert train_warning({"train": [100, 1, 50]}, names[:3]) is not None  # 1 < 1% of 100
    assert train_warning({"train": [100, 2]}, names[:2]) is None  # 2% of the largest: imbalanced, not missing
    assert train_warning({"train": [100, 100]}, names[:2]) is None
    assert train_warning({"test": [0, 5]}, names[:2]) is None  # no training counts: nothing to say
    w = train_warning({"train": [100, 0, 0, 0, 0, 0]}, names)
    assert "no images of 'b', 'c', 'd' and 2 more" in w and "data.limit_mode" in w and "\n" not in w


# ----------------------------------------------------------------------------- samples.png


def _png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255


def test_mnist_run_writes_a_labelled_grid_and_the_banner_counts(tmp_path, mnist_small, capsys):
    cfg = write_config(tmp_path / "m.yaml", {"format": "idx", "path": str(mnist_small), "val_fraction": 0.1},
                       train={"epochs": 1}, augment=["hflip"])
    assert main(["train", str(cfg)]) == 0
    out, err = capsys.readouterr()
    run = Path(out.strip().splitlines()[-1])
    banner = err.split("epoch 1/1")[0]
    assert "per class train 0=" in banner and "\n          test 0=" in banner and "9=" in banner
    assert "warning:" not in err  # MNIST's classes are all there
    png = _png(run / "samples.png")
    h, w, _ = png.shape
    assert 500 < h < 1200 and 500 < w < 1000  # 10 rows x 8 images of 28 px, labelled
    assert png.std() > 0.2  # digits: white strokes on black, not a blank canvas
    assert (png.min(axis=2) < 0.1).mean() > 0.3  # much of it is the black of MNIST backgrounds


def _hflip_bundle(tmp_path, data):
    cfg = _cfg(tmp_path, data, augment=[{"hflip": {"p": 1.0}}])
    return build_session(cfg), cfg


def test_in_memory_samples_are_the_flipped_training_pixels(tmp_path, mnist_small):
    s, cfg = _hflip_bundle(tmp_path, {"format": "idx", "path": str(mnist_small), "val_fraction": 0.1})
    drawn = draw_samples(s.bundle, s.pipeline, cfg.seed)
    assert drawn.images.shape == (10, PER_CLASS, 28, 28, 1) and not np.isnan(drawn.images).any()
    for r, row in enumerate(drawn.index):
        assert s.bundle.train.y[row].tolist() == [r] * PER_CLASS  # labelled with the right class
        original = s.bundle.train.x[row].permute(0, 2, 3, 1).numpy().astype(np.float32) / 255
        # normalised by the loader, un-normalised for display: the flip of the stored pixels
        np.testing.assert_allclose(drawn.images[r], original[:, :, ::-1], atol=1e-5)
        assert not np.allclose(drawn.images[r], original, atol=1e-2)


def test_file_backed_samples_are_the_flipped_decoded_files(tmp_path, cifar_zip_small):
    s, cfg = _hflip_bundle(tmp_path, {"format": "image_folder", "path": str(cifar_zip_small), "in_memory": False,
                                      "val_fraction": 0.1})
    assert not s.bundle.in_memory
    drawn = draw_samples(s.bundle, s.pipeline, cfg.seed)
    assert drawn.images.shape == (10, PER_CLASS, 32, 32, 3)
    tree = FileTree(Path(s.bundle.train.source))
    for r, row in enumerate(drawn.index):
        for k, i in enumerate(row):
            assert s.bundle.train.files[i].split("/")[-2] == s.bundle.classes[r]
            pixels = decode_one(tree, s.bundle.train.files[i], "RGB", (32, 32)).astype(np.float32) / 255
            np.testing.assert_allclose(drawn.images[r, k], pixels[:, ::-1], atol=1e-5)


def _drawn_figures(draw) -> list:
    """The matplotlib figures `draw()` saved."""
    from matplotlib import pyplot as plt

    figures = []
    real_savefig = plt.Figure.savefig

    def spy(fig, *a, **k):
        figures.append(fig)
        return real_savefig(fig, *a, **k)

    plt.Figure.savefig = spy
    try:
        draw()
    finally:
        plt.Figure.savefig = real_savefig
    return figures


def test_many_classes_show_an_evenly_spaced_subset_and_say_so(tmp_path):
    root = tmp_path / "many" / "train"
    with zipfile.ZipFile(CIFAR_ZIP) as z:
        names = sorted(n for n in z.namelist() if n.startswith("cifar10/train/") and n.endswith(".jpg"))[:60]
        for k in range(30):
            (root / f"k{k:02d}").mkdir(parents=True)
            for j in range(2):
                (root / f"k{k:02d}" / f"{j}.jpg").write_bytes(z.read(names[2 * k + j]))
    cfg = _cfg(tmp_path, {"format": "image_folder", "path": str(root.parent), "val_fraction": 0})
    s = build_session(cfg)
    assert shown_classes(30) == [0, 3, 6, 10, 13, 16, 19, 23, 26, 29]
    drawn = draw_samples(s.bundle, s.pipeline, cfg.seed)
    assert drawn.rows == shown_classes(30) and drawn.counts == [2] * 10
    assert drawn.images.shape == (10, 2, 32, 32, 3) and not np.isnan(drawn.images).any()  # 2 images per class
    figures = _drawn_figures(lambda: write_samples(s.bundle, s.pipeline, cfg.seed, tmp_path / "samples.png"))
    ax = figures[0].axes[0]
    assert "10 of 30 classes (evenly spaced by index)" in figures[0].texts[0].get_text()
    assert [t.get_text() for t in ax.get_yticklabels()][:2] == ["k00", "k03"]
    assert (tmp_path / "samples.png").stat().st_size > 10_000


def test_the_figure_draws_cifar_images_through_three_augmentations(tmp_path, cifar_zip_small):
    # Its cost (about 0.2 s in memory) is a figure in bench/RESULTS.md, not a timed test.
    cfg = _cfg(tmp_path, {"format": "image_folder", "path": str(cifar_zip_small), "in_memory": True},
               augment=["hflip", {"random_crop": {"padding": 4}}, {"color_jitter": {"brightness": 0.4}}])
    s = build_session(cfg)
    write_samples(s.bundle, s.pipeline, cfg.seed, tmp_path / "samples.png")
    pixels = np.asarray(Image.open(tmp_path / "samples.png").convert("L"), dtype=float)
    assert pixels.std() > 10  # images, not a blank canvas


# ----------------------------------------------------------------------------- training is unchanged


def test_drawing_leaves_every_generator_as_it_was(tmp_path, mnist_small):
    cfg = _cfg(tmp_path, {"format": "idx", "path": str(mnist_small)}, augment=["hflip", {"random_crop": {"padding": 2}}])
    s = build_session(cfg)
    before = (torch.get_rng_state(), s.generator.get_state(), np.random.get_state()[1].copy())
    write_samples(s.bundle, s.pipeline, cfg.seed, tmp_path / "samples.png")
    assert torch.equal(before[0], torch.get_rng_state()) and torch.equal(before[1], s.generator.get_state())
    assert np.array_equal(before[2], np.random.get_state()[1])


@pytest.mark.parametrize("case", ["torch-memory", "scratch-memory", "torch-files"])
def test_a_run_with_the_figure_trains_exactly_as_one_without(tmp_path, mnist_small, cifar_zip_small, case):
    engine, where = case.split("-")
    if where == "files":
        data = {"format": "image_folder", "path": str(cifar_zip_small), "in_memory": False, "val_fraction": 0.1,
                "workers": 0}
    else:
        data = {"format": "idx", "path": str(mnist_small), "val_fraction": 0.1, "limit_train": 400}
    extra = {"model": {"name": "cnn", "channels": [4, 8], "norm": "batch", "dropout": 0.2}}  # dropout: torch's global RNG
    runs = []
    for samples in (True, False):
        cfg = _cfg(tmp_path / str(samples), data, engine=engine, augment=["hflip", {"random_crop": {"padding": 2}}],
                   train={"epochs": 2, "batch_size": 64}, **extra)
        runs.append(runner.train(cfg, quiet=True, samples=samples).run_dir)
    with_fig, without = runs
    assert (with_fig / "samples.png").is_file() and not (without / "samples.png").exists()
    drop = ("seconds",)
    rows = [[{k: v for k, v in json.loads(line).items() if k not in drop}
             for line in (r / "metrics.jsonl").read_text().splitlines()] for r in runs]
    assert rows[0] == rows[1] and len(rows[0]) == 2
    assert (with_fig / "steps.csv").read_text() == (without / "steps.csv").read_text()  # every step's loss


# ----------------------------------------------------------------------------- the warning, on a real tree


@pytest.fixture
def lopsided_tree(tmp_path) -> Path:
    """A real ImageFolder of CIFAR-10 JPEGs: 100 cats and 1 dog to train on, 5 of each to test."""
    root = tmp_path / "lopsided"
    with zipfile.ZipFile(CIFAR_ZIP) as z:
        for split, cls, n in (("train", "cat", 100), ("train", "dog", 1), ("test", "cat", 5), ("test", "dog", 5)):
            members = sorted(m for m in z.namelist() if m.startswith(f"cifar10/{split}/{cls}/"))[:n]
            (root / split / cls).mkdir(parents=True, exist_ok=True)
            for m in members:
                (root / split / cls / Path(m).name).write_bytes(z.read(m))
    return root


def _warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("warning:")]


def test_train_warns_once_about_a_class_under_one_percent(tmp_path, lopsided_tree, capsys):
    cfg = write_config(tmp_path / "l.yaml", {"format": "image_folder", "path": str(lopsided_tree), "val_fraction": 0},
                       train={"epochs": 2, "batch_size": 32})
    assert main(["train", str(cfg), "-q"]) == 0
    err = capsys.readouterr().err
    warnings = _warnings(err)
    assert len(warnings) == 1, err  # once per run, not once per epoch; printed even with -q
    assert warnings[0] == ("warning: the training split has at most 1% of the largest class's 100 images of 'dog' (1) "
                           "(largest: 'cat'); the model can hardly learn such classes: data.limit_train is stratified "
                           "by default, so check data.limit_mode / data.splits and the dataset's folders")


def test_a_class_with_few_images_gets_its_count_and_empty_cells(tmp_path, lopsided_tree):
    cfg = _cfg(tmp_path, {"format": "image_folder", "path": str(lopsided_tree), "val_fraction": 0})
    s = build_session(cfg)
    drawn = draw_samples(s.bundle, s.pipeline, cfg.seed)
    assert drawn.counts == [100, 1] and drawn.images.shape[1] == PER_CLASS
    assert not np.isnan(drawn.images[1, 0]).any() and np.isnan(drawn.images[1, 1:]).all()
    figures = _drawn_figures(lambda: plot_samples(drawn, tmp_path / "samples.png"))
    assert [t.get_text() for t in figures[0].axes[0].get_yticklabels()] == ["cat", "dog (1 in train)"]
    png = _png(tmp_path / "samples.png")
    assert (np.abs(png - 0.93) < 0.01).all(axis=2).mean() > 0.2  # the seven empty cells of 'dog', light grey


def test_inspect_warns_once_about_a_class_missing_from_train(tmp_path, lopsided_tree, capsys):
    # The first 50 of a class-sorted listing: every dog left out, as limit_mode: first does.
    cfg = write_config(tmp_path / "l.yaml", {"format": "image_folder", "path": str(lopsided_tree), "val_fraction": 0,
                                             "limit_train": 50, "limit_mode": "first"})
    assert main(["data", "inspect", str(cfg)]) == 0
    out, err = capsys.readouterr()
    warnings = _warnings(err)
    assert len(warnings) == 1, err
    assert "no images of 'dog'" in warnings[0] and "data.limit_mode" in warnings[0]
    assert "per class train cat=50, dog=0" in " ".join(out.split())
    # what the warning advises: the stratified default keeps the dog (1 of 50, 2% of the 49 cats)
    assert main(["data", "inspect", str(cfg), "data.limit_mode=stratified"]) == 0
    out, err = capsys.readouterr()
    assert _warnings(err) == [] and "train cat=49, dog=1" in out
