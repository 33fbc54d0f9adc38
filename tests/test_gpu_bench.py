"""bench/gpu.sh's Python core on the CPU: part 3 (cifar10_fast vs airbench94) for a few steps on a
slice of the real CIFAR-10 JPEGs, the packing that carries CIFAR-10 to a machine without network,
and the parts that must skip with one line (no second GPU, no data)."""

from __future__ import annotations

import json
import zipfile

import pytest
import torch
from conftest import CIFAR_ZIP

from bench import cifar_airbench, gpu_figures


def test_packed_cifar_rebuilds_the_same_members(tmp_path):
    packed = cifar_airbench.pack(CIFAR_ZIP, tmp_path / "c.npz", limit=3)
    rebuilt = cifar_airbench.unpack(packed, tmp_path / "c.zip")
    with zipfile.ZipFile(CIFAR_ZIP) as src, zipfile.ZipFile(rebuilt) as out:
        names = out.namelist()
        assert len(names) == 60  # 3 per class and split
        assert all(out.read(n) == src.read(n) for n in names)


@pytest.mark.slow
def test_dry_run_of_part_3_and_the_skips(tmp_path, monkeypatch, capsys):
    assert gpu_figures.main(["--dry-run", "--parts", "3", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "gpu-dry.json").read_text())
    p3 = report["parts"]["3"]
    assert p3["status"] == "ok", p3
    assert p3["images"] == {"train": 200, "test": 200}
    assert p3["airbench"]["status"] == "skipped"  # CUDA only (or not installed): said, not failed
    assert p3["cnnlab"]["epochs"] == 1 and p3["cnnlab"]["device"] == "cpu"
    assert p3["target_acc"] == 0.94 and p3["ratio_to_airbench"] is None
    # airbench's files hold exactly the pixels cnnlab trains on.
    saved = torch.load(tmp_path / "gpu-dry" / "cifar_airbench" / "cifar10" / "test.pt", weights_only=True)
    assert saved["images"].shape == (200, 32, 32, 3) and saved["images"].dtype == torch.uint8
    assert "| 3 | CIFAR-10: cifar10_fast vs airbench94 |" in (tmp_path / "gpu-dry.md").read_text()

    # Without a second GPU part 5 is skipped with its reason; missing data is one line, not a failure.
    assert gpu_figures.part5(tmp_path, False, None, 10)["status"] == "skipped"
    monkeypatch.setattr(gpu_figures, "BENCH", tmp_path)
    monkeypatch.setenv("CNNLAB_FASHION_MNIST", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="Fashion-MNIST not found .*--pack fashion"):
        gpu_figures.find_fashion(None)
