"""Data pipeline cost: cnnlab's in-memory batched augmentation vs "the usual way" (a DataLoader
over per-image PIL transforms), on Fashion-MNIST with the preset's model.

    PYTHONPATH=. python bench/data_pipeline.py --out bench/data_pipeline.json
    PYTHONPATH=. python bench/data_pipeline.py --limit 2000 --out /tmp/dp.json   # a quick check

Measured in one process, side by side, over the preset's training split (54,000 images):
  (a) one epoch of the in-memory pipeline alone: index, uint8 -> float, hflip + random_crop
      (padding 2) + rotation (10 degrees) as batched tensor ops, normalise; no model.
  (b) one full training epoch of configs/fashion_mnist_cnn.yaml fed by (a): cnnlab's own
      session (data, model, optimizer, loss) and the trainer's epoch loop.
  (c) one epoch of a torch DataLoader (one worker per CPU core) over per-image PIL
      transforms: RandomHorizontalFlip, RandomCrop(28, padding=2), RandomRotation(10),
      ToTensor, Normalize; no model. Reported as images/s next to (a)'s.
  (d) only when `device: auto` finds CUDA: the same training epoch fed by (c), moved to the
      GPU batch by batch. The speed-up is (d) / (b).
Targets: (a) / (b) at most 5%; (d) / (b) at least 5x on a GPU. The preset's schedule is
replaced by a constant rate so extra epochs stay legal; it costs nothing either way.
Timings on a shared machine are inflated; run on a quiet one.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

from cnnlab.data.batches.memory import default_workers
from cnnlab.io import write_json
from cnnlab.resolve import load_config
from cnnlab.rundir import Run
from cnnlab.training.progress import Reporter
from cnnlab.training.session import build_session

ROOT = Path(__file__).resolve().parents[1]

AUGMENT = "augment=[hflip, {random_crop: {padding: 2}}, {rotation: {degrees: 10}}]"


class PILImages(Dataset):
    """The usual torchvision dataset: one uint8 array row -> PIL image -> transforms, per item."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, transform: T.Compose):
        self.x, self.y, self.transform = x.squeeze(1).numpy(), y.tolist(), transform

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        return self.transform(Image.fromarray(self.x[i], mode="L")), self.y[i]


class OnDevice:
    """A DataLoader as a cnnlab Loader: batches moved to the training device."""

    def __init__(self, loader: DataLoader, device: torch.device):
        self.loader, self.device = loader, device

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for x, y in self.loader:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def drain(loader) -> None:
    """Consume every batch of an epoch, keeping the last so lazy work is not skipped."""
    last = None
    for x, _ in loader:
        last = x
    if last is not None:
        float(last.reshape(-1)[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "fashion_mnist_cnn.yaml"))
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--limit", type=int, default=None, help="training images to use (default: all)")
    ap.add_argument("--repeats", type=int, default=3, help="epochs of (a) timed; the fastest is reported")
    ap.add_argument("--workers", type=int, default=default_workers(), help="DataLoader workers for (c), (d)")
    ap.add_argument("--out", required=True, help="JSON file to write")
    args = ap.parse_args()

    overrides = [f"data.path={args.data}", AUGMENT, "schedule.name=none"]
    if args.limit:
        overrides.append(f"data.limit_train={args.limit}")
    cfg = load_config(args.config, overrides)
    session = build_session(cfg)
    device, bundle, loader = session.device, session.bundle, session.train_loader
    n = len(bundle.train)

    # (a) the in-memory pipeline alone (one warm-up epoch first: allocator, kernels).
    drain(loader)
    a = min(timed(lambda: drain(loader), device) for _ in range(args.repeats))

    # (b) a full training epoch of the preset, fed by (a).
    with tempfile.TemporaryDirectory() as tmp:
        trainer = session.trainer(Run(Path(tmp)), Reporter(cfg.train.epochs, len(loader), quiet=True), [])
        b = timed(lambda: trainer._train_epoch(1), device)  # the trainer's own epoch loop, no evaluation

        # (c) the usual way: a DataLoader over per-image PIL transforms, same images and statistics.
        transform = T.Compose([T.RandomHorizontalFlip(), T.RandomCrop(28, padding=2), T.RandomRotation(10),
                               T.ToTensor(), T.Normalize(bundle.mean, bundle.std)])
        usual = DataLoader(PILImages(bundle.train.x, bundle.train.y, transform), batch_size=cfg.train.batch_size,
                           shuffle=True, num_workers=args.workers, pin_memory=device.type == "cuda")
        c = timed(lambda: drain(usual), torch.device("cpu"))

        # (d) on a GPU: the same training epoch fed by (c).
        d = None
        if device.type == "cuda":
            trainer.train_loader = OnDevice(usual, device)
            d = timed(lambda: trainer._train_epoch(2), device)

    result = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or None,
        "torch": torch.__version__, "cpu_cores": default_workers(), "workers": args.workers,
        "images": n, "batch_size": cfg.train.batch_size, "augment": cfg.augment,
        "a_pipeline_epoch_s": a, "a_images_per_s": n / a,
        "b_train_epoch_s": b, "a_over_b": a / b,
        "c_dataloader_epoch_s": c, "c_images_per_s": n / c,
        "d_train_epoch_dataloader_s": d, "speedup_d_over_b": None if d is None else d / b,
    }
    rows = [
        ("(a) in-memory pipeline, no model", a, n / a),
        ("(b) training epoch fed by (a)", b, n / b),
        ("(c) DataLoader + PIL transforms, no model", c, n / c),
    ]
    if d is not None:
        rows.append(("(d) training epoch fed by (c)", d, n / d))
    print(f"{n} images, batch {cfg.train.batch_size}, device {result['device_name'] or device}, "
          f"{args.workers} DataLoader workers")
    print(f"{'':44s} {'seconds':>9s} {'images/s':>11s}")
    for name, seconds, rate in rows:
        print(f"{name:44s} {seconds:9.3f} {rate:11.0f}")
    print(f"(a) / (b) = {a / b:.1%}  (target <= 5%)")
    print(f"(a) is {c / a:.1f}x faster than (c) at delivering an epoch")
    if d is not None:
        print(f"speed-up of training fed by (a) over (c): {d / b:.1f}x  (target >= 5x)")
    write_json(args.out, result)
    print(args.out)


if __name__ == "__main__":
    main()
