"""Registries: decorators and entry points fill them; a duplicate name is an error."""
from __future__ import annotations

from importlib.metadata import entry_points

import pytest

from automl.errors import RegistryError
from automl.estimator import estimators
from automl.registry import Registry, builders, commands, exporters, morphisms, resolve_builder, space_checks
from automl.selection import selections
from automl.strategies.base import strategies
from automl.tasks.base import tasks
from automl.training.regime import regimes


def test_builtins_come_from_entry_points():
    assert {"random", "evolution"} <= set(strategies.names())
    assert "train" in estimators and "digits" in tasks and {"mlp", "cnn"} <= set(builders.names())


def test_duplicate_name_is_an_error():
    registry: Registry = Registry("widgets")
    registry.register("a")(int)
    registry.register("a")(int)  # the same object again is harmless
    with pytest.raises(RegistryError, match="duplicate widget name 'a'"):
        registry.register("a")(float)


def test_unknown_name_lists_known_ones():
    with pytest.raises(RegistryError, match="known: .*evolution.*random"):
        strategies.get("genetic")


def test_builder_by_module_path():
    assert resolve_builder("search_spaces.mlp:build_mlp") is builders.get("mlp")
    with pytest.raises(RegistryError, match="cannot import module"):
        resolve_builder("no_such_module:f")
    with pytest.raises(RegistryError, match="has no attribute"):
        resolve_builder("search_spaces.mlp:nothing")


REGISTRIES = {
    "strategies": strategies, "estimators": estimators, "tasks": tasks, "builders": builders,
    "regimes": regimes, "morphisms": morphisms, "space_checks": space_checks, "commands": commands,
    "exporters": exporters, "selections": selections,
}


@pytest.mark.parametrize("kind", sorted(REGISTRIES))
def test_every_entry_point_imports_and_its_decorator_agrees_on_the_name(kind):
    """A built-in is named twice (its decorator and setup.cfg's entry point): the two must agree."""
    registry = REGISTRIES[kind]
    points = {ep.name: ep for ep in entry_points(group=f"automl.{kind}")}
    assert points, f"no automl.{kind} entry points"
    for name, point in points.items():
        obj = point.load()
        assert registry.get(name) is obj, f"{point.value}: registered under another name than {name!r}"
    decorated = {n for n, o in registry._items.items() if getattr(o, "__module__", "").split(".")[0]
                 in ("automl", "estimators", "search_spaces", "zoo")}
    missing = decorated - set(points)
    assert not missing, f"registered by decorator but not in setup.cfg's automl.{kind}: {sorted(missing)}"


def test_every_shipped_space_is_in_the_catalog():
    from automl.space import spaces
    from search_spaces import SPACES_DIR

    assert {p.stem for p in SPACES_DIR.glob("*.yaml")} <= set(spaces.names())


def test_there_are_no_import_cycles():
    """Not even through type-only imports: every module of ours can be read in one order."""
    import grimp
    import networkx as nx

    graph = grimp.build_graph("automl", "estimators", "search_spaces", "zoo", cache_dir=None)
    edges = nx.DiGraph([(m, i) for m in graph.modules for i in graph.find_modules_directly_imported_by(m)])
    cycles = sorted(nx.simple_cycles(edges), key=len)
    assert not cycles, f"import cycles: {cycles[:5]}"


def test_the_import_path_of_a_registered_builder_imports_nothing_new(monkeypatch):
    import importlib

    imported: list[str] = []
    real = importlib.import_module
    monkeypatch.setattr(importlib, "import_module", lambda name, *a: imported.append(name) or real(name, *a))
    builders.get("mlp")
    assert resolve_builder("search_spaces.mlp:build_mlp") is builders.get("mlp") and imported == []


@pytest.mark.parametrize("name", ["a b:c", ".rel:f", "mod:", "a:b:c"])
def test_a_malformed_import_path_is_refused_before_importing(name):
    with pytest.raises(RegistryError, match="expected a registered name or 'package.module:function'"):
        resolve_builder(name)


def test_names_are_checked_and_listed_without_importing_plugins():
    fresh: Registry = Registry("builders")
    assert fresh.known("mlp") and not fresh.known("nope")
    assert fresh.spelled("search_spaces.mlp:build_mlp") == "mlp" and fresh.spelled("shutil:rmtree") is None
    assert {"mlp", "cnn", "detnas"} <= set(fresh.listed_names())
    assert "known: autobert, cnn, detnas, mlp" in str(fresh.unknown("nope"))
    assert fresh._items == {} and not fresh._loaded_entry_points  # nothing was imported


def test_a_plugin_that_cannot_be_imported_is_a_registry_error(monkeypatch):
    from importlib.metadata import EntryPoint

    import automl.registry as registry

    broken = EntryPoint(name="broken", value="no_such_plugin_module:thing", group="automl.widgets")
    monkeypatch.setattr(registry, "entry_points", lambda group, name=None: [
        ep for ep in [broken] if ep.group == group and name in (None, ep.name)])
    widgets: Registry = Registry("widgets")
    with pytest.raises(RegistryError, match=r"widget 'broken' \(entry point 'no_such_plugin_module:thing' of "
                                            r"automl.widgets\) cannot be loaded: ModuleNotFoundError"):
        widgets.get("broken")
