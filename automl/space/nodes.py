"""The typed nodes a search space is made of: leaves (float, int, categorical, bool, constant) and
structure (group, repeat). The graph node lives in :mod:`automl.space.graph`.

Every node is an immutable dataclass. A config mirrors the tree: a group is a dict, a repeat a list,
a leaf its value; a parameter whose ``when`` condition is false is absent from the config.
"""
from __future__ import annotations

import copy
import itertools
import json
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any, Mapping

import numpy as np
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from automl.expr import Expr

#: the most values a flat categorical encoding may enumerate (a subset with more combinations has none)
FLAT_LIMIT = 1000

Path = tuple[str | int, ...]
Scalar = bool | int | float | str | None


def path_str(path: Path) -> str:
    """``("model", "layers", 0, "width")`` -> ``model.layers[0].width``; a name that is not an identifier
    is written in backticks (``model.`conv-1```), so that two paths never read the same."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[i]":  # SearchSpace.leaves: any item of a repeat
            out += part
        else:
            text = part if part.isprintable() else part.encode("unicode_escape").decode("ascii")
            out += ("." if out else "") + (text if text.isidentifier() else f"`{text}`")
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

    def to_flat(self, value: Any) -> Any:
        """``value`` as its :meth:`distribution` holds it (the same value, except for choices that
        Optuna cannot hold, such as dicts, which are held as JSON text)."""
        return value

    def from_flat(self, raw: Any) -> Any:
        """Inverse of :meth:`to_flat`."""
        return raw


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Prior:
    """A non-uniform distribution over a bounded number's range (ConfigSpace's normal and beta
    hyperparameters): ``normal`` -- N(mu, sigma) truncated to the range; ``beta`` -- Beta(alpha, beta)
    stretched over the range. On a log-scaled parameter both apply to log(x). Only random sampling
    draws from it; model-based strategies search the range as they would a uniform one."""

    kind: str  # "normal" | "beta"
    a: float  # mu | alpha
    b: float  # sigma | beta

    KINDS = {"normal": ("mu", "sigma"), "beta": ("alpha", "beta")}

    def unit(self, lo: float, hi: float, rng: np.random.Generator) -> float:
        """A draw of the position in [0, 1] within [lo, hi] (bounds on the parameter's scale)."""
        if self.kind == "beta":
            return float(rng.beta(self.a, self.b))
        dist = NormalDist(self.a, self.b)
        c_lo, c_hi = dist.cdf(lo), dist.cdf(hi)
        if c_hi - c_lo < 1e-12:  # the range lies far in one tail: its nearest end
            x = min(hi, max(lo, self.a))
        else:
            p = min(1 - 1e-16, max(1e-16, c_lo + float(rng.random()) * (c_hi - c_lo)))
            x = min(hi, max(lo, dist.inv_cdf(p)))
        return (x - lo) / (hi - lo) if hi > lo else 0.5

    def spec(self) -> dict[str, Any]:
        first, second = self.KINDS[self.kind]
        return {"type": self.kind, first: self.a, second: self.b}

    def describe(self) -> str:
        first, second = self.KINDS[self.kind]
        return f"{self.kind}({first}={self.a:g}, {second}={self.b:g})"


@dataclass(frozen=True)
class Float(Leaf):
    low: float
    high: float
    log: bool = False
    step: float | None = None
    when: Expr | None = None
    prior: Prior | None = None

    def _to_unit(self, value: float) -> float:
        if self.low == self.high:  # a one-value range: every value is its middle
            return 0.5
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
        if self.prior is not None:
            lo, hi = (math.log(self.low), math.log(self.high)) if self.log else (self.low, self.high)
            return self._from_unit(self.prior.unit(lo, hi, rng))
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
        if self.low == self.high:
            return []
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
                + (f" step {self.step}" if self.step else "") + (f" {self.prior.describe()}" if self.prior else ""))


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
    prior: Prior | None = None

    def _snap(self, value: float) -> int:
        value = self.low + round((value - self.low) / self.step) * self.step
        return int(min(self.high, max(self.low, value)))

    def sample(self, rng: np.random.Generator) -> int:
        if self.prior is not None and self.low != self.high:
            # the continuous prior over [low - step/2, high + step/2], rounded to the grid
            lo, hi = self.low - self.step / 2, self.high + self.step / 2
            if self.log:
                x = self.prior.unit(math.log(lo), math.log(hi), rng)
                return self._snap(math.exp(math.log(lo) + x * (math.log(hi) - math.log(lo))))
            return self._snap(lo + self.prior.unit(lo, hi, rng) * (hi - lo))
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
                + (f" step {self.step}" if self.step != 1 else "")
                + (f" {self.prior.describe()}" if self.prior else ""))


@dataclass(frozen=True)
class Categorical(Leaf):
    """One of ``choices``: scalars, or JSON-like values (mappings, lists) such as NNI's
    ``{"optimizer": "Adam", "lr": 0.001}`` alternatives. The config holds the choice itself; the flat
    (Optuna) view of a categorical with non-scalar choices holds each choice's JSON text
    (:func:`json_label`). ``weights``: relative sampling probabilities (ConfigSpace's), else uniform."""

    choices: tuple[Any, ...]
    when: Expr | None = None
    weights: tuple[float, ...] | None = None

    @property
    def composite(self) -> bool:
        """Whether some choice is not a scalar (so the flat view holds JSON labels)."""
        return not all(c is None or isinstance(c, (bool, int, float, str)) for c in self.choices)

    def sample(self, rng: np.random.Generator) -> Any:
        if self.weights is not None:
            p = np.asarray(self.weights, dtype=float)
            index = int(rng.choice(len(self.choices), p=p / p.sum()))
        else:
            index = int(rng.integers(0, len(self.choices)))
        return copy.deepcopy(self.choices[index])

    def _index(self, value: Any) -> int | None:
        if self.composite:
            label = _try_label(value)
            return next((i for i, c in enumerate(self.choices) if label is not None and json_label(c) == label), None)
        return next((i for i, c in enumerate(self.choices)
                     if (value == c and type(value) is type(c))
                     or (_is_number(value) and _is_number(c) and value == c)), None)

    def mutate(self, value: Any, rng: np.random.Generator) -> Any:
        others = self.neighbours(value)
        return others[int(rng.integers(0, len(others)))] if others else value

    def neighbours(self, value: Any) -> list[Any]:
        index = self._index(value)
        return [copy.deepcopy(c) for i, c in enumerate(self.choices) if i != index]

    def check(self, value: Any, path: Path) -> list[str]:
        if self._index(value) is None:
            return [f"{path_str(path)}: {value!r} is not one of {list(self.choices)}"]
        return []

    def canonical(self, value: Any) -> Any:
        return json.loads(json_label(value)) if self.composite else value

    def distribution(self) -> BaseDistribution:
        if self.composite:
            return CategoricalDistribution([json_label(c) for c in self.choices])
        return CategoricalDistribution(self.choices)

    def to_flat(self, value: Any) -> Any:
        return _try_label(value) if self.composite else value

    def from_flat(self, raw: Any) -> Any:
        if not self.composite:
            return raw
        return next((copy.deepcopy(c) for c in self.choices if json_label(c) == raw), raw)

    def describe(self) -> str:
        weights = f" weights {list(self.weights)}" if self.weights is not None else ""
        return f"categorical {list(self.choices)}{weights}"


def json_label(value: Any) -> str:
    """The canonical JSON text of a JSON-like value (keys sorted), as a flat categorical holds it."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _try_label(value: Any) -> str | None:
    try:
        return json_label(value)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class Subset(Leaf):
    """A set of ``choices`` (NNI's ``input_choice``: which of several inputs feed a layer): exactly
    ``size`` of them, or any number (0..all) when ``size`` is None. The config holds the chosen ones as
    a list in the order of ``choices``; their flat (Optuna) view is a categorical over the JSON text
    of every combination when there are at most :data:`FLAT_LIMIT`, else none (random search,
    evolution and local moves still search it)."""

    choices: tuple[Scalar, ...]
    size: int | None = None
    when: Expr | None = None

    def _order(self, value: Any) -> list[Any]:
        return sorted(value, key=lambda v: next((i for i, c in enumerate(self.choices) if c == v), len(self.choices)))

    def sample(self, rng: np.random.Generator) -> list[Any]:
        n = len(self.choices)
        if self.size is None:
            picked = [i for i in range(n) if rng.random() < 0.5]
        else:
            picked = sorted(int(i) for i in rng.choice(n, size=self.size, replace=False))
        return [self.choices[i] for i in picked]

    def neighbours(self, value: Any) -> list[list[Any]]:
        chosen = [c for c in self.choices if c in value]
        others = [c for c in self.choices if c not in value]
        if self.size is None:  # add or drop one
            options = [[*chosen, c] for c in others] + [[x for x in chosen if x != c] for c in chosen]
        else:  # swap one
            options = [[o if x == c else x for x in chosen] for c in chosen for o in others]
        return [self._order(o) for o in options]

    def mutate(self, value: Any, rng: np.random.Generator) -> list[Any]:
        options = self.neighbours(value)
        return options[int(rng.integers(0, len(options)))] if options else list(value)

    def check(self, value: Any, path: Path) -> list[str]:
        where = path_str(path)
        if not isinstance(value, list):
            return [f"{where}: expected a list of some of {list(self.choices)}, got {value!r}"]
        unknown = [v for v in value if v not in self.choices]
        if unknown:
            return [f"{where}: {unknown[0]!r} is not one of {list(self.choices)}"]
        if len(set(map(repr, value))) != len(value):
            return [f"{where}: {value!r} names a choice twice"]
        if self.size is not None and len(value) != self.size:
            return [f"{where}: expected {self.size} of {list(self.choices)}, got {len(value)}: {value!r}"]
        return []

    def canonical(self, value: Any) -> list[Any]:
        return self._order(value)

    def combinations(self) -> int:
        n = len(self.choices)
        return 2 ** n if self.size is None else math.comb(n, self.size)

    def _all(self) -> list[list[Any]]:
        sizes = range(len(self.choices) + 1) if self.size is None else [self.size]
        return [list(c) for k in sizes for c in itertools.combinations(self.choices, k)]

    def distribution(self) -> BaseDistribution | None:
        if self.combinations() > FLAT_LIMIT:
            return None
        return CategoricalDistribution([json_label(c) for c in self._all()])

    def to_flat(self, value: Any) -> Any:
        return _try_label(self._order(value))

    def from_flat(self, raw: Any) -> Any:
        try:
            value = json.loads(raw)
        except (TypeError, ValueError):
            return raw
        return value if isinstance(value, list) else raw

    def describe(self) -> str:
        return f"subset of {list(self.choices)}, " + ("any number" if self.size is None else f"{self.size} of them")


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
    #: the pruner that stops unpromising trials early (a name or ``{name, options}``; None: none)
    pruner: Any = None
