"""``automl export``: a study's best trial (or ``--trial N``) as a deployable model folder.

Registered in the ``automl.commands`` entry-point group: :func:`add_command` adds the subcommand and
sets ``handler`` (the function to run) on the parsed namespace; torch is imported inside the command,
so ``automl --help`` stays fast. Bad input raises :class:`~automl.errors.ConfigError`, which the CLI
prints as one line and exits with status 2.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from automl.cli_types import int_at_least

#: the ledger ``automl search`` writes by default
DEFAULT_STORAGE = "sqlite:///automl-runs/automl.db"


def _formats(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected formats separated by commas (e.g. pt2,onnx), got {text!r}")
    return names


def add_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``export`` to automl's subcommands."""
    p = sub.add_parser("export", help="export a study's best trial (or --trial N) as model.pt2 (torch.export), "
                       "model.onnx, weights.pt, card.json and MODEL.md")
    p.add_argument("--study", required=True, help="the study name")
    p.add_argument("--storage", default=DEFAULT_STORAGE, help=f"ledger URL (default {DEFAULT_STORAGE})")
    p.add_argument("--trial", type=int_at_least(0, "trial number"), help="the trial to export (default: the best)")
    p.add_argument("--out", type=Path, required=True, help="the folder the files go to")
    p.add_argument("--format", type=_formats, default=["pt2", "onnx"], metavar="FORMATS",
                   help="formats, separated by commas: pt2 (torch.export), onnx (default pt2,onnx)")
    p.set_defaults(handler=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from rich.console import Console

    from automl.export import check_formats, export

    console = Console()
    check_formats(args.format)  # an unknown format fails before the study is opened
    console.print(f"[bold]automl export[/] study [cyan]{args.study}[/] "
                  f"{'trial ' + str(args.trial) if args.trial is not None else 'best trial'} -> {args.out}")
    result = export((args.study, args.storage), args.out, formats=args.format, trial=args.trial,
                    on_note=lambda text: console.print(f"note: {text}", highlight=False, soft_wrap=True))
    card = result.card
    scores = ", ".join(f"{name} {spec['value']:.4g}" for name, spec in card["objectives"].items()
                       if isinstance(spec.get("value"), (int, float)))
    console.print(f"trial #{result.trial} ({scores}; {card['cost']['params']:,} params, "
                  f"{card['cost']['flops']:,} FLOPs, {card['cost']['latency_ms']:.3g} ms)")
    checks = card["checks"]
    for role, path in result.files.items():
        what = card["files"].get(path.name, "")
        if role == "onnx":
            what += f"; max |diff| {checks['onnx_max_abs_diff']:.2g} on {checks['examples']} validation examples"
        elif role == "pt2":
            what += f"; max |diff| {checks['pt2_max_abs_diff']:.2g}"
        console.print(f"wrote {path}: {what}", highlight=False, soft_wrap=True)
    return 0
