"""Batched augmentations on real images: exact where the op is exact, statistical otherwise."""

from __future__ import annotations

import pytest
import torch

from cnnlab.config import DataConfig
from cnnlab.data import read_raw
from cnnlab.data.augment import AUGMENTATIONS, build_pipeline
from cnnlab.data.loader import BatchLoader


@pytest.fixture(scope="module")
def batch(request):
    zip_path = request.getfixturevalue("cifar_zip_small")
    raw = read_raw(DataConfig(format="image_folder", path=str(zip_path)))
    return raw.train.x[:64].float() / 255


def op(name, **kw):
    return AUGMENTATIONS.build(name, AUGMENTATIONS.validate(name, kw, "augment"))


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_hflip_flips_exactly_the_chosen_samples(batch):
    out = op("hflip", p=1.0)(batch, gen())
    assert torch.equal(out, batch.flip(3))
    assert torch.equal(op("hflip", p=0.0)(batch, gen()), batch)
    half = op("hflip", p=0.5)(batch, gen())
    flipped = [torch.equal(half[i], batch[i].flip(2)) for i in range(len(batch))]
    assert 16 < sum(flipped) < 48


def test_random_crop_shifts_content_within_padding(batch):
    out = op("random_crop", padding=4)(batch, gen())
    assert out.shape == batch.shape
    # Each output is the input shifted by (dy, dx) in [-4, 4] with zero fill: find that shift.
    for i in range(8):
        ok = False
        padded = torch.nn.functional.pad(batch[i], (4, 4, 4, 4))
        for dy in range(9):
            for dx in range(9):
                if torch.equal(padded[:, dy:dy + 32, dx:dx + 32], out[i]):
                    ok = True
        assert ok
    assert torch.equal(op("random_crop", padding=0)(batch, gen()), batch)
    reflect = op("random_crop", padding=4, padding_mode="reflect")(batch, gen())
    assert (reflect > 0).float().mean() > (out > 0).float().mean()  # no black borders


def test_rotation(batch):
    assert torch.allclose(op("rotation", degrees=0.0)(batch, gen()), batch, atol=1e-5)
    out = op("rotation", degrees=30.0)(batch, gen())
    assert out.shape == batch.shape and not torch.allclose(out, batch)
    assert float(out[:, :, 0, 0].abs().max()) < float(batch[:, :, 0, 0].abs().max())  # corners filled with zeros


def test_color_jitter_ranges_and_identity(batch):
    same = op("color_jitter")(batch, gen())
    assert torch.allclose(same, batch)
    out = op("color_jitter", brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)(batch, gen())
    assert out.min() >= 0 and out.max() <= 1 and not torch.allclose(out, batch)
    # Brightness alone scales each image by one factor in [0.6, 1.4].
    b = op("color_jitter", brightness=0.4)(batch, gen())
    ratio = (b.sum(dim=(1, 2, 3)) / batch.sum(dim=(1, 2, 3)))
    assert ratio.min() > 0.55 and ratio.max() < 1.41
    # A hue shift keeps gray pixels gray.
    gray = batch.mean(1, keepdim=True).expand(-1, 3, -1, -1).contiguous()
    h = op("color_jitter", hue=0.5)(gray, gen())
    assert torch.allclose(h, gray, atol=1e-4)


def test_pipeline_is_reproducible_with_the_generator(batch):
    ops = build_pipeline([{"name": "hflip", "p": 0.5}, {"name": "random_crop", "padding": 2, "padding_mode": "zero"},
                          {"name": "rotation", "degrees": 10.0, "p": 1.0}])
    a, b = batch, batch
    for o in ops:
        a = o(a, gen(7))
    for o in ops:
        b = o(b, gen(7))
    assert torch.equal(a, b)


def test_loader_normalises_and_covers_every_sample():
    from cnnlab.data.types import Split

    x = torch.arange(10 * 1 * 2 * 2, dtype=torch.uint8).view(10, 1, 2, 2)
    y = torch.arange(10)
    loader = BatchLoader(Split(x, y), 4, torch.device("cpu"), 1 / 255, [0.5], [0.25], shuffle=True,
                         generator=gen(1))
    seen = torch.cat([yb for _, yb in loader])
    assert sorted(seen.tolist()) == list(range(10)) and len(loader) == 3
    xb, yb = next(iter(BatchLoader(Split(x, y), 10, torch.device("cpu"), 1 / 255, [0.5], [0.25])))
    assert torch.allclose(xb, (x.float() / 255 - 0.5) / 0.25)
    # Float sources are never modified in place by the loader.
    xf = torch.rand(10, 1, 2, 2)
    before = xf.clone()
    list(BatchLoader(Split(xf, y), 4, torch.device("cpu"), 1.0, [0.5], [0.25]))
    assert torch.equal(xf, before)
