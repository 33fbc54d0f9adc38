"""ImageFolder reader: folders and zips of real CIFAR-10 JPEGs, image modes, sizes, corrupt files."""

from __future__ import annotations

import shutil
import zipfile

import numpy as np
import pytest
from conftest import png_bytes
from PIL import Image

from cnnlab.config import DataConfig
from cnnlab.data.build import build_data, read_raw
from cnnlab.errors import DataError

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def data(path, **kw):
    return DataConfig(format="image_folder", path=str(path), **kw)


def test_zip_with_train_and_test_folders(cifar_zip_small):
    raw = read_raw(data(cifar_zip_small))
    assert raw.classes == CLASSES and raw.label_values == CLASSES
    assert raw.train.x.shape == (400, 3, 32, 32) and raw.test.x.shape == (100, 3, 32, 32)
    assert raw.val is None
    assert np.bincount(raw.train.y.numpy()).tolist() == [40] * 10
    # Pixels are the decoded JPEG, exactly as PIL decodes it.
    with zipfile.ZipFile(cifar_zip_small) as z:
        name = "cifar10/train/" + raw.train.ids[0]
        with z.open(name) as f:
            expected = np.asarray(Image.open(f).convert("RGB")).transpose(2, 0, 1)
    assert np.array_equal(raw.train.x[0].numpy(), expected)


def test_folder_reads_the_same_as_zip_and_is_cached(cifar_zip_small, cifar_folder_small, tmp_path):
    a, b = read_raw(data(cifar_zip_small)), read_raw(data(cifar_folder_small))
    assert a.train.ids == b.train.ids and (a.train.x == b.train.x).all()
    cache = tmp_path / "cache"
    read_raw(data(cifar_folder_small, cache_dir=str(cache)))
    assert len(list(cache.glob("*.npz"))) == 1
    again = read_raw(data(cifar_folder_small, cache_dir=str(cache)))  # served from the cache
    assert (again.train.x == a.train.x).all() and again.classes == CLASSES
    # Changing a file invalidates the cache entry.
    victim = next((cifar_folder_small / "train" / "cat").iterdir())
    copy_root = tmp_path / "copy"
    shutil.copytree(cifar_folder_small, copy_root)
    read_raw(data(copy_root, cache_dir=str(cache)))
    n = len(list(cache.glob("*.npz")))
    (copy_root / "train" / "cat" / victim.name).write_bytes(png_bytes(np.zeros((32, 32, 3), np.uint8)))
    changed = read_raw(data(copy_root, cache_dir=str(cache)))
    assert len(list(cache.glob("*.npz"))) == n + 1
    assert int(changed.train.x.sum()) != int(a.train.x.sum())


def test_dev_folder_is_the_validation_split(cifar_folder_small, tmp_path):
    root = tmp_path / "faces"
    shutil.copytree(cifar_folder_small / "train", root / "train")
    shutil.copytree(cifar_folder_small / "test", root / "dev")
    shutil.copytree(cifar_folder_small / "test", root / "test")
    b = build_data(data(root), seed=0)
    assert b.val_source == "folder" and len(b.val) == 100 and len(b.test) == 100 and len(b.train) == 400


def test_plain_class_folders_without_splits(cifar_folder_small):
    b = build_data(data(cifar_folder_small / "train", val_fraction=0.25), seed=0)
    assert b.test is None and len(b.val) == 100 and len(b.train) == 300


def make_tree(root, images: dict[str, bytes]):
    for rel, blob in images.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(blob)
    return root


def test_corrupt_image_is_named_or_skipped(tmp_path):
    rng = np.random.default_rng(0)
    imgs = {f"{c}/{i}.png": png_bytes(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)) for c in "ab" for i in range(4)}
    imgs["b/broken.png"] = png_bytes(np.zeros((8, 8, 3), np.uint8))[:40]
    root = make_tree(tmp_path / "t", imgs)
    with pytest.raises(DataError, match=r"b/broken.png: cannot decode image .* set data.skip_corrupt: true"):
        read_raw(data(root, cache=False))
    raw = read_raw(data(root, skip_corrupt=True, cache=False))
    assert len(raw.train) == 8 and any("skipped 1 corrupt" in n for n in raw.notes)


def test_mixed_sizes_are_refused_or_resized(tmp_path):
    imgs = {"a/1.png": png_bytes(np.zeros((8, 8, 3), np.uint8)), "a/2.png": png_bytes(np.zeros((8, 8, 3), np.uint8)),
            "b/1.png": png_bytes(np.full((12, 10, 3), 200, np.uint8))}
    root = make_tree(tmp_path / "t", imgs)
    with pytest.raises(DataError, match=r"different sizes \(8x8 in a/1.png, 12x10 in b/1.png\); set data.image_size"):
        read_raw(data(root, cache=False))
    raw = read_raw(data(root, image_size=16, cache=False))
    assert raw.train.x.shape == (3, 3, 16, 16) and int(raw.train.x[2].min()) == 200


def test_grayscale_palette_and_rgba(tmp_path):
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8)
    root = make_tree(tmp_path / "g", {"a/1.png": png_bytes(gray, "L"), "b/1.png": png_bytes(gray, "L")})
    raw = read_raw(data(root, cache=False))
    assert raw.train.x.shape == (2, 1, 8, 8) and np.array_equal(raw.train.x[0, 0].numpy(), gray)

    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = 255
    rgba[0, 0, 3] = 0  # one transparent pixel
    pal = Image.fromarray(np.full((8, 8, 3), 50, np.uint8)).convert("P")
    import io
    buf = io.BytesIO()
    pal.save(buf, format="PNG")
    root = make_tree(tmp_path / "m", {"a/1.png": png_bytes(gray, "L"), "b/1.png": png_bytes(rgba, "RGBA"),
                                      "c/1.png": buf.getvalue()})
    raw = read_raw(data(root, cache=False))
    assert raw.train.x.shape == (3, 3, 8, 8)  # any colour image makes the dataset RGB
    x = raw.train.x.numpy()
    assert np.array_equal(x[0, 0], gray) and np.array_equal(x[0, 1], gray)
    assert x[1, 0, 1, 1] == 255 and x[1, 0, 0, 0] == 0  # transparent composites onto black
    assert np.array_equal(x[2], np.asarray(pal.convert("RGB")).transpose(2, 0, 1))
    assert any("converted to RGB" in n for n in raw.notes)


def test_not_an_image_dataset(tmp_path):
    root = make_tree(tmp_path / "one", {"only/1.png": png_bytes(np.zeros((4, 4, 3), np.uint8))})
    with pytest.raises(DataError, match=r"only one class folder \(.only.\); a classifier needs root/<class>/<image> with at least two"):
        read_raw(data(root, cache=False))
    bad_zip = tmp_path / "x.zip"
    bad_zip.write_bytes(b"PK\x03\x04 definitely not a zip")
    with pytest.raises(DataError, match="x.zip"):
        read_raw(data(bad_zip, cache=False))


def test_sixteen_bit_cmyk_and_exif_rotated_images(cifar_zip_small, tmp_path):
    import io

    with zipfile.ZipFile(cifar_zip_small) as z:
        names = [n for n in z.namelist() if n.endswith(".jpg")][:2]
        photos = [np.asarray(Image.open(io.BytesIO(z.read(n))).convert("RGB")) for n in names]
    # 16-bit grayscale PNG (as from scientific cameras): scaled to 8 bits, not clipped to white.
    wide = (photos[0][..., 0].astype(np.uint16) * 257 + 100).clip(0, 65535)
    gray = tmp_path / "g"
    make_tree(gray, {"a/1.png": png_bytes(wide.astype(np.uint16)), "b/1.png": png_bytes(photos[1][..., 0], "L")})
    assert Image.open(gray / "a" / "1.png").mode == "I;16"
    raw = read_raw(data(gray, cache=False))
    assert raw.train.x.shape == (2, 1, 32, 32)
    assert np.abs(raw.train.x[0, 0].numpy().astype(int) - photos[0][..., 0]).max() <= 1

    def jpeg(im, **kw):
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=95, **kw)
        return buf.getvalue()

    # A CMYK JPEG (print workflows) and a phone photo stored sideways with EXIF orientation 6.
    cmyk = Image.fromarray(photos[0]).convert("CMYK")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    sideways = Image.fromarray(np.ascontiguousarray(photos[1][:, :16]))  # 32 high, 16 wide as stored
    colour = tmp_path / "c"
    make_tree(colour, {"a/cmyk.jpg": jpeg(cmyk), "b/phone.jpg": jpeg(sideways, exif=exif.tobytes())})
    with pytest.raises(DataError, match=r"different sizes \(32x32 in a/cmyk.jpg, 16x32 in b/phone.jpg\)"):
        read_raw(data(colour, cache=False))  # the photo is 16 high and 32 wide once upright
    raw = read_raw(data(colour, image_size=[16, 32], cache=False))
    assert raw.train.x.shape == (2, 3, 16, 32)
    expected = np.asarray(Image.open(colour / "b" / "phone.jpg").convert("RGB").transpose(Image.Transpose.ROTATE_270))
    assert np.array_equal(raw.train.x[1].numpy(), expected.transpose(2, 0, 1))
    small = np.asarray(Image.open(colour / "a" / "cmyk.jpg").convert("RGB").resize((32, 16), Image.Resampling.BILINEAR,
                                                                                     reducing_gap=None))
    assert np.array_equal(raw.train.x[0].numpy(), small.transpose(2, 0, 1))
    # At its own size, the CMYK photo comes back close to the RGB original (JPEG loss only).
    same = make_tree(tmp_path / "s", {"a/cmyk.jpg": jpeg(cmyk), "b/rgb.png": png_bytes(photos[1])})
    x = read_raw(data(same, cache=False)).train.x.numpy().astype(int)
    assert np.abs(x[0] - photos[0].transpose(2, 0, 1)).mean() < 4 and np.array_equal(x[1], photos[1].transpose(2, 0, 1))


def test_split_folders_under_other_names_are_refused_then_named(tmp_path):
    """train_sample/ dev_sample/ test_sample/ (as the faces workload ships) are splits, not three
    classes: refused with the data.splits to write, then read as splits with it, on both paths."""
    img = png_bytes(np.zeros((4, 4, 3), np.uint8))
    layout = {f"{split}/{c}/{i}.png": img for split in ("train_sample", "dev_sample", "test_sample")
              for c in ("ann", "bob") for i in range(3)}
    root = make_tree(tmp_path / "faces", layout)
    with pytest.raises(DataError, match=r"look like split folders .* name them: "
                                        r"data.splits=\{train: train_sample, val: dev_sample, test: test_sample\}"):
        read_raw(data(root, cache=False))
    named = {"train": "train_sample", "val": "dev_sample", "test": "test_sample"}
    raw = read_raw(data(root, cache=False, splits=named))
    assert raw.classes == ["ann", "bob"] and len(raw.train) == len(raw.val) == len(raw.test) == 6
    from cnnlab.data.build import build_data

    for in_memory in (True, False):
        bundle = build_data(data(root, cache=False, splits=named, in_memory=in_memory), 0)
        assert {k: len(v) for k, v in bundle.splits().items()} == {"train": 6, "val": 6, "test": 6}
    with pytest.raises(DataError, match=r"data.splits.val: .*nope has no images; the folders there are: dev_sample"):
        read_raw(data(root, cache=False, splits={"train": "train_sample", "val": "nope"}))
    # Class folders that merely contain a split word (and hold images directly) are classes.
    classes = make_tree(tmp_path / "plain", {f"{c}/{i}.png": img for c in ("testudo", "trainer") for i in range(2)})
    assert read_raw(data(classes, cache=False)).classes == ["testudo", "trainer"]
