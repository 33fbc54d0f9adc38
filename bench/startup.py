"""Start-up of the commands: how long a user waits before anything useful happens.

Each figure is the median of N fresh processes (whole command, wall clock):
  1. `cnnlab --help`;
  2. `cnnlab train bad.yaml`, a config with a misspelt key, until it exits 2 with its one line;
  3. a study's start-up, process start to its first training step: (a) `cnnlab study FILE`
     (the command is worker 0), and (b) a `cnnlab study FILE --worker` process joining a study
     whose storage already exists (what `--workers N` starts N - 1 of).
The study is 3 runs over the Fashion-MNIST preset (all 60,000 images, dropout 0 / 0.2 / 0.5).
For (3) the child process notes the time of its first optimizer step and exits there.
Also prints the top `python -X importtime` entries of the bad-config command.

    PYTHONPATH=. .venv/bin/python bench/startup.py [--n 5] [--json bench/out/startup.json] [--root CHECKOUT]

--root measures another checkout of cnnlab (e.g. `git worktree add /tmp/old <commit>`) with this
venv's libraries: its code is put first on sys.path, ahead of the editable install.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FASHION = Path(os.environ.get("CNNLAB_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))
BAD = """data: {format: idx, path: %s}
model: {name: cnn, channels: [8, 16]}
train: {epocs: 2}
"""
STUDY = """base: %s
mode: ablation
axes:
  model.dropout: [0.0, 0.2, 0.5]
seeds: [0]
metric: test_acc
out_dir: %s
overrides: {data.path: %s, train.epochs: 1}
"""


# Runs the cnnlab command of checkout sys.argv[1] (the editable install's finder would import this one).
BOOT = """import sys
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__]
sys.path.insert(0, sys.argv.pop(1))
from cnnlab.cli import _entry
sys.argv[0] = "cnnlab"
_entry()
"""


def command(root: Path) -> list[str]:
    return [sys.executable, "-m", "cnnlab"] if root == ROOT else [sys.executable, "-c", BOOT, str(root)]


def timed(cmd: list[str], root: Path) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=root)
    return time.perf_counter() - start, p


def to_first_step(args: list[str], root: Path) -> float:
    """Seconds from launching `cnnlab ARGS` in a fresh process to its first optimizer step."""
    start = time.time()
    p = subprocess.run([sys.executable, __file__, "--child", str(root), *args], capture_output=True, text=True,
                       cwd=root)
    line = next((ln for ln in p.stdout.splitlines() if ln.startswith("FIRST_STEP ")), None)
    if line is None:
        raise SystemExit(f"no training step in `cnnlab {' '.join(args)}`:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    return float(line.split()[1]) - start


def child(args: list[str]) -> None:
    """Run `cnnlab ARGS` (of checkout args[0]) in this process and leave at the first optimizer step."""
    root = args.pop(0)
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__]
    sys.path.insert(0, root)
    from cnnlab.training import trainer

    def first_step(self, epoch, partial=None):  # replaces the epoch loop: the process has started once its first step starts
        next(iter(self.train_loader))  # the first batch is part of it: a loader may start worker processes
        print(f"FIRST_STEP {time.time()}", flush=True)
        os._exit(0)

    trainer.Trainer._train_epoch = first_step
    from cnnlab.cli import main

    sys.exit(main(args))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--root", type=Path, default=ROOT, help="the cnnlab checkout to measure")
    ap.add_argument("--child", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    if args.child is not None:
        child(args.child)
        return
    root = args.root.resolve()
    cnnlab = command(root)
    tmp = Path(tempfile.mkdtemp(prefix="cnnlab-startup-"))
    bad = tmp / "bad.yaml"
    bad.write_text(BAD % FASHION)
    results: dict[str, list[float]] = {"help": [], "bad_config": [], "study_command": [], "study_worker": []}
    for _ in range(args.n):
        t, p = timed(cnnlab + ["--help"], root)
        assert p.returncode == 0
        results["help"].append(t)
        t, p = timed(cnnlab + ["train", str(bad)], root)
        assert p.returncode == 2 and "did you mean 'train.epochs'" in p.stderr, p.stderr
        results["bad_config"].append(t)
    for i in range(args.n):
        folder = tmp / f"study{i}"
        spec = tmp / f"startup{i}.yaml"
        spec.write_text(STUDY % (root / "configs" / "fashion_mnist_cnn.yaml", folder, FASHION))
        results["study_command"].append(to_first_step(["study", str(spec)], root))
        # The first command left the study created with runs waiting: a joining worker starts from there.
        results["study_worker"].append(to_first_step(["study", str(spec), "--worker", "--threads", "2",
                                                      "--worker-index", "1"], root))
    imports = subprocess.run([sys.executable, "-X", "importtime", *command(root)[1:], "train", str(bad)],
                             capture_output=True, text=True, cwd=root).stderr.splitlines()
    rows = [ln.split("|") for ln in imports if ln.startswith("import time:") and "cumulative" not in ln]
    top = sorted(((int(r[1]), r[2].rstrip()) for r in rows), reverse=True)[:12]
    shutil.rmtree(tmp, ignore_errors=True)
    report = {k: {"median_s": round(statistics.median(v), 3), "runs_s": [round(x, 3) for x in v]} for k, v in results.items()}
    report["bad_config_importtime_top_us"] = [[us, name] for us, name in top]
    for k, v in results.items():
        print(f"{k:14s} median {statistics.median(v):6.2f} s   runs {', '.join(f'{x:.2f}' for x in v)}")
    print("\n`python -X importtime -m cnnlab train bad.yaml`, cumulative microseconds:")
    for us, name in top:
        print(f"  {us:9d}  {name}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
