"""Batched augmentations on real CIFAR-10 images: exact where the op is exact, statistical otherwise.

Random geometry is measured by riding extra channels along with the real ones (ops treat
channels alike): a coordinate ramp reveals a crop box, a channel of ones reveals erased
pixels, a channel of sample ids reveals what cutmix pasted.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from cnnlab.config import DataConfig
from cnnlab.data.augment import AUGMENTATIONS, Batch, Rng, build_pipeline, resolve_ops
from cnnlab.data.batches import BatchLoader, LoaderOptions
from cnnlab.data.build import read_raw
from cnnlab.data.types import Split


@pytest.fixture(scope="module")
def raw(request):
    zip_path = request.getfixturevalue("cifar_zip_small")
    return read_raw(DataConfig(format="image_folder", path=str(zip_path)))


@pytest.fixture(scope="module")
def batch(raw):
    return raw.train.x[::6][:64].float() / 255  # 64 images from all ten classes


@pytest.fixture(scope="module")
def labels(raw):
    return raw.train.y[::6][:64]


def op(name, **kw):
    return AUGMENTATIONS.build({"name": name, **AUGMENTATIONS.validate(name, kw, "augment")}, num_classes=10)


def rng(seed=0):
    return Rng(torch.Generator().manual_seed(seed), np.random.default_rng(seed))


def run(o, x, seed=0, y=None):
    out = o(Batch(x, y), rng(seed))
    return out if y is not None else out.x


def with_channels(x, *extra):
    return torch.cat([x, *[e.expand(x.shape[0], 1, *x.shape[2:]) for e in extra]], 1)


# ----------------------------------------------------------------------------- flips, crops, shifts


def test_flips_flip_exactly_the_chosen_samples(batch):
    assert torch.equal(run(op("hflip", p=1.0), batch), batch.flip(3))
    assert torch.equal(run(op("vflip", p=1.0), batch), batch.flip(2))
    assert torch.equal(run(op("vflip", p=0.0), batch), batch)
    half = run(op("vflip", p=0.5), batch)
    flipped = [torch.equal(half[i], batch[i].flip(1)) for i in range(len(batch))]
    kept = [torch.equal(half[i], batch[i]) for i in range(len(batch))]
    assert all(a or b for a, b in zip(flipped, kept)) and 16 < sum(flipped) < 48


def shift_of(out, x, pad):
    """The (dy, dx) for which out is x shifted with zero fill, or None."""
    padded = F.pad(x, (pad,) * 4)
    h, w = x.shape[1:]
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            if torch.equal(padded[:, dy:dy + h, dx:dx + w], out):
                return pad - dy, pad - dx
    return None


def test_random_crop_shifts_content_within_padding(batch):
    out = run(op("random_crop", padding=4), batch)
    assert out.shape == batch.shape
    assert all(shift_of(out[i], batch[i], 4) is not None for i in range(8))
    assert torch.equal(run(op("random_crop", padding=0), batch), batch)
    reflect = run(op("random_crop", padding=4, padding_mode="reflect"), batch)
    assert (reflect > 0).float().mean() > (out > 0).float().mean()  # no black borders


def test_translate_is_a_whole_pixel_shift_within_the_fraction(batch):
    out = run(op("translate", fraction=0.125), batch)
    shifts = [shift_of(out[i], batch[i], 4) for i in range(24)]
    assert all(s is not None for s in shifts)  # round(0.125 * 32) = 4 px at most
    assert len(set(shifts)) > 8  # shifts vary per sample
    assert torch.equal(run(op("translate", fraction=0.0), batch), batch)


def test_rotation(batch):
    assert torch.allclose(run(op("rotation", degrees=0.0), batch), batch, atol=1e-5)
    out = run(op("rotation", degrees=30.0), batch)
    assert out.shape == batch.shape and not torch.allclose(out, batch)
    assert float(out[:, :, 0, 0].abs().max()) < float(batch[:, :, 0, 0].abs().max())  # corners filled with zeros


def test_random_resized_crop_box_areas_and_ratios(batch):
    """A coordinate ramp riding along reveals each crop box: bilinear resampling is exact on a ramp."""
    ramp = torch.arange(32, dtype=torch.float32)
    x = with_channels(batch, ramp.view(1, 1, 1, 32), ramp.view(1, 1, 32, 1))
    out = run(op("random_resized_crop", size=24, scale=[0.25, 0.75], ratio=[0.5, 2.0]), x)
    assert out.shape == (64, 5, 24, 24)
    assert out[:, :3].min() >= 0 and out[:, :3].max() <= 1
    j1, j2 = 6, 17  # interior output pixels: no border clamping
    cw = (out[:, 3, 12, j2] - out[:, 3, 12, j1]) / (j2 - j1) * 24
    ch = (out[:, 4, j2, 12] - out[:, 4, j1, 12]) / (j2 - j1) * 24
    assert torch.allclose(cw, cw.round(), atol=1e-3) and torch.allclose(ch, ch.round(), atol=1e-3)  # whole pixels
    cw, ch = cw.round(), ch.round()
    area = cw * ch / (32 * 32)
    slack = (cw + ch) / 2 / (32 * 32) + 0.25 / 1024  # the side lengths are rounded to whole pixels
    assert bool(((area >= 0.25 - slack) & (area <= 0.75 + slack)).all())
    ratio = cw / ch
    assert bool(((ratio >= 0.5 * (1 - 1 / ch)) & (ratio <= 2.0 * (1 + 1 / ch))).all())
    assert area.min() < 0.4 and area.max() > 0.6  # the whole range is used
    # The box sits inside the image.
    left = out[:, 3, 12, j1] - (j1 + 0.5) * cw / 24 + 0.5
    assert left.min() >= -1e-3 and (left + cw).max() <= 32 + 1e-3
    # The whole image at its own size is the identity.
    same = run(op("random_resized_crop", scale=[1.0, 1.0], ratio=[1.0, 1.0]), batch)
    assert torch.allclose(same, batch, atol=1e-6)


# ----------------------------------------------------------------------------- deterministic geometry


def test_resize_is_torch_interpolate(batch):
    out = run(op("resize", size=40), batch)
    assert torch.equal(out, F.interpolate(batch, size=(40, 40), mode="bilinear", align_corners=False, antialias=True))
    down = run(op("resize", size=[20, 12]), batch)
    assert torch.equal(down, F.interpolate(batch, size=(20, 12), mode="bilinear", align_corners=False, antialias=True))
    # An int sets the shorter side, as torchvision's Resize does: 32x24 -> 21x16.
    tall = batch[:, :, :, :24]
    assert run(op("resize", size=16), tall).shape[2:] == (21, 16)
    assert op("resize", size=16).shape((3, 32, 24)) == (3, 21, 16)


def test_center_crop_cuts_the_middle(batch):
    assert torch.equal(run(op("center_crop", size=[20, 24]), batch), batch[:, :, 6:26, 4:28])
    assert torch.equal(run(op("center_crop", size=32), batch), batch)


# ----------------------------------------------------------------------------- colour


def test_grayscale_uses_torchvision_luma_and_keeps_channels(batch):
    out = run(op("grayscale", p=1.0), batch)
    r, g, b = batch.unbind(1)
    assert out.shape == batch.shape
    assert torch.allclose(out[:, 0], 0.2989 * r + 0.587 * g + 0.114 * b, atol=1e-6)
    assert torch.equal(out, TF.rgb_to_grayscale(batch, num_output_channels=3))
    assert torch.equal(out[:, 0], out[:, 2])
    assert torch.equal(run(op("grayscale", p=0.0), batch), batch)
    mono = batch[:, :1]
    assert torch.equal(run(op("grayscale", p=1.0), mono), mono)


def test_color_jitter_ranges_and_identity(batch):
    assert torch.allclose(run(op("color_jitter"), batch), batch)
    out = run(op("color_jitter", brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1), batch)
    assert out.min() >= 0 and out.max() <= 1 and not torch.allclose(out, batch)
    # Brightness alone scales each image by one factor in [0.6, 1.4].
    b = run(op("color_jitter", brightness=0.4), batch)
    ratio = b.sum(dim=(1, 2, 3)) / batch.sum(dim=(1, 2, 3))
    assert ratio.min() > 0.55 and ratio.max() < 1.41
    # A hue shift keeps gray pixels gray.
    gray = batch.mean(1, keepdim=True).expand(-1, 3, -1, -1).contiguous()
    assert torch.allclose(run(op("color_jitter", hue=0.5), gray), gray, atol=1e-4)


# ----------------------------------------------------------------------------- occlusion


def boxes_of(mask):
    """(rows, cols, is_rectangle) of the True region of each (H, W) mask."""
    out = []
    for m in mask:
        rows, cols = m.any(1).nonzero().flatten(), m.any(0).nonzero().flatten()
        if len(rows) == 0:
            out.append((0, 0, True))
            continue
        h, w = int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)
        out.append((h, w, int(m.sum()) == h * w))
    return out


def test_cutout_holes_are_clipped_squares(batch):
    x = with_channels(batch, torch.ones(1, 1, 1, 1))
    out = run(op("cutout", size=8, holes=1, p=1.0), x)
    hole = out[:, 3] == 0
    boxes = boxes_of(hole)
    assert all(rect and 1 <= h <= 8 and 1 <= w <= 8 for h, w, rect in boxes)
    assert sum(h == 8 and w == 8 for h, w, _ in boxes) > 20  # whole squares away from the border
    assert bool((out[:, :3][hole.unsqueeze(1).expand(-1, 3, -1, -1)] == 0).all())  # black in every channel
    assert torch.equal(out[:, :3][~hole.unsqueeze(1).expand(-1, 3, -1, -1)],
                       batch[~hole.unsqueeze(1).expand(-1, 3, -1, -1)])
    two = run(op("cutout", size=6, holes=2, p=1.0), x)
    assert ((two[:, 3] == 0).sum((1, 2)) > 36).any()  # two holes can cover more than one
    assert torch.equal(run(op("cutout", size=8, p=0.0), x), x)


def test_random_erasing_areas_ratios_and_values(batch):
    x = with_channels(batch, torch.ones(1, 1, 1, 1))
    out = run(op("random_erasing", p=1.0, scale=[0.05, 0.2], ratio=[0.5, 2.0], value=0.0), x)
    erased = out[:, 3] == 0
    boxes = boxes_of(erased)
    assert all(rect for _, _, rect in boxes)
    area = torch.tensor([h * w for h, w, _ in boxes], dtype=torch.float32) / 1024
    assert bool((area > 0).all())  # a box of 5-20% of a 32x32 image always fits
    assert area.min() >= 0.05 - 0.02 and area.max() <= 0.2 + 0.02  # sides rounded to whole pixels
    assert area.min() < 0.08 and area.max() > 0.15
    aspect = torch.tensor([h / w for h, w, _ in boxes])
    assert aspect.min() >= 0.5 * 0.7 and aspect.max() <= 2.0 / 0.7
    assert torch.equal(run(op("random_erasing", p=0.0), x), x)
    # Per-channel values fill the box exactly; "random" fills it with standard-normal noise.
    filled = run(op("random_erasing", p=1.0, value=[0.1, 0.2, 0.3]), batch)
    changed = (filled != batch).any(1)
    for c, v in enumerate([0.1, 0.2, 0.3]):
        assert torch.allclose(filled[:, c][changed], torch.tensor(v))
    noisy = run(op("random_erasing", p=1.0, scale=[0.2, 0.3], value="random"), x)
    region = noisy[:, :3][(noisy[:, 3] != 1).unsqueeze(1).expand(-1, 3, -1, -1)]
    assert abs(float(region.mean())) < 0.05 and 0.9 < float(region.std()) < 1.1


# ----------------------------------------------------------------------------- label mixing


def test_mixup_blends_images_and_labels_with_one_lambda(batch, labels):
    out = run(op("mixup", alpha=1.0), batch, 3, labels)
    y = out.y
    assert y.shape == (64, 10) and torch.allclose(y.sum(1), torch.ones(64))
    partner = labels.roll(1)
    i = int((labels != partner).nonzero()[0])
    lam = float(y[i, labels[i]])
    assert 0.0 <= lam <= 1.0
    assert torch.allclose(out.x, lam * batch + (1 - lam) * batch.roll(1, 0), atol=1e-6)
    differ = labels != partner
    assert torch.allclose(y[differ, labels[differ]], torch.full((int(differ.sum()),), lam))
    # lambda ~ Beta(alpha, alpha): uniform for alpha = 1, mostly near 0 or 1 for alpha = 0.2.
    def lambdas(alpha):
        return torch.tensor([float(run(op("mixup", alpha=alpha), batch, s, labels).y[i, labels[i]]) for s in range(300)])

    uniform = lambdas(1.0)
    assert 0.0 <= uniform.min() and uniform.max() <= 1.0 and abs(float(uniform.mean()) - 0.5) < 0.05
    assert float((uniform < 0.25).float().mean()) == pytest.approx(0.25, abs=0.07)
    edgy = lambdas(0.2)
    assert float(((edgy < 0.1) | (edgy > 0.9)).float().mean()) > 0.5


def test_cutmix_label_weights_equal_the_pasted_area(batch, labels):
    ids = (torch.arange(64, dtype=torch.float32) + 1).view(64, 1, 1, 1)
    x = torch.cat([batch, ids.expand(64, 1, 32, 32)], 1)
    areas = []
    for seed in range(20):
        out = run(op("cutmix", alpha=1.0), x, seed, labels)
        pasted = (out.x[:, 3] != x[:, 3]).float().mean((1, 2))  # pixels now showing the partner
        assert torch.allclose(pasted, pasted[0].expand(64))  # one box for the whole batch
        assert torch.allclose(out.y.sum(1), torch.ones(64))
        differ = labels != labels.roll(1)
        partner_weight = out.y[differ, labels.roll(1)[differ]]
        assert torch.allclose(partner_weight, pasted[differ], atol=1e-6)
        assert torch.equal(out.x[:, :3][(out.x[:, 3] == x[:, 3]).unsqueeze(1).expand(-1, 3, -1, -1)],
                           batch[(out.x[:, 3] == x[:, 3]).unsqueeze(1).expand(-1, 3, -1, -1)])
        areas.append(float(pasted[0]))
    assert min(areas) < 0.3 and max(areas) > 0.5


def test_mixup_and_cutmix_together_take_turns(batch, labels):
    pipeline = build_pipeline(resolve_ops(["mixup", "cutmix"]), (3, 32, 32), 10)
    assert len(pipeline.train_ops) == 1 and pipeline.eval_ops == []
    kinds = set()
    for seed in range(16):
        out = pipeline.train_ops[0](Batch(batch, labels), rng(seed)).x
        # Every cutmix pixel is copied from an image of the batch; mixup blends them.
        kinds.add("cutmix" if bool(((out == batch) | (out == batch.roll(1, 0))).all()) else "mixup")
    assert kinds == {"mixup", "cutmix"}


# ----------------------------------------------------------------------------- wrappers


def test_random_apply_decides_per_sample(batch):
    o = op("random_apply", p=0.5, ops=[{"vflip": {"p": 1.0}}, {"hflip": {"p": 1.0}}])
    out = run(o, batch)
    both = [torch.equal(out[i], batch[i].flip(1).flip(2)) for i in range(64)]
    kept = [torch.equal(out[i], batch[i]) for i in range(64)]
    assert all(a or b for a, b in zip(both, kept)) and 16 < sum(both) < 48


def test_random_order_picks_one_order_per_batch(batch):
    items = resolve_ops([{"vflip": {"p": 1.0}}, {"cutout": {"size": 10}}], "ops")
    o = op("random_order", ops=items)
    seen = set()
    for seed in range(12):
        out = run(o, batch, seed)
        perm = np.random.default_rng(seed).permutation(2)  # the loader's host generator decides the order
        children = [op(it["name"], **{k: v for k, v in it.items() if k != "name"}) for it in items]
        g = torch.Generator().manual_seed(seed)
        expected = batch
        for k in perm:
            expected = children[k].image(expected, Rng(g, None))
        assert torch.equal(out, expected)
        seen.add(tuple(perm))
    assert seen == {(0, 1), (1, 0)}


# ----------------------------------------------------------------------------- loader


def test_batch_loader_is_reproducible_with_its_generator(raw):
    split = Split(raw.train.x[:200], raw.train.y[:200])
    pipeline = build_pipeline(resolve_ops(["hflip", {"random_crop": {"padding": 2}}, {"rotation": {"degrees": 10}},
                                           {"random_erasing": {"p": 0.5}}, "mixup"]), (3, 32, 32), 10)

    def epochs(seed):
        g = torch.Generator().manual_seed(seed)
        loader = BatchLoader(split, 64, LoaderOptions(torch.device("cpu"), 1 / 255, [0.5] * 3, [0.25] * 3), shuffle=True,
                             augment=pipeline.train_ops, generator=g)
        return [b for _ in range(2) for b in loader]

    a, b, c = epochs(0), epochs(0), epochs(1)
    assert len(a) == 8 and all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b))
    assert not torch.equal(a[0][0], c[0][0])
    assert not torch.equal(a[0][0], a[4][0])  # the second epoch differs from the first
    assert a[0][1].shape == (64, 10) and torch.allclose(a[0][1].sum(1), torch.ones(64))


def test_loader_normalises_and_covers_every_sample():
    x = torch.arange(10 * 1 * 2 * 2, dtype=torch.uint8).view(10, 1, 2, 2)
    y = torch.arange(10)
    loader = BatchLoader(Split(x, y), 4, LoaderOptions(torch.device("cpu"), 1 / 255, [0.5], [0.25]), shuffle=True,
                         generator=torch.Generator().manual_seed(1))
    seen = torch.cat([yb for _, yb in loader])
    assert sorted(seen.tolist()) == list(range(10)) and len(loader) == 3
    xb, yb = next(iter(BatchLoader(Split(x, y), 10, LoaderOptions(torch.device("cpu"), 1 / 255, [0.5], [0.25]))))
    assert torch.allclose(xb, (x.float() / 255 - 0.5) / 0.25)
    # Float sources are never modified in place by the loader, whatever the ops.
    xf = torch.rand(10, 1, 2, 2)
    before = xf.clone()
    ops = build_pipeline(resolve_ops([{"hflip": {"p": 1.0}}, "mixup"]), (1, 2, 2), 10).train_ops
    list(BatchLoader(Split(xf, y), 4, LoaderOptions(torch.device("cpu"), 1.0, [0.5], [0.25]), augment=ops,
                     generator=torch.Generator()))
    assert torch.equal(xf, before)
