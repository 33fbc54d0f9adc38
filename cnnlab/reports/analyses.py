"""Every analysis present in RUN_DIR/analysis/ (what `cnnlab analyze` wrote): what it shows, its
options, what it found (its own report.json) and every figure, with a caption."""

from __future__ import annotations

from typing import Any

from cnnlab.reports.doc import Doc, Figure, Items, Mono, Text
from cnnlab.rundir import ANALYSIS_REPORT, Run

# What each analysis shows, for the figure captions (the analyses live in cnnlab/analysis/).
WHAT = {
    "kernels": "A conv layer's filters, each min-max scaled and titled with its L2 norm.",
    "features": "Feature maps of the first and last conv layer (after their activations) for one test image per "
                "class, beside the image.",
    "errors": "The most confident mistakes (true class, prediction, probability), the most confused class pairs and "
              "per-class precision, recall and F1.",
    "cam": "Grad-CAM, HiResCAM and gradient saliency overlays, and the same maps for a randomised model (the "
           "sanity check of Adebayo et al. 2018: trustworthy maps change when the model is randomised).",
    "landscape": "The loss and accuracy along the straight line from the initial weights to the checkpoint and "
                 "along filter-normalised random directions (Li et al. 2018), with +/- 1 standard-error bands.",
}
FIGURE = {
    "per-class-accuracy": "accuracy of every class",
    "mistakes": "the most confident mistakes",
    "lines": "1-D: init -> final line and a random direction",
    "contour": "2-D loss and accuracy maps",
    "surface": "the loss surface in 3-D",
    "cam": "attribution maps, trained vs randomised model",
}


def section(doc: Doc, run: Run) -> None:
    names = run.analyses()
    doc.section("Analyses", "analyses")
    if not names:
        doc.add(Text(["None yet: ", Mono(f"cnnlab analyze {run.path} WHAT"), " (kernels, features, errors, cam, "
                      "landscape) writes them into the run, and the next report shows them."]))
        return
    for what in names:
        analysis(doc, run, what)


def analysis(doc: Doc, run: Run, what: str) -> None:
    doc.section(f"Analysis: {what}", f"analysis-{what}", level=3)
    report = run.analysis_report(what) or {}
    about = WHAT.get(what, f"Written by cnnlab analyze RUN {what}.")
    options = ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in (report.get("options") or {}).items() if v is not None)
    line: list[Any] = [about]
    if report:
        line += [f" {report.get('checkpoint', 'best')} checkpoint (epoch {report.get('epoch', '?')})",
                 f"; options: {options}" if options else "",
                 f"; {report.get('forward_passes', 0):,} images through the network, {report.get('seconds', 0):.1f} s."]
    doc.add(Text(line))
    findings = [str(f) for f in report.get("findings") or []]
    if findings:
        doc.add(Items(findings))
    others = []
    for path in run.analysis_files(what):
        if path.suffix.lower() == ".png":
            try:
                png = path.read_bytes()
            except OSError:
                continue
            # kernels and features name their figures after the layer (dots written as underscores)
            label = FIGURE.get(path.stem, f"layer {path.stem}" if what in ("kernels", "features") else
                               path.stem.replace("_", " ").replace("-", " "))
            doc.add(Figure(png, f"{what}-{path.name}", [f"{what}: {label}. ", about, " (", Mono(path.name), ")"]))
        elif path.name != ANALYSIS_REPORT:
            others.append(path.name)
    if others:
        doc.add(Text(["Numbers beside the figures in ", Mono(f"analysis/{what}/"), ": ", ", ".join(others), "."]))
