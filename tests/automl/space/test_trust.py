"""A space file never runs code unasked (issue 15): a builder given as ``package.module:function`` is imported
only when the user trusts it (``trust_code=True``/``--trust-code``, ``AUTOML_TRUSTED_MODULES``), reading or
validating such a file never imports it, and registered builders are unaffected."""
from __future__ import annotations

import re
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

import automl
from automl.errors import ConfigError
from automl.pipeline import PipelineRun, load_pipeline
from automl.space import load_space, read_space
from automl.space.trust import TRUSTED_MODULES_ENV, CodeTrust, check_code, code_references

SPACE = """
name: shared
task: digits
builder: "{builder}"
space:
  model:
    hidden: {{type: int, low: 4, high: 8}}
"""


@pytest.fixture()
def evil(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    """A module (uniquely named) whose import writes a marker file: (module name, marker)."""
    name = f"evil_{uuid.uuid4().hex[:8]}"
    marker = tmp_path / "imported"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(f"""
        from pathlib import Path
        Path({str(marker)!r}).write_text("ran")
        def build(config, info):
            raise RuntimeError("never called here")
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(TRUSTED_MODULES_ENV, raising=False)
    yield name, marker
    sys.modules.pop(name, None)


def space_file(tmp_path: Path, builder: str) -> Path:
    path = tmp_path / "shared.yaml"
    path.write_text(SPACE.format(builder=builder))
    return path


def test_a_space_naming_code_is_refused_and_nothing_is_imported(tmp_path: Path, evil: tuple[str, Path]) -> None:
    module, marker = evil
    path = space_file(tmp_path, f"{module}:build")
    with pytest.raises(ConfigError) as info:
        load_space(path)
    assert str(info.value).startswith(f"{path}:4: builder: '{module}:build' names code to import and run")
    assert "--trust-code" in str(info.value) and TRUSTED_MODULES_ENV in str(info.value)
    with pytest.raises(ConfigError, match="names code to import and run"):
        automl.create_study(path, strategy="random")
    with pytest.raises(ConfigError, match="names code to import and run"):  # a space read in Python, then searched
        automl.create_study(automl.space_from_yaml(SPACE.format(builder=f"{module}:build")), strategy="random")
    assert not marker.exists() and module not in sys.modules


def test_reading_a_space_that_names_code_imports_nothing(tmp_path: Path, evil: tuple[str, Path]) -> None:
    module, marker = evil
    space = read_space(space_file(tmp_path, f"{module}:build"))
    assert code_references(space) == [(("builder",), f"{module}:build")] and not space.trusted_code
    assert not marker.exists() and module not in sys.modules


@pytest.mark.parametrize("how", ["argument", "environment", "package", "read"])
def test_trusted_code_is_imported_once_at_load(tmp_path: Path, evil: tuple[str, Path], how: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    module, marker = evil
    path = space_file(tmp_path, f"{module}:build")
    if how == "argument":
        space = load_space(path, trust_code=True)
    elif how == "read":
        space = load_space(automl.space_from_yaml(path.read_text(), source=str(path), trust_code=True))
    else:
        monkeypatch.setenv(TRUSTED_MODULES_ENV, f"other.pkg, {module}" if how == "environment" else "other")
        if how == "package":
            with pytest.raises(ConfigError, match="names code"):
                load_space(path)
            return
        space = load_space(path)
    assert space.trusted_code and marker.read_text() == "ran"
    assert load_space(space) is space  # a trusted space searches as it is (create_study loads it again)


def test_trust_covers_the_modules_below_a_trusted_package() -> None:
    trust = CodeTrust(modules=frozenset({"mylab"}))
    assert trust.allows("mylab:f") and trust.allows("mylab.nets.conv:f")
    assert not trust.allows("mylabx:f") and not trust.allows("shutil:rmtree")
    assert CodeTrust(everything=True).allows("anything.at:all")


def test_a_bad_trusted_modules_setting_is_one_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TRUSTED_MODULES_ENV, "good, not a module")
    with pytest.raises(ConfigError, match=f"{TRUSTED_MODULES_ENV}: expected comma-separated module names"):
        load_space(space_file(tmp_path, "x.y:build"))


@pytest.mark.parametrize("builder", ["shutil:rmtree", "pty:spawn", "os:system", "subprocess:call"])
def test_the_issue_examples_are_refused_and_the_folder_survives(tmp_path: Path, builder: str,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TRUSTED_MODULES_ENV, raising=False)
    victim = tmp_path / "victim"
    victim.mkdir()
    path = tmp_path / "space.yaml"
    path.write_text(f"name: rm\ntask: digits\nbuilder: \"{builder}\"\nspace:\n  model: {victim}\n  x: {{type: bool}}\n")
    with pytest.raises(ConfigError, match=r"space.yaml:3: builder: .* names code to import and run"):
        automl.create_study(path, strategy="random")
    assert victim.is_dir()


def test_the_import_path_of_a_registered_builder_needs_no_trust(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TRUSTED_MODULES_ENV, raising=False)
    space = automl.space_from_yaml(SPACE.format(builder="search_spaces.mlp:build_mlp"))
    assert code_references(space) == [] and check_code(space) is space


@pytest.mark.parametrize("builder, message", [
    ("nope", "unknown builder 'nope'"),
    ("mpl", "unknown builder 'mpl' (did you mean 'mlp'?)"),
])
def test_an_unknown_registered_builder_is_refused_before_any_trial(builder: str, message: str) -> None:
    space = automl.space_from_yaml(SPACE.format(builder=builder), source="s.yaml")
    with pytest.raises(ConfigError, match=re.escape("s.yaml:4: builder: " + message)):
        load_space(space)


@pytest.mark.parametrize("builder", ["a b:c", ".rel:f", "mod:", ":f", "a:b:c", "mod:f.g"])
def test_a_malformed_import_path_is_refused_at_load(builder: str) -> None:
    with pytest.raises(ConfigError, match=r"s.yaml:4: builder: expected a registered builder or an import path"):
        automl.space_from_yaml(SPACE.format(builder=builder), source="s.yaml")


def test_a_missing_trusted_module_fails_at_load_not_in_every_trial(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"builder: builder 'no_such_module_x:f': cannot import module"):
        load_space(space_file(tmp_path, "no_such_module_x:f"), trust_code=True)


def test_pipelines_pass_the_trust_on(tmp_path: Path, evil: tuple[str, Path]) -> None:
    module, marker = evil
    space_file(tmp_path, f"{module}:build")
    (tmp_path / "pipe.yaml").write_text("name: pipe\nsteps:\n  nas: {space: shared.yaml, trials: 1}\n")
    spec = load_pipeline(tmp_path / "pipe.yaml")
    with pytest.raises(ConfigError, match="names code to import and run"):
        PipelineRun(spec, None, tmp_path / "runs")._base_space(spec.steps[0])
    assert not marker.exists()
    trusted = PipelineRun(spec, None, tmp_path / "runs", trust_code=True)._base_space(spec.steps[0])
    assert trusted.trusted_code and marker.exists()
