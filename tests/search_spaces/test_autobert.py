"""The autobert space: primitive cells with shapes, the hybrid backbone, its BIWS supernet, bad input."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import BertConfig
from transformers.models.bert.modeling_bert import BertSelfAttention

import automl
from automl.cli import main
from automl.errors import ConfigError
from automl.report import summarize_config
from automl.space import load_space
from automl.tasks.base import tasks
from search_spaces import SPACES_DIR
from search_spaces.autobert import AttentionMixer, build_autobert, build_autobert_supernet
from search_spaces.autobert_ops import CellProgram

BERT = [{"op": "transpose", "inputs": ["k"]}, {"op": "matmul", "inputs": ["q", 0]}, {"op": "scale", "inputs": [1]},
        {"op": "softmax", "inputs": [2]}, {"op": "matmul", "inputs": [3, "v"]}]
YAML = (SPACES_DIR / "autobert.yaml").read_text()


@pytest.fixture(scope="module")
def space() -> automl.SearchSpace:
    return load_space("autobert")


@pytest.fixture(scope="module")
def synthetic_info():
    return tasks.get("synthetic-text")(max_len=64).info


def cell(space: automl.SearchSpace):
    return space.graphs({"model": {"hidden": 64, "heads": 2, "ffn": 128, "dropout": 0.1,
                                   "layers": [{"kind": "attn", "cell": BERT}] * 4}})[0][1]


def test_reference_cells_render_as_formulas(space):
    graph = cell(space)
    assert graph.reference("bert") == BERT
    assert graph.formula(BERT) == "softmax(Q·Kᵀ/√d)·V"
    assert graph.formula(graph.reference("autobert_zero")) == "softmax(Q·(-logsigmoid(K))ᵀ/√d)·Q"


@pytest.mark.parametrize("nodes, message", [
    ([{"op": "matmul", "inputs": ["q", "k"]}], r"\[0\]: matmul does not fit operand shapes Txd and Txd"),
    ([{"op": "transpose", "inputs": ["k"]}, {"op": "matmul", "inputs": ["q", 0]}], r"has shape TxT, expected Txd"),
    ([{"op": "nope", "inputs": ["q"]}], r"'nope' is not one of"),
])
def test_cells_whose_shapes_do_not_fit_are_invalid(space, nodes, message):
    graph = cell(space)
    problems = graph.check(nodes, ())
    assert problems and any(__import__("re").search(message, p) for p in problems), problems


def test_sampled_and_mutated_backbones_are_valid_and_isomorphic_cells_share_a_key(space):
    rng = np.random.default_rng(0)
    for _ in range(20):
        config = space.sample(rng)
        space.validate(config)
        child = space.mutate(config, rng)
        space.validate(child)
    graph = cell(space)
    a = [{"op": "add", "inputs": ["q", "k"]}]
    b = [{"op": "add", "inputs": ["k", "q"]}]
    assert graph.canonical(a) == graph.canonical(b)


def test_vanilla_cell_computes_what_transformers_bert_self_attention_computes():
    config = BertConfig(hidden_size=32, num_attention_heads=4, attention_probs_dropout_prob=0.0,
                        hidden_dropout_prob=0.0, attn_implementation="eager")
    torch.manual_seed(0)
    reference = BertSelfAttention(config).eval()
    mixer = AttentionMixer(config, CellProgram.compile(BERT)).eval()
    for name in ("query", "key", "value"):
        getattr(mixer, name).load_state_dict(getattr(reference, name).state_dict())
    h = torch.randn(3, 7, 32)
    token_mask = torch.ones(3, 7, dtype=torch.bool)
    token_mask[1, 5:] = False  # a padded sequence
    additive = (1.0 - token_mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
    with torch.no_grad():
        expected = reference(h, attention_mask=additive)[0]
        batch, length, hidden = h.shape
        split = lambda x: x.view(batch, length, 4, 8).transpose(1, 2)  # noqa: E731
        got = mixer.cell.run(split(mixer.query(h)), split(mixer.key(h)), split(mixer.value(h)), token_mask)
        got = got.transpose(1, 2).reshape(batch, length, hidden)
    real = token_mask[..., None].expand_as(got)
    torch.testing.assert_close(got[real], expected[real], rtol=1e-5, atol=1e-6)


def test_supernet_extraction_computes_what_the_supernet_computes(space, synthetic_info):
    supernet = build_autobert_supernet(space, synthetic_info).eval()
    rng = np.random.default_rng(3)
    ids = torch.randint(5, synthetic_info.vocab_size, (2, synthetic_info.max_len))
    ids[1, 40:] = synthetic_info.pad_id
    for _ in range(3):
        model_config = space.sample(rng)["model"]
        model = supernet.extract(model_config).eval()
        with torch.no_grad():
            torch.testing.assert_close(model(ids), supernet(ids, model_config))
            torch.testing.assert_close(model.mlm_logits(ids), supernet.mlm_logits(ids, model_config))


def test_backbone_builds_from_a_config(space, synthetic_info):
    model_config = space.sample(np.random.default_rng(1))["model"]
    model = build_autobert(model_config, synthetic_info)
    ids = torch.randint(5, synthetic_info.vocab_size, (4, synthetic_info.max_len))
    assert model(ids).shape == (4, synthetic_info.num_classes)
    assert model.mlm_logits(ids).shape == (4, synthetic_info.max_len, synthetic_info.vocab_size)


def _edited(tmp_path: Path, old: str, new: str) -> Path:
    assert old in YAML
    path = tmp_path / "mine.yaml"
    path.write_text(YAML.replace(old, new, 1))
    return path


def _line(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_unknown_primitive_is_named_with_file_line_and_field(tmp_path):
    path = _edited(tmp_path, "ops: [neg, transpose,", "ops: [neg, frobnicate, transpose,")
    with pytest.raises(ConfigError) as err:
        load_space(str(path))
    text = str(err.value)
    assert f"mine.yaml:{_line(path, 'frobnicate')}" in text and "unknown primitive 'frobnicate'" in text
    assert "space.model.layers.item.cell.ops[1]" in text


def test_reference_cell_with_a_cycle_is_named(tmp_path):
    path = _edited(tmp_path, "- {op: matmul, inputs: [q, 0]}", "- {op: matmul, inputs: [q, 2]}")
    with pytest.raises(ConfigError, match=r"reference\.bert.*reference cell 'bert'.*cycle"):
        load_space(str(path))


def test_reference_cell_with_no_path_to_the_output_is_named(tmp_path):
    path = _edited(tmp_path, "- {op: matmul, inputs: [3, v]}",
                   "- {op: matmul, inputs: [3, v]}\n              - {op: neg, inputs: [v]}")
    with pytest.raises(ConfigError) as err:
        load_space(str(path))
    assert "reference cell 'bert'" in str(err.value) and "do not feed the output" in str(err.value)


def test_kernel_longer_than_the_sequence_is_refused_at_load(tmp_path):
    path = _edited(tmp_path, "choices: [3, 5, 7, 9, 15, 31]", "choices: [3, 5, 7, 9, 15, 31, 65]")
    with pytest.raises(ConfigError) as err:
        load_space(str(path))
    text = str(err.value)
    assert f"mine.yaml:{_line(path, '65]')}" in text
    assert "space.model.layers.item.kernel.choices[6]" in text and "kernel 65 is longer" in text


def test_biws_scores_candidates_from_one_cached_supernet(tmp_path, space):
    small = automl.space_from_yaml(YAML.replace("pretrain_steps: 2000, finetune_steps: 200",
                                                "pretrain_steps: 15, finetune_steps: 3"), source="small.yaml")
    study = automl.create_study(small, strategy="random", seed=0, checkpoints=str(tmp_path / "ckpt"))
    study.optimize(n_trials=2)
    trials = study.trials
    assert [t.state.value for t in trials] == ["complete", "complete"]
    assert [t.metrics["supernet_cached"] for t in trials] == [0.0, 1.0]
    for t in trials:
        assert 0.0 <= t.values["accuracy"] <= 1.0 and t.metrics["params"] > 0 and t.metrics["flops"] > 0
    assert len(list((tmp_path / "ckpt").glob("biws-*.pt"))) == 1
    json.dumps(trials[0].config)


def test_leaderboard_writes_backbones_as_cell_formulas(space):
    config = {"model": {"hidden": 64, "heads": 2, "ffn": 128, "dropout": 0.1,
                        "layers": [{"kind": "attn", "cell": BERT}, {"kind": "conv", "kernel": 7}]}}
    text = summarize_config(config, space=space)
    assert "softmax(Q·Kᵀ/√d)·V" in text and '"kernel":7' in text and "hidden" not in text


@pytest.mark.slow
def test_cli_search_ends_with_the_winning_cells_as_formulas_and_pngs(tmp_path, monkeypatch, capsys):
    small = tmp_path / "small.yaml"
    small.write_text(YAML.replace("pretrain_steps: 2000, finetune_steps: 200", "pretrain_steps: 10, finetune_steps: 2"))
    monkeypatch.chdir(tmp_path)
    assert main(["search", "--space", str(small), "--trials", "3", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    best = json.loads((tmp_path / "automl-runs" / "autobert" / "best.json").read_text())
    formulas = [g.formula(n) for _, g, n in load_space(str(small)).graphs(best["config"])]
    pngs = sorted((tmp_path / "automl-runs" / "autobert").glob("best-*.png"))
    assert len(pngs) == len(formulas)
    squeezed = "".join(out.split())  # rich wraps long lines
    for formula in formulas:
        assert "".join(formula.split()) in squeezed
    assert main(["report", "--study", "autobert"]) == 0
    assert (tmp_path / "automl-runs" / "autobert" / "op_priority.png").exists()


@pytest.mark.slow
def test_the_same_space_searches_on_glue_files_on_disk(tmp_path, monkeypatch):
    glue = tmp_path / "SST-2"
    glue.mkdir()
    words = ["a fine film", "the plot is dull", "a charming story", "bad acting", "a masterpiece", "boring and long"]
    (glue / "train.tsv").write_text("sentence\tlabel\n" + "".join(f"{words[i % 6]} {i}\t{i % 2}\n" for i in range(40)))
    (glue / "dev.tsv").write_text("sentence\tlabel\n" + "".join(f"{words[i % 6]}\t{i % 2}\n" for i in range(8)))
    mine = tmp_path / "glue.yaml"
    mine.write_text(YAML.replace("task: {name: synthetic-text, options: {max_len: 64}}",
                                 f"task: {{name: glue, options: {{path: '{glue}', max_len: 32, vocab_size: 200}}}}")
                    .replace("pretrain_steps: 2000, finetune_steps: 200", "pretrain_steps: 5, finetune_steps: 2"))
    monkeypatch.chdir(tmp_path)
    assert main(["search", "--space", str(mine), "--trials", "2", "--seed", "0", "--study-name", "sst2"]) == 0
    best = json.loads((tmp_path / "automl-runs" / "sst2" / "best.json").read_text())
    assert 0.0 <= best["values"]["accuracy"] <= 1.0 and best["metrics"]["params"] > 0


def test_biws_score_depends_on_the_seed_not_on_what_ran_before(tmp_path, space):
    from automl.artifacts import ArtifactStore
    from automl.estimator import EvalContext, estimators
    from automl.space.model import Candidate

    estimator = estimators.get("biws")(pretrain_steps=5, finetune_steps=5)
    config = space.sample(np.random.default_rng(3))
    ctx = EvalContext(space=space, seed=0, trial_number=1, checkpoints=ArtifactStore(str(tmp_path)))
    first = estimator.evaluate(Candidate(config, space.key(config)), None, ctx).metrics["loss"]
    torch.rand(7)  # another trial's work moves torch's global RNG
    again = estimator.evaluate(Candidate(config, space.key(config)), None, ctx).metrics["loss"]
    assert first == again


@pytest.mark.slow
def test_a_killed_supernet_pretraining_continues_where_it_stopped(tmp_path):
    """SIGKILL the search mid pre-training; the rerun continues the supernet from its checkpoint."""
    import os
    import signal
    import subprocess
    import sys
    import time

    automl_bin = str(Path(sys.executable).parent / "automl")
    small = tmp_path / "small.yaml"
    small.write_text(YAML.replace("pretrain_steps: 2000, finetune_steps: 200",
                                  "pretrain_steps: 600, finetune_steps: 2, checkpoint_s: 0.5")
                     .replace("options: {max_len: 64}", "options: {max_len: 32, n_corpus: 400, n_corpus_val: 50, "
                              "n_train: 100, n_val: 50}"))
    command = [automl_bin, "search", "--space", str(small), "--trials", "1", "--seed", "0", "--threads", "1"]
    proc = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoints = tmp_path / "automl-runs" / "autobert" / "checkpoints"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not list(checkpoints.glob("*.partial")):
        assert proc.poll() is None, "the search ended before its pre-training was checkpointed"
        time.sleep(0.2)
    time.sleep(1.5)  # a few more checkpoints
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    rerun = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    best = json.loads((tmp_path / "automl-runs" / "autobert" / "best.json").read_text())
    assert 0 < best["metrics"]["supernet_resumed_from_step"] < 600
    assert not list(checkpoints.glob("*.partial"))  # removed once the supernet is stored
