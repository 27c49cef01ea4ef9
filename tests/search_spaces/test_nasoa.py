"""NASOA's macro-level search: the nasoa morphism's edits (insert '1', remove '1', swap adjacent, restart 0.2)
and morphism-evolution driving them from the Pareto front of the nasoa space."""
from __future__ import annotations

import numpy as np
import pytest

import automl
from automl.registry import morphisms
from automl.strategies.pareto import pareto_front
from search_spaces.nasoa import macro_string
from search_spaces.nasoa_morph import macro_edits, morph_nasoa


def _config(space, macro: str) -> dict:
    config = space.sample(np.random.default_rng(0))
    config["model"]["stages"] = [{"pattern": p} for p in macro.split("-")]
    space.validate(config)
    return config


def test_macro_edits_are_the_papers_three_moves_each_result_once():
    edits = macro_edits("21-1")
    by_kind = {kind: {new for k, _, new in edits if k == kind} for kind in ("insert", "remove", "swap")}
    assert by_kind["insert"] == {"121-1", "211-1", "21-11"}  # "1" before/after a '1' is one string
    assert by_kind["remove"] == {"2-1", "21-"}
    assert by_kind["swap"] == {"12-1", "2-11", "211-"}  # "-1" -> "1-": a block moves across a stage boundary
    assert len({new for _, _, new in edits}) == len(edits) and "21-1" not in {new for _, _, new in edits}


def test_the_nasoa_builder_registers_its_morphism():
    assert morphisms.get("nasoa") is morph_nasoa


def test_a_child_keeps_its_parents_block_and_is_one_valid_edit_of_its_macro_string():
    space = automl.load_space("nasoa")
    parent = _config(space, "21-1-12")
    edits = {new: kind for kind, _, new in macro_edits("21-1-12")}
    seen = set()
    for i in range(40):
        child, action = morph_nasoa(space, parent, np.random.default_rng(i), restart_p=0.0)
        space.validate(child)
        new = macro_string(child["model"])
        assert new in edits and action.endswith(f"21-1-12 -> {new}") and action.startswith(edits[new])
        assert child["model"]["block"] == parent["model"]["block"]
        assert child["model"]["base_channels"] == parent["model"]["base_channels"]
        assert all(p for p in new.split("-"))  # no empty stage: "21--12" and the like are never proposed
        seen.add(edits[new])
    assert seen == {"insert", "remove", "swap"}
    assert macro_string(parent["model"]) == "21-1-12"  # the parent is left as it was


def test_about_a_fifth_of_children_restart_and_the_morph_is_deterministic_in_its_rng():
    space = automl.load_space("nasoa")
    parent = _config(space, "2-11")
    rng = np.random.default_rng(0)
    actions = [morph_nasoa(space, parent, rng)[1] for _ in range(1000)]
    assert 0.17 < actions.count("restart") / len(actions) < 0.23  # RESTART_P 0.2, about 2.4 sd either way
    assert morph_nasoa(space, parent, np.random.default_rng(7)) == morph_nasoa(space, parent, np.random.default_rng(7))
    with pytest.raises(ValueError, match="restart_p"):
        morph_nasoa(space, parent, np.random.default_rng(0), restart_p=1.5)


def test_morphism_evolution_on_the_nasoa_space_edits_macro_strings_of_front_parents():
    space = automl.load_space("nasoa")

    def objective(config):  # deeper and wider is more accurate and slower: a front with a trade-off
        macro = macro_string(config["model"])
        return {"accuracy": len(macro) / 20 + config["model"]["base_channels"] / 100,
                "train_step_ms": float(len(macro) * config["model"]["base_channels"]), "params": 1000.0}  # constraint

    study = automl.create_study(space, seed=1, strategy_options={"population": 4})
    assert study.strategy_name == "morphism-evolution"  # the space's own search: NASOA's macro mutations
    study.optimize(objective, n_trials=16)
    trials = study.trials
    assert all(t.values is not None for t in trials)
    for t in trials[4:]:
        assert t.info["origin"] == "morph"
        parent = trials[t.info["parent"]]
        earlier = [p for p in trials[: t.number] if p.values is not None]
        losses = [(-p.values["accuracy"], p.values["train_step_ms"]) for p in earlier]
        assert parent.number in {earlier[i].number for i in pareto_front(losses)}
        if not t.info["action"].startswith("restart"):
            edits = macro_edits(macro_string(parent.config["model"]))
            assert macro_string(t.config["model"]) in {new for _, _, new in edits}
            assert t.config["model"]["block"] == parent.config["model"]["block"]
