"""``automl shift``: OoD-Bench's diversity and correlation shift of a multi-environment task's test
environments against its training environments (:mod:`automl.ood_shift`), mean ± std over seeds, with a
PNG of the per-seed values.

Registered in the ``automl.commands`` entry-point group like ``automl export``; torch is imported inside
the command, so ``automl --help`` stays fast. Bad input raises :class:`~automl.errors.ConfigError`, which
the CLI prints as one line and exits with status 2.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automl.cli_types import int_at_least, key_value
from automl.errors import ConfigError

if TYPE_CHECKING:
    from automl.ood_shift import SeedResult

DEFAULT_DIR = Path("automl-runs")


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1), got {text[:40]!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1), got {text[:40]}")
    return value


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text[:40]!r}") from None


def add_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``shift`` to automl's subcommands."""
    p = sub.add_parser("shift", help="OoD-Bench's diversity and correlation shift of a multi-environment task's "
                       "test environments against its training ones (mean ± std over seeds, PNG of each seed)")
    p.add_argument("--task", required=True, help="a registered environments task (automl tasks), e.g. colored-digits")
    p.add_argument("--task-option", action="append", type=key_value, default=[], metavar="KEY=VALUE",
                   help="a task option (e.g. test=[75] or root=/data/PACS); repeatable")
    p.add_argument("--seeds", type=int_at_least(1, "number of seeds", most=1000), default=5,
                   help="trials, each with its own seed (default 5; OoD-Bench runs 10-16)")
    p.add_argument("--seed", type=int_at_least(0, "seed", most=2**32 - 1), default=0,
                   help="the seed the trial seeds are drawn from (default 0)")
    p.add_argument("--samples", type=int_at_least(1, "number of Monte-Carlo points"), default=10_000,
                   help="Monte-Carlo points of the density integrals (default 10000)")
    p.add_argument("--eps-div", type=_number, default=1e-12, help="diversity threshold ε_d (default 1e-12)")
    p.add_argument("--eps-cor", type=_number, default=5e-4, help="correlation threshold ε_c (default 5e-4)")
    p.add_argument("--legacy", action="store_true", help="the original OoD-Bench formulas (|p - q|, ...) instead "
                   "of OoD-Bench+'s Hellinger form")
    p.add_argument("--iid", action="store_true", help="OoD-Bench's --force_iid control: swap halves of P and Q "
                   "(both measures should be near 0)")
    p.add_argument("--holdout", type=_fraction, default=None, help="held-out fraction the densities are estimated "
                   "on (default 0.2, raised in steps of 0.05 to at most 0.5 where a class would have no KDE)")
    p.add_argument("--dim-z", type=int_at_least(1, "feature dimension", most=64), default=8,
                   help="dimension of the classifier's features z (default 8)")
    p.add_argument("--hidden", type=int_at_least(1, "width", most=65_536), default=390,
                   help="width of the MLP backbone's two hidden layers (default 390)")
    p.add_argument("--epochs", type=int_at_least(1, "number of epochs", most=100_000), default=10,
                   help="training epochs of the environment classifier (default 10)")
    p.add_argument("--swa-start", type=int_at_least(0, "epoch"), default=5,
                   help="epochs of cosine annealing before weight averaging starts (default 5)")
    p.add_argument("--lr", type=_number, default=0.05, help="initial SGD learning rate (default 0.05)")
    p.add_argument("--swa-lr", type=_number, default=0.025, help="learning rate of the averaging phase (default 0.025)")
    p.add_argument("--momentum", type=_number, default=0.9, help="SGD momentum (default 0.9)")
    p.add_argument("--weight-decay", type=_number, default=1e-4, help="weight decay (default 1e-4)")
    p.add_argument("--batch-size", type=int_at_least(1, "batch size", most=1_000_000), default=32,
                   help="examples per batch from each side (default 32)")
    p.add_argument("--plot", type=Path, metavar="PATH.png", help="where the PNG of the per-seed values goes "
                   f"(default {DEFAULT_DIR}/shift-TASK.png)")
    p.add_argument("--threads", type=int_at_least(1, "number of threads", most=4096),
                   help="torch threads (default: chosen from the machine's load, as automl search chooses them)")
    p.set_defaults(handler=cmd_shift)


def cmd_shift(args: argparse.Namespace) -> int:
    import torch

    from automl.executors.threads import ThreadPolicy, apply_threads

    before = torch.get_num_threads()
    apply_threads(ThreadPolicy(1, fixed=args.threads).plan().threads)
    try:
        return _shift(args)
    finally:
        apply_threads(before)


def _recipe(args: argparse.Namespace) -> Any:
    from automl.ood_shift import ShiftRecipe

    return ShiftRecipe(holdout_fraction=args.holdout, dim_z=args.dim_z, hidden=args.hidden, epochs=args.epochs,
                       swa_start=args.swa_start, lr=args.lr, swa_lr=args.swa_lr, momentum=args.momentum,
                       weight_decay=args.weight_decay, batch_size=args.batch_size, samples=args.samples,
                       eps_div=args.eps_div, eps_cor=args.eps_cor, legacy=args.legacy, force_iid=args.iid)


def _task(name: str, options: list[tuple[str, Any]]) -> Any:
    from automl.components import construct
    from automl.tasks.base import tasks

    chosen: dict[str, Any] = {}
    for key, value in options:
        if key in chosen:
            raise ConfigError(f"--task-option {key} is given twice", field=key)
        chosen[key] = value
    task = construct(tasks.get(name), chosen, kind="task", name=name)
    if task.family != "environments":
        raise ConfigError(f"{name} is a {task.family} task; automl shift needs an environments task (one of: "
                          f"{', '.join(n for n in tasks.names() if tasks.get(n).family == 'environments')})",
                          field="--task")
    return task


def _shift(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.table import Table

    from automl.ood_shift import check_roles, measure, summary

    recipe = _recipe(args)  # a bad constant fails before any data is read
    task = _task(args.task, args.task_option)
    plot_path = args.plot or DEFAULT_DIR / f"shift-{args.task}.png"
    if plot_path.suffix.lower() != ".png":
        raise ConfigError(f"expected a .png path, got {str(plot_path)!r}", field="--plot")
    info = task.info
    check_roles(info.train, info.test, args.task)
    console = Console()
    console.print(f"[bold]automl shift[/] {args.task}: P = {', '.join(info.train)} · Q = {', '.join(info.test)} · "
                  f"{args.seeds} seed(s){' · legacy formulas' if args.legacy else ''}"
                  f"{' · i.i.d. control' if args.iid else ''}", highlight=False)
    started = time.perf_counter()
    bar = Progress(TextColumn("[bold]seeds"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                   TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=Console(stderr=True),
                   transient=True)
    bar_id = bar.add_task("seeds", total=args.seeds, info="training the environment classifier")

    def on_seed(i: int, r: SeedResult) -> None:
        bar.update(bar_id, completed=i + 1, info=f"last: div {r.diversity:.4f} · cor {r.correlation:.4f}")

    with bar:
        results = measure(task, recipe, seeds=args.seeds, seed=args.seed, name=args.task, on_seed=on_seed)
    seconds = time.perf_counter() - started
    stats = summary(results)
    table = Table(title=f"Distribution shift of {args.task} (mean ± std over {len(results)} seeds)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, label in (("diversity", "diversity shift"), ("correlation", "correlation shift"),
                       ("accuracy", "env. classifier held-out accuracy")):
        mean, std = stats[key]
        table.add_row(label, f"{mean:.4f} ± {std:.4f}")
    console.print(table)
    holdouts = sorted({r.holdout for r in results})
    skipped = sorted({c for r in results for c in r.skipped_classes})
    console.print(f"held out {', '.join(f'{h:g}' for h in holdouts)} of each side: {results[0].points} points per "
                  f"side; {sum(r.seconds for r in results) / len(results):.1f} s a seed, {seconds:.1f} s in all",
                  highlight=False)
    if skipped:
        console.print(f"[yellow]note[/]: class(es) {', '.join(map(str, skipped))} had too few held-out points for a "
                      "KDE in some seeds and were left out of the correlation there (raise --holdout)",
                      highlight=False)
    plot_path.parent.mkdir(parents=True, exist_ok=True)
    _plot(results, plot_path, args.task)
    console.print(f"wrote {plot_path}", highlight=False)
    return 0


def _plot(results: list[SeedResult], path: Path, task: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    for x, key, colour in ((0, "diversity", "tab:blue"), (1, "correlation", "tab:orange")):
        values = np.array([getattr(r, key) for r in results])
        jitter = np.linspace(-0.12, 0.12, len(values)) if len(values) > 1 else np.zeros(1)
        ax.scatter(x + jitter, values, color=colour, alpha=0.8, label=f"{key} (per seed)")
        ax.errorbar([x + 0.25], [values.mean()], yerr=[values.std()], fmt="s", color="black", capsize=4)
    ax.set_xticks([0, 1], ["diversity", "correlation"])
    ax.set_xlim(-0.5, 1.5)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("shift")
    ax.set_title(f"{task}: {len(results)} seeds (black: mean ± std)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
