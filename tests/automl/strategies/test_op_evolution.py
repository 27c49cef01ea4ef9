"""op-evolution (operation-priority evolution, OP-NAS): conformance on a graph space, priorities that
follow the reward, draws by softmax(u/T), unseen ops first, the ledger record and ``automl report``."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import automl
import automl.testing.strategies as suite
from automl.cli import main
from automl.errors import ConfigError
from automl.ledger import Ledger, open_storage
from automl.space import SearchSpace, space_from_yaml
from automl.space.nodes import Objective
from automl.strategies.base import Observation, TrialState, strategies
from automl.strategies.op_evolution import OpPriorityEvolution, normalise, op_priorities
from automl.testing.strategies import STRATEGY_CHECKS, check_resume_equivalence

# Layers that are either an attention-like cell (a shape-checked DAG of primitives over Q, K, V) or a
# convolution with a kernel: flipping the kind switches the cell or the kernel on.
ATTN_YAML = """
name: attn-like
space:
  lr: {type: float, low: 0.001, high: 0.1, log: true}
  layers:
    type: repeat
    min: 1
    max: 3
    item:
      kind: {type: categorical, choices: [attn, conv]}
      cell:
        type: graph
        when: "kind == 'attn'"
        inputs: {q: [T, d], k: [T, d], v: [T, d]}
        output: [T, d]
        ops: [neg, transpose, scale, softmax, logsigmoid, add, matmul]
        min_nodes: 1
        max_nodes: 6
      kernel: {type: categorical, choices: [3, 5, 7], when: "kind == 'conv'"}
"""
SMALL = {"population": 10, "tournament": 3}  # so that 30-40 trials reach the mutation phase


def attn_space() -> SearchSpace:
    return space_from_yaml(ATTN_YAML, source="<attn-like>")


def attn_objective(config: dict[str, Any]) -> float:
    """Smaller is better: softmax nodes help, other unary ops hurt, kernel 5 is best."""
    loss = abs(math.log10(config["lr"]) + 2)
    for layer in config["layers"]:
        if layer["kind"] == "conv":
            loss += abs(layer["kernel"] - 5) / 4
        else:
            loss -= sum((n["op"] == "softmax") - (n["op"] in ("neg", "logsigmoid")) for n in layer["cell"]) / 2
    return loss


def softmax_reward(config: dict[str, Any]) -> float:
    """To maximise on the conftest ``graph_space``: +1 per softmax node, -1 per neg or transpose node."""
    return float(sum((n["op"] == "softmax") - (n["op"] in ("neg", "transpose")) for n in config["cell"]))


@pytest.fixture
def on_attn_space(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the shared conformance suite on the graph space (its own space has no graph parameter)."""
    monkeypatch.setattr(suite, "conformance_space", attn_space)
    monkeypatch.setattr(suite, "conformance_objective", attn_objective)


def observe(space: SearchSpace, number: int, config: dict[str, Any], loss: float | None,
            state: TrialState = TrialState.COMPLETE) -> Observation:
    return Observation(number=number, config=config, key=space.key(config), state=state,
                       losses=None if loss is None else (loss,))


def cell(*ops: str) -> list[dict[str, Any]]:
    """A chain of unary ops over q (the conftest graph space accepts any chain)."""
    return [{"op": op, "inputs": ["q" if i == 0 else i - 1]} for i, op in enumerate(ops)]


# -- conformance ------------------------------------------------------------------------------------
def test_registered():
    assert "op-evolution" in strategies.names()
    assert strategies.get("op-evolution") is OpPriorityEvolution


@pytest.mark.parametrize("check", STRATEGY_CHECKS, ids=lambda c: c.__name__)
def test_conformance_on_a_graph_space(check, on_attn_space):
    check("op-evolution", **SMALL)


def test_resume_equivalence_on_a_graph_space(on_attn_space, tmp_path):
    check_resume_equivalence("op-evolution", str(tmp_path), **SMALL)


def test_resumed_study_records_the_same_priorities(tmp_path):
    straight = automl.create_study(attn_space(), strategy="op-evolution", seed=5, strategy_options=SMALL)
    straight.optimize(attn_objective, n_trials=25)
    url = f"sqlite:///{tmp_path}/resume.db"
    automl.create_study(attn_space(), strategy="op-evolution", storage=url, seed=5,
                        strategy_options=SMALL).optimize(attn_objective, n_trials=11)
    resumed = automl.create_study(attn_space(), strategy="op-evolution", storage=url, strategy_options=SMALL)
    resumed.optimize(attn_objective, n_trials=14)
    assert [t.info for t in resumed.trials] == [t.info for t in straight.trials]


# -- what the priorities do -------------------------------------------------------------------------
def test_priorities_shift_toward_the_op_of_good_models(graph_space):
    """Rewarding softmax (and penalising neg/transpose): p(softmax) ends well above uniform and the
    draws' entropy falls from its maximum; the search beats random at equal budget."""
    unary = ("neg", "softmax", "transpose")
    op_best, random_best, entropies = [], [], []
    for seed in range(3):
        study = automl.create_study(graph_space, strategy="op-evolution", seed=seed, direction="maximize")
        study.optimize(softmax_reward, n_trials=100)
        trials = study.trials
        first, last = trials[0].info, trials[-10:]
        assert first["op_priority"]["softmax"]["p"] == pytest.approx(1 / 3)  # nothing seen yet: uniform
        assert first["op_entropy"] == pytest.approx(math.log(3) + math.log(2))
        p_end = {op: np.mean([t.info["op_priority"][op]["p"] for t in last]) for op in unary}
        assert p_end["softmax"] > 0.5 and max(p_end, key=p_end.get) == "softmax", (seed, p_end)
        entropies.append(np.mean([t.info["op_entropy"] for t in last]))
        op_best.append(study.best.value)
        rand = automl.create_study(graph_space, strategy="random", seed=seed, direction="maximize")
        rand.optimize(softmax_reward, n_trials=100)
        random_best.append(rand.best.value)
    # c = 1 keeps exploring (rarely used ops keep a large bonus), so the entropy falls only part way
    assert np.mean(entropies) < math.log(3) + math.log(2) - 0.2, entropies
    assert np.median(op_best) > np.median(random_best)


def _told(space: SearchSpace, **options: Any) -> OpPriorityEvolution:
    """A strategy that has seen: softmax in the good models, neg and transpose in the bad ones."""
    strategy = OpPriorityEvolution(space, [Objective("loss", "min")], seed=0, **options)
    history = [cell("softmax", "softmax"), cell("softmax", "neg"), cell("transpose", "neg"),
               cell("neg", "transpose", "neg"), cell("softmax"), cell("transpose", "transpose")]
    losses = [0.0, 1.0, 3.0, 4.0, 0.5, 3.5]
    for i, (nodes, loss) in enumerate(zip(history, losses)):
        strategy.tell(observe(space, i, {"cell": nodes}, loss))
    # binary ops in a good model too, so that no op is unseen
    strategy.tell(observe(space, 6, {"cell": [{"op": "add", "inputs": ["q", "k"]},
                                              {"op": "matmul", "inputs": [0, "v"]}]}, 2.0))
    return strategy


def test_statistics_follow_the_formula(graph_space):
    strategy = _told(graph_space, c=0.5, normalise="minmax")
    table = strategy.priorities()
    rewards = normalise([-x for x in (0.0, 1.0, 3.0, 4.0, 0.5, 3.5, 2.0)], "minmax")
    softmax_mean = float(np.mean(rewards[[0, 1, 4]]))
    assert table["softmax"].n == 3 and table["softmax"].mean == pytest.approx(softmax_mean)
    assert table["softmax"].ucb == pytest.approx(softmax_mean + 0.5 * math.sqrt(2 * math.log(7) / 3))
    unary = [op for op, a in strategy.arity.items() if a == 1]
    assert sum(table[op].p for op in unary) == pytest.approx(1.0)
    assert table["softmax"].p > table["neg"].p and table["softmax"].p > table["transpose"].p


def test_small_temperature_concentrates_draws(graph_space):
    def shares(temperature: float) -> dict[str, float]:
        strategy = _told(graph_space, temperature=temperature)
        rng = np.random.default_rng(0)
        draws = [strategy.choose_op(rng, 1) for _ in range(2000)]
        return {op: draws.count(op) / len(draws) for op in ("neg", "softmax", "transpose")}

    cold, hot = shares(0.01), shares(100.0)
    assert cold["softmax"] > 0.98
    assert all(abs(share - 1 / 3) < 0.05 for share in hot.values()), hot
    # the stored p is what is drawn with
    assert _told(graph_space, temperature=0.01).priorities()["softmax"].p > 0.98


def test_unseen_ops_are_tried_first(graph_space):
    strategy = OpPriorityEvolution(graph_space, [Objective("loss", "min")], seed=0)
    strategy.tell(observe(graph_space, 0, {"cell": cell("softmax", "neg")}, 0.0))
    strategy.tell(observe(graph_space, 1, {"cell": cell("neg", "neg")}, 1.0))
    table = strategy.priorities()
    assert table["transpose"].n == 0 and table["transpose"].ucb is None and table["transpose"].p == 1.0
    rng = np.random.default_rng(1)
    assert {strategy.choose_op(rng, 1) for _ in range(50)} == {"transpose"}
    # within one mutation an op whose candidate was rejected (the mutation draws again) gives way to
    # the others, drawn by priority, until every op of the arity was tried
    tried: set[str] = set()
    assert strategy.choose_op(rng, 1, tried) == "transpose"
    assert {strategy.choose_op(rng, 1, tried), strategy.choose_op(rng, 1, tried)} == {"softmax", "neg"}
    assert strategy.choose_op(rng, 1, tried) in {"softmax", "neg", "transpose"}
    # all binary ops unseen: uniform among them
    assert {strategy.choose_op(rng, 2) for _ in range(50)} == {"add", "matmul"}


def test_only_completed_models_count_and_duplicates_once(graph_space):
    strategy = OpPriorityEvolution(graph_space, [Objective("loss", "min")], seed=0)
    config = {"cell": cell("softmax", "neg")}
    strategy.tell(observe(graph_space, 0, config, 1.0))
    strategy.tell(observe(graph_space, 1, config, 1.0))  # a duplicate proposal, reported again
    strategy.tell(observe(graph_space, 2, {"cell": cell("transpose", "neg")}, None, TrialState.FAILED))
    strategy.tell(observe(graph_space, 3, {"cell": cell("transpose")}, None, TrialState.INFEASIBLE))
    table = strategy.priorities()
    assert (table["softmax"].n, table["neg"].n, table["transpose"].n) == (1, 1, 0)
    assert len(strategy.population) == 4  # failures still age in the population


def test_mutations_are_valid_and_use_every_kind_of_site():
    space = attn_space()
    strategy = OpPriorityEvolution(space, [Objective("loss", "min")], seed=0, **SMALL)
    rng = np.random.default_rng(3)
    parent = space.sample(rng)
    changed = set()
    for _ in range(200):
        child = strategy._mutate(parent, rng)
        assert not space.problems(child)
        if len(child["layers"]) != len(parent["layers"]):
            changed.add("length")
        for a, b in zip(parent["layers"], child["layers"]):
            changed.update(k for k in ("kind", "cell", "kernel") if a.get(k) != b.get(k))
    assert {"kind", "cell", "length"} <= changed


def test_normalisations():
    assert normalise([3.0, 1.0, 2.0], "rank").tolist() == [1.0, 0.0, 0.5]
    assert normalise([10.0, 0.0, 1000.0], "rank").tolist() == [0.5, 0.0, 1.0]  # robust to the outlier
    assert normalise([0.0, 5.0, 10.0], "minmax").tolist() == [0.0, 0.5, 1.0]
    assert normalise([-4.0, 7.0], "none").tolist() == [-4.0, 7.0]
    assert normalise([2.0], "rank").tolist() == [0.5] and normalise([1.0, 1.0], "minmax").tolist() == [0.5, 0.5]
    # the same ordering of rewards gives the same priorities on any scale
    ops = {"a": 1, "b": 1}
    models = [(0.1, frozenset("a")), (0.2, frozenset("b")), (0.3, frozenset("ab"))]
    scaled = [(r * 1000 - 7, ops_) for r, ops_ in models]
    for how in ("rank", "minmax"):
        assert op_priorities(models, ops, 1.0, 0.1, how) == op_priorities(scaled, ops, 1.0, 0.1, how)


# -- start-up checks --------------------------------------------------------------------------------
def test_a_space_without_graphs_is_refused():
    with pytest.raises(ConfigError, match="space 'conformance' has none"):
        automl.create_study(suite.conformance_space(), strategy="op-evolution")


def test_graphs_with_different_ops_are_refused():
    space = space_from_yaml("""
name: two-cells
space:
  a: {type: graph, inputs: [x], ops: {neg: 1, add: 2}, max_nodes: 3}
  b: {type: graph, inputs: [x], ops: {neg: 1, mul: 2}, max_nodes: 3}
""", source="<two>")
    with pytest.raises(ConfigError, match="same ops"):
        OpPriorityEvolution(space, [Objective("loss", "min")], seed=0)


@pytest.mark.parametrize("options", [{"temperature": 0}, {"c": -1}, {"normalise": "zscore"},
                                     {"population": 4, "tournament": 9}, {"bogus": 1}])
def test_bad_options_are_refused(graph_space, options):
    with pytest.raises(ConfigError):
        automl.create_study(graph_space, strategy="op-evolution", strategy_options=options)


# -- ledger and report ------------------------------------------------------------------------------
def test_priorities_are_stored_and_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    url = f"sqlite:///{tmp_path}/runs.db"
    study = automl.create_study(attn_space(), strategy="op-evolution", storage=url, study_name="opevo", seed=1,
                                strategy_options=SMALL)
    study.optimize(attn_objective, n_trials=30)
    trials = Ledger.load(open_storage(url), "opevo").trials()
    ops = {"neg", "transpose", "scale", "softmax", "logsigmoid", "add", "matmul"}
    for t in trials:
        table = t.info["op_priority"]
        assert set(table) == ops and all(set(s) == {"n", "mean", "ucb", "p"} for s in table.values())
        json.dumps(t.info, allow_nan=False)  # strict JSON: unseen ops are null, never inf
        for arity_ops in (ops - {"add", "matmul"}, {"add", "matmul"}):
            assert sum(table[op]["p"] for op in arity_ops) == pytest.approx(1.0)
        assert 0.0 <= t.info["op_entropy"] <= math.log(5) + math.log(2) + 1e-9
    assert trials[0].info["op_priority"]["softmax"]["ucb"] is None
    assert trials[-1].info["op_priority"]["softmax"]["n"] > 0
    assert any(t.info["origin"] == "mutation" for t in trials)

    out = tmp_path / "report"
    assert main(["report", "--study", "opevo", "--storage", url, "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Operation priorities at trial 29" in printed and "softmax" in printed
    png = out / "opevo" / "op_priority.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "opevo" / "convergence.png").is_file()


def test_report_of_a_study_without_priorities_has_no_priority_plot(tmp_path: Path, graph_space):
    url = f"sqlite:///{tmp_path}/runs.db"
    automl.create_study(graph_space, strategy="random", storage=url, study_name="plain", seed=0,
                        direction="maximize").optimize(softmax_reward, n_trials=5)
    out = tmp_path / "report"
    assert main(["report", "--study", "plain", "--storage", url, "--output", str(out)]) == 0
    assert not (out / "plain" / "op_priority.png").exists()
