"""``automl generate`` end to end: a tiny search run in-process, then samples from its best trial and from
its export folder; bad input exits with status 2 and one line."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import search_spaces
from automl.cli import main

#: digits-cnn's architecture space at one epoch a trial
TINY_SPACE = (Path(search_spaces.__file__).parent / "digits-cnn.yaml").read_text().replace(
    "budget: {name: epochs, min: 1, max: 8}", "budget: {name: epochs, min: 1, max: 1}")
FAST = ["--per-class", "3", "--steps", "5", "--reference-epochs", "2"]


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("study")
    assert "max: 1}" in TINY_SPACE
    (root / "tiny.yaml").write_text(TINY_SPACE)
    storage = f"sqlite:///{root / 'runs.db'}"
    code = main(["search", "--space", str(root / "tiny.yaml"), "--trials", "1", "--storage", storage,
                 "--study-name", "tiny", "--output", str(root / "runs"), "--seed", "0",
                 "--threads", "1"])
    assert code == 0
    return root, storage


def check_output(out: Path, per_class: int = 3) -> dict:
    with np.load(out / "samples.npz") as saved:
        x, y = saved["x"], saved["y"]
    assert x.shape == (10 * per_class, 1, 8, 8) and x.dtype == np.float32
    assert y.tolist() == [k for k in range(10) for _ in range(per_class)]
    assert x.min() >= 0.0 and x.max() <= 1.0
    for k in range(10):
        assert (out / f"class_{k}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(out / "grid.png") as grid:
        assert grid.mode == "L"
    scores = json.loads((out / "scores.json").read_text())
    for name in ("inception_score", "inception_score_mean", "inception_score_std", "frechet_distance",
                 "class_accuracy"):
        assert isinstance(scores["scores"][name], float), name
    assert 1.0 <= scores["scores"]["inception_score"] <= 10.0
    assert scores["options"]["per_class"] == per_class and scores["options"]["steps"] == 5
    assert scores["options"]["low"] == 0.0 and scores["options"]["high"] == 1.0
    assert scores["real_split"] == "test" and 0.0 <= scores["reference"]["accuracy"] <= 1.0
    assert scores["reference"]["epochs"] == 2 and scores["task"]["name"] == "digits"
    assert "seeds" in scores["baselines"] and scores["baselines"]["real"]["inception_score"] > 1
    return scores


def test_generate_from_a_study_and_from_its_export(study, tmp_path, capsys):
    _, storage = study
    assert main(["generate", "--study", "tiny", "--storage", storage, *FAST, "--out", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert "digits-IS" in out and "Fréchet distance" in out and "samples.npz" in out
    scores = check_output(tmp_path / "s")
    assert scores["source"]["study"] == "tiny" and scores["source"]["trial"] == 0

    assert main(["export", "--study", "tiny", "--storage", storage, "--out", str(tmp_path / "model"),
                 "--format", "pt2"]) == 0
    assert main(["generate", "--model", str(tmp_path / "model"), *FAST, "--out", str(tmp_path / "m")]) == 0
    from_model = check_output(tmp_path / "m")
    assert from_model["source"]["model"] == str(tmp_path / "model")
    # the same trained model and seed: the same samples either way
    with np.load(tmp_path / "s" / "samples.npz") as a, np.load(tmp_path / "m" / "samples.npz") as b:
        np.testing.assert_allclose(a["x"], b["x"], atol=1e-5)


def test_bad_input_exits_2_with_one_line(study, tmp_path, capsys):
    _, storage = study
    (tmp_path / "card").mkdir()
    (tmp_path / "card" / "card.json").write_text(json.dumps({"task": {"name": "synthetic-text", "options": {}}}))
    cases = [
        (["--model", str(tmp_path / "missing")], "missing: no such folder"),
        (["--model", str(tmp_path)], "not an export folder (no card.json)"),
        (["--model", str(tmp_path / "card")], "automl generate draws class-conditional samples from a supervised "
                                              "classifier only"),
        (["--study", "nope", "--storage", storage], "no study named 'nope'"),
        (["--study", "tiny", "--storage", storage, "--trial", "9"], "has no trial 9"),
        (["--study", "tiny", "--storage", storage, "--per-class", "0"], "--per-class: must be an integer >= 1"),
        (["--study", "tiny", "--storage", storage, "--noise", "-1"], "--noise: must be a number >= 0"),
        (["--study", "tiny", "--storage", storage, "--inception", str(tmp_path / "none.pth")],
         "none.pth: no such file"),
    ]
    for args, message in cases:
        assert main(["generate", *args, "--out", str(tmp_path / "out")]) == 2, args
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def test_the_generate_command_is_a_registered_plugin():
    from automl.generate_cli import add_command
    from automl.registry import commands

    assert commands.get("generate") is add_command
