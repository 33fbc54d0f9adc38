"""Transfer learning and long-tailed classes on CIFAR-10 (issue 22), on the CPU, with cnnlab itself.

1. Transfer learning curve. CIFAR-10 split in two: A = classes 0-4 (airplane .. deer), B = classes 5-9
   (dog .. truck), each a csv_images CSV over the JPEG zip (a `split` column marks the test rows; the
   images are read straight from the zip and decoded once into cnnlab's cache). The write-up's small
   VGG (configs/cifar10_small_vgg_as_written.yaml) is pretrained on all of A, then one `cnnlab study`
   (mode: learning_curve, sizes 50/200/1000 images per class of B, seeds 0-2) trains it on B from
   scratch and from the pretrained weights (an axis over model.init_from), same epochs. The figure's
   number is test accuracy on B's test set, at the epoch chosen by validation accuracy (val from
   data.val_fraction).
   model.init_from copies every tensor whose name and shape match; it has no option to leave the head
   out, and A and B both have 5 classes, so the run directory also hands over A's classifier (class k
   of A becomes class k of B). So there are two pretrained curves: `pretrained_run` (init_from: the run
   directory, head copied) and `pretrained_backbone` (init_from: a state dict of the same best
   checkpoint with the last Linear layer removed, so the head starts fresh as in usual fine-tuning).
2. Long-tailed CIFAR-10 (CIFAR-10-LT, Cui et al. 2019): class i keeps its first
   int(5000 * 100^(-i/9)) training images (imbalance ratio 100: 5000 down to 50, 12,406 images), the
   balanced test set. One ablation study: plain cross-entropy (the base) vs loss.class_weights: balanced
   vs data.sampler: balanced, seeds 0-2, same epochs; study metric test_balanced_acc, with test
   accuracy and macro-F1 beside it. No validation split is carved (the rarest class has 50 images), so
   every number is the last epoch's, as in the CIFAR-LT papers.

    nice -n 19 .venv/bin/python bench/transfer_longtail.py           # the full run, about 25 min on 2 cores
    nice -n 19 .venv/bin/python bench/transfer_longtail.py --tiny    # a minute or two: the script end to end

Writes bench/out/transfer_longtail/[tiny/]results.json and prints Markdown for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
ZIP = ROOT.parent / "shared" / "datasets" / "cifar10" / "cifar10-jpeg.zip"
PRESET = ROOT / "configs" / "cifar10_small_vgg_as_written.yaml"
OUT = ROOT / "bench" / "out" / "transfer_longtail"
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CURVES = ("scratch", "pretrained_run", "pretrained_backbone")

# Budgets. Full: sized for about 25 minutes of a shared 2-core CPU; tiny: the script end to end.
FULL = {"per_class_train": None, "per_class_test": None, "lt_max": 5000, "sizes": [50, 200, 1000],
        "seeds": [0, 1, 2], "pretrain_epochs": 6, "finetune_epochs": 12, "lt_epochs": 10, "limit_val": 1000,
        "limit_test": 2000, "lt_limit_test": 5000, "batch_size": 64}
TINY = {"per_class_train": 150, "per_class_test": 40, "lt_max": 150, "sizes": [10, 40], "seeds": [0, 1],
        "pretrain_epochs": 1, "finetune_epochs": 2, "lt_epochs": 2, "limit_val": 50, "limit_test": 200,
        "lt_limit_test": 200, "batch_size": 64}


# ----------------------------------------------------------------------------- data


def lt_counts(n_max: int, ratio: float = 100.0, k: int = 10) -> list[int]:
    """CIFAR-10-LT's training images per class, n_max * ratio^(-i / (k - 1)) truncated as Cui et al.'s
    code does (int()): 5000, 2997, 1796, ..., 50, 12,406 in all (rounding would give 12,408)."""
    return [int(n_max * ratio ** (-i / (k - 1))) for i in range(k)]


def build_csvs(folder: Path, p: dict) -> dict[str, Path]:
    """A, B and LT as csv_images CSVs over the zip (paths inside it, a split column). A CSV is only
    rewritten when its text changes: cnnlab's decode cache is keyed by the CSV's mtime."""
    names = sorted(n for n in zipfile.ZipFile(ZIP).namelist() if n.endswith(".jpg"))
    by = {}  # (split, class) -> members in file order (0000.jpg, 0001.jpg, ...)
    for n in names:
        _, split, cls, _ = n.split("/")
        by.setdefault((split, cls), []).append(n)
    keep_train, keep_test = p["per_class_train"], p["per_class_test"]
    lt = dict(zip(CLASSES, lt_counts(p["lt_max"])))
    sets = {"A": {c: keep_train for c in CLASSES[:5]}, "B": {c: keep_train for c in CLASSES[5:]}, "LT": lt}
    out = {}
    folder.mkdir(parents=True, exist_ok=True)
    for name, train_n in sets.items():
        rows = ["path,label,split"]
        for cls, n in train_n.items():
            rows += [f"{m},{cls},train" for m in by[("train", cls)][:n]]  # the first n: CIFAR-LT's rule
            rows += [f"{m},{cls},test" for m in by[("test", cls)][:keep_test]]
        path = folder / f"{name}.csv"
        text = "\n".join(rows) + "\n"
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
        out[name] = path
    return out


def data_overrides(csv_path: Path) -> dict:
    return {"data.format": "csv_images", "data.path": str(csv_path), "data.images": str(ZIP),
            "data.split_column": "split", "device": "cpu"}


def train_counts(csv_path: Path) -> dict[str, int]:
    with open(csv_path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "train"]
    return {c: sum(r["label"] == c for r in rows) for c in dict.fromkeys(r["label"] for r in rows)}


# ----------------------------------------------------------------------------- running cnnlab


def cnnlab(args: list[str], log: Path) -> str:
    """`python -m cnnlab ARGS`, output appended to `log`; its stdout's last line (a run or study folder).
    A failure shows the command and the end of its output, then stops the benchmark."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CNNLAB_CACHE_DIR": str(OUT / "cache")}
    cmd = [sys.executable, "-m", "cnnlab", *args]
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    with open(log, "a") as f:
        f.write(f"$ {' '.join(cmd)}\n{p.stdout}{p.stderr}\n")
    if p.returncode != 0:
        sys.exit(f"failed (exit {p.returncode}): {' '.join(cmd)}\n{(p.stdout + p.stderr)[-3000:]}")
    return p.stdout.strip().splitlines()[-1]


def overrides_list(overrides: dict) -> list[str]:
    from cnnlab.studies.spec import yaml_value

    return [f"{k}={yaml_value(v)}" for k, v in overrides.items()]


def pretrain(csvs: dict, p: dict, work: Path, log: Path) -> Path:
    """The small VGG trained on all of A: the run the fine-tuning starts from."""
    o = {**data_overrides(csvs["A"]), "data.val_fraction": 0.1, "data.limit_val": p["limit_val"],
         "data.limit_test": p["limit_test"], "train.epochs": p["pretrain_epochs"], "train.batch_size": p["batch_size"],
         "train.out_dir": str(work / "pretrain"), "name": "pretrain_A",
         # One thread: on the shared, loaded 2-core VM an epoch took 1.5 s with 1 thread against 5.5 s
         # with torch's 2 (threads waiting on each other when the other core is taken).
         "train.threads": 1}
    return Path(cnnlab(["train", str(PRESET), *overrides_list(o), "-q"], log))


def headless_weights(run_dir: Path, dest: Path) -> tuple[Path, list[str]]:
    """The run's best checkpoint as a plain state dict without its classifier (the last Linear layer:
    the last 2-D weight), so that model.init_from leaves the head at its fresh initialisation."""
    import torch

    from cnnlab.models.init_from import read_weights, source_file

    weights = read_weights(source_file(str(run_dir)))
    head = [k for k, v in weights.items() if k.endswith(".weight") and v.dim() == 2][-1].rsplit(".", 1)[0]
    dropped = [k for k in weights if k.rsplit(".", 1)[0] == head]
    torch.save({k: v for k, v in weights.items() if k not in dropped}, dest)
    return dest, dropped


def run_study(spec: dict, path: Path, workers: int, log: Path) -> Path:
    """Write the study file and run it from scratch (an earlier folder of the same name is removed,
    so the timing is the whole study's)."""
    folder = Path(spec["out_dir"]) / spec["name"]
    shutil.rmtree(folder, ignore_errors=True)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    cnnlab(["study", str(path), "--workers", str(workers)], log)
    return folder


def transfer_spec(csvs: dict, p: dict, work: Path, sources: dict[str, str | None], name: str) -> dict:
    base = {**data_overrides(csvs["B"]), "data.val_fraction": 0.1, "data.limit_val": p["limit_val"],
            "data.limit_test": p["limit_test"], "train.epochs": p["finetune_epochs"],
            "train.batch_size": p["batch_size"]}
    return {"name": name, "base": str(PRESET), "overrides": base, "mode": "learning_curve", "sizes": p["sizes"],
            "seeds": p["seeds"], "axes": {"init": {k: {"model.init_from": v} for k, v in sources.items()}},
            "metric": "test_acc", "table": ["test_acc", "val_acc"], "out_dir": str(work / "studies")}


def longtail_spec(csvs: dict, p: dict, work: Path, name: str) -> dict:
    base = {**data_overrides(csvs["LT"]), "data.val_fraction": 0.0, "data.limit_test": p["lt_limit_test"],
            "train.epochs": p["lt_epochs"], "train.batch_size": p["batch_size"]}
    return {"name": name, "base": str(PRESET), "overrides": base, "mode": "ablation",
            "axes": {"rebalance": {"class_weights": {"loss.class_weights": "balanced"},
                                   "sampler": {"data.sampler": "balanced"}}},
            "seeds": p["seeds"], "metric": "test_balanced_acc",
            "table": ["test_balanced_acc", "test_acc", "test_macro_f1"], "out_dir": str(work / "studies")}


# ----------------------------------------------------------------------------- numbers


def t_ci(values: list[float]) -> tuple[float, float, float]:
    """mean, sample std, 95% CI half-width (t distribution)."""
    from scipy import stats

    n = len(values)
    if n < 2:
        return (values[0] if values else float("nan")), float("nan"), float("nan")
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, std, float(stats.t.ppf(0.975, n - 1) * std / math.sqrt(n))


def study_rows(folder: Path) -> list[dict]:
    with open(folder / "results.csv", newline="") as f:
        return [r for r in csv.DictReader(f) if r["status"] in ("completed", "early_stopped")]


def transfer_numbers(folder: Path, sizes: list[int], curves: list[str]) -> dict:
    """Test accuracy per curve and size (over seeds), the paired difference from the first curve with
    the study's p-values (learning_curve.csv: paired t-test, Holm over every size and curve), and the
    pretrained curves' fitted size for the scratch curve's error at the largest size."""
    rows = study_rows(folder)
    with open(folder / "learning_curve.csv", newline="") as f:
        tests = {(r["curve"], int(float(r["size"]))): r for r in csv.DictReader(f)}
    lc = json.loads((folder / "learning_curve.json").read_text())
    seeds = {(c, n): {int(r["seed"]): float(r["test_acc"]) for r in rows
                      if r["init"] == c and _size(r["variant"]) == n} for c in curves for n in sizes}
    points = {}
    for (c, n), vals in seeds.items():
        mean, std, half = t_ci(list(vals.values()))
        entry = {"curve": c, "size": n, "seeds": vals, "mean": mean, "std": std, "ci_half": half}
        if c != curves[0]:
            ref = seeds[(curves[0], n)]
            dm, _, dh = t_ci([vals[s] - ref[s] for s in vals if s in ref])
            row = tests.get((f"init={c}", n), {})
            entry.update(diff=dm, diff_ci_half=dh, p=_float(row.get("p")), p_holm=_float(row.get("p_holm")),
                         test=row.get("test"))
        points[f"{c}/{n}"] = entry
    return {"points": points, "answers": lc["answers"], "fits": {c["label"]: c["fit"] for c in lc["curves"]},
            "same_as_scratch_at_largest": _size_for_scratch_largest(lc, curves, sizes)}


def _size(variant: str) -> int:
    """A learning-curve variant's images per class ("init=scratch, n=200/class" -> 200)."""
    return int(re.search(r"\bn=(\d+)/class", variant).group(1))


def _size_for_scratch_largest(lc: dict, curves: list[str], sizes: list[int]) -> dict:
    """For each pretrained curve: the images per class its fit needs for the scratch curve's mean
    error at the largest size (the data pretraining saves), with the fit's 95% interval."""
    import numpy as np

    from cnnlab.studies.learning_curve import Fit

    by = {c["label"].removeprefix("init="): c for c in lc["curves"]}
    scratch = by.get(curves[0])
    if scratch is None:
        return {}
    target = next(p["mean"] for p in scratch["points"] if p["size"] == max(sizes))
    out = {}
    for cur in curves[1:]:
        f = by.get(cur, {}).get("fit")
        if not f or target is None:
            continue
        fit = Fit(np.array(list(f["params"].values())), np.array(f["cov"]), f["dof"], f["points"], f["note"])
        n, low, high = fit.size_for(target)
        out[cur] = {"target_error": target, "n": _finite(n), "low": _finite(low), "high": _finite(high)}
    return out


def longtail_numbers(folder: Path, seeds: list[int]) -> dict:
    rows = study_rows(folder)
    out = {}
    for variant in dict.fromkeys(r["variant"] for r in rows):
        mine = {int(r["seed"]): r for r in rows if r["variant"] == variant}
        entry = {}
        for m in ("test_balanced_acc", "test_acc", "test_macro_f1"):
            vals = [float(mine[s][m]) for s in sorted(mine)]
            mean, std, half = t_ci(vals)
            entry[m] = {"seeds": vals, "mean": mean, "std": std, "ci_half": half}
        out[variant] = entry
    return out


def _float(v: str | None) -> float | None:
    return float(v) if v not in (None, "") else None


def _finite(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


# ----------------------------------------------------------------------------- Markdown


def pct(v: float | None, signed: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v * 100:+.2f}" if signed else f"{v * 100:.2f}"


def p_text(p: float | None) -> str:
    return "n/a" if p is None else ("<0.001" if p < 0.001 else f"{p:.3f}") + ("*" if p < 0.05 else "")


def markdown(r: dict) -> str:
    p, t = r["budget"], r["timings_s"]
    lines = [f"### Transfer learning and long-tailed CIFAR-10 (issue 22){' — TINY check' if r['tiny'] else ''}", "",
             f"`{r['command']}` on {r['machine']}, {r['date']}; {t['total'] / 60:.1f} min in all. Net: the write-up's "
             "small VGG (configs/cifar10_small_vgg_as_written.yaml: conv 16, conv 32, FC 128, FC 128; Adam 1e-3, no "
             f"augmentation), batch {p['batch_size']}, CPU, every run from `cnnlab train` / `cnnlab study`.", "",
             "| part | wall |", "|---|--:|"]
    lines += [f"| {k} | {v:.0f} s |" for k, v in t.items() if k != "total"] + [f"| total | {t['total']:.0f} s |", ""]
    pre = r["pretrain"]
    lines += [f"**Pretraining on A** (classes 0-4, {pre['train_images']:,} training images less a 10% validation "
              f"split, {p['pretrain_epochs']} epochs): test accuracy on A {pct(pre['test_acc'])}% "
              f"({pre['test_images']:,} test images), best epoch {pre['best_epoch']}.", "",
              "`model.init_from` copies every tensor whose name and shape match and has no switch to leave the head "
              "out; A and B both have 5 classes, so a run directory hands B its classifier too "
              f"({pre['init_from_run']}). Curve `pretrained_run` is that (init_from: the run directory); "
              f"`pretrained_backbone` starts from the same best checkpoint saved as a state dict without "
              f"{', '.join(pre['head_dropped'])}, so its head is fresh ({pre['init_from_backbone']}).", ""]
    tr = r["transfer"]
    curves, sizes = r["curves"], p["sizes"]
    head = ["B images / class"] + [f"{c} test acc (%)" for c in curves] + \
           [f"Δ {c} − {curves[0]} (pp, 95% CI; p Holm)" for c in curves[1:]]
    lines += [f"**Transfer to B** (classes 5-9; `mode: learning_curve`, {p['finetune_epochs']} epochs for every "
              f"run, seeds {p['seeds']}; test accuracy on {p['limit_test']:,} of B's test images at the epoch with "
              f"the best validation accuracy, validation: {p['limit_val']:,} images of a 10% split). Mean ± std "
              "[95% CI]:", "", "| " + " | ".join(head) + " |", "|" + "--:|" * len(head)]
    for n in sizes:
        cells = [f"{n:,}"]
        for c in curves:
            e = tr["points"][f"{c}/{n}"]
            cells.append(f"{pct(e['mean'])} ± {pct(e['std'])} [{pct(e['mean'] - e['ci_half'])}, "
                         f"{pct(e['mean'] + e['ci_half'])}]")
        for c in curves[1:]:
            e = tr["points"][f"{c}/{n}"]
            cells.append(f"{pct(e['diff'], True)} [{pct(e['diff'] - e['diff_ci_half'], True)}, "
                         f"{pct(e['diff'] + e['diff_ci_half'], True)}]; {p_text(e['p_holm'])}")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "The study's own answers (fitted on test error; `learning_curve.md` / `.png` in the study folder):", ""]
    lines += [f"- {a}" for a in tr["answers"]]
    for cur, a in tr["same_as_scratch_at_largest"].items():
        top = "no upper bound" if a["high"] is None else f"{a['high']:,.0f}"
        lines.append(f"- {cur} reaches the scratch net's test error at {max(sizes):,}/class "
                     f"({pct(a['target_error'])}%) with about {_n(a['n'])} images per class "
                     f"(95% CI {_n(a['low'])} to {top}), by its fit.")
    lt = r["longtail"]
    counts = r["lt_train_counts"]
    lines += ["", f"**Long-tailed CIFAR-10** (CIFAR-10-LT, ratio 100: first n_i = int({p['lt_max']} · "
              f"100^(-i/9)) (truncated, as Cui et al.'s code) training images of class i, {min(counts.values())} to {max(counts.values())}, "
              f"{sum(counts.values()):,} in all; no validation split, last epoch of {p['lt_epochs']}; "
              f"{p['lt_limit_test']:,} balanced test images; seeds {p['seeds']}). Mean ± std [95% CI]:", "",
              "| variant | test balanced acc (%) | Δ vs plain (pp; p Holm) | test acc (%) | test macro-F1 (%) |",
              "|---|--:|--:|--:|--:|"]
    table = r["longtail_table"]
    for variant in sorted(lt, key=lambda v: list(VARIANT_NAMES).index(v) if v in VARIANT_NAMES else 99):
        e = lt[variant]
        b = e["test_balanced_acc"]
        d = table.get(variant, {})
        cells = [_variant_name(variant),
                 f"{pct(b['mean'])} ± {pct(b['std'])} [{pct(b['mean'] - b['ci_half'])}, {pct(b['mean'] + b['ci_half'])}]",
                 "(reference)" if variant == "base" else f"{d.get('delta', 'n/a')}; {d.get('p', 'n/a')}"]
        cells += [f"{pct(e[m]['mean'])} ± {pct(e[m]['std'])}" for m in ("test_acc", "test_macro_f1")]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Δ and p: the study's table (`table.md` in the study folder; paired t-test over the seeds, "
              "Holm-corrected over the variants, * p < 0.05)."]
    return "\n".join(lines) + "\n"


def _n(v: float | None) -> str:
    return "n/a" if v is None else f"{v:,.0f}"


VARIANT_NAMES = {"base": "plain cross-entropy (base)", "rebalance=class_weights": "loss.class_weights: balanced",
                 "rebalance=sampler": "data.sampler: balanced"}


def _variant_name(v: str) -> str:
    return VARIANT_NAMES.get(v, v)


def study_table(folder: Path) -> tuple[str, dict]:
    """table.md's rows (without its title) and, per variant, its Δ and Holm p cells."""
    text = (folder / "table.md").read_text().strip().splitlines()
    rows = [ln for ln in text if ln.startswith("|")]
    head = [c.strip() for c in rows[0].strip("|").split("|")]
    cells = {}
    for ln in rows[2:]:
        c = [x.strip() for x in ln.strip("|").split("|")]
        cells[c[head.index("variant")]] = {"delta": c[head.index("Δ vs base")], "p": c[head.index("p (Holm)")]}
    return "\n".join(rows), cells


# ----------------------------------------------------------------------------- main


def measure(args: argparse.Namespace, p: dict, work: Path) -> dict:
    """Run the four parts, timing each; what the report needs to find their outputs."""
    shutil.rmtree(work / "pretrain", ignore_errors=True)
    (work / "studies").mkdir(parents=True, exist_ok=True)
    log = work / "cnnlab.log"
    log.write_text("")
    timings: dict[str, float] = {}
    start = clock = time.monotonic()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.monotonic()
        timings[name] = round(now - clock, 1)
        clock = now
        print(f"[{time.strftime('%H:%M:%S')}] {name}: {timings[name]:.0f} s", flush=True)

    csvs = build_csvs(work / "data", p)
    for name in ("A", "B", "LT"):  # decode once into the cache, so the parts below time training alone
        cnnlab(["data", "inspect", str(PRESET), *overrides_list(data_overrides(csvs[name]))], log)
    lap("data: CSVs + JPEG decoding (cached after the first time)")

    run_dir = pretrain(csvs, p, work, log)
    backbone, dropped = headless_weights(run_dir, work / "pretrain" / "backbone.pt")
    lap(f"pretraining on A ({p['pretrain_epochs']} epochs)")

    sources = {"scratch": None, "pretrained_run": str(run_dir), "pretrained_backbone": str(backbone)}
    prefix = "tiny_" if args.tiny else ""
    spec = transfer_spec(csvs, p, work, {c: sources[c] for c in args.curves}, prefix + "transfer_B")
    transfer_folder = run_study(spec, work / "transfer_B.yaml", args.workers, log)
    lap(f"transfer study ({len(args.curves)} curves x {len(p['sizes'])} sizes x {len(p['seeds'])} seeds)")

    lt_folder = run_study(longtail_spec(csvs, p, work, prefix + "longtail"), work / "longtail.yaml", args.workers, log)
    lap(f"long-tail study (3 variants x {len(p['seeds'])} seeds)")
    timings["total"] = round(time.monotonic() - start, 1)
    state = {"command": " ".join(["nice -n 19 .venv/bin/python bench/transfer_longtail.py", *sys.argv[1:]]),
             "tiny": args.tiny, "date": time.strftime("%Y-%m-%d"), "workers": args.workers, "budget": p,
             "curves": args.curves, "timings_s": timings, "csvs": {k: str(v) for k, v in csvs.items()},
             "pretrain_run": str(run_dir), "head_dropped": dropped, "transfer_study": str(transfer_folder),
             "longtail_study": str(lt_folder)}
    (work / "state.json").write_text(json.dumps(state, indent=2) + "\n")
    return state


def report(state: dict) -> dict:
    """results.json's content, read back from the run and study folders."""
    p, curves = state["budget"], state["curves"]
    run_dir, transfer_folder, lt_folder = (Path(state[k]) for k in ("pretrain_run", "transfer_study", "longtail_study"))
    csvs = {k: Path(v) for k, v in state["csvs"].items()}
    pre = json.loads((run_dir / "summary.json").read_text())
    init_reports = {c: _init_line(transfer_folder, c) for c in curves[1:]}
    return {
        **{k: state[k] for k in ("command", "tiny", "date", "workers", "budget", "curves", "timings_s")},
        "machine": machine(),
        "pretrain": {"run": str(run_dir), "train_images": sum(train_counts(csvs["A"]).values()),
                     "test_images": min(p["limit_test"], 5 * (p["per_class_test"] or 1000)),
                     "test_acc": pre["test_acc"], "val_acc": pre["val_acc"], "best_epoch": pre["best_epoch"],
                     "head_dropped": state["head_dropped"],
                     "init_from_run": init_reports.get("pretrained_run", "n/a"),
                     "init_from_backbone": init_reports.get("pretrained_backbone", "n/a")},
        "transfer_study": str(transfer_folder),
        "transfer": transfer_numbers(transfer_folder, p["sizes"], curves),
        "longtail_study": str(lt_folder), "lt_train_counts": train_counts(csvs["LT"]),
        "longtail": longtail_numbers(lt_folder, p["seeds"]), "longtail_table": study_table(lt_folder)[1],
        "longtail_table_md": study_table(lt_folder)[0],
    }


def machine() -> str:
    model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                  if ln.startswith("model name")), platform.machine())
    return f"{model}, {os.cpu_count()}-core CPU (shared VM)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="a few images and epochs: the script end to end")
    ap.add_argument("--workers", type=int, default=2, help="study worker processes (the cores are split)")
    ap.add_argument("--curves", nargs="+", default=list(CURVES), choices=CURVES,
                    help="the transfer study's curves (the first is the reference of the differences)")
    ap.add_argument("--report-only", action="store_true", help="rebuild results.json and the Markdown, run nothing")
    for key in FULL:
        if key not in ("sizes", "seeds", "per_class_train", "per_class_test"):
            ap.add_argument("--" + key.replace("_", "-"), type=int, default=None)
    args = ap.parse_args()
    p = dict(TINY if args.tiny else FULL)
    p.update({k: v for k, v in vars(args).items() if k in p and v is not None})
    work = OUT / ("tiny" if args.tiny else "full")
    state = json.loads((work / "state.json").read_text()) if args.report_only else measure(args, p, work)
    result = report(state)
    (work / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    if not args.tiny:
        shutil.copy(work / "results.json", OUT / "results.json")
    print()
    print(markdown(result))
    print(f"results: {work / 'results.json'}; studies: {result['transfer_study']}, {result['longtail_study']}")


def _init_line(folder: Path, curve: str) -> str:
    """What model.init_from loaded in one run of `curve`, from its init_from.json."""
    for path in sorted((folder / "runs").glob("*/init_from.json")):
        cfg = yaml.safe_load((path.parent / "config.yaml").read_text())
        src = (cfg.get("model") or {}).get("init_from") or ""
        if (curve == "pretrained_backbone") == src.endswith(".pt"):
            rep = json.loads(path.read_text())
            return (f"{rep['loaded']} tensors loaded, {len(rep['new'])} left new"
                    + (f" ({', '.join(rep['new'])})" if rep["new"] else ""))
    return "n/a"


if __name__ == "__main__":
    main()
