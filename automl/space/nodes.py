"""The typed nodes a search space is made of: leaves (float, int, categorical, bool, constant) and
structure (group, repeat). The graph node lives in :mod:`automl.space.graph`.

Every node is an immutable dataclass. A config mirrors the tree: a group is a dict, a repeat a list,
a leaf its value; a parameter whose ``when`` condition is false is absent from the config.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from automl.expr import Expr

Path = tuple[str | int, ...]
Scalar = bool | int | float | str | None


def path_str(path: Path) -> str:
    """``("model", "layers", 0, "width")`` -> ``model.layers[0].width``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith("["):
            out += part
        else:
            out += ("." if out else "") + part
    return out or "<root>"


class Node(ABC):
    """Base of all space nodes."""

    when: Expr | None

    @abstractmethod
    def sample(self, rng: np.random.Generator) -> Any: ...

    @abstractmethod
    def check(self, value: Any, path: Path) -> list[str]:
        """Problems with ``value`` at ``path`` (empty when valid)."""

    def canonical(self, value: Any) -> Any:
        """A JSON-able form used for the canonical key."""
        return value

    def describe(self) -> str:
        return type(self).__name__.lower()


class Leaf(Node):
    """A node holding one scalar value."""

    @abstractmethod
    def mutate(self, value: Any, rng: np.random.Generator) -> Any:
        """A different valid value (the same only when no other exists)."""

    @abstractmethod
    def neighbours(self, value: Any) -> list[Any]:
        """The values one small step away."""

    def distribution(self) -> BaseDistribution | None:
        """This leaf as an Optuna distribution (None for constants)."""
        return None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Float(Leaf):
    low: float
    high: float
    log: bool = False
    step: float | None = None
    when: Expr | None = None

    def _to_unit(self, value: float) -> float:
        if self.log:
            return (math.log(value) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))
        return (value - self.low) / (self.high - self.low)

    def _from_unit(self, u: float) -> float:
        u = min(1.0, max(0.0, u))
        if self.log:
            value = math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))
        else:
            value = self.low + u * (self.high - self.low)
        if self.step:
            value = self.low + round((value - self.low) / self.step) * self.step
        return float(min(self.high, max(self.low, value)))

    def sample(self, rng: np.random.Generator) -> float:
        if self.low == self.high:
            return float(self.low)
        return self._from_unit(float(rng.random()))

    def mutate(self, value: float, rng: np.random.Generator) -> float:
        if self.low == self.high:
            return float(self.low)
        for _ in range(16):
            if rng.random() < 0.5:
                new = self.sample(rng)
            else:
                new = self._from_unit(self._to_unit(value) + float(rng.normal(0.0, 0.15)))
            if new != value:
                return new
        return value

    def neighbours(self, value: float) -> list[float]:
        u = self._to_unit(value)
        return sorted({self._from_unit(u - 0.1), self._from_unit(u + 0.1)} - {value})

    def check(self, value: Any, path: Path) -> list[str]:
        if not _is_number(value):
            return [f"{path_str(path)}: expected a number, got {value!r}"]
        if not self.low <= value <= self.high:
            return [f"{path_str(path)}: {value!r} is outside [{self.low}, {self.high}]"]
        return []

    def canonical(self, value: Any) -> float:
        return float(f"{float(value):.10g}")

    def distribution(self) -> BaseDistribution:
        return FloatDistribution(self.low, self.high, log=self.log, step=self.step)

    def describe(self) -> str:
        return (f"float [{self.low}, {self.high}]" + (" log" if self.log else "")
                + (f" step {self.step}" if self.step else ""))


@dataclass(frozen=True)
class Normal(Leaf):
    """A float drawn from N(mu, sigma) (of log(x) when ``log``), optionally rounded to ``step``.

    Unbounded; exists so that NNI's ``normal``/``lognormal`` families load unchanged.
    """

    mu: float
    sigma: float
    log: bool = False
    step: float | None = None
    when: Expr | None = None

    def _finish(self, x: float) -> float:
        value = math.exp(x) if self.log else x
        if self.step:
            value = round(value / self.step) * self.step
        return float(value)

    def sample(self, rng: np.random.Generator) -> float:
        return self._finish(float(rng.normal(self.mu, self.sigma)))

    def mutate(self, value: float, rng: np.random.Generator) -> float:
        for _ in range(16):
            x = math.log(value) if self.log and value > 0 else value
            new = self._finish(x + float(rng.normal(0.0, self.sigma * 0.5)))
            if new != value:
                return new
        return value

    def neighbours(self, value: float) -> list[float]:
        x = math.log(value) if self.log and value > 0 else value
        return sorted({self._finish(x - self.sigma * 0.25), self._finish(x + self.sigma * 0.25)} - {value})

    def check(self, value: Any, path: Path) -> list[str]:
        # exp() is positive, but rounding to a step can reach 0
        if not _is_number(value) or (self.log and (value < 0 if self.step else value <= 0)):
            return [f"{path_str(path)}: expected a {'non-negative' if self.step else 'positive'} number, got {value!r}"
                    if self.log else f"{path_str(path)}: expected a number, got {value!r}"]
        return []

    def canonical(self, value: Any) -> float:
        return float(f"{float(value):.10g}")

    def describe(self) -> str:
        return f"{'log' if self.log else ''}normal(mu={self.mu}, sigma={self.sigma})"


@dataclass(frozen=True)
class Int(Leaf):
    low: int
    high: int
    log: bool = False
    step: int = 1
    when: Expr | None = None

    def _snap(self, value: float) -> int:
        value = self.low + round((value - self.low) / self.step) * self.step
        return int(min(self.high, max(self.low, value)))

    def sample(self, rng: np.random.Generator) -> int:
        if self.log:
            # Uniform in log space over [low - 0.5, high + 0.5], as Optuna does for log ints.
            lo, hi = math.log(self.low - 0.5), math.log(self.high + 0.5)
            return self._snap(math.exp(lo + float(rng.random()) * (hi - lo)))
        n = (self.high - self.low) // self.step
        return int(self.low + int(rng.integers(0, n + 1)) * self.step)

    def mutate(self, value: int, rng: np.random.Generator) -> int:
        if self.low == self.high:
            return self.low
        for _ in range(16):
            if rng.random() < 0.5:
                new = self.sample(rng)
            else:
                scale = value * 0.3 if self.log else (self.high - self.low) * 0.15
                new = self._snap(value + float(rng.normal(0.0, max(scale, self.step))))
            if new != value:
                return new
        return value

    def neighbours(self, value: int) -> list[int]:
        if self.log:
            return sorted({self._snap(value / 1.5), self._snap(value * 1.5)} - {value})
        return sorted({self._snap(value - self.step), self._snap(value + self.step)} - {value})

    def check(self, value: Any, path: Path) -> list[str]:
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
            return [f"{path_str(path)}: expected an integer, got {value!r}"]
        if not self.low <= value <= self.high:
            return [f"{path_str(path)}: {value!r} is outside [{self.low}, {self.high}]"]
        if (value - self.low) % self.step:
            return [f"{path_str(path)}: {value!r} is not on the grid low + k*{self.step}"]
        return []

    def canonical(self, value: Any) -> int:
        return int(value)

    def distribution(self) -> BaseDistribution:
        return IntDistribution(self.low, self.high, log=self.log, step=self.step)

    def describe(self) -> str:
        return (f"int [{self.low}, {self.high}]" + (" log" if self.log else "")
                + (f" step {self.step}" if self.step != 1 else ""))


@dataclass(frozen=True)
class Categorical(Leaf):
    choices: tuple[Scalar, ...]
    when: Expr | None = None

    def sample(self, rng: np.random.Generator) -> Scalar:
        return self.choices[int(rng.integers(0, len(self.choices)))]

    def mutate(self, value: Scalar, rng: np.random.Generator) -> Scalar:
        others = [c for c in self.choices if c != value]
        return others[int(rng.integers(0, len(others)))] if others else value

    def neighbours(self, value: Scalar) -> list[Scalar]:
        return [c for c in self.choices if c != value]

    def check(self, value: Any, path: Path) -> list[str]:
        if not any((value == c and type(value) is type(c)) or (_is_number(value) and _is_number(c) and value == c)
                   for c in self.choices):
            return [f"{path_str(path)}: {value!r} is not one of {list(self.choices)}"]
        return []

    def distribution(self) -> BaseDistribution:
        return CategoricalDistribution(self.choices)

    def describe(self) -> str:
        return f"categorical {list(self.choices)}"


@dataclass(frozen=True)
class Bool(Leaf):
    when: Expr | None = None

    def sample(self, rng: np.random.Generator) -> bool:
        return bool(rng.random() < 0.5)

    def mutate(self, value: bool, rng: np.random.Generator) -> bool:
        return not value

    def neighbours(self, value: bool) -> list[bool]:
        return [not value]

    def check(self, value: Any, path: Path) -> list[str]:
        return [] if isinstance(value, bool) else [f"{path_str(path)}: expected true or false, got {value!r}"]

    def distribution(self) -> BaseDistribution:
        return CategoricalDistribution((False, True))

    def describe(self) -> str:
        return "bool"


@dataclass(frozen=True)
class Constant(Leaf):
    """A fixed value written directly in the YAML (e.g. ``batch_size: 64``)."""

    value: Any
    when: Expr | None = None

    def sample(self, rng: np.random.Generator) -> Any:
        return self.value

    def mutate(self, value: Any, rng: np.random.Generator) -> Any:
        return self.value

    def neighbours(self, value: Any) -> list[Any]:
        return []

    def check(self, value: Any, path: Path) -> list[str]:
        return [] if value == self.value else [f"{path_str(path)}: expected the constant {self.value!r}, got {value!r}"]

    def describe(self) -> str:
        return f"constant {self.value!r}"


@dataclass(frozen=True)
class Group(Node):
    """Named children, in declaration order (a dict in the config)."""

    children: tuple[tuple[str, Node], ...]
    when: Expr | None = None

    def child_map(self) -> Mapping[str, Node]:
        return dict(self.children)

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        raise NotImplementedError("groups are sampled by SearchSpace, which resolves conditions")

    def check(self, value: Any, path: Path) -> list[str]:
        return [] if isinstance(value, dict) else [f"{path_str(path)}: expected a mapping, got {value!r}"]

    def describe(self) -> str:
        return "group"


@dataclass(frozen=True)
class Repeat(Node):
    """A variable-length list (``min``..``max``) of blocks, each an instance of ``item``."""

    item: Node
    min: int
    max: int
    when: Expr | None = None

    def sample(self, rng: np.random.Generator) -> int:
        """The sampled length; the items are sampled by SearchSpace."""
        return int(rng.integers(self.min, self.max + 1))

    def check(self, value: Any, path: Path) -> list[str]:
        if not isinstance(value, list):
            return [f"{path_str(path)}: expected a list, got {value!r}"]
        if not self.min <= len(value) <= self.max:
            return [f"{path_str(path)}: length {len(value)} is outside [{self.min}, {self.max}]"]
        return []

    def describe(self) -> str:
        return f"repeat {self.min}..{self.max}"


@dataclass(frozen=True)
class Objective:
    """A named metric and whether to maximise or minimise it."""

    name: str
    direction: str  # "max" | "min"

    @property
    def sign(self) -> float:
        """Multiply a value by this to get a loss (smaller is better)."""
        return -1.0 if self.direction == "max" else 1.0


@dataclass(frozen=True)
class Budget:
    """The multi-fidelity resource a trial receives (e.g. epochs), between ``min`` and ``max``."""

    name: str
    min: float
    max: float


@dataclass(frozen=True)
class SearchDefaults:
    """What ``automl search`` uses when the command line does not say."""

    strategy: str = "evolution"
    trials: int = 20
    options: Mapping[str, Any] = field(default_factory=dict)
