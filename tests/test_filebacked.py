"""The file-backed data path on real CIFAR-10 JPEGs: listing, the in_memory decision, the
DataLoader over v2 transforms, and its agreement with the in-memory path."""

from __future__ import annotations

import zipfile

import pytest
import torch

import cnnlab.data.build as data_module
from cnnlab.config import DataConfig
from cnnlab.data.augment import AUGMENTATIONS, build_pipeline, resolve_ops
from cnnlab.data.batches import LoaderOptions, make_loader
from cnnlab.data.batches.files import FileLoader
from cnnlab.data.batches.memory import BatchLoader
from cnnlab.data.build import build_data, read_raw
from cnnlab.data.read.image_folder import list_image_folder
from cnnlab.data.read.listing import fits_in_memory, memory_budget, sample_stats
from cnnlab.errors import DataError

CPU = torch.device("cpu")


def bundle(zip_path, in_memory, **kw):
    return build_data(DataConfig(format="image_folder", path=str(zip_path), in_memory=in_memory, **kw), seed=0)


@pytest.fixture(scope="module")
def both(cifar_zip_small):
    return bundle(cifar_zip_small, True), bundle(cifar_zip_small, False)


@pytest.fixture(scope="module")
def small(cifar_zip_small):
    """The first 160 training images (four classes: files are listed class by class) on both paths."""
    kw = {"limit_train": 160, "val_fraction": 0.0}
    return bundle(cifar_zip_small, True, **kw), bundle(cifar_zip_small, False, **kw)


def test_listing_matches_what_the_reader_decodes(cifar_zip_small, tmp_path):
    raw = read_raw(DataConfig(format="image_folder", path=str(cifar_zip_small)))
    listing = list_image_folder(cifar_zip_small, cache_dir=tmp_path)
    assert set(listing.splits) == {"train", "test"} and listing.classes == raw.classes
    for name in ("train", "test"):
        files, split = listing.splits[name], getattr(raw, name)
        assert files.ids == split.ids and torch.equal(files.y, split.y) and files.shape == (3, 32, 32)
        assert files.files[0] == f"cifar10/{name}/{files.ids[0]}"
    assert listing.decoded_bytes() == (400 + 100) * 3 * 32 * 32
    assert listing.decoded_bytes(limit_train=100) == (100 + 100) * 3 * 32 * 32
    # The cached listing and the one-header estimate agree with the full listing.
    assert list(tmp_path.glob("*.listing.json"))
    again = list_image_folder(cifar_zip_small, cache_dir=tmp_path)
    assert again.splits["train"].files == listing.splits["train"].files
    assert list_image_folder(cifar_zip_small, estimate=True).decoded_bytes() == listing.decoded_bytes()


def test_in_memory_auto_compares_the_decoded_size_with_the_budget(cifar_zip_small, monkeypatch):
    assert fits_in_memory("auto", 10, 100) and not fits_in_memory("auto", 101, 100)
    assert fits_in_memory(True, 10**15, 0) and not fits_in_memory(False, 1, 10**15)
    assert 0 < memory_budget(CPU) < 2**50
    assert bundle(cifar_zip_small, "auto").in_memory  # 1.5 MB decoded: far under a quarter of the RAM
    monkeypatch.setattr(data_module, "memory_budget", lambda device: 500 * 3 * 32 * 32 - 1)
    b = bundle(cifar_zip_small, "auto")
    assert not b.in_memory and b.info()["in_memory"] is False
    monkeypatch.setattr(data_module, "memory_budget", lambda device: 500 * 3 * 32 * 32)
    assert bundle(cifar_zip_small, "auto").in_memory


def test_file_backed_bundle_matches_the_in_memory_one(both):
    mem, files = both
    assert files.info()["sizes"] == mem.info()["sizes"] == {"train": 360, "val": 40, "test": 100}
    assert files.train.ids == mem.train.ids and torch.equal(files.train.y, mem.train.y)  # same stratified split
    assert files.val.ids == mem.val.ids
    # 360 training images are fewer than the 2,000 sampled: the statistics are exact.
    assert files.mean == pytest.approx(mem.mean, abs=1e-12) and files.std == pytest.approx(mem.std, abs=1e-12)
    assert any("360 sampled training images" in n for n in files.notes)
    # A seeded sample estimates them closely.
    mean, std = sample_stats(files.train, seed=0, n=120)
    assert mean == pytest.approx(mem.mean, abs=0.03) and std == pytest.approx(mem.std, abs=0.03)


def loaders(bundle, items, seed=0, train=True, workers=0, batch_size=64):
    pipeline = build_pipeline(resolve_ops(items), bundle.image_shape, bundle.num_classes)
    g = torch.Generator().manual_seed(seed)
    split = bundle.train if train else bundle.test
    options = LoaderOptions(CPU, bundle.scale, bundle.mean, bundle.std, workers=workers)
    return pipeline, make_loader(split, pipeline, batch_size, options, train=train, generator=g)


def test_evaluation_batches_are_identical_on_both_paths(both):
    mem, files = both
    for items in ([], [{"resize": 40}, {"center_crop": 36}]):
        _, a = loaders(mem, items, train=False, batch_size=40)
        _, b = loaders(files, items, train=False, batch_size=40)
        assert isinstance(a, BatchLoader) and isinstance(b, FileLoader) and len(a) == len(b) == 3
        for (xa, ya), (xb, yb) in zip(a, b):
            assert xa.shape[1:] == ((3, 36, 36) if items else (3, 32, 32))
            assert torch.equal(xa, xb) and torch.equal(ya, yb)  # v2 Resize/CenterCrop = the batched ops


def test_without_random_ops_training_batches_are_identical_on_both_paths(both):
    mem, files = both
    _, a = loaders(mem, [{"resize": 40}])
    _, b = loaders(files, [{"resize": 40}])
    for _ in range(2):  # the generator advances alike: the second epoch matches too
        for (xa, ya), (xb, yb) in zip(a, b):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)


RANDOM_OPS = ["hflip", {"random_crop": {"padding": 4, "padding_mode": "reflect"}}, {"rotation": 10},
              {"random_apply": {"p": 0.5, "ops": [{"color_jitter": {"brightness": 0.3, "hue": 0.05}}, "grayscale"]}},
              {"cutout": 8}, {"random_erasing": {"p": 0.5}}, "mixup"]


def epochs(bundle, seed, workers, n=2, state=None):
    torch.manual_seed(seed)  # MixUp draws lambda from torch's global generator, as the trainer seeds it
    _, loader = loaders(bundle, RANDOM_OPS, seed=seed, workers=workers)
    if state is not None:
        loader.generator.set_state(state)
    out = [[(x, y) for x, y in loader] for _ in range(n)]
    return out, loader.generator.get_state()


def test_file_loader_depends_on_the_generator_only(small):
    _, files = small
    (a1, a2), _ = epochs(files, 0, workers=0)
    (b1, b2), _ = epochs(files, 0, workers=2)
    same = lambda u, v: all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(u, v))  # noqa: E731
    assert same(a1, b1) and same(a2, b2)  # whichever process decoded and augmented an image
    assert not same(a1, a2)  # epochs differ
    (c1, _), _ = epochs(files, 1, workers=0)
    assert not same(a1, c1)
    assert a1[0][1].shape == (64, 10) and torch.allclose(a1[0][1].sum(1), torch.ones(64))
    assert len(a1) == 3 and a1[-1][0].shape[0] == 32
    # Restoring the generator (and torch's) after epoch 1 replays epoch 2, as `cnnlab resume` does.
    torch.manual_seed(0)
    _, first = loaders(files, RANDOM_OPS, seed=0, workers=0)
    list(first)
    state, global_state = first.generator.get_state(), torch.get_rng_state()
    _, resumed = loaders(files, RANDOM_OPS, seed=7, workers=2)
    resumed.generator.set_state(state)
    torch.set_rng_state(global_state)
    assert same(list(resumed), a2)


def test_every_op_runs_on_both_paths(small):
    cases = {
        "hflip": {}, "vflip": {}, "random_crop": {"padding": 2}, "translate": {"fraction": 0.1},
        "rotation": {"degrees": 15}, "random_resized_crop": {"size": 24, "scale": [0.3, 1.0]},
        "resize": {"size": [24, 28]}, "center_crop": {"size": 28}, "grayscale": {"p": 0.5},
        "color_jitter": {"brightness": 0.2, "contrast": 0.2, "saturation": 0.2, "hue": 0.1}, "cutout": {"size": 6},
        "random_erasing": {"p": 1.0, "value": "random"}, "mixup": {"alpha": 0.4}, "cutmix": {"alpha": 1.0},
        "random_apply": {"ops": ["vflip", {"translate": 0.1}]}, "random_order": {"ops": ["hflip", {"rotation": 5}]},
    }
    assert sorted(cases) == AUGMENTATIONS.names()  # a new op must be added here
    for name, opts in cases.items():
        items = [{name: opts}]
        if name == "random_resized_crop":
            items.append({"center_crop": 24})  # evaluation must reach the same size
        shapes = set()
        for b in small:
            pipeline, loader = loaders(b, items, batch_size=128)
            x, y = next(iter(loader))
            shapes.add(tuple(x.shape))
            assert tuple(x.shape[1:]) == pipeline.input_shape and torch.isfinite(x).all()
            if name in ("mixup", "cutmix"):
                assert y.shape == (128, 10) and torch.allclose(y.sum(1), torch.ones(128))
            else:
                assert y.shape == (128,)
            # The raw images differ from the augmented ones for every random op.
            if name not in ("resize", "center_crop"):
                _, plain = loaders(b, [items[-1]] if name == "random_resized_crop" else [], batch_size=128)
                assert not torch.equal(next(iter(plain))[0], x)
        assert len(shapes) == 1, name


def test_unreadable_files_are_named(cifar_zip_small, tmp_path):
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(cifar_zip_small) as src, zipfile.ZipFile(bad, "w") as out:
        for info in src.infolist():
            out.writestr(info.filename, src.read(info))
        out.writestr("cifar10/train/cat/broken.jpg", b"not an image at all")
        jpg = src.read(next(n for n in src.namelist() if "/train/dog/" in n))
        out.writestr("cifar10/train/dog/truncated.jpg", jpg[: len(jpg) * 9 // 10])  # the header survives
    with pytest.raises(DataError, match=r"bad.zip:cifar10/train/cat/broken.jpg: cannot decode image.*skip_corrupt"):
        bundle(bad, False)
    b = bundle(bad, False, skip_corrupt=True, val_fraction=0.0)
    assert any("skipped 1 unreadable" in n for n in b.notes) and len(b.train) == 401
    # A file whose header reads but whose body is cut short fails when it is decoded, naming it.
    _, loader = loaders(b, [], workers=2, batch_size=401)
    with pytest.raises(DataError) as err:
        list(loader)
    message = str(err.value)
    assert "truncated.jpg: cannot decode image" in message and "\n" not in message


def test_inspect_looks_at_a_sample_of_file_backed_data(cifar_zip_small, tmp_path):
    from conftest import write_config

    from cnnlab.data.inspect import inspect_data
    from cnnlab.resolve import load_config

    cfg = write_config(tmp_path / "c.yaml", {"format": "image_folder", "path": str(cifar_zip_small)})
    mem = inspect_data(load_config(cfg, ["data.in_memory=true"]))
    files = inspect_data(load_config(cfg, ["data.in_memory=false"]))
    for key in ("sizes", "counts", "classes", "image_shape", "value_range", "mean", "std", "problems"):
        assert files[key] == (pytest.approx(mem[key]) if key in ("mean", "std") else mem[key]), key
    assert any("from 360 sampled training images" in n for n in files["notes"])
