"""detnas: the student backbone, Joint-DetNAS's morphism on configs and weight inheritance."""
from __future__ import annotations

import copy
from collections import Counter

import numpy as np
import pytest
import torch
from torch import nn

import automl
from automl.errors import ConfigError
from search_spaces import SPACES_DIR
from search_spaces.detnas.backbone import BasicBlock, DetNASBackbone, inner_channels
from search_spaces.detnas.inherit import InheritReport, align_blocks, inherit_weights, sort_inner_channels
from search_spaces.detnas.morph import MORPH_ACTIONS, MorphAction, apply_action, morph_detnas, valid_actions

torch.set_num_threads(1)

CONFIG = {
    "model": {
        "detector": "retinanet", "stem": 16, "fpn_channels": 32,
        "stages": [{"depth": 2, "width": 32, "prune": 1.0},
                   {"depth": 2, "width": 64, "prune": 0.75},
                   {"depth": 1, "width": 128, "prune": 0.5}],
    },
    "teacher": {"depth": 2, "width": 0.75},
}


@pytest.fixture(scope="module")
def space():
    return automl.space.load_space(SPACES_DIR / "detnas.yaml")


class Net(nn.Module):
    """A stand-in detector: the backbone under ``backbone.`` plus a head on the pooled last stage."""

    def __init__(self, model_cfg):
        super().__init__()
        self.backbone = DetNASBackbone.from_config(model_cfg)
        self.head = nn.Linear(self.backbone.out_channels[-1], 5)

    def forward(self, x):
        feats = self.backbone(x)
        return feats, self.head(feats[-1].mean((2, 3)))


def trained_like(model_cfg, seed=0):
    """A Net whose BN parameters and statistics are random, as after training (so copying matters)."""
    torch.manual_seed(seed)
    net = Net(model_cfg)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 2.0)
                m.num_batches_tracked.fill_(7)
    return net.eval()


def child_of(parent, parent_model, child_model, seed=1):
    torch.manual_seed(seed)
    child = Net(child_model)
    report = inherit_weights(child, parent.state_dict(), parent_model, child_model)
    return child.eval(), report


def with_stages(depths=None, widths=None, prunes=None):
    cfg = copy.deepcopy(CONFIG)
    for i, st in enumerate(cfg["model"]["stages"]):
        if depths is not None:
            st["depth"] = depths[i]
        if widths is not None:
            st["width"] = widths[i]
        if prunes is not None:
            st["prune"] = prunes[i]
    return cfg


# -- space and backbone ----------------------------------------------------------------------------
def test_space_loads(space):
    assert space.name == "detnas" and space.task == "shapes-detection" and space.builder == "detnas"
    assert space.estimator == "detnas" and space.defaults.strategy == "morphism-evolution"
    assert space.defaults.trials == 48
    assert [(o.name, o.direction) for o in space.objectives] == [("mAP", "max"), ("latency_ms", "min")]
    space.validate(CONFIG)
    config = space.sample(np.random.default_rng(0))
    assert len(config["model"]["stages"]) == 3 and set(config["teacher"]) == {"depth", "width"}


def test_backbone_shapes_and_names():
    bb = DetNASBackbone.from_config(CONFIG["model"])
    outs = bb(torch.randn(2, 3, 64, 64))
    assert bb.out_channels == (32, 64, 128) and bb.strides == (4, 8, 16) and bb.depths == (2, 2, 1)
    assert [tuple(o.shape) for o in outs] == [(2, 32, 16, 16), (2, 64, 8, 8), (2, 128, 4, 4)]
    names = dict(bb.named_parameters())
    assert {"stem.conv.weight", "stem.bn.weight", "stages.1.0.conv1.weight", "stages.1.0.shortcut.0.weight",
            "stages.1.1.conv2.weight", "stages.1.1.bn2.bias"} <= set(names)
    assert bb.stages[1][1].shortcut is None and isinstance(bb.stages[1][0], BasicBlock)
    assert bb.stages[1][0].conv1.out_channels == inner_channels(64, 0.75) == 48
    assert bb.stages[2][0].conv1.out_channels == 64
    with pytest.raises(ConfigError, match="depth"):
        DetNASBackbone(16, [{"depth": 0, "width": 16}])


# -- morphism --------------------------------------------------------------------------------------
def test_morph_gives_valid_configs_and_every_action(space):
    rng = np.random.default_rng(0)
    seen = Counter()
    config = CONFIG
    for _ in range(300):
        child, description = morph_detnas(space, config, rng)
        space.validate(child)
        assert child != config
        seen[description.split("(")[0]] += 1
        config = child
    assert set(seen) == set(MORPH_ACTIONS), seen


def test_each_action_changes_what_it_says(space):
    for action in valid_actions(space, CONFIG):
        child, description = apply_action(space, CONFIG, action)
        space.validate(child)
        before, after = CONFIG["model"]["stages"], child["model"]["stages"]
        changed = {(s, k) for s in range(3) for k in ("depth", "width", "prune") if before[s][k] != after[s][k]}
        if action.name == "move_downsample":
            assert changed == {(action.stage, "depth"), (action.to, "depth")}
            assert sum(s["depth"] for s in after) == sum(s["depth"] for s in before)
        else:
            key = {"add_block": "depth", "remove_block": "depth", "widen": "width", "narrow": "width",
                   "prune": "prune"}[action.name]
            assert changed == {(action.stage, key)}, description
        assert child["teacher"] == CONFIG["teacher"]
    assert CONFIG["model"]["stages"][0]["depth"] == 2  # the input is untouched


def test_bounds_at_the_edges(space):
    low = with_stages(depths=[1, 1, 1], widths=[16, 16, 16], prunes=[0.5, 0.5, 0.5])
    names = {a.name for a in valid_actions(space, low)}
    assert names == {"add_block", "widen"}  # nothing to remove, move, narrow or prune
    high = with_stages(depths=[4, 4, 4], widths=[128, 128, 128], prunes=[1.0, 1.0, 1.0])
    names = {a.name for a in valid_actions(space, high)}
    assert names == {"remove_block", "narrow", "prune"}
    edge = with_stages(depths=[1, 4, 2])
    moves = {(a.stage, a.to) for a in valid_actions(space, edge) if a.name == "move_downsample"}
    assert moves == {(1, 0), (1, 2)}  # stage 0 cannot give a block (depth 1), stage 1 cannot take one (4)
    with pytest.raises(ValueError, match="not a valid morph action"):
        apply_action(space, low, MorphAction("remove_block", 0))
    rng = np.random.default_rng(1)
    for _ in range(50):
        child, _ = morph_detnas(space, low, rng)
        assert all(1 <= s["depth"] <= 4 for s in child["model"]["stages"])


def test_widen_and_prune_step_to_neighbouring_choices(space):
    assert apply_action(space, CONFIG, MorphAction("widen", 1))[0]["model"]["stages"][1]["width"] == 96
    assert apply_action(space, CONFIG, MorphAction("narrow", 1))[0]["model"]["stages"][1]["width"] == 48
    assert apply_action(space, CONFIG, MorphAction("prune", 1))[0]["model"]["stages"][1]["prune"] == 0.5
    assert MorphAction("prune", 2) not in valid_actions(space, CONFIG)  # at the smallest ratio; no un-pruning


def test_teacher_change_rate_and_neighbours(space):
    rng = np.random.default_rng(3)
    n, changed = 2000, 0
    for _ in range(n):
        child, description = morph_detnas(space, CONFIG, rng, teacher_p=0.3)
        t0, t1 = CONFIG["teacher"], child["teacher"]
        if t0 != t1:
            changed += 1
            assert "teacher" in description
            assert (t0["depth"] == t1["depth"]) != (t0["width"] == t1["width"])  # one field moved
            assert t1["depth"] in (1, 3) or t1["width"] in (0.5, 1.0)  # a neighbouring choice
    assert abs(changed / n - 0.3) < 0.04
    child, _ = morph_detnas(space, CONFIG, rng, teacher_p=0.0)
    assert child["teacher"] == CONFIG["teacher"]


def test_morph_is_deterministic_per_rng(space):
    def run(seed):
        rng, config, out = np.random.default_rng(seed), CONFIG, []
        for _ in range(30):
            config, description = morph_detnas(space, config, rng)
            out.append((space.key(config), description))
        return out

    assert run(5) == run(5)
    assert run(5) != run(6)


def test_morph_reads_bounds_from_a_variant_space():
    variant = automl.space.space_from_yaml("""
name: variant
space:
  model:
    stem: 8
    stages:
      type: repeat
      min: 2
      max: 2
      item:
        depth: {type: int, low: 2, high: 3}
        width: {type: categorical, choices: [40, 8, 20]}
        prune: 1.0
""")
    config = {"model": {"stem": 8, "stages": [{"depth": 2, "width": 8, "prune": 1.0},
                                              {"depth": 3, "width": 40, "prune": 1.0}]}}
    actions = set(valid_actions(variant, config))
    assert actions == {MorphAction("add_block", 0), MorphAction("remove_block", 1),
                       MorphAction("move_downsample", 1, 0), MorphAction("widen", 0),
                       MorphAction("narrow", 1)}
    assert apply_action(variant, config, MorphAction("widen", 0))[0]["model"]["stages"][0]["width"] == 20
    child, description = morph_detnas(variant, config, np.random.default_rng(0), teacher_p=1.0)
    variant.validate(child)  # no teacher group: student only
    assert "teacher" not in description


def test_missing_parameters_are_named():
    no_prune = automl.space.space_from_yaml("""
name: broken
space:
  model:
    stages:
      type: repeat
      min: 3
      max: 3
      item: {depth: {type: int, low: 1, high: 4}, width: 16}
""")
    with pytest.raises(ConfigError, match=r"model\.stages\[i\]\.prune"):
        morph_detnas(no_prune, {"model": {"stages": [{"depth": 1, "width": 16}] * 3}}, np.random.default_rng(0))
    no_stages = automl.space.space_from_yaml("name: x\nspace:\n  model:\n    stem: 16\n")
    with pytest.raises(ConfigError, match=r"model\.stages"):
        morph_detnas(no_stages, {"model": {"stem": 16}}, np.random.default_rng(0))


# -- weight inheritance ----------------------------------------------------------------------------
def test_alignment_rules():
    assert align_blocks([2, 2, 1], [1, 3, 1]) == {(0, 0): (0, 0), (1, 0): (0, 1), (1, 1): (1, 0),
                                                  (1, 2): (1, 1), (2, 0): (2, 0)}
    assert align_blocks([2, 2, 1], [2, 3, 1])[(1, 2)] is None
    assert align_blocks([2, 3, 1], [2, 2, 1]) == {(0, 0): (0, 0), (0, 1): (0, 1), (1, 0): (1, 0),
                                                  (1, 1): (1, 1), (2, 0): (2, 0)}


def test_add_block_child_computes_the_parents_function(space):
    parent = trained_like(CONFIG["model"])
    child_cfg, _ = apply_action(space, CONFIG, MorphAction("add_block", 1))
    child, report = child_of(parent, CONFIG["model"], child_cfg["model"])
    assert report.added_blocks == ["backbone.stages.1.2"] and report.sliced == 0
    assert report.fresh == len(dict(child.backbone.stages[1][2].state_dict()))
    assert report.copied == len(parent.state_dict())
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        (pf, ph), (cf, ch) = parent(x), child(x)
    for a, b in zip(pf, cf):
        assert torch.equal(a, b)
    assert torch.equal(ph, ch)


def test_teacher_only_change_copies_everything(space):
    parent = trained_like(CONFIG["model"])
    child_cfg = copy.deepcopy(CONFIG)
    child_cfg["teacher"]["width"] = 1.0
    space.validate(child_cfg)
    child, report = child_of(parent, CONFIG["model"], child_cfg["model"])
    assert report.copied == len(child.state_dict()) and report.sliced == report.fresh == 0
    assert report.added_blocks == []
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(parent(x)[1], child(x)[1])
    assert isinstance(report, InheritReport) and "0 sliced" in str(report)


@pytest.mark.parametrize("action", [MorphAction("move_downsample", 0, 1), MorphAction("move_downsample", 1, 0),
                                    MorphAction("widen", 0), MorphAction("narrow", 2),
                                    MorphAction("remove_block", 1)])
def test_other_children_load(space, action):
    parent = trained_like(CONFIG["model"])
    child_cfg, _ = apply_action(space, CONFIG, action)
    child, report = child_of(parent, CONFIG["model"], child_cfg["model"])
    assert report.total == len(child.state_dict())
    if action.name != "remove_block":
        assert report.sliced > 0
    with torch.no_grad():
        feats, _ = child(torch.rand(1, 3, 32, 32))
    assert [f.shape[1] for f in feats] == [s["width"] for s in child_cfg["model"]["stages"]]
    if action.name == "widen":  # the leading channels are the parent's
        p = parent.state_dict()["backbone.stages.0.1.conv2.weight"]
        c = child.state_dict()["backbone.stages.0.1.conv2.weight"]
        assert c.shape[:2] == (48, 48) and torch.equal(c[: p.shape[0], : p.shape[1]], p)


def test_prune_keeps_the_largest_gammas(space):
    parent = trained_like(CONFIG["model"])
    block = parent.backbone.stages[1][1]
    gammas = torch.tensor([0.1, -5.0, 0.3, 2.0, -0.2, 4.0] + [0.001 * i for i in range(42)])
    assert len(gammas) == block.bn1.num_features == 48
    with torch.no_grad():
        block.bn1.weight.copy_(gammas)
    child_cfg, _ = apply_action(space, CONFIG, MorphAction("prune", 1))  # 0.75 -> 0.5: 48 -> 32 channels
    child, report = child_of(parent, CONFIG["model"], child_cfg["model"])
    got = child.backbone.stages[1][1]
    assert got.bn1.num_features == 32 and report.sliced > 0
    keep = torch.argsort(gammas.abs(), descending=True, stable=True)[:32]
    assert keep[:4].tolist() == [1, 5, 3, 2]
    assert torch.equal(got.bn1.weight, gammas[keep])
    assert torch.equal(got.bn1.running_var, block.bn1.running_var[keep])
    assert torch.equal(got.conv1.weight, block.conv1.weight[keep])
    assert torch.equal(got.conv2.weight, block.conv2.weight[:, keep])
    assert torch.equal(got.bn2.weight, block.bn2.weight)  # the output side is untouched
    assert torch.equal(parent.backbone.stages[1][1].bn1.weight, gammas)  # the parent is not modified


def test_sorting_inner_channels_preserves_the_function():
    torch.manual_seed(0)
    block = BasicBlock(8, 16, 12, stride=2)
    with torch.no_grad():
        block.bn1.weight.uniform_(-2, 2)
        block.bn1.running_mean.uniform_(-0.5, 0.5)
        block.bn1.running_var.uniform_(0.5, 2.0)
    block.eval()
    state = block.state_dict()
    permuted = sort_inner_channels(state, "")
    assert not torch.equal(permuted["bn1.weight"], state["bn1.weight"])
    assert torch.equal(permuted["bn1.weight"].abs(), state["bn1.weight"].abs().sort(descending=True).values)
    other = BasicBlock(8, 16, 12, stride=2)
    other.load_state_dict(permuted)
    other.eval()
    x = torch.rand(2, 8, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(other(x), block(x), rtol=1e-5, atol=1e-6)
