"""Registries: decorators and entry points fill them; a duplicate name is an error."""
from __future__ import annotations

import pytest

from automl.errors import RegistryError
from automl.registry import Registry, builders, estimators, resolve_builder, strategies, tasks


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
