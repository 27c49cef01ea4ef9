"""``automl export`` and :func:`automl.export`: a tiny real search of every built-in classification space,
exported to torch.export (run in a separate Python that has nothing of ours) and ONNX (checked with
onnxruntime), with its model card and :func:`automl.load_model`; and the bad inputs, each one error."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import automl
from automl.cli import main
from automl.errors import ConfigError
from automl.export import CARD_FILE, FORMATS, ONNX_TOLERANCE, WEIGHTS_FILE, build_task, task_inputs
from automl.space import load_space

OURS = ("automl", "estimators", "search_spaces", "zoo")
TINY_TEXT = {"max_len": 32, "n_corpus": 200, "n_corpus_val": 50, "n_train": 100, "n_val": 50}
CARD_FIELDS = {"study", "trial", "space", "builder", "config", "key", "objectives", "metrics", "summary", "cost",
               "task", "input", "output", "training", "seed", "formats", "onnx", "checks", "files", "weights",
               "notes", "automl_version", "git_commit", "torch_version"}

#: torch alone: no site processing (so no editable install of ours), torch's site-packages as a plain
#: folder, and our packages refused outright should anything try to import them
ISOLATED_RUN = textwrap.dedent("""
    import sys
    sys.path.append(sys.argv[1])

    class Refuse:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {ours!r}:
                raise ModuleNotFoundError(f"{{name}} must not be needed to run the export")
            return None

    sys.meta_path.insert(0, Refuse())
    import json
    import torch

    program = torch.export.load(sys.argv[2]).module()
    batches = torch.load(sys.argv[3])
    with torch.no_grad():
        outputs = [program(x) for x in batches]
    torch.save(outputs, sys.argv[4])
    print(json.dumps({{"ours": sorted(m for m in sys.modules if m.split(".")[0] in {ours!r}),
                      "path": sys.path}}))
""").format(ours=OURS)


def run_pt2_isolated(pt2: Path, batches: list[torch.Tensor], tmp_path: Path) -> list:
    """Load and run ``pt2`` in ``python -I -S`` (cwd elsewhere) on ``batches``; its outputs."""
    work = tmp_path / "elsewhere"
    work.mkdir(exist_ok=True)
    torch.save(batches, work / "inputs.pt")
    site = str(Path(torch.__file__).resolve().parents[1])
    done = subprocess.run([sys.executable, "-I", "-S", "-c", ISOLATED_RUN, site, str(pt2), str(work / "inputs.pt"),
                           str(work / "outputs.pt")], cwd=work, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["ours"] == []
    # no folder on its path holds a package of ours (the venv's site-packages holds only torch & co.)
    assert not any((Path(p) / name).exists() for p in report["path"] for name in OURS), report["path"]
    return torch.load(work / "outputs.pt")


def flat(outputs) -> list[np.ndarray]:
    items = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    return [np.asarray(t.detach().numpy() if hasattr(t, "detach") else t, dtype=np.float32) for t in items]


def max_diff(a, b) -> float:
    a, b = flat(a), flat(b)
    assert len(a) == len(b) and all(x.shape == y.shape for x, y in zip(a, b))
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b))


def onnx_outputs(path: Path, x: torch.Tensor) -> list[np.ndarray]:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})


def check_export(result: automl.ExportResult, inputs: torch.Tensor, tmp_path: Path) -> dict:
    """What every export must do: both formats written and checked, pt2 runs without us, ONNX and
    load_model agree with it, and the card has its fields."""
    out = result.out_dir
    assert set(result.formats) == {"pt2", "onnx"}
    for name in (*FORMATS.values(), CARD_FILE, "MODEL.md"):
        assert (out / name).is_file(), name
    assert result.onnx_max_abs_diff is not None and result.onnx_max_abs_diff <= ONNX_TOLERANCE
    assert result.pt2_max_abs_diff is not None and result.pt2_max_abs_diff <= ONNX_TOLERANCE

    batches = [inputs[:1], inputs[:3], inputs[:16]]  # other batch sizes than the export's example
    isolated = run_pt2_isolated(out / FORMATS["pt2"], batches, tmp_path)
    model = automl.load_model(out)
    assert isinstance(model, torch.nn.Module) and not model.training
    assert all(not m.training for m in model.modules())
    with torch.no_grad():
        for x, got in zip(batches, isolated):
            assert max_diff(model(x), got) <= ONNX_TOLERANCE
            assert max_diff(model(x), onnx_outputs(out / FORMATS["onnx"], x)) <= ONNX_TOLERANCE

    card = json.loads((out / CARD_FILE).read_text())
    assert CARD_FIELDS <= set(card), CARD_FIELDS - set(card)
    assert card["trial"] == result.trial and card["formats"] == ["pt2", "onnx"]
    assert card["automl_version"] == automl.__version__ and card["git_commit"]
    assert card["cost"]["params"] == sum(p.numel() for p in model.parameters())
    assert card["cost"]["flops"] > 0 and card["cost"]["latency_ms"] > 0
    assert card["input"]["shape"][0] == "N" and card["input"]["description"]
    assert set(card["files"]) >= {"model.pt2", "model.onnx", CARD_FILE, "MODEL.md"}
    assert card["checks"]["examples"] == min(16, len(inputs))
    markdown = (out / "MODEL.md").read_text()
    assert "torch.export.load" in markdown and "onnxruntime.InferenceSession" in markdown
    return card


def tiny_study(name: str, tmp_path: Path, n_trials: int = 1) -> automl.Study:
    """A real search of a registered space, at the smallest budgets that still train."""
    budget = None
    space = load_space(name)
    if name in ("digits-mlp", "digits-cnn"):
        budget = {"name": "epochs", "min": 1, "max": 1}
    elif name == "autobert":  # (nasoa trains its constant 3 epochs)
        space = dataclasses.replace(space, task_options=TINY_TEXT,
                                    estimator_options={"pretrain_steps": 5, "finetune_steps": 5, "batch_size": 8})
    study = automl.create_study(space, strategy="random", seed=0, storage=f"sqlite:///{tmp_path / 'runs.db'}",
                                study_name=name, checkpoints=str(tmp_path / "checkpoints"), budget=budget)
    study.optimize(n_trials=n_trials)
    assert study.completed(), [t.error for t in study.trials]
    return study


@pytest.mark.slow
@pytest.mark.parametrize("name", ["digits-mlp", "digits-cnn", "nasoa", "autobert"])
def test_every_builtin_classification_space_exports(name, tmp_path):
    study = tiny_study(name, tmp_path, n_trials=2 if name == "digits-mlp" else 1)
    notes: list[str] = []
    result = automl.export(study, tmp_path / "out", on_note=notes.append, summary={"accuracy": (0.5, 0.25)})
    assert notes == []  # nothing left out, the dynamo exporter took it
    assert result.trial == study.best.number and result.onnx_exporter == "dynamo"
    task = build_task(study.space.task, study.space.task_options)
    card = check_export(result, task_inputs(task), tmp_path)
    assert card["config"] == study.best.config and card["key"] == study.best.key
    assert card["task"]["name"] == study.space.task and card["builder"] == study.space.builder
    assert card["summary"] == {"accuracy": {"mean": 0.5, "std": 0.25}}
    assert "0.5 ± 0.25 over seeds" in (tmp_path / "out" / "MODEL.md").read_text()
    assert card["training"]["estimator"] == study.space.estimator and card["seed"] is not None
    assert (tmp_path / "out" / WEIGHTS_FILE).is_file() and card["weights"] == {"file": WEIGHTS_FILE, "loader": None}
    if name == "autobert":
        assert card["input"]["dtype"] == "int64" and card["input"]["shape"] == ["N", 32]
        assert "pad_id 0" in card["input"]["description"]
    else:
        side = 12 if name == "nasoa" else 8  # nasoa's source task: digits resampled to 12 px and distorted
        assert card["input"]["dtype"] == "float32" and card["input"]["shape"] == ["N", 1, side, side]
        assert "pixel intensity / 16" in card["input"]["description"]


@pytest.mark.slow
def test_the_cli_exports_a_trial_from_the_ledger(tmp_path, capsys):
    study = tiny_study("digits-mlp", tmp_path, n_trials=2)
    storage = f"sqlite:///{tmp_path / 'runs.db'}"
    other = next(t for t in study.trials if t.number != study.best.number)
    code = main(["export", "--study", "digits-mlp", "--storage", storage, "--trial", str(other.number),
                 "--out", str(tmp_path / "cli"), "--format", "pt2"])
    out = capsys.readouterr().out
    assert code == 0, out
    card = json.loads((tmp_path / "cli" / CARD_FILE).read_text())
    assert card["trial"] == other.number and card["formats"] == ["pt2"] and card["onnx"] is None
    assert not (tmp_path / "cli" / "model.onnx").exists() and "model.pt2" in out
    # the best trial by default, both formats; a second export into the folder replaces the first
    assert main(["export", "--study", "digits-mlp", "--storage", storage, "--out", str(tmp_path / "cli")]) == 0
    card = json.loads((tmp_path / "cli" / CARD_FILE).read_text())
    assert card["trial"] == study.best.number and card["formats"] == ["pt2", "onnx"]
    assert main(["export", "--study", "digits-mlp", "--storage", storage, "--out", str(tmp_path / "cli"),
                 "--format", "onnx"]) == 0
    assert sorted(p.name for p in (tmp_path / "cli").iterdir()) == sorted(["MODEL.md", CARD_FILE, "model.onnx",
                                                                          WEIGHTS_FILE])
    model = automl.load_model(tmp_path / "cli")
    x = task_inputs(build_task("digits", {}))[:5]
    with torch.no_grad():
        assert max_diff(model(x), onnx_outputs(tmp_path / "cli" / "model.onnx", x)) <= ONNX_TOLERANCE


BUILDER_MODULE = '''
from torch import nn


def build(config, info):
    return nn.Sequential(nn.Flatten(), nn.Linear(64, int(config["width"])), nn.ReLU(),
                         nn.Linear(int(config["width"]), info.num_classes))


class Branchy(nn.Module):
    """Python control flow on the data: torch.export refuses it, the TorchScript exporter traces one branch."""

    def __init__(self, classes):
        super().__init__()
        self.linear = nn.Linear(64, classes)

    def forward(self, x):
        y = self.linear(x.flatten(1))
        return y if bool(x.sum() > 0) else -y


def build_branchy(config, info):
    return Branchy(info.num_classes)
'''

CUSTOM_SPACE = '''
name: custom
task: digits
builder: "export_test_builder:build"
objectives: {accuracy: max}
budget: {name: epochs, min: 1, max: 1}
space:
  model:
    width: {type: int, low: 8, high: 16}
'''


@pytest.mark.slow
def test_load_model_falls_back_to_the_program_when_the_builder_is_gone(tmp_path, monkeypatch, caplog):
    code = tmp_path / "code"
    code.mkdir()
    (code / "export_test_builder.py").write_text(BUILDER_MODULE)
    monkeypatch.syspath_prepend(str(code))
    space = automl.space_from_yaml(CUSTOM_SPACE, source="custom.yaml", trust_code=True)
    study = automl.create_study(space, strategy="random", seed=0, checkpoints=str(tmp_path / "ckpt"))
    study.optimize(n_trials=1)
    automl.export(study, tmp_path / "out")
    x = task_inputs(build_task("digits", {}))[:4]
    with torch.no_grad():
        expected = automl.load_model(tmp_path / "out")(x)
    assert type(automl.load_model(tmp_path / "out")) is torch.nn.Sequential
    monkeypatch.delitem(sys.modules, "export_test_builder")
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(code)])
    fallback = automl.load_model(tmp_path / "out")
    assert type(fallback) is not torch.nn.Sequential and not fallback.training
    assert "cannot be imported" in caplog.text
    with torch.no_grad():
        assert max_diff(fallback(x), expected) == 0.0


@pytest.mark.slow
def test_a_model_torch_export_refuses_falls_back_to_the_torchscript_onnx_exporter(tmp_path, monkeypatch):
    code = tmp_path / "code"
    code.mkdir()
    (code / "export_test_builder.py").write_text(BUILDER_MODULE)
    monkeypatch.syspath_prepend(str(code))
    space = automl.space_from_yaml(CUSTOM_SPACE.replace(":build", ":build_branchy"), source="custom.yaml",
                                  trust_code=True)
    study = automl.create_study(space, strategy="random", seed=0, checkpoints=str(tmp_path / "ckpt"))
    study.optimize(n_trials=1)
    with pytest.raises(automl.ExportError, match="torch.export could not export the model with a dynamic batch "
                                                 "dimension .*; export only onnx"):
        automl.export(study, tmp_path / "out", formats=("pt2", "onnx"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "code"]  # a failed export writes nothing
    notes: list[str] = []
    result = automl.export(study, tmp_path / "out", formats="onnx", on_note=notes.append)
    assert result.onnx_exporter == "torchscript" and result.formats == ("onnx",)
    assert len(notes) == 1 and notes[0].startswith("onnx: the dynamo exporter could not take the model (")
    assert notes[0].endswith("used the TorchScript exporter instead")
    card = json.loads((tmp_path / "out" / CARD_FILE).read_text())
    assert card["onnx"]["exporter"] == "torchscript" and card["notes"] == notes
    x = task_inputs(build_task("digits", {}))[:5]
    with torch.no_grad():
        assert max_diff(automl.load_model(tmp_path / "out")(x), onnx_outputs(tmp_path / "out" / "model.onnx", x)) \
            <= ONNX_TOLERANCE


# -- bad input: one ConfigError each (fast) -----------------------------------------------------------


def objective_study(tmp_path: Path, checkpoints: bool = True, fail: bool = False) -> automl.Study:
    """digits-mlp scored by a plain function: trials finish, but no estimator keeps a model."""

    def objective(config):
        if fail:
            raise RuntimeError("diverged")
        return {"accuracy": 0.5, "params": 10.0}

    study = automl.create_study("digits-mlp", strategy="random", seed=0, storage=f"sqlite:///{tmp_path / 'r.db'}",
                                checkpoints=str(tmp_path / "ckpt") if checkpoints else None)
    study.optimize(objective, n_trials=2)
    return study


def test_an_unknown_format_names_it_and_the_supported_ones(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown export format 'tflite'; supported: pt2, onnx"):
        automl.export(("digits-mlp", f"sqlite:///{tmp_path / 'none.db'}"), tmp_path / "out", formats=("tflite",))
    assert not (tmp_path / "out").exists()


def test_a_study_without_a_finished_trial(tmp_path):
    study = objective_study(tmp_path, fail=True)
    with pytest.raises(ConfigError, match=r"has no finished trial to export \(2 failed\); run or resume its search"):
        automl.export(study, tmp_path / "out")
    empty = automl.create_study("digits-cnn", storage=f"sqlite:///{tmp_path / 'r.db'}", checkpoints=str(tmp_path))
    with pytest.raises(ConfigError, match="has no finished trial to export"):
        automl.export(("digits-cnn", f"sqlite:///{tmp_path / 'r.db'}"), tmp_path / "out")
    assert empty.trials == []


def test_an_unknown_trial_number(tmp_path):
    study = objective_study(tmp_path)
    with pytest.raises(ConfigError, match=r"has no trial 7 \(its trials are numbered 0..1\)"):
        automl.export(study, tmp_path / "out", trial=7)


def test_a_failed_trial_is_not_exported(tmp_path):
    study = objective_study(tmp_path, fail=True)
    with pytest.raises(ConfigError, match="trial 1 of study 'digits-mlp' is failed: RuntimeError: diverged .*; "
                                          "only a finished trial"):
        automl.export(study, tmp_path / "out", trial=1)


def test_a_trial_whose_model_was_not_kept(tmp_path):
    study = objective_study(tmp_path)
    with pytest.raises(ConfigError, match=r"trial \d of study 'digits-mlp' has no kept model \(trial-\d.model.pt is "
                                          r"not in the checkpoint store .*\): its estimator did not keep it"):
        automl.export(study, tmp_path / "out")
    without = objective_study(tmp_path / "b", checkpoints=False)
    with pytest.raises(ConfigError, match="has no checkpoint store, so no trained model was kept"):
        automl.export(without, tmp_path / "out")


def test_the_cli_says_what_is_wrong_in_one_line(tmp_path, capsys):
    objective_study(tmp_path)
    storage = f"sqlite:///{tmp_path / 'r.db'}"
    cases = [
        (["--study", "digits-mlp", "--format", "tflite"], "unknown export format 'tflite'; supported: pt2, onnx"),
        (["--study", "nope"], "no study named 'nope'"),
        (["--study", "digits-mlp", "--trial", "9"], "has no trial 9"),
        (["--study", "digits-mlp"], "has no kept model"),
    ]
    for args, message in cases:
        assert main(["export", *args, "--storage", storage, "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err


def test_import_automl_does_not_import_torch():
    done = subprocess.run([sys.executable, "-c", "import sys, automl; automl.export; automl.load_model; "
                           "print('torch' in sys.modules)"], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "False", done.stderr


def test_the_export_command_is_a_registered_plugin():
    from importlib.metadata import entry_points

    from automl.export_cli import add_command
    from automl.registry import commands

    assert commands.get("export") is add_command
    assert {ep.name for ep in entry_points(group="automl.exporters")} >= {"detnas"}
