"""Conformance checks every task must pass; a plugin's tests call them with its task's name, options
that load quickly, and options that change the data::

    @pytest.mark.parametrize("check", TASK_CHECKS)
    def test_my_task(check):
        check("my-task", {"size": 10}, {"size": 12})

A task's test split is held out of every search. :func:`check_test_split_is_held_out` (one of
:data:`TASK_CHECKS`) checks that it shares no example with the train and validation data;
:func:`check_test_split_withheld` and :func:`check_test_split_scored` check an estimator on a space
whose task has one: a search trial never touches it (every test tensor is a trap that fails on use),
and a trial that asks for it (trial info ``test: true``, a pipeline's ``train`` step) reports
``test_*`` metrics and otherwise the same numbers. A family whose data type is not built in registers
how to find and trap its test split with :func:`register_splits`.
"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from automl.components import construct
from automl.errors import ConfigError
from automl.estimator import EvalContext
from automl.evaluation import EvaluationSetup, prepare_evaluation
from automl.space.model import SearchSpace
from automl.tasks.base import FAMILIES, Task, tasks
from automl.tasks.detection import DetectionData
from automl.tasks.detection3d import Detection3DData
from automl.tasks.environments import EnvironmentsData
from automl.tasks.episodic import EpisodicData
from automl.tasks.supervised import ClassificationData
from automl.tasks.text import TextData


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


# ------------------------------------------------------------------------------------------ test splits

#: what a family's data holds per split: ``train``/``val``/``test`` -> the examples (model inputs)
Examples = Mapping[str, Sequence[torch.Tensor]]
#: ``trap(data, poison)``: ``data`` with every test-split value ``v`` replaced by ``poison(v)``
Trap = Callable[[Any, Callable[[Any], Any]], Any]


@dataclass(frozen=True)
class _Splits:
    examples: Callable[[Any], Examples]
    trap: Trap | None


_SPLITS: dict[type, _Splits] = {}


def register_splits(data_type: type, examples: Callable[[Any], Examples], trap: Trap | None = None) -> None:
    """Teach the test-split checks a family's data type: ``examples(data)`` gives its model inputs by
    split (a ``test`` key only when it has a test split), ``trap(data, poison)`` returns the data with
    each value of its test split passed through ``poison`` (None: estimators are never handed one)."""
    _SPLITS[data_type] = _Splits(examples, trap)


def _splits_of(data: Any) -> _Splits:
    for kind in type(data).__mro__:
        if kind in _SPLITS:
            return _SPLITS[kind]
    raise AssertionError(f"no split view for {type(data).__name__}: call automl.testing.tasks.register_splits")


def split_examples(data: Any) -> Examples:
    """The model inputs of each split of a task's loaded data (``test`` only when it has one)."""
    return _splits_of(data).examples(data)


def _rows(*tensors: torch.Tensor | None) -> list[torch.Tensor]:
    return [row for t in tensors if t is not None for row in t]


def _classification(d: ClassificationData) -> Examples:
    out = {"train": _rows(d.train_x), "val": _rows(d.val_x)}
    return {**out, "test": _rows(d.test_x)} if d.has_test else out


def _text(d: TextData) -> Examples:
    out = {"train": _rows(d.train_ids, d.corpus), "val": _rows(d.val_ids, d.corpus_val)}
    test = _rows(d.test_ids, d.corpus_test)
    return {**out, "test": test} if d.has_test or d.corpus_test is not None else out


def _detection(d: DetectionData) -> Examples:
    out = {"train": list(d.train.images), "val": list(d.val.images)}
    return {**out, "test": list(d.test.images)} if d.test is not None else out


def _detection3d(d: Detection3DData) -> Examples:
    out = {"train": [f.points for f in d.train.frames], "val": [f.points for f in d.val.frames]}
    return {**out, "test": [f.points for f in d.test.frames]} if d.test is not None else out


def _environments(d: EnvironmentsData) -> Examples:
    out = {role: _rows(*(d.environments[n].x for n in d.role(role))) for role in ("train", "val", "test")}
    return {k: v for k, v in out.items() if v or k != "test"}


def _episodic(d: EpisodicData) -> Examples:
    return {"train": _rows(d.base.x), "val": _rows(d.val.x), "test": _rows(d.novel.x)}


register_splits(ClassificationData, _classification,
                lambda d, poison: dataclasses.replace(d, test_x=poison(d.test_x), test_y=poison(d.test_y)))
register_splits(TextData, _text, lambda d, poison: dataclasses.replace(
    d, test_ids=poison(d.test_ids), test_y=poison(d.test_y), corpus_test=poison(d.corpus_test)))
register_splits(DetectionData, _detection, lambda d, poison: DetectionData(train=d.train, val=d.val,
                                                                           test=poison(d.test)))
register_splits(Detection3DData, _detection3d, lambda d, poison: Detection3DData(train=d.train, val=d.val,
                                                                                 test=poison(d.test)))
register_splits(EnvironmentsData, _environments, lambda d, poison: dataclasses.replace(
    d, environments={n: poison(e) if n in d.test else e for n, e in d.environments.items()}))
register_splits(EpisodicData, _episodic)


def _digest(example: torch.Tensor) -> bytes:
    array = example.detach().cpu().contiguous().numpy()
    return hashlib.sha1(f"{array.dtype}{array.shape}".encode() + array.tobytes()).digest()


def check_test_split_is_held_out(name: str, options: Mapping[str, Any], changed: Mapping[str, Any]) -> None:
    """A task's test split (when it has one) is not empty and shares no example with its train and
    validation data."""
    views = split_examples(make_task(name, options).load())
    if "test" not in views:
        return
    test = {_digest(x) for x in views["test"]}
    assert test, f"{name}: the test split is empty"
    for split in ("train", "val"):
        shared = sum(_digest(x) in test for x in views.get(split, ()))
        assert not shared, f"{name}: {shared} {split} example(s) are also in the test split"


class TestSplitTouched(AssertionError):
    """An estimator used the test split in a trial that did not ask for it."""


def _trap_tensors(touched: list[str]) -> type[torch.Tensor]:
    """A tensor type whose every use fails and is appended to ``touched``."""

    class TrapTensor(torch.Tensor):
        @classmethod
        def __torch_function__(cls, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            use = getattr(func, "__name__", str(func))
            touched.append(use)
            raise TestSplitTouched(f"a search trial used the test split ({use} on one of its tensors)")

    return TrapTensor


class _TrapObject:
    """A test-split object (a detection split, an environment) in a search trial: any use of it fails."""

    def __init__(self, what: str, touched: list[str]) -> None:
        object.__setattr__(self, "_what", what)
        object.__setattr__(self, "_touched", touched)

    def _fail(self, use: str) -> TestSplitTouched:
        touched: list[str] = object.__getattribute__(self, "_touched")
        what: str = object.__getattribute__(self, "_what")
        touched.append(f"{use} of a {what}")
        return TestSplitTouched(f"a search trial used the test split ({use} of a {what})")

    def __getattr__(self, name: str) -> Any:
        raise self._fail(f".{name}")

    def __len__(self) -> int:
        raise self._fail("len()")

    def __iter__(self) -> Any:
        raise self._fail("iter()")

    def __getitem__(self, key: Any) -> Any:
        raise self._fail("[...]")

    def __bool__(self) -> bool:
        raise self._fail("bool()")


def trap_test_split(data: Any, touched: list[str]) -> Any:
    """``data`` with its test split made of traps that fail on use and append the use to ``touched``;
    None when the data has no test split (or its family never hands one to an estimator)."""
    splits = _splits_of(data)
    if splits.trap is None or "test" not in splits.examples(data):
        return None
    tensor_trap = _trap_tensors(touched)

    def poison(value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, torch.Tensor):
            return value.as_subclass(tensor_trap)
        return _TrapObject(type(value).__name__, touched)

    return splits.trap(data, poison)


def _evaluate(space: SearchSpace, setup: EvaluationSetup, config: Mapping[str, Any], budget: float | None,
              info: Mapping[str, Any], context: Mapping[str, Any]) -> dict[str, Any]:
    ctx = EvalContext(space=space, seed=0, trial_number=0, task=setup.task, regimes=setup.regimes,
                      metric_sets=setup.metric_sets,
                      info={**context.get("info", {}), **info}, **{k: v for k, v in context.items() if k != "info"})
    return dict(setup.make_estimator().evaluate(space.candidate(dict(config)), budget, ctx).all_metrics())


def check_test_split_withheld(space: SearchSpace, config: Mapping[str, Any], budget: float | None = None,
                              **context: Any) -> dict[str, Any]:
    """Evaluated as a search trial (no ``test`` in its info), the space's estimator never touches the
    task's test split and reports no ``test_*`` metric. The space's task must have a test split;
    ``context`` goes to the :class:`EvalContext`. Returns the trial's metrics."""
    setup = prepare_evaluation(space)
    task = setup.task
    assert task is not None, f"space {space.name!r} has no task"
    touched: list[str] = []
    trapped = trap_test_split(task.load(), touched)
    assert trapped is not None, f"task {space.task!r} has no test split to check with"
    task.load = lambda: trapped  # type: ignore[method-assign]
    try:
        metrics = _evaluate(space, setup, config, budget, {}, context)
    except TestSplitTouched as exc:
        raise AssertionError(f"{space.estimator}: {exc}") from exc
    assert not touched, f"{space.estimator}: a search trial used the test split ({', '.join(touched)})"
    leaked = sorted(k for k in metrics if k.startswith("test_"))
    assert not leaked, f"{space.estimator}: a search trial reported test metrics {leaked}"
    return metrics


def _same(a: Any, b: Any) -> bool:
    nan = isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b)
    return bool(nan or a == b)


def check_test_split_scored(space: SearchSpace, config: Mapping[str, Any], budget: float | None = None,
                            **context: Any) -> dict[str, Any]:
    """A trial that asks for the test split (info ``test: true``) reports ``test_*`` metrics and, apart
    from them, what the same trial reports as a search trial (which :func:`check_test_split_withheld`
    checks first). The two evaluations must not continue one another (give no checkpoint store, or a
    fresh one, to an estimator that resumes from it). Returns the test trial's metrics."""
    from automl.testing.estimators import TIMING

    searched = check_test_split_withheld(space, config, budget, **context)
    scored = _evaluate(space, prepare_evaluation(space), config, budget, {"test": True}, context)
    tested = sorted(k for k in scored if k.startswith("test_"))
    assert tested, f"{space.estimator}: a trial asking for the test split reported no test_* metric"
    compared = {k for k in set(scored) | set(searched) if not k.startswith("test_") and not any(t in k for t in TIMING)}
    differ = sorted(k for k in compared if not _same(scored.get(k), searched.get(k)))
    assert not differ, (f"{space.estimator}: scoring the test split changed other metrics: "
                        + ", ".join(f"{k} {searched.get(k)} -> {scored.get(k)}" for k in differ))
    return scored


TASK_CHECKS = [check_contract, check_info_does_not_load, check_load_is_deterministic, check_fingerprint,
               check_unknown_option_is_config_error, check_test_split_is_held_out]
