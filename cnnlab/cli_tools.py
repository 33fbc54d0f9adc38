"""The `cnnlab data`, `cnnlab model` and `cnnlab scratch` command groups: parsing and printing only.

cli.py mounts them; the Overrides argument and the console are shared from here (cli.py imports
this module, never the other way round).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

data_app = typer.Typer(no_args_is_help=True, help="Fetch datasets and look at them the way cnnlab sees them.")
model_app = typer.Typer(no_args_is_help=True, help="Look at models: layers, shapes, parameters, FLOPs.")
scratch_app = typer.Typer(no_args_is_help=True, help="The NumPy engine: check its gradients.")

out = Console(soft_wrap=True)

Overrides = Annotated[list[str] | None, typer.Argument(help="KEY=VALUE overrides, e.g. optim.lr=0.01 train.epochs=3")]
CodeFlag = Annotated[str, typer.Option(
    "--code", help="the run's own code (imports:, FILE.py:NAME): check (refuse a file gone or changed since the run), "
    "stored (the copies the run kept) or current (the files as they are now)")]


def use_code(code: str) -> None:
    """--code: how a reopened run's user files are imported (cnnlab/usercode/record.py)."""
    from cnnlab.usercode.record import set_policy

    set_policy(code)  # type: ignore[arg-type]


@data_app.command("inspect")
def data_inspect(config: Annotated[Path, typer.Argument(help="YAML config file")], overrides: Overrides = None) -> None:
    """Show format, split sizes, classes and counts, image shape, value range and problems."""
    from cnnlab.resolve import load_config

    cfg = load_config(config, overrides or [])  # before torch is imported
    from cnnlab.data.inspect import inspect_data

    r = inspect_data(cfg)
    out.print(f"[bold]format[/] {r['format']}   [bold]path[/] {r['path']}")
    out.print("[bold]splits[/] " + ", ".join(f"{k} {v}" for k, v in r["sizes"].items()) + f"   (validation: {r['val_source']})")
    out.print(f"[bold]images[/] {'x'.join(map(str, r['image_shape']))} (C x H x W), {r['dtype']}, "
              f"values {r['value_range'][0]:g}..{r['value_range'][1]:g}; "
              f"mean {_fmt(r['mean'])} std {_fmt(r['std'])} (scaled to 0..1)")
    out.print(f"[bold]classes[/] {len(r['classes'])}")
    table = Table("#", "class", "label", *r["counts"], box=None)
    shown = list(range(len(r["classes"])))
    if len(shown) > 40:
        shown = shown[:20] + shown[-5:]
    for i in shown:
        table.add_row(str(i), r["classes"][i], str(r["label_values"][i]), *(str(c[i]) for c in r["counts"].values()))
    out.print(table)
    if len(r["classes"]) > 40:
        out.print(f"  ... {len(r['classes']) - 25} more classes not shown")
    for i, line in enumerate(r["count_lines"]):
        out.print(("[bold]per class[/] " if i == 0 else "          ") + line, highlight=False)
    for note in r["notes"]:
        out.print(f"[bold]note[/] {note}")
    if r["problems"]:
        for p in r["problems"]:
            out.print(f"[bold yellow]problem[/] {p}")
    else:
        out.print("[green]no problems found[/]")


@data_app.command("audit")
def data_audit(
    config: Annotated[Path, typer.Argument(help="YAML config file")],
    overrides: Overrides = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="folder for audit.json and audit.html "
                                                 "(default: <train.out_dir>/audit-<name>-<time>)")] = None,
    write_clean: Annotated[Path | None, typer.Option("--write-clean", help="also write kept.csv and the data.exclude "
                                                     "list (exclude.txt, exclude.yaml) into this folder")] = None,
    labels: Annotated[Path | None, typer.Option("--labels", help="a cv study's folder (or a run): rank the images "
                                                "whose label is most likely wrong")] = None,
) -> None:
    """Find exact and near-duplicate images within and across splits, duplicates with differing labels,
    undecodable, flat, too dark or bright and odd-sized images and rare classes; the last line printed is the folder."""
    from cnnlab.resolve import load_config

    cfg = load_config(config, overrides or [])  # before torch is imported
    from cnnlab.api.audit import audit

    report = audit(cfg, out=out_dir, write_clean=write_clean, labels=labels)
    s = report["summary"]
    out.print(f"[bold]audited[/] {s['images']} images ({', '.join(f'{k} {v}' for k, v in report['dataset']['audited'].items())}) "
              f"in {report['timing']['total_seconds']:.1f} s", highlight=False)
    out.print(f"[bold]exact duplicates[/] {s['exact_groups']} groups ({s['exact_extra_copies']} extra copies); "
              f"[bold]near-duplicates[/] {s['near_groups']} groups; [bold]labels differ[/] in {s['labels_differ_groups']}",
              highlight=False)
    for split, n in s["leaked"].items():
        out.print(f"[bold yellow]leak[/] {n} {split} image(s) have an exact or near copy in train", highlight=False)
    found = [f"{k.replace('_', ' ')} {s[k]}" for k in ("undecodable", "constant", "near_constant", "dark", "bright",
                                                       "odd_size", "rare_classes", "not_read") if s.get(k)]
    out.print("[bold]single images[/] " + (", ".join(found) if found else "no problems"), highlight=False)
    if "clean" in report:
        out.print(f"[bold]clean[/] train without the left-out images: {report['clean']['override']}", highlight=False)
    print(report["folder"])


@model_app.command("summary")
def model_summary(
    config: Annotated[Path, typer.Argument(help="YAML config file")],
    overrides: Overrides = None,
    input_shape: Annotated[str | None, typer.Option("--input", help="CxHxW, e.g. 3x32x32 (default: read from the data)")] = None,
    classes: Annotated[int | None, typer.Option("--classes", help="number of classes (default: read from the data)")] = None,
) -> None:
    """Layer table (output shape, parameters, FLOPs for one image) and totals of the config's model."""
    from cnnlab.resolve import load_config

    cfg = load_config(config, overrides or [])  # before torch is imported
    from cnnlab.models.summary import parse_shape, summarize_config

    s = summarize_config(cfg, parse_shape(input_shape) if input_shape else None, classes)
    table = Table("layer", "type", "output", "params", "FLOPs", box=None)
    for x in s.layers:
        shape = "x".join(map(str, x.output_shape)) if x.output_shape else "-"
        table.add_row(x.name, x.type, shape, f"{x.params:,}" if x.params else "", _si(x.flops) if x.flops else "")
    out.print(f"[bold]model[/] {s.model}   [bold]input[/] {'x'.join(map(str, s.input_shape))}   [bold]classes[/] {s.num_classes}")
    out.print(table)
    out.print(f"[bold]parameters[/] {s.trainable_params:,} trainable / {s.params:,} total")
    extra = f" ({_si(s.unattributed_flops)} outside the listed layers)" if s.unattributed_flops else ""
    out.print(f"[bold]FLOPs[/] {_si(s.flops)} per image{extra} (torch FlopCounterMode: convolutions and "
              "matrix products, a multiply-add = 2)")
    for note in s.notes:
        out.print(f"[bold]note[/] {note}")


def _si(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(int(n))


@data_app.command("fetch")
def data_fetch(
    name: Annotated[str, typer.Argument(help="mnist, fashion-mnist, cifar10, cifar100 or tiny-imagenet")],
    dir: Annotated[Path | None, typer.Option("--dir", help="where to put it (default: data/NAME)")] = None,
) -> None:
    """Download a standard dataset (or find a verified copy); the last line is data.format=... data.path=..."""
    from cnnlab.data.get.fetch import fetch

    r = fetch(name, dir)
    print(f"cnnlab: {r.how}", file=sys.stderr)
    print("put these in the data: section of your config, or pass them as overrides:", file=sys.stderr)
    print(f"data.format={r.format} data.path={r.path}")


@scratch_app.command("gradcheck")
def scratch_gradcheck(seed: Annotated[int, typer.Option(help="seed of the random shapes and inputs")] = 0) -> None:
    """Finite-difference check of every NumPy-engine layer and loss in float64; exit 1 above 1e-6."""
    from cnnlab.scratch import gradcheck

    code = gradcheck.main(["--seed", str(seed)])
    if code:
        raise typer.Exit(code)


def _fmt(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.3f}" for v in values) + "]"


LIST_KINDS = ("models", "formats", "losses", "optimizers", "schedules", "augment", "callbacks", "analyses")


def list_names(
    kind: Annotated[str | None, typer.Argument(help=f"one of {', '.join(LIST_KINDS)} (default: all)")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="a config whose imports: (your own code) to include")] = None,
    fmt: Annotated[str, typer.Option("--format", help="text, or md (the Markdown tables of docs/reference.md)")] = "text",
) -> None:
    """Every name a config can use, with its options, their types and defaults (your own code too, with --config)."""
    from cnnlab.errors import UserError

    if kind is not None and kind not in LIST_KINDS:
        from cnnlab.errors import suggest

        raise UserError(f"'{kind}': not a kind of thing cnnlab lists{suggest(kind, LIST_KINDS)}; use one of "
                        f"{', '.join(LIST_KINDS)}")
    if fmt not in ("text", "md"):
        raise UserError(f"--format: '{fmt}' is not one of text, md")
    if config is not None:
        from cnnlab.resolve import load_config

        load_config(config)  # imports its code: what it registers is listed with the rest
    from cnnlab import reference

    kinds = [kind] if kind else list(LIST_KINDS)
    if fmt == "md":
        print("\n".join(f"### {k}\n\n{reference.markdown(k, builtin_only=False)}" for k in kinds), end="")
    else:
        print(reference.text(kinds), end="")
