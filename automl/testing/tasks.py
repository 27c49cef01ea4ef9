"""Conformance checks every task must pass; a plugin's tests call them with its task's name, options
that load quickly, and options that change the data::

    @pytest.mark.parametrize("check", TASK_CHECKS)
    def test_my_task(check):
        check("my-task", {"size": 10}, {"size": 12})
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np
import torch

from automl.components import construct
from automl.errors import ConfigError
from automl.tasks.base import FAMILIES, Task, tasks


def make_task(name: str, options: Mapping[str, Any]) -> Task:
    return construct(tasks.get(name), dict(options), kind="task", name=name)


def same_data(a: Any, b: Any, where: str = "data") -> None:
    """Assert that two loaded data objects hold equal values (tensors, arrays, dataclasses, containers)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b), where
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b), where
    elif dataclasses.is_dataclass(a) and not isinstance(a, type):
        assert type(a) is type(b), where
        for f in dataclasses.fields(a):
            if f.name != "coco":  # pycocotools' index object: its dataset is compared through the fields
                same_data(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
    elif isinstance(a, Mapping):
        assert set(a) == set(b), where
        for k in a:
            same_data(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            same_data(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def check_contract(name: str, options: Mapping[str, Any], changed: Mapping[str, Any]) -> None:
    """The task names a known family, declares the metrics it reports, and its example input is a batch of one."""
    task = make_task(name, options)
    assert task.family in FAMILIES, f"{name}: unknown family {task.family!r}"
    assert task.metrics and all(d in ("max", "min") for d in task.metrics.values()), f"{name}: metrics {task.metrics}"
    example = task.example_input()
    first = example[0] if isinstance(example, tuple) else example
    assert isinstance(first, torch.Tensor) and first.shape[0] == 1, f"{name}: example_input is not a batch of one"


def check_info_does_not_load(name: str, options: Mapping[str, Any], changed: Mapping[str, Any]) -> None:
    """``info``, ``fingerprint`` and ``example_input`` never load the data (spaces and cost checks read them)."""
    task = make_task(name, options)

    def refuse() -> Any:
        raise AssertionError(f"{name}: info/example_input/fingerprint loaded the data")

    task.load = refuse  # type: ignore[method-assign]
    assert task.info is not None
    task.example_input()


def check_load_is_deterministic(name: str, options: Mapping[str, Any], changed: Mapping[str, Any]) -> None:
    """Two instances with the same options load the same data."""
    same_data(make_task(name, options).load(), make_task(name, options).load())


def check_fingerprint(name: str, options: Mapping[str, Any], changed: Mapping[str, Any]) -> None:
    """The fingerprint is stable for the same options and changes with ``changed`` options."""
    a, b = make_task(name, options).fingerprint(), make_task(name, options).fingerprint()
    assert isinstance(a, str) and a and a == b
    assert make_task(name, {**options, **changed}).fingerprint() != a, f"{name}: {changed} left the fingerprint"


def check_unknown_option_is_config_error(name: str, options: Mapping[str, Any], changed: Mapping[str, Any]) -> None:
    """An option the task does not take is a ConfigError naming it (not a TypeError)."""
    try:
        make_task(name, {**options, "no_such_option": 1})
    except ConfigError as exc:
        assert "no_such_option" in str(exc), str(exc)
    else:
        raise AssertionError(f"{name}: an unknown option was accepted")


TASK_CHECKS = [check_contract, check_info_does_not_load, check_load_is_deterministic, check_fingerprint,
               check_unknown_option_is_config_error]
