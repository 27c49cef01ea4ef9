"""``automl generate``: class-conditional samples from a trained classifier read as an energy model (JEAT's
generation: a Gaussian seed per class, then energy descent or SGLD), scored by an independent classifier.

Registered in the ``automl.commands`` entry-point group like ``automl export``; the model comes from an
export folder (``--model DIR``) or from a study's kept trial (``--study NAME [--trial N]``, the best by
default). torch is imported inside the command, so ``automl --help`` stays fast. Bad input raises
:class:`~automl.errors.ConfigError`, which the CLI prints as one line and exits with status 2.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from automl.cli_types import int_at_least
from automl.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from automl.tasks.supervised import ClassificationTask
    from automl.training.generation import GenerationOptions

#: the ledger ``automl search`` writes by default
DEFAULT_STORAGE = "sqlite:///automl-runs/automl.db"
#: the flag of each generation option (errors name the flag the user typed)
FLAGS = {"per_class": "--per-class", "steps": "--steps", "step_size": "--step-size", "noise": "--noise",
         "seed": "--seed", "low": "--low", "high": "--high", "batch_size": "--batch-size"}
SAMPLES_FILE = "samples.npz"
SCORES_FILE = "scores.json"


def add_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``generate`` to automl's subcommands."""
    p = sub.add_parser("generate", help="class-conditional samples from a trained classifier (Gaussian seeds, then "
                       "energy descent / SGLD on E(x, y) = -f(x)[y]), PNG grids and their scores by an independent "
                       "classifier")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", type=Path, metavar="DIR", help="an export folder (automl export)")
    source.add_argument("--study", help="a study whose trial's kept model generates (the best trial by default)")
    p.add_argument("--storage", default=DEFAULT_STORAGE, help=f"ledger URL of --study (default {DEFAULT_STORAGE})")
    p.add_argument("--trial", type=int_at_least(0, "trial number"), help="the trial of --study (default: the best)")
    p.add_argument("--out", type=Path, required=True, help="the folder the samples, grids and scores go to")
    p.add_argument("--per-class", type=int, default=None, help="samples per class (default 100)")
    p.add_argument("--steps", type=int, default=None, help="energy-descent steps (default 40)")
    p.add_argument("--step-size", type=float, default=None, help="the step size η (default 0.01)")
    p.add_argument("--noise", type=float, default=None, help="std of the Gaussian noise of each step: 0 (the default) "
                   "is plain energy descent, > 0 is SGLD")
    p.add_argument("--seed", type=int, default=0, help="the seed of the draw (default 0)")
    p.add_argument("--low", type=float, help="the inputs' lower bound (default: the training split's minimum)")
    p.add_argument("--high", type=float, help="the inputs' upper bound (default: the training split's maximum)")
    p.add_argument("--batch-size", type=int, default=None, help="samples that descend together (default 500)")
    p.add_argument("--reference-epochs", type=int_at_least(1, "number of epochs"), default=None,
                   help="training epochs of the independent reference classifier (default 30)")
    p.add_argument("--threads", type=int_at_least(1, "number of threads"), help="torch threads (default: chosen from "
                   "the machine's load, as automl search chooses them)")
    p.add_argument("--inception", type=Path, metavar="CHECKPOINT", help="also score with a local torchvision "
                   "inception_v3 state dict (IS and FID on its 2048-d pool features; nothing is downloaded)")
    p.set_defaults(handler=cmd_generate)


def _options(args: argparse.Namespace, **overrides: Any) -> GenerationOptions:
    """The generation options of the flags given (defaults for the rest); a bad value names its flag."""
    from automl.training.generation import GenerationOptions

    given = {name: getattr(args, name) for name in FLAGS if getattr(args, name) is not None}
    try:
        return GenerationOptions(**{**given, **overrides})
    except ConfigError as exc:
        raise ConfigError(exc.message.replace(" (generation options)", ""), field=FLAGS.get(exc.field or "", exc.field)
                          ) from None


def _classification(task: Any, what: str) -> ClassificationTask:
    from automl.tasks.supervised import ClassificationTask

    if not isinstance(task, ClassificationTask):
        raise ConfigError(f"{what}: task {type(task).__name__} is of the {task.family} family; automl generate draws "
                          "class-conditional samples from a supervised classifier only")
    return task


def _from_folder(root: Path) -> tuple[nn.Module, ClassificationTask, dict[str, Any]]:
    from automl.export import CARD_FILE, build_task, load_model

    if not root.is_dir():
        raise ConfigError("no such folder (an export folder written by automl export)", source=str(root))
    card_path = root / CARD_FILE
    if not card_path.is_file():
        raise ConfigError(f"not an export folder (no {CARD_FILE}); write one with automl export", source=str(root))
    try:
        card = json.loads(card_path.read_text())
        name, options = str(card["task"]["name"]), dict(card["task"]["options"] or {})
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"not a model card: no task name and options ({exc})", source=str(card_path)) from None
    task = _classification(build_task(name, options), str(root))
    source = {"model": str(root), "study": card.get("study"), "trial": card.get("trial"),
              "task": {"name": name, "options": options}}
    return load_model(root), task, source


def _from_study(study: str, storage: str, number: int | None) -> tuple[nn.Module, ClassificationTask, dict[str, Any]]:
    from automl.artifacts import trial_model_artifact
    from automl.export import _choose, _open, build_task, read_trained_model, rebuild

    name, ledger, store, _space, _seed = _open((study, storage))
    trial = _choose(name, ledger, number)
    if store is None:
        raise ConfigError(f"study {name!r} has no checkpoint store, so no trained model was kept: rerun the search "
                          "with one (automl search keeps models under automl-runs/STUDY/checkpoints)")
    artifact = trial_model_artifact(trial.number)
    if not store.exists(artifact):
        raise ConfigError(f"trial {trial.number} of study {name!r} has no kept model ({artifact} is not in the "
                          f"checkpoint store {store.root}); generate from a trial whose estimator kept its model")
    saved = read_trained_model(store.read_bytes(artifact), artifact)
    if saved.trial != trial.number:
        raise ConfigError(f"{artifact} in the checkpoint store {store.root} holds trial {saved.trial}, not trial "
                          f"{trial.number} of study {name!r}: another study wrote into the same checkpoint store")
    task = _classification(build_task(saved.task, saved.task_options), f"study {name!r} trial {trial.number}")
    source = {"study": name, "storage": storage, "trial": trial.number,
              "task": {"name": saved.task, "options": dict(saved.task_options)}}
    return rebuild(saved), task, source


def _check_logits(model: nn.Module, task: ClassificationTask, device: torch.device) -> None:
    import torch

    try:
        with torch.no_grad():
            out = model(task.example_input().to(device))
    except Exception as exc:  # a model that does not take the task's input: say so, in one line
        raise ConfigError(f"the model does not run on the task's input {tuple(task.info.input_shape)}: "
                          f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (1, task.info.num_classes):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(f"the model's output is {shape}, not class logits [N, {task.info.num_classes}]: automl "
                          "generate needs a classifier")


def _progress(console: Any) -> tuple[Any, Callable[[int, int], None]]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("sampling"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console,
                   transient=True)
    task_id = bar.add_task("sampling", total=None)

    def step(done: int, total: int) -> None:
        bar.update(task_id, completed=done, total=total)

    return bar, step


def cmd_generate(args: argparse.Namespace) -> int:
    import torch

    from automl.executors.threads import ThreadPolicy, apply_threads

    before = torch.get_num_threads()
    apply_threads(ThreadPolicy(1, fixed=args.threads).plan().threads)  # threads beyond the free cores cost more
    try:
        return _generate(args)
    finally:
        apply_threads(before)


def _generate(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from rich.console import Console
    from rich.table import Table

    from automl.training.generation import (
        REFERENCE_EPOCHS,
        class_conditional_samples,
        inception_score,
        inception_scores,
        load_inception,
        reference_accuracy,
        sample_scores,
        save_grids,
        train_reference_classifier,
    )

    console = Console()
    options = _options(args)  # bad flags fail before anything is loaded
    if args.inception is not None:
        load_inception(args.inception)  # a missing or foreign checkpoint fails before the sampling
    if args.model is not None:
        model, task, source = _from_folder(args.model)
    else:
        model, task, source = _from_study(args.study, args.storage, args.trial)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = model.to(device)
    _check_logits(model, task, device)
    data = task.load()
    num_classes = task.info.num_classes
    real_split = "test" if data.has_test else "val"
    real_x, real_y = (data.test_x, data.test_y) if data.has_test else (data.val_x, data.val_y)
    assert real_x is not None and real_y is not None
    options = _options(args, low=args.low if args.low is not None else float(data.train_x.min()),
                       high=args.high if args.high is not None else float(data.train_x.max()))
    where = (f"export {source['model']}" if "model" in source else
             f"study {source['study']} trial {source['trial']}")
    console.print(f"[bold]automl generate[/] {where} · task {source['task']['name']} · {options.per_class} per class "
                  f"× {num_classes} classes · {options.steps} steps of {options.step_size:g}, noise {options.noise:g}"
                  f" -> {args.out}", highlight=False)

    bar, step = _progress(console)
    with bar:
        x, y = class_conditional_samples(model, data.train_x, data.train_y, num_classes, options, on_step=step)
    seeds_x, _ = class_conditional_samples(model, data.train_x, data.train_y, num_classes,
                                           dataclasses.replace(options, steps=0))
    epochs = args.reference_epochs if args.reference_epochs is not None else REFERENCE_EPOCHS
    reference = train_reference_classifier(data.train_x.to(device), data.train_y.to(device), num_classes, seed=0,
                                           epochs=epochs)
    scores = sample_scores(reference, x, y, real_x)
    seed_scores = sample_scores(reference, seeds_x, y, real_x)
    with torch.no_grad():
        real_probs = torch.softmax(reference(real_x.to(device).float()), dim=1).cpu()
    real_is, _ = inception_score(real_probs)
    accuracy = reference_accuracy(reference, real_x, real_y)
    inception = inception_scores(x, real_x, args.inception) if args.inception is not None else None

    root: Path = args.out
    images = x.ndim == 4 and x.shape[1] in (1, 3)
    try:
        root.mkdir(parents=True, exist_ok=True)
        np.savez(root / SAMPLES_FILE, x=x.numpy().astype(np.float32), y=y.numpy().astype(np.int64))
        grids = save_grids(x, y, root, num_classes, options.low, options.high) if images else []
        report = {
            "source": source,
            "task": {**source["task"], "num_classes": num_classes, "input_shape": list(task.info.input_shape)},
            "options": options.as_dict(),
            "real_split": real_split,
            "reference": {"model": "ReferenceClassifier (automl.training.generation): a small CNN trained on clean "
                                   "data only", "train_split": "train", "seed": 0,
                          "epochs": epochs, "accuracy": accuracy,
                          "accuracy_split": real_split},
            "scores": scores,
            "baselines": {"seeds": seed_scores, "real": {"inception_score": real_is}},
            "inception": inception,
            "files": [SAMPLES_FILE, *(p.name for p in grids), SCORES_FILE],
        }
        (root / SCORES_FILE).write_text(json.dumps(report, indent=2) + "\n")
    except OSError as exc:
        raise ConfigError(f"cannot write the samples to {root}: {exc.strerror or exc}") from None

    table = Table(title=f"Scores by the reference classifier (clean {real_split} accuracy "
                        f"{accuracy:.3f})")
    for column in ("metric", "samples", "seeds x₀", f"real ({real_split})"):
        table.add_column(column)
    table.add_row("digits-IS", f"{scores['inception_score']:.3f}", f"{seed_scores['inception_score']:.3f}",
                  f"{real_is:.3f}")
    table.add_row(f"IS ({scores['inception_score_splits']} splits)",
                  f"{scores['inception_score_mean']:.3f} ± {scores['inception_score_std']:.3f}",
                  f"{seed_scores['inception_score_mean']:.3f} ± {seed_scores['inception_score_std']:.3f}", "")
    table.add_row("Fréchet distance", f"{scores['frechet_distance']:.3f}", f"{seed_scores['frechet_distance']:.3f}",
                  "")
    table.add_row("class accuracy", f"{scores['class_accuracy']:.3f}", f"{seed_scores['class_accuracy']:.3f}", "")
    if inception is not None:
        table.add_row("Inception IS", f"{inception['inception_score']:.3f} ± {inception['inception_score_std']:.3f}",
                      "", "")
        table.add_row("Inception FID", f"{inception['frechet_inception_distance']:.3f}", "", "")
    console.print(table)
    what = f"{len(grids)} PNG grids, " if grids else "no grids (the inputs are not images), "
    console.print(f"wrote {root / SAMPLES_FILE}, {what}{root / SCORES_FILE}", highlight=False, soft_wrap=True)
    return 0
