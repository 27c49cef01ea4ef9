"""The ``automl`` command: search, spaces, strategies, regimes, tasks, report; plug-in layers (the zoo,
distillation) add theirs through the ``automl.commands`` entry points.

Errors that automl raises on purpose print as one line (file, line, field, what was expected) and
exit with status 2; ``--debug`` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import signal
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from rich.console import Console

from automl.artifacts import model_artifact
from automl.cell_plot import draw_cells
from automl.cli_types import int_at_least, key_value
from automl.errors import AutomlError, ConfigError
from automl.estimator import estimators
from automl.evaluation import prepare_evaluation
from automl.executors import SimulatedExecutor, check_executor_spec, make_executor
from automl.executors.devices import detect_devices, parse_share, show_share
from automl.ledger import Ledger, Trial, open_storage
from automl.progress import RichReporter
from automl.pruning import parse_pruner
from automl.registry import commands
from automl.report import concept_table, counts, leaderboard, leaderboards, pbt_table, plot, priority_table
from automl.selection import DEFAULT_SELECTION, selections
from automl.selection_report import plot_selection, selection_table
from automl.space import Categorical, Constant, Float, Group, Int, SearchSpace, load_space, read_space, spaces
from automl.space.files import read_text_file
from automl.space.graph import Graph
from automl.space.jsontext import read_json
from automl.space.names import check_study_name, under
from automl.space.paths import YamlPath
from automl.space.trust import HOW_TO_TRUST, TRUSTED_MODULES_ENV, code_references, reference_problem
from automl.strategies.base import strategies
from automl.study import Study, create_study
from automl.tasks.base import FAMILIES, tasks
from automl.training.metric_sets import metric_sets
from automl.training.regime import regimes

DEFAULT_DIR = Path("automl-runs")
DEFAULT_STORAGE = f"sqlite:///{DEFAULT_DIR}/automl.db"

console = Console()


#: the most worker processes or threads per trial the command line takes (more is a typo, not a machine)
MAX_PROCESSES = 4096
#: the most trials ``--trials`` takes
MAX_TRIALS = 10**9


_positive_int = int_at_least(1, "positive integer", most=MAX_TRIALS)
_processes = int_at_least(1, "positive integer", most=MAX_PROCESSES)
_seed = int_at_least(0, "seed", most=2**63 - 1)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text[:40]!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive, finite number of seconds, got {text[:40]}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="automl",
                                     description="NAS-centric AutoML: search spaces in YAML, one engine.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    search = sub.add_parser("search", help="run (or resume) a search")
    search.add_argument("--space", required=True, help="a registered space name or a file (YAML, NNI JSON, "
                        "ConfigSpace JSON or PCS)")
    search.add_argument("--trials", type=_positive_int, help="finished trials the study should hold "
                        "(a rerun resumes up to this number; default: the space's search.trials)")
    search.add_argument("--timeout", type=_positive_float, help="stop starting trials after this many seconds "
                        "(simulated seconds with --executor simulated)")
    search.add_argument("--workers", type=_processes, default=1, help="parallel worker processes (default 1)")
    search.add_argument("--executor", help="where trials run: local (default), simulated (in simulated time on "
                        "--workers simulated workers: each trial reports its cost as `cost_seconds`, else costs its "
                        "budget), dask://HOST:PORT (an existing Dask scheduler) or dask-local:N (a Dask LocalCluster "
                        "of N processes)")
    search.add_argument("--trial-timeout", type=_positive_float, metavar="SECONDS",
                        help="stop a trial after this long and record it as failed (runs each trial in a child "
                        "process)")
    search.add_argument("--max-memory", type=_positive_int, metavar="MB",
                        help="memory a trial may allocate beyond its worker's own (runs each trial in a child process)")
    search.add_argument("--threads", type=_processes, help="torch threads per trial (default: chosen from the "
                        "machine's load, at most usable cores / concurrent trials; the progress line says when "
                        "other processes keep the machine busy)")
    search.add_argument("--max-retries", type=int, default=0,
                        help="retries of a trial whose process crashed or was killed (default 0)")
    search.add_argument("--gpus-per-trial", default="0", metavar="K",
                        help="GPUs each trial gets and alone sees (CUDA_VISIBLE_DEVICES): a share of one GPU (0.5: two "
                        "trials per GPU) or whole GPUs (1, 2, ...); at most as many trials run at once as the GPUs "
                        "hold; on Dask, workers declare theirs (dask worker --resources GPU=N); default 0: no "
                        "assignment")
    search.add_argument("--strategy", help="search strategy (default: the space's, else evolution)")
    search.add_argument("--option", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                        help="a strategy option, e.g. population=10 (repeatable)")
    search.add_argument("--objective", type=_objective, action="append", default=[], metavar="NAME=max|min",
                        help="optimise these metrics instead of the space's objectives (repeatable; e.g. "
                        "--objective accuracy=max --objective latency_ms=min for mo-asha)")
    search.add_argument("--regime", action="append", default=[], metavar="NAME",
                        help="train with this regime instead of the space's (repeatable; see `automl regimes`)")
    search.add_argument("--regime-option", type=key_value, action="append", default=[], metavar="[NAME.]KEY=VALUE",
                        help="a regime option (NAME. picks the regime when there are several; repeatable)")
    search.add_argument("--select", metavar="RULE", help="how the final trial is chosen: best-value (default: the "
                        "space's selection), expansion (the expansion-function OOD criterion) or oracle (DomainBed's "
                        "test-domain oracle, a reference); see `automl regimes`")
    search.add_argument("--select-option", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                        help="an option of the --select rule, e.g. info_threshold=0.2 (repeatable)")
    search.add_argument("--pruner", help="stop unpromising trials early: median, asha, hyperband, ... or any "
                        "optuna.pruners class (default: the space's search.pruner, else none)")
    search.add_argument("--enqueue", type=Path, action="append", default=[], metavar="FILE",
                        help="evaluate these configs first: a best.json, a JSON config or a JSON list of configs "
                        "(repeatable)")
    search.add_argument("--seed", type=_seed, help="random seed (default: the resumed study's, else random)")
    search.add_argument("--storage", default=DEFAULT_STORAGE, help=f"ledger URL (default {DEFAULT_STORAGE})")
    search.add_argument("--study-name", help="study name (default: the space's name; letters, "
                        "digits, '_', '-', '.': it names the results folder)")
    search.add_argument("--trust-code", action="store_true", help="let the space import and run the code it names "
                        "(builder: \"package.module:function\"); without it such a space is refused (or list "
                        f"trusted modules in {TRUSTED_MODULES_ENV})")
    search.add_argument("--output", type=Path, default=DEFAULT_DIR, help=f"results folder (default {DEFAULT_DIR})")
    search.add_argument("--checkpoints", metavar="PATH|URL", help="where training checkpoints go: a folder or an "
                        "fsspec URL (s3://...) that every worker can reach (default OUTPUT/STUDY/checkpoints)")

    space_cmd = sub.add_parser("spaces", help="list, show, validate or convert search spaces")
    space_sub = space_cmd.add_subparsers(dest="action", required=True)
    space_sub.add_parser("list", help="registered spaces")
    show = space_sub.add_parser("show", help="a space's parameters, objectives and constraints")
    show.add_argument("name", help="a registered name or a file")
    validate = space_sub.add_parser("validate", help="check a space file and sample from it")
    validate.add_argument("file")
    convert = space_sub.add_parser("convert", help="write a space (NNI JSON, ConfigSpace JSON/PCS, YAML) as our YAML")
    convert.add_argument("file", help="a space file or a registered name")
    convert.add_argument("--out", type=Path, help="the YAML file to write (default: print it)")

    sub.add_parser("strategies", help="list registered search strategies")
    sub.add_parser("regimes", help="list registered training regimes, metric sets, learners and selection rules")
    sub.add_parser("tasks", help="list registered tasks and their families")

    report = sub.add_parser("report", help="leaderboard and PNG plots of a study (or every step of a pipeline)")
    which = report.add_mutually_exclusive_group(required=True)
    which.add_argument("--study", help="the study name")
    which.add_argument("--pipeline", help="a pipeline's name: every step's leaderboard and the summary")
    report.add_argument("--storage", default=DEFAULT_STORAGE, help=f"ledger URL (default {DEFAULT_STORAGE})")
    report.add_argument("--output", type=Path, default=DEFAULT_DIR, help="plots go to OUTPUT/STUDY/")
    report.add_argument("--top", type=_positive_int, default=10, help="rows in the leaderboard")
    for name in commands.names():  # plug-in commands: zoo, serve, distill, ...
        commands.get(name)(sub)
    return parser


def _objective(text: str) -> tuple[str, str]:
    """``accuracy=max`` -> ("accuracy", "max")."""
    name, sep, direction = text.partition("=")
    if not sep or not name or direction not in ("max", "min"):
        raise argparse.ArgumentTypeError(f"expected NAME=max or NAME=min, got {text[:80]!r}")
    return name, direction


def objective_overrides(given: Sequence[tuple[str, str]]) -> dict[str, str] | None:
    """The objectives ``--objective`` asks for (None: the space's own)."""
    names = [name for name, _ in given]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"--objective {repeated[0]} is given twice")
    return dict(given) if given else None


def regime_overrides(space: SearchSpace, names: Sequence[str], options: Sequence[tuple[str, Any]]
                     ) -> list[tuple[str, dict[str, Any]]] | None:
    """The regimes ``--regime``/``--regime-option`` ask for (None: the space's own, unchanged)."""
    if not names and not options:
        return None
    chosen = [(n, {}) for n in names] if names else [(n, dict(o)) for n, o in space.regimes]
    if not chosen:
        raise ConfigError("--regime-option: the space names no regime; give one with --regime NAME")
    by_name = {n: o for n, o in chosen}
    for key, value in options:
        target, dot, option = key.partition(".")
        if dot and target in by_name:
            by_name[target][option] = value
        elif len(chosen) == 1:
            chosen[0][1][key] = value
        else:
            raise ConfigError(f"--regime-option {key}: several regimes ({', '.join(by_name)}); write NAME.{key}")
    return chosen


def enqueued_configs(files: Sequence[Path]) -> list[dict[str, Any]]:
    """The configs of ``--enqueue`` files: a ``best.json`` (its ``config``), a config, or a list of either."""
    out: list[dict[str, Any]] = []
    for path in files:  # read within the limits of a space file: a config file is data from elsewhere too
        data, _ = read_json(read_text_file(path, what="--enqueue file"), str(path))
        for item in data if isinstance(data, list) else [data]:
            if not isinstance(item, dict):
                raise ConfigError(f"expected a config (a JSON object) or a list of them, got {item!r}",
                                  source=str(path))
            out.append(dict(item["config"]) if isinstance(item.get("config"), dict) else item)
    return out


def check_training_recipe(space: SearchSpace) -> None:
    """For the built-in ``train`` estimator, which trains every candidate with the recipe its config's ``train``
    part describes: each value the space declares for a recipe field (a constant, each choice, a range's
    bounds) makes a valid recipe, so that ``batch_size: 0`` fails here, not in every trial."""
    if space.task is None or space.estimator != "train":
        return
    train = space.root.child_map().get("train")
    if not isinstance(train, Group):
        return
    from automl.training.recipe import recipe_from_config

    for name, node in train.children:
        if name not in RECIPE_FIELDS:
            continue
        for value in _declared_values(node):
            if name == "epochs":
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise space.error(("space", "train", name), f"must be an integer >= 1, got {value!r} "
                                                                "(training recipe)")
                continue
            try:
                recipe_from_config({name: value}, steps=1)
            except ConfigError as exc:
                raise space.error(("space", "train", name), exc.message) from None
            except (TypeError, ValueError, OverflowError):
                raise space.error(("space", "train", name), f"cannot be {value!r} (training recipe)") from None


#: the fields of a config's ``train`` part the ``train`` estimator reads (automl.training.recipe, and epochs)
RECIPE_FIELDS = frozenset({"lr", "optimizer", "momentum", "weight_decay", "batch_size", "clip", "schedule", "warmup",
                           "epochs"})


def _declared_values(node: Any) -> list[Any]:
    """The values a parameter can take that matter for a recipe check: a constant, the choices, the bounds."""
    if isinstance(node, Constant):
        return [node.value]
    if isinstance(node, Categorical):
        return list(node.choices)
    if isinstance(node, (Int, Float)):
        return [node.low, node.high]
    return []


def check_registered(space: SearchSpace, *, strategy: bool = True, own_regimes: bool = True) -> None:
    """That the components the space names are registered -- its builder, task, estimator, regimes (unless
    ``own_regimes`` is False: the command line replaces them) and default strategy (unless ``strategy`` is False) --
    by name only: nothing is imported, so an unknown name costs nothing. One ConfigError at the name's line."""
    problem = reference_problem(space.builder) if space.builder is not None else None
    if problem is not None:
        raise space.error(("builder",), problem)
    named: list[tuple[YamlPath, Any, str | None]] = [(("task",), tasks, space.task)]
    if space.task is not None:
        named.append((("estimator",), estimators, space.estimator))
    if own_regimes and space.task is not None:
        listed = isinstance(space.document.get("regime"), list)
        named += [(("regime", i) if listed else ("regime",), regimes, name)
                  for i, (name, _) in enumerate(space.regimes)]
    if space.task is not None:
        listed_sets = isinstance(space.document.get("metrics"), list)
        named += [(("metrics", i) if listed_sets else ("metrics",), metric_sets, name)
                  for i, (name, _) in enumerate(space.metrics)]
    if strategy:
        named.append((("search", "strategy"), strategies, space.defaults.strategy))
    for path, registry, name in named:
        if name is not None and not registry.known(name):
            raise space.error(path, str(registry.unknown(name)))


def check_names(space: SearchSpace) -> None:
    """That every component the space names is registered -- its task, estimator and regimes (with their
    options), its default strategy and pruner, its builder -- importing only registered plug-ins, never code
    the space names by import path (``automl spaces validate``)."""
    check_registered(space)
    prepare_evaluation(space)
    pruner = parse_pruner(space.defaults.pruner)
    if pruner is not None:
        try:
            pruner.build()
        except ConfigError as exc:
            raise space.error(("search", "pruner"), exc.message) from None


def _taskless_estimator(name: str) -> bool:
    """Whether ``name`` is a registered estimator that needs no task (a benchmark function such as mf-hartmann)."""
    return estimators.known(name) and not estimators.get(name).needs_task


def cmd_search(args: argparse.Namespace) -> int:
    space = load_space(args.space, trust_code=args.trust_code)
    if space.task is None and not _taskless_estimator(space.estimator):
        raise space.error(("task",) if space.lines else (), "the space names no task, so `automl search` has "
                          "nothing to evaluate its candidates with: add `task:` and `builder:` (or search it from "
                          "Python, automl.create_study(...).optimize(objective))")
    check_registered(space, strategy=args.strategy is None, own_regimes=not args.regime)
    check_training_recipe(space)
    check_executor_spec(args.executor)
    gpus = parse_share(args.gpus_per_trial)
    if gpus and args.executor in (None, "local"):  # refused before the study is written (Dask: once connected)
        detect_devices().check(gpus)
    study_name = check_study_name(args.study_name, "--study-name") if args.study_name is not None else space.name
    out_dir = under(args.output, study_name)
    enqueued = enqueued_configs(args.enqueue)  # read before anything is written
    study = create_study(space, strategy=args.strategy, storage=args.storage, study_name=study_name,
                         seed=args.seed, strategy_options=dict(args.option),
                         checkpoints=args.checkpoints or (out_dir / "checkpoints").resolve(),
                         regimes=regime_overrides(space, args.regime, args.regime_option), pruner=args.pruner,
                         selection=selection_override(args.select, args.select_option),
                         objectives=objective_overrides(args.objective))
    for config in enqueued:
        study.enqueue(config, once=True)  # a rerun of the same command does not enqueue them again
    if study.setup.task is not None:  # unusable data (a broken COCO file, a missing folder) fails here, once
        study.setup.task.check()
    plans_own = strategies.get(study.strategy_name).plans_own_budget
    total = args.trials or (None if args.timeout or plans_own else space.defaults.trials)
    start = time.perf_counter()
    if args.max_retries < 0:
        raise ConfigError(f"--max-retries must be >= 0, got {args.max_retries}")
    executor = make_executor(args.workers, args.executor, args.threads)
    where = f"executor {args.executor}" if args.executor else f"workers {args.workers}"
    if isinstance(executor, SimulatedExecutor):
        where += f" ({executor.slots} simulated workers)"
    if gpus:
        where += f" · {show_share(gpus)} GPU per trial"
    console.print(f"[bold]automl search[/] space [cyan]{space.name}[/] · strategy [cyan]{study.strategy_name}[/] · "
                  f"study [cyan]{study.study_name}[/] · seed {study.seed} · {where}")
    reporter = RichReporter(f"{space.name}")
    try:
        study.optimize(total_trials=total, timeout=args.timeout, executor=executor, reporter=reporter,
                       max_retries=args.max_retries, trial_timeout=args.trial_timeout, max_memory_mb=args.max_memory,
                       threads=args.threads, progress_dir=out_dir / "progress", gpus_per_trial=float(gpus))
    finally:
        executor.shutdown(cancel=True)
    elapsed = time.perf_counter() - start
    trials = study.trials
    for table in leaderboards(trials, study.objectives, top=5, title=f"Best candidates of {study.study_name}",
                              space=space):
        console.print(table)
    tally = counts(trials)
    simulated = f" · simulated clock {executor.clock:.1f}s" if isinstance(executor, SimulatedExecutor) else ""
    console.print(f"{len(trials)} trials: " + ", ".join(f"{n} {s}" for s, n in tally.items() if n) +
                  f" · this run {elapsed:.1f}s{simulated}")
    if study.best_trials:
        out_dir.mkdir(parents=True, exist_ok=True)
        best = study.best
        (out_dir / "best.json").write_text(json.dumps(
            {"number": best.number, "values": best.values, "metrics": best.metrics, "budget": best.budget,
             "config": best.config}, indent=2, default=str))
        chosen_by = "" if study.space.selection[0] == DEFAULT_SELECTION else f" (chosen by {study.space.selection[0]})"
        console.print(f"best config: {out_dir / 'best.json'}: trial {best.number}{chosen_by}")
        for name, formula, png in draw_cells(space, dict(best.config), out_dir, prefix="best"):
            console.print(f"best {name}: [bold]{formula}[/]  ({png})")
        picks = selection_table(trials, study.objectives, study.space.selection[0])
        if picks is not None:
            console.print(picks)
        if len(study.objectives) > 1:
            console.print(leaderboard(study.best_trials, study.objectives, top=len(study.best_trials),
                                      title=f"Pareto front of {study.study_name}", space=space, full_configs=True))
        for trial, path in export_models(study, out_dir):
            console.print(f"exported {'best model' if trial.number == best.number else 'front member'} "
                          f"#{trial.number}: {path}")
    console.print(f"ledger: {args.storage} (study {study.study_name!r})\n"
                  f"report: automl report --study {study.study_name} --storage {args.storage}\n"
                  f"dashboard: optuna-dashboard {args.storage}")
    return 0


def selection_override(name: str | None, options: Sequence[tuple[str, Any]]) -> str | dict[str, Any] | None:
    """The selection rule ``--select``/``--select-option`` ask for (None: the space's own)."""
    if options and name is None:
        raise ConfigError("--select-option needs --select NAME (the rule the options are for)")
    return {"name": name, "options": dict(options)} if options else name


def export_models(study: Study, out_dir: Path) -> list[tuple[Trial, Path]]:
    """Copy the trained models an estimator kept for the Pareto front (``models/<trial>.pt``) and for the
    best trial (``best_model.pt``) out of the checkpoint store; estimators that keep none export nothing."""
    store = study.checkpoints
    if store is None:
        return []
    best = study.best
    written = []
    for trial in [best] + [t for t in study.best_trials if t.number != best.number]:
        name = model_artifact(trial.key)
        if not store.exists(name):
            continue
        path = out_dir / ("best_model.pt" if trial is best else f"models/{trial.number}.pt")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(store.read_bytes(name))
        written.append((trial, path))
    return written


def cmd_spaces(args: argparse.Namespace) -> int:
    if args.action == "list":
        for name in spaces.names():
            space = read_space(name)
            objectives = ", ".join(f"{o.name} {o.direction}" for o in space.objectives) or "-"
            console.print(f"[cyan]{name:20}[/] task={space.task or '-':10} builder={space.builder or '-':8} "
                          f"objectives: {objectives}")
        return 0
    space = read_space(args.name if args.action == "show" else args.file)  # never imports what it names
    constraints = (*space.constraints, *space.config_constraints)
    if args.action == "convert":
        from automl.space.writer import convert_to_yaml

        text = convert_to_yaml(space, source=str(args.out) if args.out else None)
        if args.out is None:
            sys.stdout.write(text)
            return 0
        args.out.write_text(text)
        console.print(f"[green]wrote[/] {args.out}: space {space.name!r}, {sum(1 for _ in space.leaves())} "
                      f"parameters, {len(constraints)} constraints")
        return 0
    if args.action == "validate":
        check_names(space)
        check_training_recipe(space)
        console.print(f"[green]ok[/] {args.file}: space {space.name!r}, {sum(1 for _ in space.leaves())} parameters, "
                      f"{len(space.objectives)} objectives, {len(constraints)} constraints")
        for where, reference in code_references(space):
            line = space.error(where, "").line
            console.print(f"[yellow]note[/] {args.file}{f':{line}' if line else ''}: {'.'.join(map(str, where))}: "
                          f"names code to import and run ({reference!r}); validate did not import or check it, "
                          f"and `automl search` refuses it unless you trust it ({HOW_TO_TRUST})", soft_wrap=True)
        return 0
    console.print(f"[bold]{space.name}[/]  ({space.source})")
    console.print(f"task: {space.task or '-'} · builder: {space.builder or '-'} · estimator: {space.estimator}")
    for where, reference in code_references(space):
        console.print(f"[yellow]names code to import and run[/]: {'.'.join(map(str, where))} = {reference!r} "
                      "(a search needs --trust-code)")
    console.print("objectives: " + (", ".join(f"{o.name} ({o.direction})" for o in space.objectives) or "-"))
    console.print("constraints: " + (", ".join(map(str, constraints)) or "-"))
    if space.budget:
        console.print(f"budget: {space.budget.name} in [{space.budget.min:g}, {space.budget.max:g}]")
    console.print(f"search defaults: {space.defaults.strategy}, {space.defaults.trials} trials")
    for path, node in space.leaves():
        when = f"  [dim]when {node.when}[/]" if node.when is not None else ""
        console.print(f"  {path:40} {node.describe()}{when}")
        if isinstance(node, Graph):
            for name, _ in node.references:
                console.print(f"  {'':40} reference {name}: {node.formula(node.reference(name))}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    if args.pipeline is not None:
        check_study_name(args.pipeline, "--pipeline")
    else:
        check_study_name(args.study, "--study")
    if args.pipeline:
        from automl.pipeline_cli import report_pipeline

        return report_pipeline(args.pipeline, args.storage, args.output, args.top)
    ledger = Ledger.load(open_storage(args.storage), args.study)
    trials = ledger.trials()
    for table in leaderboards(trials, ledger.objectives, top=args.top, title=f"Leaderboard of {args.study}"):
        console.print(table)
    console.print(f"{len(trials)} trials: " + ", ".join(f"{n} {s}" for s, n in counts(trials).items() if n))
    priorities = priority_table(trials)  # op-evolution's per-operation priorities, when stored
    if priorities is not None:
        console.print(priorities)
    concepts = concept_table(trials, ledger.objectives)  # a LeadNet study's concept selection, when reported
    if concepts is not None:
        console.print(concepts)
    lineage = pbt_table(trials, ledger.objectives)  # a PBT study: the trials each surviving member continued
    if lineage is not None:
        console.print(lineage)
    document = ledger.study_attrs().get("space_document", {}).get("document", {})
    used = document.get("selection", DEFAULT_SELECTION)
    picks = selection_table(trials, ledger.objectives, used if isinstance(used, str) else used.get("name"))
    if picks is not None:  # a multi-environment study: every rule's pick beside its test-environment accuracy
        console.print(picks)
    out_dir = under(args.output, args.study)
    for path in plot(trials, ledger.objectives, out_dir):
        console.print(f"wrote {path}")
    scatter = plot_selection(trials, ledger.objectives, out_dir)
    if scatter is not None:
        console.print(f"wrote {scatter}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.getLogger("optuna").setLevel(logging.WARNING)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        if getattr(args, "handler", None) is not None:
            status: int = args.handler(args)
            return status
        if args.command == "search":
            return cmd_search(args)
        if args.command == "spaces":
            return cmd_spaces(args)
        if args.command == "strategies":
            for name in strategies.names():
                console.print(f"[cyan]{name:20}[/] {_first_line(strategies.get(name).__doc__)}")
            return 0
        if args.command == "regimes":
            for name in regimes.names():
                regime = regimes.get(name)
                families = ", ".join(sorted(regime.families)) if regime.families is not None else "any"
                console.print(f"[cyan]{name:12}[/] {families:12} {_first_line(regime.__doc__)}")
            for name in metric_sets.names():  # what a space's `metrics:` (or an adversarial regime) adds
                console.print(f"metric set [cyan]{name}[/]: {_first_line(metric_sets.get(name).__doc__)}")
            from automl.training.fewshot import learners  # torch is imported only when listing them

            for name in learners.names():  # what the fewshot estimator's `learner` config part names
                console.print(f"learner [cyan]{name}[/]: {_first_line(learners.get(name).__doc__)}")
            for name in selections.names():  # what a space's `selection:` (or --select) names
                console.print(f"selection [cyan]{name}[/]: {_first_line(selections.get(name).__doc__)}")
            return 0
        if args.command == "tasks":
            for name in tasks.names():
                task = tasks.get(name)
                console.print(f"[cyan]{name:18}[/] {task.family:12} {_first_line(task.__doc__)}")
            console.print("families: " + "; ".join(f"{k}: {v}" for k, v in FAMILIES.items()))
            return 0
        return cmd_report(args)
    except AutomlError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: finished trials are saved; run the same command again to resume", file=sys.stderr)
        return 130


def _first_line(doc: str | None) -> str:
    lines = (doc or "").strip().splitlines()
    return lines[0] if lines else ""


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
