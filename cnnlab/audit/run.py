"""`cnnlab data audit`: read, compute, group, write the folder (audit.json, audit.html, and with
--write-clean the data.exclude list; with --labels the label issues of cnnlab.audit.labels)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from cnnlab.audit import duplicates, quality
from cnnlab.audit.features import compute
from cnnlab.audit.page import render
from cnnlab.audit.report import group_records, leaked, member, split_pair_counts
from cnnlab.audit.source import read_images
from cnnlab.config import Config
from cnnlab.io import writable_folder, write_json, write_text

AUDIT_JSON, AUDIT_HTML, LABELS_HTML = "audit.json", "audit.html", "labels.html"


def default_folder(cfg: Config) -> Path:
    """A new folder beside the config's runs: <train.out_dir>/audit-<name>-<timestamp>."""
    base = Path(cfg.train.out_dir).expanduser() / f"audit-{cfg.name or 'data'}-{time.strftime('%Y%m%d-%H%M%S')}"
    folder, n = base, 1
    while folder.exists():
        n += 1
        folder = base.with_name(f"{base.name}-{n}")
    return folder


def audit_data(cfg: Config, out: str | Path | None = None, write_clean: str | Path | None = None,
               labels: str | Path | None = None) -> tuple[dict[str, Any], Path]:
    """Audit the config's dataset; return (audit.json's content, the folder it was written into).
    Nothing is written until every check has run; the dataset itself is only read."""
    folder = Path(out).expanduser() if out is not None else default_folder(cfg)
    writable_folder(folder, "--out", create=False)  # refuse a folder we cannot write before the long part
    if write_clean is not None:
        writable_folder(Path(write_clean).expanduser(), "--write-clean", create=False)
    clock = {"start": time.perf_counter()}
    images = read_images(cfg)
    clock["read"] = time.perf_counter()
    f = compute(images)
    clock["features"] = time.perf_counter()
    exact = duplicates.exact_groups(f)
    candidates = duplicates.candidate_pairs(f)
    pairs = duplicates.near_pairs(f, candidates)
    near = duplicates.groups_of(pairs, len(f))
    clock["duplicates"] = time.perf_counter()
    problems = quality.single_image_problems(images, f)
    records = group_records(images, f, exact, near, pairs)
    report = _report(cfg, images, f, records, problems, len(candidates), clock)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    if labels is not None:
        # part 2: label issues from out-of-fold probabilities (writes labels.html, label_issues.csv)
        from cnnlab.audit.labels import audit_labels

        try:
            report["labels"] = audit_labels(cfg, Path(labels), folder)
        except BaseException:
            if created and not any(folder.iterdir()):
                folder.rmdir()  # a refused --labels leaves no empty folder behind
            raise
    if write_clean is not None:
        from cnnlab.audit.clean import write_clean as write_clean_files

        report["clean"] = write_clean_files(Path(write_clean).expanduser(), report, images)
    labels_page = LABELS_HTML if labels is not None and (folder / LABELS_HTML).is_file() else None
    write_text(folder / AUDIT_HTML, render(report, images, labels_page))
    write_json(folder / AUDIT_JSON, report)
    return report, folder


def audit(config: Any, *, out: str | Path | None = None, write_clean: str | Path | None = None,
          labels: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """Audit a config's dataset for duplicates, leaks across splits, differing labels and single-image
    problems (docs/data.md, "Auditing a dataset"). `config`: a YAML file, a dict or a Config. Returns
    audit.json's content with "folder", the folder it was written into (`out`, default
    <train.out_dir>/audit-<name>-<time>); `write_clean`: also write the data.exclude list there;
    `labels`: a cv study's folder, for label issues."""
    report, folder = audit_data(_config(config, overrides), out, write_clean, labels)
    return {**report, "folder": str(folder)}


def _config(config: Any, overrides: list[str] | tuple[str, ...]) -> Config:
    """A Config from a YAML path, a dict or a Config, with KEY=VALUE overrides."""
    import copy

    from cnnlab.resolve import apply_overrides, load_config, resolve
    from cnnlab.usercode.paths import absolutize

    if hasattr(config, "to_dict") and hasattr(config, "model_dump"):
        if not overrides:
            return config
        raw = config.to_dict()
    elif isinstance(config, dict):
        raw = copy.deepcopy(config)
        absolutize(raw, Path.cwd())
    else:
        return load_config(config, list(overrides))
    apply_overrides(raw, list(overrides))
    raw.setdefault("name", "data")
    return resolve(raw)


def _report(cfg: Config, images: Any, f: Any, records: list[dict[str, Any]], problems: dict[str, Any],
            candidates: int, clock: dict[str, float]) -> dict[str, Any]:
    audited = {name: len(s.rows) for name, s in images.splits.items()}
    quality_out = {k: ([member(images, f, i) for i in v] if k in ("constant", "near_constant", "dark", "bright", "odd_size") else v)
                   for k, v in problems.items()}
    for m, i in zip(quality_out["odd_size"], problems["odd_size"]):
        m["size"] = [int(f.width[i]), int(f.height[i])]
    for kind in ("constant", "near_constant", "dark", "bright"):
        for m, i in zip(quality_out[kind], problems[kind]):
            m["mean"], m["std"] = round(float(f.mean[i]), 2), round(float(f.std[i]), 2)
    n = max(len(f), 1)
    seconds = {"read": clock["read"] - clock["start"], "features": clock["features"] - clock["read"],
               "duplicates": clock["duplicates"] - clock["features"]}
    total = sum(seconds.values())
    summary = {
        "images": len(f),
        "exact_groups": sum(r["kind"] == "exact" for r in records),
        "exact_extra_copies": sum(r["size"] - 1 for r in records if r["kind"] == "exact"),
        "near_groups": sum(r["kind"] == "near" for r in records),
        "labels_differ_groups": sum(r["labels_differ"] for r in records),
        "leaked": leaked(records),
        **{k: len(v) for k, v in quality_out.items()},
    }
    return {
        "dataset": {"format": images.format, "path": images.path, "classes": images.classes, "audited": audited,
                    "files": images.files, "notes": images.notes},
        "settings": {"phash_bits": duplicates.PHASH_BITS, "correlation": duplicates.CORRELATION,
                     "ratio": duplicates.RATIO, "certain": duplicates.CERTAIN,
                     "neighbours": duplicates.NEIGHBOURS, "flat_std": duplicates.FLAT_STD,
                     "dark": quality.DARK, "bright": quality.BRIGHT, "aspect": quality.ASPECT,
                     "rare_min": quality.RARE_MIN, "rare_fraction": quality.RARE_FRACTION},
        "summary": summary,
        "counts": split_pair_counts(records, list(images.splits)),
        "groups": records,
        "quality": quality_out,
        "timing": {"seconds": {k: round(v, 2) for k, v in seconds.items()}, "total_seconds": round(total, 2),
                   "seconds_per_10000_images": round(total / n * 10000, 2), "candidate_pairs": candidates},
    }
