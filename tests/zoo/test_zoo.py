"""NASOA zoo: the nasoa space and builder, zoo build output, predictor, schedule generator, store."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import automl
from automl.tasks.supervised import ClassificationInfo

REPO = Path(__file__).resolve().parents[2]
AUTOML = str(Path(sys.executable).parent / "automl")


@pytest.fixture(scope="session")
def tiny_zoo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny zoo built with the real command (4 search trials, 2 models, a little seed experience)."""
    out = tmp_path_factory.mktemp("zoo") / "zoo"
    proc = subprocess.run([AUTOML, "zoo", "build", "--out", str(out), "--trials", "4", "--models", "2",
                           "--pretrain-epochs", "2", "--seed-tasks", "2", "--seed-schedules", "5"],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "nasoa-0" in proc.stdout and "automl serve --zoo" in proc.stdout  # the final table and the next step
    return out


@pytest.fixture(scope="session")
def tiny_zoo(tiny_zoo_dir: Path):
    from zoo.card import Zoo

    return Zoo.load(tiny_zoo_dir)


def test_nasoa_space_samples_build_and_run_at_several_input_sizes():
    import search_spaces.nasoa as nasoa

    space = automl.load_space("nasoa")
    assert {o.name for o in space.objectives} == {"accuracy", "train_step_ms"}
    rng = np.random.default_rng(1)
    encodings = set()
    for _ in range(15):
        config = space.sample(rng)["model"]
        for size in (8, 16):
            net = nasoa.build_nasoa(config, ClassificationInfo((1, size, size), 3))
            assert net(torch.randn(2, 1, size, size)).shape == (2, 3)
        encodings.add(nasoa.arch_encoding(config))
        assert nasoa.macro_string(config).count("-") == len(config["stages"]) - 1
    assert len(encodings) > 10


def test_block_string_encoding_and_bad_skip():
    import search_spaces.nasoa as nasoa

    block = {"n_ops": 3, "op1": "conv3x3", "width1": 3, "op2": "conv3x3_g2", "width2": 1, "op3": "sepconv3x3",
             "skip3": "a13"}
    assert nasoa.block_spec(block).encode() == "03-21-6|a13"
    with pytest.raises(ValueError, match="bad skip"):
        nasoa.block_spec({**block, "skip3": "a12"})  # j must be > i + 1


def test_freezing_stops_gradients_and_keeps_batchnorm_statistics():
    import search_spaces.nasoa as nasoa

    config = automl.load_space("nasoa").sample(np.random.default_rng(0))["model"]
    net = nasoa.build_nasoa_net(config, ClassificationInfo((1, 8, 8), 5))
    net.freeze(1)
    net.train()
    stats = [m.running_mean.clone() for m in net.stem.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    net(torch.randn(8, 1, 8, 8)).sum().backward()
    assert all(p.grad is None for p in net.stem.parameters())
    assert all(p.grad is None for p in net.stages[0].parameters())
    assert any(p.grad is not None for p in net.head.parameters())
    after = [m.running_mean for m in net.stem.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(torch.equal(a, b) for a, b in zip(stats, after))


def test_train_estimator_reports_training_step_time():
    space = automl.load_space("nasoa")
    study = automl.create_study(space, strategy="random", seed=3)
    study.optimize(n_trials=1)
    metrics = study.completed()[0].metrics
    assert metrics["train_step_ms"] > 0 and 0 <= metrics["accuracy"] <= 1


def test_zoo_build_writes_cards_weights_and_seed_experience(tiny_zoo_dir: Path, tiny_zoo):
    manifest = json.loads((tiny_zoo_dir / "zoo.json").read_text())
    assert manifest["models"] == ["nasoa-0", "nasoa-1"] and manifest["source_task"] == "digits-source"
    for card in tiny_zoo:
        raw = json.loads((tiny_zoo_dir / "models" / f"{card.id}.json").read_text())
        assert raw["arch"].startswith("c") and raw["params"] > 0 and raw["flops"] > 0
        assert all(v > 0 for v in card.train_samples_per_s.values()) and 0 in card.train_samples_per_s
        assert 0.0 <= card.source_accuracy <= 1.0
        net = tiny_zoo.load_model(card.id, num_classes=3)  # weights load into the card's architecture
        assert net(torch.randn(1, 1, 8, 8)).shape == (1, 3)
    assert len(tiny_zoo.seed_experience) == 10
    assert all(e.task.probe_scores.keys() == tiny_zoo.cards.keys() for e in tiny_zoo.seed_experience)
    listed = subprocess.run([AUTOML, "zoo", "list", "--zoo", str(tiny_zoo_dir)], capture_output=True, text=True,
                            timeout=120, cwd=REPO)
    assert listed.returncode == 0 and "nasoa-1" in listed.stdout and "seed experience: 10" in listed.stdout


def test_corrupt_zoo_fails_with_the_file_named(tiny_zoo_dir: Path, tmp_path: Path):
    import shutil

    from zoo.card import Zoo
    from zoo.errors import ZooError

    copy = tmp_path / "zoo"
    shutil.copytree(tiny_zoo_dir, copy)
    (copy / "models" / "nasoa-1.json").write_text("{not json")
    with pytest.raises(ZooError, match=r"nasoa-1\.json:1: not valid JSON"):
        Zoo.load(copy)
    with pytest.raises(ZooError, match="not a zoo directory"):
        Zoo.load(tmp_path)


def _meta(**kw):
    from zoo.schema import TaskMeta

    return TaskMeta(**{"num_classes": 3, "num_samples": 300, "input_shape": (1, 8, 8), **kw})


def test_schedules_fit_the_budget_and_too_small_budgets_are_refused(tiny_zoo):
    from zoo.errors import UnservableTask
    from zoo.features import estimated_seconds
    from zoo.predictor import fit_predictor
    from zoo.schedule import BUDGET_SAFETY, candidate_schedules, decide
    from zoo.schema import MAX_EPOCHS, ScheduleRequest

    predictor = fit_predictor(tiny_zoo, [])
    task = _meta()
    schedules = candidate_schedules(tiny_zoo, predictor, task, 0.5)
    assert schedules
    usable = BUDGET_SAFETY * 0.5  # the safety margin keeps every schedule below the budget
    for s in schedules:
        per_epoch = estimated_seconds(tiny_zoo.card(s.model_id), task, s.frozen_stages, 1)
        assert s.epochs * per_epoch <= usable + 1e-9
        assert s.epochs == MAX_EPOCHS or (s.epochs + 1) * per_epoch > usable
    decision = decide(tiny_zoo, predictor, ScheduleRequest(task=task, time_budget_s=0.5))
    assert decision.best.predicted_seconds <= usable + 1e-9 and decision.predictor == "prior"
    with pytest.raises(UnservableTask, match="too small"):
        candidate_schedules(tiny_zoo, predictor, task, 1e-6)
    with pytest.raises(UnservableTask, match="3 channel"):
        candidate_schedules(tiny_zoo, predictor, _meta(input_shape=(3, 8, 8)), 10.0)


def test_predictor_learns_accuracy_and_time_from_experience(tiny_zoo):
    from zoo.features import estimated_seconds
    from zoo.predictor import PRIOR_RECORDS, fit_predictor
    from zoo.schema import Experience, Schedule

    # synthetic experience: model nasoa-1 at lr 0.01 is clearly best, and every run takes 3x the estimate
    rows = []
    rng = np.random.default_rng(0)
    for i in range(40):
        model = ["nasoa-0", "nasoa-1"][i % 2]
        lr = [0.001, 0.01][(i // 2) % 2]
        s = Schedule(model_id=model, lr=lr, frozen_stages=0, epochs=5)
        task = _meta(num_samples=int(rng.integers(100, 400)))
        acc = 0.9 if (model == "nasoa-1" and lr == 0.01) else 0.5
        secs = 3.0 * estimated_seconds(tiny_zoo.card(model), task, 0, 5)
        rows.append(Experience(task=task, schedule=s, accuracy=acc, seconds=secs))
    predictor = fit_predictor(tiny_zoo, rows)
    assert predictor.mode == "learned" and predictor.experience == 40
    best = Schedule(model_id="nasoa-1", lr=0.01, frozen_stages=0, epochs=5)
    worse = Schedule(model_id="nasoa-0", lr=0.001, frozen_stages=0, epochs=5)
    acc, secs = predictor.predict(tiny_zoo, _meta(), [best, worse])
    # the forest learned the 0.4 gap; blended with the prior, it weighs 40 / (40 + PRIOR_RECORDS)
    assert predictor.forest_weight == pytest.approx(40 / (40 + PRIOR_RECORDS))
    assert acc[0] - acc[1] > 0.4 * predictor.forest_weight - 0.05
    assert secs[0] == pytest.approx(3.0 * estimated_seconds(tiny_zoo.card("nasoa-1"), _meta(), 0, 5))
    # records of models the zoo does not hold are skipped, not fatal
    stranger = Experience(task=_meta(), schedule=Schedule(model_id="old-7", lr=0.01, frozen_stages=0, epochs=1),
                          accuracy=0.5, seconds=1.0)
    assert fit_predictor(tiny_zoo, [*rows, stranger]).skipped == 1


def test_store_keeps_outcomes_across_reopening(tmp_path: Path):
    from zoo.schema import Schedule
    from zoo.store import Store

    url = f"sqlite:///{tmp_path}/exp.db"
    store = Store(url)
    s = Schedule(model_id="nasoa-0", lr=0.01, frozen_stages=1, epochs=3)
    first = store.add_outcome(_meta(), s, 0.8, 1.5)
    store.close()
    again = Store(url)
    assert again.latest_outcome_id() == first
    [exp] = again.experience()
    assert exp.schedule == s and exp.accuracy == 0.8 and exp.task == _meta()


def test_schema_rejects_absurd_inputs():
    from pydantic import ValidationError

    from zoo.schema import ScheduleRequest

    for budget in (-1.0, 0.0, float("inf"), 1e12):
        with pytest.raises(ValidationError, match="time_budget_s"):
            ScheduleRequest(task=_meta(), time_budget_s=budget)
    with pytest.raises(ValidationError, match="at least num_classes"):
        _meta(num_samples=2)


class _Trial:
    """What :func:`zoo.build.select` reads of a completed trial."""

    def __init__(self, model: dict, accuracy: float, step_ms: float) -> None:
        self.config = {"model": model}
        self.values = {"accuracy": accuracy, "train_step_ms": step_ms}


class _Study:
    def __init__(self, trials: list[_Trial]) -> None:
        self._trials = trials

    def completed(self) -> list[_Trial]:
        return self._trials


def test_zoo_selection_keeps_other_blocks_beside_a_dominant_one():
    from search_spaces.nasoa import arch_encoding
    from zoo.build import select

    base = automl.load_space("nasoa").sample(np.random.default_rng(0))["model"]
    macros = [["1"], ["11"], ["111"], ["1", "1"], ["1", "11"], ["11", "11"], ["111", "1"]]

    def model(channels: int, stages: list[str]) -> dict:
        return {**base, "base_channels": channels, "stages": [{"pattern": p} for p in stages]}

    # block c16 over 7 depths dominates everything; c8 and c12 lie behind it
    front = [_Trial(model(16, m), 0.95 + 0.001 * i, 1.0 + i) for i, m in enumerate(macros)]
    behind = [_Trial(model(c, m), 0.80 + 0.001 * i, 2.0 + i) for c in (8, 12) for i, m in enumerate(macros[:3])]
    chosen = [arch_encoding(m) for m in select(_Study(front + behind), 6)]
    assert len(chosen) == len(set(chosen)) == 6
    blocks = [a.rsplit(":", 1)[0] for a in chosen]
    assert blocks.count(blocks[0]) == 2 and len(set(blocks)) == 3  # at most 6/3 of one block while others remain
    # with one block only, the cap lifts to fill the zoo
    assert len(select(_Study(front), 6)) == 6
    assert len({arch_encoding(m) for m in select(_Study(front), 6, max_per_block=1)}) == 6
