"""Each class of bad input or hostile file: one line on stderr, exit 2, no traceback, nothing written.

Built from real images (CIFAR-10 JPEGs, MNIST) turned into the hostile case: broken and
looping symlinks, a decompression bomb, an encrypted or escaping archive member, outputs in
the way, a full disk, labels that are almost numbers, layouts that lost a file.
"""

from __future__ import annotations

import os
import resource
import signal
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import CIFAR_ZIP, ROOT, write_config

from cnnlab.cli import main


def jpegs(n: int = 6) -> list[tuple[str, bytes]]:
    """(class, JPEG bytes) of real CIFAR-10 test images, two classes."""
    with zipfile.ZipFile(CIFAR_ZIP) as z:
        out = []
        for cls in ("cat", "dog"):
            names = sorted(n for n in z.namelist() if n.startswith(f"cifar10/test/{cls}/"))[: n // 2]
            out += [(cls, z.read(name)) for name in names]
    return out


def image_tree(root: Path) -> Path:
    for i, (cls, data) in enumerate(jpegs()):
        (root / cls).mkdir(parents=True, exist_ok=True)
        (root / cls / f"{i}.jpg").write_bytes(data)
    return root


def expect_one_line(capsys, args: list, *words: str, out_dir: Path | None = None) -> str:
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, err
    if out_dir is not None:
        assert not out_dir.exists() or not any(out_dir.iterdir()), "a run directory was left behind"
    return err


def folder_config(tmp_path: Path, path: Path) -> Path:
    return write_config(tmp_path / "c.yaml", {"format": "image_folder", "path": str(path)},
                        train={"epochs": 1, "out_dir": str(tmp_path / "runs")})


def test_a_broken_symlink_in_an_image_tree(tmp_path, capsys):
    root = image_tree(tmp_path / "data")
    (root / "cat" / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    expect_one_line(capsys, ["train", folder_config(tmp_path, root)], "gone.jpg", out_dir=tmp_path / "runs")


def test_a_self_referencing_symlink_in_an_image_tree(tmp_path, capsys):
    root = image_tree(tmp_path / "data")
    loop = root / "dog" / "loop.jpg"
    loop.symlink_to(loop)
    expect_one_line(capsys, ["train", folder_config(tmp_path, root)], "loop.jpg", out_dir=tmp_path / "runs")


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares a huge image (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def test_a_decompression_bomb(tmp_path, capsys):
    root = image_tree(tmp_path / "data")
    (root / "cat" / "bomb.png").write_bytes(png_declaring(100_000, 100_000))
    expect_one_line(capsys, ["train", folder_config(tmp_path, root)], "bomb.png", "decompression bomb",
                    out_dir=tmp_path / "runs")


def zip_with(tmp_path: Path, extra: str, encrypt: bool = False) -> Path:
    path = tmp_path / "data.zip"
    with zipfile.ZipFile(path, "w") as z:
        for i, (cls, data) in enumerate(jpegs()):
            z.writestr(f"{cls}/{i}.jpg", data)
        z.writestr(zipfile.ZipInfo(extra), jpegs(2)[0][1])
    if encrypt:  # mark the last member encrypted, as a password-protected archive does
        raw = bytearray(path.read_bytes())
        name = extra.encode()
        for sig, flag_at, name_at in ((b"PK\x03\x04", 6, 30), (b"PK\x01\x02", 8, 46)):
            at = raw.find(sig + b"", 0)
            while at != -1:
                if raw[at + name_at: at + name_at + len(name)] == name:
                    raw[at + flag_at] |= 0x1
                at = raw.find(sig, at + 4)
        path.write_bytes(bytes(raw))
    return path


def test_an_encrypted_archive_member(tmp_path, capsys):
    archive = zip_with(tmp_path, "cat/secret.jpg", encrypt=True)
    expect_one_line(capsys, ["train", folder_config(tmp_path, archive)], "secret.jpg", "encrypted",
                    out_dir=tmp_path / "runs")


@pytest.mark.parametrize("name", ["/abs/cat/x.jpg", "../up/cat/x.jpg", "cat/../../x.jpg"])
def test_archive_members_that_escape_are_refused(name, tmp_path, capsys):
    archive = zip_with(tmp_path, name)
    expect_one_line(capsys, ["train", folder_config(tmp_path, archive)], "absolute path or climbs out",
                    out_dir=tmp_path / "runs")


def test_one_class_folder(tmp_path, capsys):
    root = tmp_path / "data"
    (root / "cat").mkdir(parents=True)
    for i, (_, data) in enumerate(jpegs()):
        (root / "cat" / f"{i}.jpg").write_bytes(data)
    expect_one_line(capsys, ["data", "inspect", folder_config(tmp_path, root)], "only one class folder ('cat')")


def test_a_fractional_label_among_integers(tmp_path, capsys):
    d = tmp_path / "kaggle"
    d.mkdir()
    np.save(d / "train.npy", np.zeros((6, 784), np.uint8))
    (d / "train.csv").write_text("image_id,label\n" + "".join(f"{i},{v}\n" for i, v in enumerate(
        ["0", "1", "2.5", "1", "0", "2"])))
    cfg = write_config(tmp_path / "c.yaml", {"format": "npy_csv", "path": str(d)})
    expect_one_line(capsys, ["data", "inspect", cfg], "label '2.5' at row 2 is not an integer")


def test_tiny_imagenet_without_its_val_annotations(tmp_path, capsys):
    root = tmp_path / "tiny-imagenet-200"
    data = jpegs(2)
    (root / "wnids.txt").parent.mkdir(parents=True)
    (root / "wnids.txt").write_text("n01\nn02\n")
    for w, (_, blob) in zip(("n01", "n02"), data):
        (root / "train" / w / "images").mkdir(parents=True)
        (root / "train" / w / "images" / f"{w}_0.JPEG").write_bytes(blob)
    (root / "val" / "images").mkdir(parents=True)
    (root / "val" / "images" / "val_0.JPEG").write_bytes(data[0][1])
    cfg = write_config(tmp_path / "c.yaml", {"format": "tiny_imagenet", "path": str(root)})
    expect_one_line(capsys, ["data", "inspect", cfg], "val_annotations.txt: missing")


def test_outputs_in_the_way(tmp_path, capsys, mnist_small):
    cfg = write_config(tmp_path / "c.yaml", {"format": "idx", "path": str(mnist_small), "limit_train": 200},
                       train={"epochs": 1, "out_dir": str(tmp_path / "runs")})
    assert main(["train", str(cfg), "-q"]) == 0
    run_dir = next((tmp_path / "runs").iterdir())
    capsys.readouterr()
    (tmp_path / "sub").mkdir()
    x = np.zeros((3, 784), np.uint8)
    np.save(tmp_path / "x.npy", x)
    expect_one_line(capsys, ["predict", run_dir, tmp_path / "x.npy", "--out", tmp_path / "sub"], "--out", "is a folder")
    (tmp_path / "file").write_text("")
    expect_one_line(capsys, ["predict", run_dir, tmp_path / "x.npy", "--out", tmp_path / "file" / "s.csv"], "--out")


def test_a_full_disk_during_a_checkpoint_keeps_the_previous_one(tmp_path, mnist_small):
    """RLIMIT_FSIZE makes a write past a size fail (EFBIG) as a full disk makes it fail (ENOSPC):
    last.pt grows a little each epoch (its history), so a limit between its size after epoch 1
    and after epoch 2 lets the first checkpoint through and fails the second."""
    import torch

    def config(name: str, epochs: int) -> Path:
        return write_config(tmp_path / f"{name}.yaml", {"format": "idx", "path": str(mnist_small), "limit_train": 400},
                            model={"channels": [32, 64]}, train={"epochs": epochs, "batch_size": 10,
                                                                 "out_dir": str(tmp_path / name)})

    sizes = {}
    for epochs in (1, 2):
        assert main(["train", str(config(f"free{epochs}", epochs)), "-q"]) == 0
        sizes[epochs] = next((tmp_path / f"free{epochs}").iterdir()).joinpath("last.pt").stat().st_size
    assert sizes[2] > sizes[1] + 200
    cap = (sizes[1] + sizes[2]) // 2

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
        resource.setrlimit(resource.RLIMIT_FSIZE, (cap, cap))

    p = subprocess.run([sys.executable, "-m", "cnnlab", "train", str(config("full", 2)), "-q"], capture_output=True,
                       text=True, preexec_fn=limit, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr, p.stderr
    assert "last.pt: cannot write" in p.stderr and "previous version" in p.stderr
    run = next((tmp_path / "full").iterdir())
    assert not list(run.glob(".*.tmp"))  # nothing half-written
    kept = torch.load(run / "last.pt", weights_only=True)
    assert kept["state"]["epoch"] == 1  # the previous complete checkpoint, intact
    assert main(["resume", str(run), "-q"]) == 0  # and the run goes on from it once there is room
