"""``automl zoo build``: NASOA's offline step (PAPERS.md §2).

1. **Search** the ``nasoa`` space multi-objectively (validation accuracy on the source task vs measured
   training step time) with the study engine (by default ``morphism-evolution`` with the nasoa morphism:
   random individuals, then NASOA's macro mutations of Pareto-front parents).
2. **Select** up to ``models`` architectures by non-dominated rank (the Pareto front first; a front
   larger than ``models`` is thinned evenly along step time), at most a third of them of one block
   while other blocks are left (so the zoo is not one block at several depths).
3. **Pre-train** each on the source task (Adam, cosine schedule), measure params, FLOPs and training
   throughput with 0, 1 and 2 frozen stages on this machine, and write its card and weights.
4. **Seed experience**: fine-tune random schedules on a few random target tasks (seeds disjoint from
   any benchmark stream) so the predictor starts from data, as the paper's starts from a history.
"""
from __future__ import annotations

import io
import math
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from automl.progress import RichReporter, SilentReporter
from automl.space import load_space
from automl.strategies.pareto import nondominated_ranks
from automl.study import create_study
from automl.tasks.supervised import ClassificationInfo
from automl.training.classification import classification_step
from automl.training.fit import fit
from automl.training.recipe import Recipe
from automl.training.seeding import seeded
from automl.training.streams import tensor_batches
from estimators.cost import count_flops, count_params
from search_spaces.nasoa import arch_encoding, build_nasoa_net
from zoo.card import EXPERIENCE, MANIFEST, Manifest, ModelCard, Zoo, sha256, write_atomic
from zoo.errors import ZooError
from zoo.features import task_meta
from zoo.finetune import accuracy, finetune, measure_throughput
from zoo.schema import BATCH_SIZE, FROZEN_STAGES, LEARNING_RATES, Experience, Schedule
from zoo.tasks import TRANSFER_TASK, load_task, random_transfer_options

#: Seed experience tasks use task seeds from here on (benchmarks use smaller ones).
SEED_TASK_OFFSET: int = 100_000


class BuildConfig(BaseModel):
    """Settings of a zoo build (defaults: the embedded small zoo, a few minutes on 2 CPU cores)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    out: Path
    space: str = Field(default="nasoa", description="registered space name or YAML path")
    strategy: str = "morphism-evolution"
    trials: int = Field(default=30, ge=2, le=10_000)
    models: int = Field(default=6, ge=1, le=64)
    pretrain_epochs: int = Field(default=15, ge=0, le=1000)
    pretrain_lr: float = Field(default=0.005, gt=0, le=1)
    seed_tasks: int = Field(default=4, ge=0, le=1000)
    seed_schedules: int = Field(default=10, ge=1, le=1000)
    seed: int = 0
    overwrite: bool = False


def build_zoo(config: BuildConfig, console: Console | None = None) -> Zoo:
    """Run the whole build into ``config.out`` and return the loaded zoo."""
    console = console or Console(stderr=True)
    out = config.out
    if (out / MANIFEST).exists() and not config.overwrite:
        raise ZooError(f"{out} already holds a zoo; pass --overwrite to replace it")
    start = time.perf_counter()
    space = load_space(config.space)
    objectives = {o.name for o in space.objectives}
    if not {"accuracy", "train_step_ms"} <= objectives:
        raise ZooError(f"space {space.name!r} must have objectives accuracy and train_step_ms; "
                       f"it has {sorted(objectives)}")
    import automl.tasks.digits_transfer  # noqa: F401  (the source task is registered there)

    study = create_study(space, strategy=config.strategy, storage=None, seed=config.seed)
    reporter = RichReporter(f"search {space.name}", console) if console.is_terminal else SilentReporter()
    console.print(f"[bold]zoo build[/] 1/3 search: {config.trials} trials of {space.name} ({config.strategy}), "
                  f"objectives accuracy max / train_step_ms min")
    # the caller's torch threads (the zoo commands use one: small models, shared machines)
    study.optimize(n_trials=config.trials, reporter=reporter, threads=torch.get_num_threads())
    search_s = time.perf_counter() - start
    chosen = select(study, config.models)
    if not chosen:
        raise ZooError("the search produced no completed trial to put in the zoo")

    task_name, task_options = space.task or "digits-source", dict(space.task_options)
    data = load_task(task_name, task_options)
    num_classes = int(data.train_y.max()) + 1
    shape = tuple(int(s) for s in data.train_x.shape[1:])
    models_dir = out / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    cards: list[ModelCard] = []
    with _progress(console) as progress:
        bar = progress.add_task("2/3 pre-train", total=len(chosen))
        for index, cfg in enumerate(chosen):
            model_id = f"nasoa-{index}"
            with seeded(config.seed * 1000 + index):
                net = build_nasoa_net(cfg, ClassificationInfo(shape, num_classes))
                pretrain(net, data.train_x, data.train_y, config.pretrain_epochs, config.pretrain_lr)
            src_acc = accuracy(net, data.val_x, data.val_y)
            throughput = {f: measure_throughput(net, (shape[0], shape[1], shape[2]), f, BATCH_SIZE,
                                                num_classes=num_classes)
                          for f in FROZEN_STAGES if f <= len(net.stages)}
            weights = models_dir / f"{model_id}.pt"
            buffer = io.BytesIO()
            torch.save(net.state_dict(), buffer)
            write_atomic(weights, buffer.getvalue())
            card = ModelCard(
                id=model_id, arch=arch_encoding(cfg), config=cfg, num_stages=len(net.stages),
                feature_dim=net.feature_dim, input_channels=shape[0], min_input_size=2 ** (len(net.stages) - 1),
                params=count_params(net), flops=count_flops(net, torch.zeros(1, *shape)),
                train_samples_per_s=throughput,
                throughput_batch_size=BATCH_SIZE, throughput_input_hw=shape[1], source_task=task_name,
                source_accuracy=src_acc, pretrain_epochs=config.pretrain_epochs, weights=weights.name,
                weights_sha256=sha256(weights))
            write_atomic(models_dir / f"{model_id}.json", card.model_dump_json(indent=2))
            cards.append(card)
            progress.advance(bar)
    pretrain_s = time.perf_counter() - start - search_s
    manifest = Manifest(source_task=task_name, source_task_options=task_options, models=[c.id for c in cards],
                        build={**config.model_dump(mode="json", exclude={"out", "overwrite"}),
                               "source_classes": num_classes, "search_seconds": round(search_s, 2),
                               "pretrain_seconds": round(pretrain_s, 2), "machine": platform.platform(),
                               "torch_threads": torch.get_num_threads()})
    write_atomic(out / MANIFEST, manifest.model_dump_json(indent=2))
    (out / EXPERIENCE).unlink(missing_ok=True)
    zoo = Zoo.load(out)

    seed_start = time.perf_counter()
    lines = []
    rng = np.random.default_rng([config.seed, 7])
    with _progress(console) as progress:
        bar = progress.add_task("3/3 seed experience", total=config.seed_tasks * config.seed_schedules)
        for t in range(config.seed_tasks):
            options = random_transfer_options(rng, SEED_TASK_OFFSET + config.seed * 1000 + t)
            tdata = load_task(TRANSFER_TASK, options)
            meta = task_meta(zoo, tdata, name=f"seed-{t}")
            for _ in range(config.seed_schedules):
                schedule = random_schedule(zoo, rng)
                outcome = finetune(zoo, schedule, tdata, seed=int(rng.integers(2**31)))
                lines.append(Experience(task=meta, schedule=schedule, accuracy=outcome.accuracy,
                                        seconds=outcome.seconds).model_dump_json())
                progress.advance(bar)
    write_atomic(out / EXPERIENCE, "".join(line + "\n" for line in lines))
    seed_s = time.perf_counter() - seed_start
    build = {**manifest.build, "seed_experience_seconds": round(seed_s, 2),
             "total_seconds": round(time.perf_counter() - start, 2)}
    write_atomic(out / MANIFEST, manifest.model_copy(update={"build": build}).model_dump_json(indent=2))
    return Zoo.load(out)


def select(study: Any, limit: int, max_per_block: int | None = None) -> list[dict[str, Any]]:
    """Up to ``limit`` distinct model configs of the study by non-dominated rank (accuracy max, step time
    min), no block (base width + block string) more than ``max_per_block`` times (default a third of
    ``limit``, rounded up) while other blocks are left; then the cap lifts to fill the zoo. A zoo of one
    block over several depths transfers alike: the cap keeps the front's other blocks in."""
    done = [t for t in study.completed() if t.values and all(math.isfinite(v) for v in t.values.values())]
    losses = [(-t.values["accuracy"], t.values["train_step_ms"]) for t in done]
    ranks = nondominated_ranks(losses) if losses else []
    cap = max_per_block if max_per_block is not None else max(1, math.ceil(limit / 3))
    chosen: list[dict[str, Any]] = []
    seen: set[str] = set()
    per_block: dict[str, int] = {}
    for pass_cap in (cap, limit):
        for rank in sorted(set(ranks)):
            if len(chosen) >= limit:
                break
            layer = sorted((t for t, r in zip(done, ranks) if r == rank), key=lambda t: t.values["train_step_ms"])
            layer = [t for t in layer if arch_encoding(t.config["model"]) not in seen
                     and per_block.get(_block_key(t.config["model"]), 0) < pass_cap]
            room = limit - len(chosen)
            if len(layer) > room:  # thin evenly along step time, keeping both ends
                layer = [layer[round(i * (len(layer) - 1) / max(1, room - 1))] for i in range(room)]
            for t in layer:
                key, block = arch_encoding(t.config["model"]), _block_key(t.config["model"])
                if key not in seen and per_block.get(block, 0) < pass_cap:
                    seen.add(key)
                    per_block[block] = per_block.get(block, 0) + 1
                    chosen.append(t.config["model"])
    return chosen[:limit]


def _block_key(model: dict[str, Any]) -> str:
    """The architecture without its macro string: ``"c<base>:<block string>"``."""
    return arch_encoding(model).rsplit(":", 1)[0]


def pretrain(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, lr: float,
             batch_size: int = 64) -> None:
    """Source-task training: Adam with a cosine schedule (the recipe the search scored candidates with)."""
    if epochs == 0:
        return
    stream = tensor_batches(x, y, batch_size)
    fit(net, stream, Recipe(steps=epochs * stream.batches_per_epoch, lr=lr, optimizer="adam", schedule="cosine",
                            batch_size=batch_size), classification_step)


def random_schedule(zoo: Zoo, rng: np.random.Generator) -> Schedule:
    """A random schedule over the generator's grid (epochs log-uniform in 1..20) for seed experience."""
    card = list(zoo)[int(rng.integers(len(zoo)))]
    frozen = [f for f in FROZEN_STAGES if f <= card.num_stages]
    return Schedule(model_id=card.id, lr=float(rng.choice(LEARNING_RATES)), frozen_stages=int(rng.choice(frozen)),
                    epochs=int(round(math.exp(rng.uniform(0, math.log(20))))), batch_size=BATCH_SIZE)


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, disable=not console.is_terminal)
