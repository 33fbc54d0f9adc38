"""The run report's middle sections: data, model, curves, and the confusion matrix with its
per-class table. Each says what it could not show and why, instead of failing the report."""

from __future__ import annotations

from typing import Any

import numpy as np

from cnnlab.errors import UserError
from cnnlab.reports import figures
from cnnlab.reports.doc import Details, Doc, Figure, Mono, Notice, Table, Text, percent, si
from cnnlab.reports.images import read_png

MAX_CLASS_ROWS = 40  # above this many classes the per-class tables list the 20 worst and say so


def data(doc: Doc, info: Any) -> None:
    doc.section("Data", "data")
    d = info.data
    if d is None:
        doc.add(Notice("data.json is missing: the run stopped before its data was read."))
        return
    shape = "x".join(map(str, d.get("image_shape", [])))
    if d.get("input_shape") and d["input_shape"] != d.get("image_shape"):
        shape += " -> " + "x".join(map(str, d["input_shape"])) + " (after resize/crop)"
    sizes = d.get("sizes") or {}
    rows = [["format", str(d.get("format"))], ["path", Mono(str(d.get("path")))],
            ["images (C x H x W)", shape], ["classes", str(len(d.get("classes", [])))],
            ["split sizes", ", ".join(f"{k} {v:,}" for k, v in sizes.items())],
            ["validation split", str(d.get("val_source", "n/a"))],
            ["normalisation", _norm(d)], ["read", "in memory" if d.get("in_memory") else "from files per batch"]]
    doc.add(Table([], rows, align="ll"))
    for note in d.get("notes") or []:
        doc.add(Text(note))
    counts = d.get("class_counts") or _counts_from_data(info)
    if isinstance(counts, str):
        doc.add(Notice(["Per-class counts: ", counts]))
    elif counts:
        doc.add(_count_table(d.get("classes", []), d.get("label_values") or [], counts))
    png = read_png(info.run.samples_png)
    if png is not None:
        doc.add(Figure(png, info.run.samples_png.name, "Training images of each class after the run's augmentations, as the "
                                           "model sees them (un-normalised for display; samples.png)."))


def _norm(d: dict[str, Any]) -> str:
    if d.get("mean") is None:
        return "none"
    fmt = lambda v: "[" + ", ".join(f"{x:.3f}" for x in v) + "]"
    return f"mean {fmt(d['mean'])}, std {fmt(d['std'])} (of the training split, on 0..1)"


def _counts_from_data(info: Any) -> dict[str, list[int]] | str:
    """Runs trained before data.json kept the counts: read the data again (it may be gone)."""
    if info.cfg is None:
        return "not recorded, and the config no longer validates"
    try:
        from cnnlab.data.build import build_data
        from cnnlab.data.inspect import class_counts

        return class_counts(build_data(info.cfg.data, info.cfg.seed))
    except UserError as e:
        return f"not recorded in data.json, and the data cannot be read now ({e})"


def _count_table(classes: list[str], labels: list[Any], counts: dict[str, list[int]]) -> Any:
    splits = [s for s, c in counts.items() if c]
    order = list(range(len(classes)))
    note = "Images of each class in every split."
    if len(order) > MAX_CLASS_ROWS:
        smallest = sorted(order, key=lambda i: counts[splits[0]][i])[:20]
        order = sorted(smallest)
        note += f" {len(classes)} classes: the 20 with the fewest {splits[0]} images are listed."
    rows = [[classes[i], str(labels[i]) if i < len(labels) else "", *(f"{counts[s][i]:,}" for s in splits)] for i in order]
    rows.append(["total", "", *(f"{sum(counts[s]):,}" for s in splits)])
    return Table(["class", "label", *splits], rows, align="ll" + "r" * len(splits), note=note)


def model(doc: Doc, info: Any) -> None:
    doc.section("Model", "model")
    if info.cfg is None or info.data is None:
        doc.add(Notice("No model summary: " + (info.cfg_problem or "data.json is missing.")))
        return
    import torch

    from cnnlab.models import build_model
    from cnnlab.models.summary import summarize

    cfg, d = info.cfg, info.data
    shape = tuple(d["input_shape"])
    torch.manual_seed(cfg.seed)
    try:
        s = summarize(build_model(cfg.model, shape, len(d["classes"])), shape, cfg.model.name, len(d["classes"]))
    except (UserError, RuntimeError, ValueError) as e:
        doc.add(Notice(f"No model summary: the model cannot be built now ({e})."))
        return
    options = {k: v for k, v in cfg.model.model_dump().items() if k != "name" and not (k == "init_from" and v is None)}
    doc.add(Text([Mono(cfg.model.name), " " + ", ".join(f"{k}={v}" for k, v in options.items())]))
    rows = [["parameters", f"{s.params:,}" + (f" ({s.trainable_params:,} trainable)" if s.trainable_params != s.params else "")],
            ["FLOPs per image", f"{si(s.flops)} (a multiply-add counts 2; convolutions and matrix products)"],
            ["layers", f"{len(s.layers)}"], ["input", "x".join(map(str, shape)) + f", {s.num_classes} classes"]]
    init = info.run.init_from()
    if init is not None:  # model.init_from: where the training started
        from cnnlab.models.init_from import describe

        rows.append(["initial weights", describe(init)])
    doc.add(Table([], rows, align="ll"))
    layer_rows = [[x.name, x.type, "x".join(map(str, x.output_shape)) if x.output_shape else "-",
                   f"{x.params:,}" if x.params else "", si(x.flops) if x.flops else ""] for x in s.layers]
    doc.add(Details(f"Layers ({len(s.layers)}): output shape, parameters, FLOPs per image",
                    [Table(["layer", "type", "output", "params", "FLOPs"], layer_rows, align="llrrr",
                           note=" ".join(s.notes))]))


def curves(doc: Doc, info: Any) -> None:
    doc.section("Curves", "curves")
    run, history = info.run, info.history
    png = read_png(run.curves_png)
    if png is None and history:
        steps = run.steps()
        png = figures.run_curves(history, steps, max(1, len(steps) // max(1, len(history))), run.name)
    if png is None:
        doc.add(Text("No curves yet: no epoch has finished."))
        return
    doc.add(Figure(png, run.curves_png.name, "Training loss per step (faint) with a smoothed line and the val/test loss per "
                                      "epoch; accuracy per epoch for each split (train: counted during the epoch's "
                                      "steps); top-5 accuracy when logged (curves.png)."))
    lr = figures.lr_curve(history)
    if lr is not None:
        doc.add(Figure(lr, "lr.png", "Learning rate at the start of each epoch (metrics.jsonl)."))
    keys = [k for k in history[0] if k != "epoch"] if history else []
    rows = [[str(h.get("epoch")), *(_num(k, h.get(k)) for k in keys)] for h in history]
    if rows:
        doc.add(Details(f"Metrics of every epoch ({len(rows)}, metrics.jsonl)", [Table(["epoch", *keys], rows)]))


def _num(key: str, value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "" if value is None else str(value)
    if key.endswith(("_acc", "_top5")):
        return percent(value)
    return f"{value:.3g}" if key == "lr" else f"{value:.1f}" if key == "seconds" else f"{value:.4f}"


def evaluation(doc: Doc, info: Any, compute: bool = True) -> None:
    """The confusion matrix and per-class table of the best checkpoint on the test split (else val)."""
    doc.section("Confusion matrix and per-class accuracy", "evaluation")
    run, s, d = info.run, info.summary or {}, info.data or {}
    sizes = d.get("sizes") or {}
    split = "test" if "test" in sizes else "val" if "val" in sizes else "train"
    report = run.eval_report(split, "best")
    calibrated = run.calibration("best")
    t = float(calibrated["temperature"]) if calibrated and calibrated.get("epoch") == s.get("best_epoch") else 1.0
    # Current: the best epoch's, with calibration measures (older evaluations lack them) at today's temperature.
    current = report is not None and report.get("epoch") == s.get("best_epoch") and "ece" in report \
        and report.get("temperature", 1.0) == t
    if not current and compute and not info.in_progress and info.died is None and run.has_checkpoint("best"):
        from cnnlab.evaluate import evaluate_run

        try:
            report = evaluate_run(run.path, split, "best")
            current = True
        except (UserError, RuntimeError) as e:  # data gone, a CUDA run on a CPU machine: the rest still reports
            doc.add(Notice(f"Not computed: {str(e).splitlines()[0] if str(e) else type(e).__name__}"))
    if report is None:
        why = "the run is in progress" if info.in_progress else "no epoch has finished" if not s.get("epochs") else \
            "not computed"
        doc.add(Text([f"No confusion matrix ({why}); ", Mono(f"cnnlab evaluate {run.path}"), " computes it."]))
        return
    if not current:
        doc.add(Notice(f"From an earlier evaluation (epoch {report.get('epoch')}); best.pt now holds epoch "
                       f"{s.get('best_epoch')}."))
    top5 = f", top-5 {percent(report['top5'])}" if report.get("top5") is not None else ""
    doc.add(Text(f"{report['split']} split, best checkpoint (epoch {report.get('epoch')}), {report['samples']:,} images: "
                 f"accuracy {percent(report['acc'])}{top5}, loss {report['loss']:.4f}."))
    png = read_png(run.confusion_png(report["split"], "best"))
    if png is not None:
        doc.add(Figure(png, f"{report['split']}-confusion.png",
                       "Confusion matrix: rows are true classes, columns predictions, colour the fraction of the "
                       "true class, numbers the images."))
    doc.add(per_class_table(list(report["per_class_acc"]), np.asarray(report["confusion"])))
    calibration(doc, run, report, calibrated if t != 1.0 else None)


def calibration(doc: Doc, run: Any, report: dict[str, Any], fitted: dict[str, Any] | None) -> None:
    """ECE, NLL and Brier of the evaluated split (before and after temperature scaling when the run
    was calibrated) and its reliability diagram."""
    if "ece" not in report:
        return
    doc.section("Calibration", "calibration")
    rows = []
    raw = report.get("uncalibrated")
    if raw:
        rows.append(["before (T = 1)", percent(raw["ece"]), f"{raw['nll']:.4f}", f"{raw['brier']:.4f}"])
    label = f"after (T = {report['temperature']:.3g})" if raw else "this checkpoint"
    rows.append([label, percent(report["ece"]), f"{report['nll']:.4f}", f"{report['brier']:.4f}"])
    note = ("Expected calibration error over 15 equal-width confidence bins (Guo et al. 2017): how far the "
            "top-class probability is from the accuracy, on average. NLL: mean -log p(true class). Brier: mean "
            "squared distance of the probabilities from the one-hot label. Lower is better for all three.")
    if fitted:
        note += (f" The temperature was fitted on {fitted['images']:,} validation images (val ECE "
                 f"{percent(fitted['before']['ece'])} -> {percent(fitted['after']['ece'])}); accuracy is unchanged.")
    else:
        note += " `cnnlab calibrate RUN` fits a temperature on the validation split."
    doc.add(Table([f"{report['split']} split", "ECE", "NLL", "Brier"], rows, note=note))
    png = read_png(run.reliability_png(report["split"], "best"))
    if png is not None:
        doc.add(Figure(png, f"{report['split']}-reliability.png",
                       "Reliability diagram: accuracy against confidence per bin (the diagonal is perfect "
                       "calibration); below, the share of images in each bin."))


def per_class_table(classes: list[str], confusion: np.ndarray) -> Table:
    """Images, accuracy (= recall), precision and F1 per class from a confusion matrix (rows: true)."""
    true = confusion.sum(1)
    predicted = confusion.sum(0)
    hits = np.diag(confusion)
    rows, order = [], list(range(len(classes)))
    note = "Accuracy of a class = recall: the fraction of its images predicted as it. Precision: the fraction of " \
           "images predicted as the class that are it. F1: their harmonic mean."
    if len(order) > MAX_CLASS_ROWS:
        order = sorted(order, key=lambda i: hits[i] / true[i] if true[i] else 1.0)[:20]
        note += f" {len(classes)} classes: the 20 with the lowest accuracy are listed."
    for i in order:
        recall = hits[i] / true[i] if true[i] else None
        precision = hits[i] / predicted[i] if predicted[i] else None
        f1 = 2 * precision * recall / (precision + recall) if precision and recall else (0.0 if true[i] else None)
        rows.append([classes[i], f"{int(true[i]):,}", f"{int(hits[i]):,}", percent(recall), percent(precision),
                     "n/a" if f1 is None else f"{f1:.3f}"])
    return Table(["class", "images", "correct", "accuracy", "precision", "F1"], rows, note=note)
