"""Wrong labels: rank the training images whose given label is most likely wrong, from
out-of-fold probabilities, with confident learning (cleanlab).

The source is a study run with `cv: K` (every fold run keeps heldout.npz: its best checkpoint's
probabilities for the fold it never trained on, cnnlab/training/heldout.py) or one run whose
validation split was carved from train (data.val_fraction: only that share of the images is
ranked). From a study, the fold runs of one variant and its first (lowest) seed are used: the
folds of one seed cover the training split exactly once; another seed with data.limit_train
would draw other images, so seeds are not averaged. With several variants (an ablation with
cv), the variant with the best mean val_acc over those folds is used. A fold run without
heldout.npz (trained before runs kept it) is reopened and its probabilities computed.

Writes label_issues.csv (every issue, ranked) and labels.html (a self-contained gallery of the
first GALLERY_MAX) into the output folder; `cnnlab data audit CONFIG --labels DIR` calls
audit_labels and links the page.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from cnnlab.config import Config
from cnnlab.errors import UserError
from cnnlab.io import writable_folder, write_text
from cnnlab.rundir import Run

LABELS_CSV, LABELS_HTML = "label_issues.csv", "labels.html"
CSV_COLUMNS = ("rank", "split", "index", "file", "given_label", "suggested_label", "self_confidence", "confidence")
GALLERY_MAX = 200  # thumbnails on the page; the CSV has every issue
SUMMARY_TOP = 20  # rows in the returned summary
_FINISHED = ("completed", "early_stopped")
_MAKE_ONE = ("run the study with `cv: 5` (stratified 5-fold cross-validation: every fold run keeps its held-out "
             "probabilities in heldout.npz) and pass its folder to --labels")


def audit_labels(cfg: Config, source: Path, out: Path) -> dict[str, Any]:
    """Rank likely wrong labels of cfg's training split from `source` (a cv study's folder or a run
    directory); write label_issues.csv and labels.html into `out`; return a JSON-able summary."""
    from cleanlab.filter import find_label_issues  # imported here: a second to import

    source = Path(source)
    held, runs, seed, classes = _gather(source)
    train, bundle_classes = _training_split(cfg, seed)
    if list(bundle_classes) != list(classes):
        raise UserError(f"{source}: its runs were trained on classes {_few(classes)} but the config's data has "
                        f"{_few(bundle_classes)}; pass the config of the data it was trained on")
    index, probs, labels = held["index"], held["probs"], held["labels"]
    if index.size and int(index.max()) >= len(train):
        raise UserError(f"{source}: its held-out images reach index {int(index.max())} but the config's training "
                        f"split has {len(train)} images; pass the config of the data it was trained on")
    differ = int((train.y[index].numpy() != labels).sum()) if len(index) else 0
    if differ:
        raise UserError(f"{source}: {differ} of its {len(index)} held-out images carry other labels than the "
                        "config's training split; pass the config of the data it was trained on")
    if len(np.unique(labels)) < 2:
        raise UserError(f"{source}: its held-out images carry a single label; label issues need two classes or more")
    ranked = find_label_issues(labels, probs, return_indices_ranked_by="self_confidence")
    rows = _rows(ranked, index, probs, labels, classes, train)
    folder = writable_folder(out, "--out")
    write_text(folder / LABELS_CSV, _csv(rows))
    write_text(folder / LABELS_HTML, _page(rows, source, len(index), len(train), train))
    return {
        "source": str(source), "runs": [str(r) for r in runs], "seed": seed,
        "images_with_heldout_probabilities": int(len(index)), "training_images": len(train),
        "issues": len(rows), "shown": min(len(rows), GALLERY_MAX),
        "top": rows[:SUMMARY_TOP], "files": {"csv": str(folder / LABELS_CSV), "html": str(folder / LABELS_HTML)},
    }


# ----------------------------------------------------------------------------- the source


def _gather(source: Path) -> tuple[dict[str, np.ndarray], list[Path], int, list[str]]:
    """(held-out arrays over the training split, the runs they came from, their seed, classes)."""
    if not source.is_dir():
        raise UserError(f"--labels {source}: no such folder; pass a study folder (studies/NAME) or a run directory")
    run = Run(source)
    if run.is_run():
        held = _heldout_of(run)
        if held is None:
            raise UserError(f"{source}: this run's validation split is not carved from its training split, so it "
                            f"has no held-out probabilities of training images; train with data.val_fraction > 0, "
                            f"or {_MAKE_ONE}")
        return held, [source], int(run.config_raw().get("seed", 0)), list(run.data_info["classes"])
    runs_dir = source / "runs"
    if not runs_dir.is_dir():
        raise UserError(f"--labels {source}: neither a run directory (no config.yaml) nor a study folder (no runs/); "
                        "pass the folder `cnnlab train` or `cnnlab study` printed")
    fold_runs = _fold_runs(source, runs_dir)
    group = _chosen_group(source, fold_runs)
    parts = [h for r in group if (h := _heldout_of(r)) is not None]
    if len(parts) != len(group):
        raise UserError(f"{source}: a fold run has no held-out validation split; {_MAKE_ONE}")
    held = {k: np.concatenate([p[k] for p in parts]) for k in ("index", "probs", "labels")}
    if len(np.unique(held["index"])) != len(held["index"]):
        raise UserError(f"{source}: its fold runs hold out some images twice; were they trained on different data?")
    seed = int(group[0].config_raw().get("seed", 0))
    return held, [r.path for r in group], seed, list(group[0].data_info["classes"])


def _fold_runs(source: Path, runs_dir: Path) -> list[tuple[str, int, int, int, Run]]:
    """(variant, seed, fold, folds, run) of every finished fold run of a study."""
    found, unfinished, any_run = [], 0, False
    for path in sorted(p for p in runs_dir.iterdir() if p.is_dir()):
        run = Run(path)
        raw = run.raw_config()
        if raw is None:
            continue
        any_run = True
        data = raw.get("data") or {}
        if data.get("folds") is None:
            continue
        if (run.summary_or_none() or {}).get("status") not in _FINISHED or not run.has_checkpoint("best"):
            unfinished += 1
            continue
        variant = {k: v for k, v in raw.items() if k not in ("name", "seed")}
        variant["data"] = {k: v for k, v in data.items() if k != "fold"}
        found.append((json.dumps(variant, sort_keys=True, default=str), int(raw.get("seed", 0)), int(data["fold"]),
                      int(data["folds"]), run))
    if not found:
        why = (f"{unfinished} fold run(s) have not finished" if unfinished else
               "its runs have no folds" if any_run else "it has no runs yet")
        raise UserError(f"{source}: no out-of-fold probabilities ({why}); {_MAKE_ONE}")
    return found


def _chosen_group(source: Path, found: list[tuple[str, int, int, int, Run]]) -> list[Run]:
    """The fold runs of the first seed of the variant with the best mean val_acc, among those whose
    folds are all there (so every training image has one out-of-fold probability)."""
    groups: dict[tuple[str, int], dict[int, Run]] = defaultdict(dict)
    folds_of: dict[str, int] = {}
    for variant, seed, fold, folds, run in found:
        groups[(variant, seed)][fold] = run
        folds_of[variant] = folds
    complete: dict[str, list[Run]] = {}
    for (variant, _seed), by_fold in sorted(groups.items(), key=lambda kv: kv[0][1]):
        if variant not in complete and len(by_fold) == folds_of[variant]:
            complete[variant] = [by_fold[f] for f in sorted(by_fold)]
    if not complete:
        have = max(len(v) for v in groups.values())
        raise UserError(f"{source}: no seed has all its folds finished ({have} of {max(folds_of.values())} at most); "
                        "run the study to the end (`cnnlab study FILE` again continues it)")

    def mean_val_acc(runs: list[Run]) -> float:
        accs = [(r.summary_or_none() or {}).get("val_acc") for r in runs]
        return float(np.mean([a for a in accs if a is not None] or [0.0]))

    return max(complete.values(), key=mean_val_acc)


def _heldout_of(run: Run) -> dict[str, np.ndarray] | None:
    """The run's heldout.npz, or computed from its best checkpoint when it has none (older runs)."""
    held = run.heldout()
    if held is not None:
        return held
    from cnnlab.reopen import open_run
    from cnnlab.training.heldout import heldout_predictions

    opened = open_run(run, "best")
    return heldout_predictions(opened, opened.bundle())


def _training_split(cfg: Config, seed: int) -> tuple[Any, list[str]]:
    """cfg's training split as read before any validation split is carved from it (the split the
    held-out indices count in), with the seed the source's runs drew limit_train with."""
    from cnnlab.data.build import build_data

    data = cfg.data.model_copy(update={"folds": None, "fold": None, "val_fraction": 0.0})
    bundle = build_data(data, seed)
    if bundle.train.y is None:
        raise UserError(f"{cfg.data.path}: the training split has no labels to check")
    return bundle.train, list(bundle.classes)


# ----------------------------------------------------------------------------- the ranking


def _rows(ranked: np.ndarray, index: np.ndarray, probs: np.ndarray, labels: np.ndarray, classes: list[str],
          train: Any) -> list[dict[str, Any]]:
    names = _file_names(train)
    rows = []
    for rank, i in enumerate(ranked.tolist(), start=1):
        given, suggested = int(labels[i]), int(probs[i].argmax())
        k = int(index[i])
        rows.append({"rank": rank, "split": "train", "index": k, "file": names[k] if names else "",
                     "given_label": classes[given], "suggested_label": classes[suggested],
                     "self_confidence": round(float(probs[i, given]), 6),
                     "confidence": round(float(probs[i, suggested]), 6)})
    return rows


def _file_names(train: Any) -> list[str] | None:
    """The training images' files (a format of image files), else None (arrays: the index says it)."""
    files = getattr(train, "files", None)
    if files is not None:
        return list(files)
    ids = train.ids
    if ids and any(not str(i).isdigit() for i in ids[:10]):  # file names, not row numbers
        return [str(i) for i in ids]
    return None


def _csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _few(items: list[Any], n: int = 5) -> str:
    shown = ", ".join(map(str, items[:n]))
    return f"[{shown}{', ...' if len(items) > n else ''}] ({len(items)})"


# ----------------------------------------------------------------------------- the page


def _thumbnail(train: Any, k: int) -> str:
    """One training image as an inline PNG (data: URI)."""
    from PIL import Image

    if hasattr(train, "files"):  # file-backed: decoded from its file as training decodes it
        from cnnlab.data.read.decode import decode_one
        from cnnlab.data.read.source import open_source

        c, h, w = train.shape
        x = decode_one(open_source(train.source), train.files[k], "L" if c == 1 else "RGB", (h, w))
        if isinstance(x, str):
            return ""
    else:
        x = train.x[k].numpy()
    x = np.asarray(x)
    if x.dtype != np.uint8:  # float images: stretch to 0..255 for the eye
        lo, hi = float(x.min()), float(x.max())
        x = ((x - lo) / (hi - lo or 1.0) * 255).astype(np.uint8)
    image = Image.fromarray(x[0] if x.shape[0] == 1 else np.transpose(x[:3], (1, 2, 0)))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _page(rows: list[dict[str, Any]], source: Path, n_held: int, n_train: int, train: Any) -> str:
    shown = rows[:GALLERY_MAX]
    cap = (f"The first {GALLERY_MAX} of {len(rows)} are shown; {LABELS_CSV} lists all"
           if len(rows) > GALLERY_MAX else f"All {len(rows)} are shown")
    cards = []
    for r in shown:
        uri = _thumbnail(train, r["index"])
        where = html.escape(r["file"] or f"train #{r['index']}")
        cards.append(
            f'<figure><img src="{uri}" alt="{where}"><figcaption>#{r["rank"]} {where}<br>'
            f'given <b>{html.escape(str(r["given_label"]))}</b> ({r["self_confidence"]:.3f})<br>'
            f'suggested <b>{html.escape(str(r["suggested_label"]))}</b> ({r["confidence"]:.3f})</figcaption></figure>')
    style = ("body{font-family:sans-serif;margin:1.5em}figure{display:inline-block;width:150px;margin:6px;"
             "vertical-align:top;font-size:12px}img{width:112px;height:112px;image-rendering:pixelated;"
             "object-fit:contain;background:#eee}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Label issues</title><style>{style}</style>"
            f"</head><body><h1>Label issues</h1><p>Source: {html.escape(str(source))}. {n_held} of {n_train} "
            f"training images have an out-of-fold probability; cleanlab (confident learning) flags {len(rows)} "
            f"whose given label is likely wrong, ranked by self-confidence (the probability of the given label, "
            f"in brackets after it; after the suggested label: its probability). {cap}.</p>"
            + "".join(cards) + "</body></html>\n")
