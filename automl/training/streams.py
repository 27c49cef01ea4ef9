"""Batch streams: endless, seeded sources of training batches whose position can be saved and restored,
so a checkpointed run continues with exactly the batches an uninterrupted run would have drawn.

A stream owns the randomness of *which* data a step sees (shuffling, sampling, a supernet's path);
the model's own randomness (dropout) comes from torch's global RNG, which :func:`automl.training.fit`
checkpoints beside the stream.
"""
from __future__ import annotations

from typing import Any, Callable, Generic, Protocol, TypeVar

import numpy as np
import torch

Batch = Any
B = TypeVar("B")


class BatchStream(Protocol):
    """An endless source of batches."""

    def next(self) -> Batch: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def generator_state(generator: torch.Generator | np.random.Generator) -> Any:
    if isinstance(generator, torch.Generator):
        return generator.get_state()
    return generator.bit_generator.state


def set_generator_state(generator: torch.Generator | np.random.Generator, state: Any) -> None:
    if isinstance(generator, torch.Generator):
        generator.set_state(state)
    else:
        generator.bit_generator.state = state


class EpochStream(Generic[B]):
    """Epochs over ``size`` examples in batches of ``batch_size`` (the last batch of an epoch holds the
    remainder), shuffled at the start of each epoch by ``shuffle``; ``take(indices)`` makes the batch
    (``indices`` a ``LongTensor`` for torch shuffling and for no shuffling, a numpy array for numpy).

    The permutation is drawn when an epoch's first batch is taken, as a hand-written
    ``for epoch: perm = randperm(n); for batch in perm: ...`` loop draws it, so with ``shuffle="global"``
    the stream and the model share torch's global RNG the way such a loop does."""

    def __init__(self, size: int, batch_size: int, take: Callable[[Any], B],
                 shuffle: str | torch.Generator | np.random.Generator | None = "global") -> None:
        if size < 1 or batch_size < 1:
            raise ValueError(f"an epoch stream needs size >= 1 and batch_size >= 1, got {size}, {batch_size}")
        if isinstance(shuffle, str) and shuffle != "global":
            raise ValueError(f"shuffle must be 'global', a torch/numpy generator or None, got {shuffle!r}")
        self.size, self.batch_size, self.take, self.shuffle = size, batch_size, take, shuffle
        self.epoch = 0
        self.position = 0  # index into the permutation of the current epoch
        self._order: Any = None
        self._epoch_state: Any = None  # the shuffling RNG's state just before this epoch's permutation

    @property
    def batches_per_epoch(self) -> int:
        return (self.size + self.batch_size - 1) // self.batch_size

    def _rng_state(self) -> Any:
        if self.shuffle == "global":
            return torch.get_rng_state()
        if self.shuffle is None or isinstance(self.shuffle, str):
            return None
        return generator_state(self.shuffle)

    def _permutation(self) -> Any:
        if self.shuffle is None:
            return torch.arange(self.size)
        if self.shuffle == "global":
            return torch.randperm(self.size)
        if isinstance(self.shuffle, torch.Generator):
            return torch.randperm(self.size, generator=self.shuffle)
        assert isinstance(self.shuffle, np.random.Generator)
        return self.shuffle.permutation(self.size)

    def next(self) -> B:
        if self._order is None:
            self._epoch_state = self._rng_state()
            self._order = self._permutation()
        batch = self.take(self._order[self.position:self.position + self.batch_size])
        self.position += self.batch_size
        if self.position >= self.size:
            self.epoch, self.position, self._order = self.epoch + 1, 0, None
        return batch

    def state_dict(self) -> dict[str, Any]:
        mid_epoch = self._order is not None
        return {"epoch": self.epoch, "position": self.position,
                "epoch_rng": self._epoch_state if mid_epoch else None,
                "rng": None if self.shuffle == "global" else self._rng_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state``. With ``shuffle="global"`` load torch's global RNG state first (the
        fit loop does): the current epoch's permutation is redrawn from its saved starting state and the
        global RNG is then put back where it was."""
        self.epoch, self.position, self._order = int(state["epoch"]), int(state["position"]), None
        if state["rng"] is not None and not isinstance(self.shuffle, (str, type(None))):
            set_generator_state(self.shuffle, state["rng"])
        if state["epoch_rng"] is None:
            return
        if self.shuffle == "global":
            current = torch.get_rng_state()
            torch.set_rng_state(state["epoch_rng"])
            self._order = self._permutation()
            torch.set_rng_state(current)
        elif self.shuffle is not None:
            after = self._rng_state()
            set_generator_state(self.shuffle, state["epoch_rng"])  # type: ignore[arg-type]
            self._order = self._permutation()
            set_generator_state(self.shuffle, after)  # type: ignore[arg-type]
        else:
            self._order = self._permutation()
        self._epoch_state = state["epoch_rng"]


class DrawStream(Generic[B]):
    """Each batch drawn independently by ``draw()`` from the ``generators`` it uses (torch or numpy);
    the stream's state is theirs."""

    def __init__(self, draw: Callable[[], B], *generators: torch.Generator | np.random.Generator) -> None:
        self.draw, self.generators = draw, generators

    def next(self) -> B:
        return self.draw()

    def state_dict(self) -> dict[str, Any]:
        return {"generators": [generator_state(g) for g in self.generators]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for generator, saved in zip(self.generators, state["generators"]):
            set_generator_state(generator, saved)


class WithDraws(Generic[B]):
    """Batches of ``stream`` paired with a draw of ``draw(rng)`` each (e.g. the sub-network a supernet
    trains on that step): yields ``(batch, drawn)``."""

    def __init__(self, stream: BatchStream, draw: Callable[[np.random.Generator], B], rng: np.random.Generator) -> None:
        self.stream, self.draw, self.rng = stream, draw, rng

    def next(self) -> tuple[Batch, B]:
        batch = self.stream.next()
        return batch, self.draw(self.rng)

    def state_dict(self) -> dict[str, Any]:
        return {"stream": self.stream.state_dict(), "rng": generator_state(self.rng)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stream.load_state_dict(state["stream"])
        set_generator_state(self.rng, state["rng"])


def tensor_batches(x: torch.Tensor, y: torch.Tensor, batch_size: int,
                   shuffle: str | torch.Generator | np.random.Generator | None = "global"
                   ) -> EpochStream[tuple[torch.Tensor, torch.Tensor]]:
    """Epochs of ``(x[index], y[index])`` batches: the usual supervised stream."""
    return EpochStream(len(x), batch_size, lambda index: (x[index], y[index]), shuffle)


class EnvironmentBatches:
    """Batches ``(x, y, env)`` to which every environment contributes the same share, as DomainBed's
    training loop draws them (one minibatch per training environment, concatenated): ``batch_size // E``
    examples of each of the ``E`` environments (at least one), ``env`` holding each example's environment
    index (``0..E-1``, the values of ``env`` given here).

    Each environment is read in epochs of its own shuffled order (without replacement, unlike DomainBed's
    sampler with replacement), an epoch running on into the next one so that every batch holds exactly
    ``share`` examples of each. ``shuffle`` is ``"global"`` (torch's global RNG, which the fit loop
    checkpoints) or a ``torch.Generator``; the state holds every environment's order and position, so a
    checkpointed run continues with the batches an uninterrupted one draws. An epoch of the stream
    (:attr:`batches_per_epoch`) is as many batches as hold the pooled examples once."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, env: torch.Tensor, batch_size: int,
                 shuffle: str | torch.Generator = "global") -> None:
        if not len(x) == len(y) == len(env):
            raise ValueError(f"x, y and env need the same length, got {len(x)}, {len(y)}, {len(env)}")
        if batch_size < 1 or len(y) < 1:
            raise ValueError(f"an environment stream needs examples and batch_size >= 1, got {len(y)}, {batch_size}")
        if isinstance(shuffle, str) and shuffle != "global":
            raise ValueError(f"shuffle must be 'global' or a torch.Generator, got {shuffle!r}")
        self.x, self.y, self.env, self.shuffle = x, y, env, shuffle
        self.environments = [int(e) for e in torch.unique(env.cpu())]
        self.members = [torch.nonzero(env.cpu() == e).flatten() for e in self.environments]
        self.share = max(1, batch_size // len(self.environments))
        self.orders: list[torch.Tensor | None] = [None] * len(self.members)
        self.positions = [0] * len(self.members)

    @property
    def batches_per_epoch(self) -> int:
        per_batch = self.share * len(self.members)
        return (len(self.y) + per_batch - 1) // per_batch

    def _permutation(self, n: int) -> torch.Tensor:
        if isinstance(self.shuffle, torch.Generator):
            return torch.randperm(n, generator=self.shuffle)
        return torch.randperm(n)

    def _take(self, k: int) -> torch.Tensor:
        """The next ``share`` indices (into the data) of environment ``k``."""
        members, parts, needed = self.members[k], [], self.share
        while needed:
            order = self.orders[k]
            if order is None:
                order = self.orders[k] = self._permutation(len(members))
            part = order[self.positions[k]:self.positions[k] + needed]
            parts.append(members[part])
            needed -= len(part)
            self.positions[k] += len(part)
            if self.positions[k] >= len(members):
                self.orders[k], self.positions[k] = None, 0
        return torch.cat(parts)

    def next(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        index = torch.cat([self._take(k) for k in range(len(self.members))]).to(self.y.device)
        return self.x[index], self.y[index], self.env[index]

    def state_dict(self) -> dict[str, Any]:
        return {"orders": [None if o is None else o.clone() for o in self.orders], "positions": list(self.positions),
                "rng": self.shuffle.get_state() if isinstance(self.shuffle, torch.Generator) else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.orders = [None if o is None else o.clone() for o in state["orders"]]
        self.positions = [int(p) for p in state["positions"]]
        if state["rng"] is not None and isinstance(self.shuffle, torch.Generator):
            self.shuffle.set_state(state["rng"])


def environment_batches(x: torch.Tensor, y: torch.Tensor, env: torch.Tensor, batch_size: int,
                        shuffle: str | torch.Generator = "global") -> EnvironmentBatches:
    """Balanced ``(x, y, env)`` batches over environments: the environments family's stream
    (:class:`EnvironmentBatches`)."""
    return EnvironmentBatches(x, y, env, batch_size, shuffle)
