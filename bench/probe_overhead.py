"""Benchmark: what the landscape probe (train.probe) costs, on the BN study's nets and data.

(1) Seconds per probe: the study's run config (configs/studies/cifar10_bn_landscape_sgd.yaml,
    with and without BN, lr 0.1) is built as `cnnlab train` builds it, on real CIFAR-10
    batches; a training step (engine.train_step) and a probe (probing() + measure(), 1 + steps
    forward/backward passes) are each timed over the same batches, medians reported.
(2) A run's total with the probe on and off: the same config trained by runner.train for
    --epochs epochs (50 steps each), probe every 25 steps with 8 sizes against none,
    alternating off/on --repeats times; the training seconds (summary.json's wall_seconds:
    steps, probes and the per-epoch evaluation) and the call's wall time. The issue's
    expectation: (25 + 9) / 25 = 1.36x of the steps, less once evaluation is counted.

    .venv/bin/python bench/probe_overhead.py [--zip PATH] [--epochs 2] [--repeats 2] [--threads 2]
                                             [--probes 8] [--skip-runs]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
STUDY = ROOT / "configs" / "studies" / "cifar10_bn_landscape_sgd.yaml"
ZIP = ROOT.parent / "shared" / "datasets" / "cifar10" / "cifar10-jpeg.zip"


def study_config(zip_path: Path, bn: bool, overrides: list[str]):  # -> Config
    from cnnlab.studies.plan import build_plan
    from cnnlab.studies.spec import load_study

    plan = build_plan(load_study(STUDY, ["data.format=image_folder", f"data.path={zip_path}", *overrides]))
    variant = next(v for v in plan.variants if v.levels["batch_norm"] == ("bn" if bn else "no_bn")
                   and v.levels["optim.lr"] == "0.1")
    return plan.run_config(variant.overrides, 0, None, f"bench_{'bn' if bn else 'no_bn'}")


def per_probe(zip_path: Path, bn: bool, threads: int, n: int = 8) -> dict:
    import numpy as np
    import torch

    from cnnlab.training.probe import measure, sizes
    from cnnlab.training.session import build_session

    cfg = study_config(zip_path, bn, [f"train.threads={threads}"])
    s = build_session(cfg)
    batches = [b for _, b in zip(range(n + 1), s.train_loader.batches())]
    etas = cfg.optim.lr * sizes(cfg.train.probe)
    step_t, probe_t = [], []
    with s.engine.running():
        for x, y in batches:
            start = time.perf_counter()
            with s.engine.probing() as point:
                measure(point, x, y, etas)
            probe_t.append(time.perf_counter() - start)
            start = time.perf_counter()
            s.engine.train_step(x, y)
            step_t.append(time.perf_counter() - start)
    step, probe = statistics.median(step_t[1:]), statistics.median(probe_t[1:])  # the first: warm-up
    return {"bn": bn, "threads": torch.get_num_threads(), "step_s": round(step, 4), "probe_s": round(probe, 4),
            "probe_in_steps": round(probe / step, 2), "passes": 1 + len(etas),
            "expected_run_ratio": round((25 * step + probe) / (25 * step), 3), "sizes": list(np.round(etas, 5))}


def whole_runs(zip_path: Path, bn: bool, epochs: int, repeats: int, threads: int) -> dict:
    from cnnlab.training import runner

    out: dict[str, list[float]] = {"off_train_s": [], "on_train_s": [], "off_wall_s": [], "on_wall_s": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats):
            for mode in ("off", "on"):
                extra = [f"train.epochs={epochs}", f"train.threads={threads}"]
                cfg = study_config(zip_path, bn, extra + (["train.probe=null"] if mode == "off" else []))
                start = time.perf_counter()
                result = runner.train(cfg, run_dir=Path(tmp) / f"{mode}{r}", quiet=True)
                out[f"{mode}_wall_s"].append(round(time.perf_counter() - start, 2))
                out[f"{mode}_train_s"].append(result.summary["wall_seconds"])
    on, off = statistics.median(out["on_train_s"]), statistics.median(out["off_train_s"])
    return {"bn": bn, "epochs": epochs, "steps": 50 * epochs, "probes": -(-50 * epochs // 25), **out,
            "ratio_train": round(on / off, 3), "probe_s_from_runs": round((on - off) / -(-50 * epochs // 25), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zip", type=Path, default=ZIP)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--probes", type=int, default=8, help="probes (and steps) timed in part 1")
    ap.add_argument("--skip-runs", action="store_true", help="part 1 only")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "probe_overhead.json")
    args = ap.parse_args()
    rows = {"per_probe": [], "runs": []}
    for bn in (True, False):
        r = per_probe(args.zip, bn, args.threads, args.probes)
        rows["per_probe"].append(r)
        print(json.dumps(r), flush=True)
    for bn in (True, False) if not args.skip_runs else ():
        r = whole_runs(args.zip, bn, args.epochs, args.repeats, args.threads)
        rows["runs"].append(r)
        print(json.dumps(r), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
