"""The figures of the "Bring your own code" issue (bench/RESULTS.md, "Your own code"):

  1. start-up with `imports:` of a small user file: a config typo answered in at most 1.0 s
     (a typo in a fixed key, `train.epocs`, is answered before the user's file runs; a typo in the
     user model's own option, `model.widht`, needs the file, which imports torch);
  2. the Python API's `cnnlab.train(cfg)` against `cnnlab train cfg` on the same config: at most 2%
     more. Both end in the same fit (the command calls the API), so what differs is what happens
     before the first step: measured as process start to first training step (the child notes the
     time there and exits), alternated, and set against the whole run's wall time (also measured,
     alternated; on this shared VM whole runs vary by 10-15%, far more than the difference);
  3. a user model of the same architecture as a built-in one trains at the same speed: the CIFAR
     write-up's `NN` class (examples/cifar_small_net/nets.py) against the built-in `small_vgg` with
     the same options (285,162 parameters each), side by side, epoch seconds from metrics.jsonl,
     in the same memory layout (NCHW: the write-up's net calls .view on a conv output) and with
     `channels_last: auto` (the built-in then runs NHWC).

    PYTHONPATH=. .venv/bin/python bench/user_code.py [--n 5] [--json bench/out/user_code.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FASHION = Path(os.environ.get("CNNLAB_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))
CIFAR = ROOT.parent / "shared" / "datasets" / "cifar10" / "cifar10-jpeg.zip"
NETS = '''import torch
from torch import nn


class Small(nn.Module):
    def __init__(self, num_classes: int, in_channels: int, width: int = 8):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, width, 3, padding=1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))
'''


def run(cmd: list[str], cwd: Path = ROOT) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return time.perf_counter() - start, p


def startup(n: int, folder: Path) -> dict[str, list[float]]:
    """Median wall time of a typo in a config: without imports:, with imports: (fixed-key typo), and
    a typo in an option of the user's own model (the file, and torch, are imported to check it)."""
    (folder / "nets.py").write_text(NETS)
    base = f"data: {{format: idx, path: {FASHION}}}\n"
    configs = {
        "no imports:, typo train.epocs": base + "model: {name: cnn}\ntrain: {epocs: 2}\n",
        "imports: [nets.py], typo train.epocs": "imports: [nets.py]\n" + base + "model: {name: nets.py:Small}\ntrain: {epocs: 2}\n",
        "imports: [nets.py], typo model.widht": "imports: [nets.py]\n" + base + "model: {name: nets.py:Small, widht: 4}\n",
    }
    out: dict[str, list[float]] = {}
    for name, text in configs.items():
        path = folder / f"c{len(out)}.yaml"
        path.write_text(text)
        times = []
        for _ in range(n):
            t, p = run([sys.executable, "-m", "cnnlab", "train", str(path)])
            assert p.returncode == 2 and "did you mean" in p.stderr, p.stderr
            times.append(t)
        out[name] = times
        print(f"{name}: median {statistics.median(times):.2f} s  {[round(t, 2) for t in times]}", flush=True)
    return out


API = "import sys, cnnlab; cnnlab.train(sys.argv[1], quiet=True)"


def child(kind: str, args: list[str]) -> None:
    """In this process: the command (kind cli) or cnnlab.train (kind api), left at its first step."""
    from cnnlab.training import trainer

    def first_step(self, epoch, partial=None):
        next(iter(self.train_loader))  # the first batch is part of it
        print(f"FIRST_STEP {time.time()}", flush=True)
        os._exit(0)

    trainer.Trainer._train_epoch = first_step
    if kind == "cli":
        from cnnlab.cli import main

        sys.exit(main(["train", *args]))
    import cnnlab

    cnnlab.train(args[0], quiet=True)


def first_step(kind: str, args: list[str]) -> float:
    start = time.time()
    p = subprocess.run([sys.executable, __file__, "--child", kind, *args], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    line = next((ln for ln in p.stdout.splitlines() if ln.startswith("FIRST_STEP ")), None)
    assert line is not None, p.stderr[-2000:]
    return float(line.split()[1]) - start


def api_vs_cli(n: int, folder: Path) -> dict[str, list[float]]:
    """The same config, n times each, alternating CLI and API processes (whole process wall time)."""
    cfg = folder / "api.yaml"
    text = (ROOT / "configs" / "fashion_mnist_cnn.yaml").read_text()
    cfg.write_text(text.replace("epochs: 9", "epochs: 2"))
    overrides = ["data.limit_train=20000", f"train.out_dir={folder / 'runs'}"]
    import yaml

    from cnnlab.resolve import load_config  # the API is given the same config, resolved, as a file

    raw = load_config(cfg, overrides).to_dict()
    (folder / "api_resolved.yaml").write_text(yaml.safe_dump(raw))
    out: dict[str, list[float]] = {"cli": [], "api": [], "cli_first_step": [], "api_first_step": []}
    for i in range(2 * n):  # time to the first step: short, so twice as many
        for kind in (("cli", "api") if i % 2 == 0 else ("api", "cli")):
            args = [str(cfg), *overrides, "-q"] if kind == "cli" else [str(folder / "api_resolved.yaml")]
            out[f"{kind}_first_step"].append(first_step(kind, args))
    print(f"to the first step: cli {statistics.median(out['cli_first_step']):.2f} s, "
          f"api {statistics.median(out['api_first_step']):.2f} s", flush=True)
    for i in range(n):
        order = ("cli", "api") if i % 2 == 0 else ("api", "cli")
        for kind in order:
            if kind == "cli":
                t, p = run([sys.executable, "-m", "cnnlab", "train", str(cfg), *overrides, "-q"])
            else:
                t, p = run([sys.executable, "-c", API, str(folder / "api_resolved.yaml")])
            assert p.returncode == 0, p.stderr[-2000:]
            out[kind].append(t)
            print(f"{kind}: {t:.1f} s", flush=True)
    cli, api = statistics.median(out["cli"]), statistics.median(out["api"])
    print(f"median cli {cli:.1f} s, api {api:.1f} s: api/cli = {api / cli:.4f}", flush=True)
    return out


def epoch_seconds(run_dir: Path) -> list[float]:
    return [json.loads(line)["seconds"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def user_vs_builtin(n: int, folder: Path, epochs: int) -> dict[str, list[float]]:
    """Epoch seconds of the write-up's NN (a user file) and the built-in small_vgg with its options."""
    user = str(ROOT / "examples" / "cifar_small_net" / "train.yaml")
    common = [f"data.path={CIFAR}", f"train.epochs={epochs}", f"train.out_dir={folder / 'speed'}", "-q"]
    builtin = ["model.name=small_vgg", "model.hidden_channels=[16,32]", "model.hidden_neurons=[128,128]",
               "model.convs_per_stage=1"]  # configs/cifar10_small_vgg_as_written.yaml's model
    # The write-up's net with .flatten(1) for its .view(-1, n): the same net, able to run NHWC.
    nets = (ROOT / "examples" / "cifar_small_net" / "nets.py").read_text()
    (folder / "flat_nets.py").write_text(nets.replace("hidden.view(-1, self.hidden_channels[1] * 8 * 8)",
                                                      "hidden.flatten(1)"))
    flat = [f"model.name={folder / 'flat_nets.py'}:NN"]
    out: dict[str, list[float]] = {}
    for layout in ("false", "auto"):
        models = (("user NN", []), ("built-in small_vgg", builtin)) + ((("user NN, .flatten", flat),)
                                                                        if layout == "auto" else ())
        for i in range(n):
            for name, extra in models[:: 1 if i % 2 == 0 else -1]:
                t, p = run([sys.executable, "-m", "cnnlab", "train", user, *common, *extra,
                            f"train.channels_last={layout}"])
                assert p.returncode == 0, p.stderr[-2000:]
                run_dir = Path(p.stdout.strip().splitlines()[-1])
                params = json.loads((run_dir / "summary.json").read_text())["params"]
                secs = epoch_seconds(run_dir)
                out.setdefault(f"{name}, channels_last={layout}", []).extend(secs[1:])  # the first epoch warms up
                print(f"{name}, channels_last={layout}: {params:,} parameters, epochs {[round(s, 2) for s in secs]}",
                      flush=True)
    for key, values in out.items():
        print(f"{key}: median epoch {statistics.median(values):.2f} s over {len(values)} epochs", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--only", choices=("startup", "api", "speed"))
    ap.add_argument("--child", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    if args.child:
        child(args.child[0], args.child[1:])
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        result: dict[str, object] = {"date": time.strftime("%Y-%m-%d %H:%M")}
        if args.only in (None, "startup"):
            result["startup"] = startup(args.n, folder)
        if args.only in (None, "api"):
            result["api_vs_cli"] = api_vs_cli(args.n, folder)
        if args.only in (None, "speed"):
            result["user_vs_builtin"] = user_vs_builtin(max(1, args.n // 2), folder, args.epochs)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
