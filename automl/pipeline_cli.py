"""``automl run PIPELINE.yaml`` and ``automl report --pipeline NAME``: pipelines on the command line."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from automl.ledger import Ledger, open_storage
from automl.pipeline import PipelineRun, load_pipeline, pipeline_status
from automl.progress import Reporter, RichReporter
from automl.report import counts, leaderboards

DEFAULT_DIR = Path("automl-runs")
DEFAULT_STORAGE = f"sqlite:///{DEFAULT_DIR}/automl.db"


def add_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``run`` to automl's subcommands (entry point ``automl.commands``)."""
    run = sub.add_parser("run", help="run (or resume) a pipeline of steps: search -> tune -> train -> export")
    run.add_argument("pipeline", type=Path, help="the pipeline YAML")
    run.add_argument("--storage", default=DEFAULT_STORAGE, help=f"ledger URL (default {DEFAULT_STORAGE})")
    run.add_argument("--output", type=Path, default=DEFAULT_DIR, help=f"results folder (default {DEFAULT_DIR})")
    run.add_argument("--from", dest="from_step", metavar="STEP", help="rerun from this step on (into new studies)")
    run.add_argument("--workers", type=int, default=1, help="parallel worker processes per step (default 1)")
    run.add_argument("--threads", type=int, help="torch threads per trial (default: chosen from the machine's load)")
    run.add_argument("--trust-code", action="store_true", help="let the pipeline's spaces import and run the code "
                     "they name (builder: \"package.module:function\"); without it such a space is refused")
    run.set_defaults(handler=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    console = Console()
    spec = load_pipeline(args.pipeline)
    console.print(f"[bold]automl run[/] pipeline [cyan]{spec.name}[/] · steps "
                  f"{' -> '.join(s.name for s in spec.steps)} · ledger {args.storage}")

    def reporter(title: str) -> Reporter:
        return RichReporter(title)

    def step_done(step: str, studies: list[Any]) -> None:  # each step ends with its leaderboards
        for study in studies:
            for table in leaderboards(study.trials, study.objectives, top=5, title=f"{step}: {study.study_name}",
                                      space=study.space):
                console.print(table)

    run = PipelineRun(spec, args.storage, args.output, workers=args.workers, threads=args.threads,
                      reporter=reporter, say=lambda text: console.print(f"· {text}"), on_step=step_done,
                      trust_code=args.trust_code)
    run.run(args.from_step)
    console.print(summary_table(spec.name, args.storage, args.output))
    console.print(f"report: automl report --pipeline {spec.name} --storage {args.storage}\n"
                  f"dashboard: optuna-dashboard {args.storage}")
    return 0


def summary_table(name: str, storage: str, output: Path) -> Table:
    """One row per step: what it ran and produced, and where."""
    table = Table(title=f"Pipeline {name}")
    for column in ("step", "state", "studies", "trials", "produced", "where"):
        table.add_column(column)
    ledger_storage = open_storage(storage)
    for step, status in pipeline_status(name, storage).items():
        studies = status.get("studies", [])
        tallies = [counts(Ledger.load(ledger_storage, s).trials()) for s in studies]
        trials = ", ".join(f"{sum(t.values())} ({t['complete']} complete" + (f", {t['pruned']} pruned" if t["pruned"]
                                                                                  else "") + ")" for t in tallies)
        where = output / name / (step if status.get("kind") == "export" else "")
        table.add_row(step, str(status.get("state")), ", ".join(studies) or "-", trials or "-",
                      _produced(status.get("outputs") or []), str(where))
    return table


def _produced(outputs: list[dict[str, Any]]) -> str:
    if not outputs:
        return "-"
    best = outputs[0]
    metrics = best.get("metrics", {})
    std = best.get("std", {})
    shown = [k for k in ("accuracy", "test_accuracy", "mAP", "loss") if k in metrics][:2]
    text = ", ".join(f"{k} {metrics[k]:.4g}" + (f" ± {std[k]:.2g}" if k in std else "") for k in shown)
    return f"{len(outputs)} candidate{'s' if len(outputs) != 1 else ''}; best: {text or 'trial ' + str(best['trial'])}"


def report_pipeline(name: str, storage: str, output: Path, top: int) -> int:
    """``automl report --pipeline NAME``: every step's leaderboard and the pipeline's summary."""
    console = Console()
    ledger_storage = open_storage(storage)
    for step, status in pipeline_status(name, storage).items():
        for study_name in status.get("studies", []):
            ledger = Ledger.load(ledger_storage, study_name)
            for table in leaderboards(ledger.trials(), ledger.objectives, top=top, title=f"{step}: {study_name}"):
                console.print(table)
    console.print(summary_table(name, storage, output))
    return 0
