"""A batch of schedules as parallel arrays, so a request's hundred candidates are scored in one
vectorised call and only the few answered become :class:`zoo.schema.Schedule` objects."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from zoo.card import ModelCard, Zoo
from zoo.schema import BATCH_SIZE, Schedule


@dataclass(frozen=True)
class ScheduleGrid:
    """Schedule i fine-tunes ``cards[model[i]]`` at ``lr[i]`` with ``frozen[i]`` stages frozen for ``epochs[i]``."""

    cards: tuple[ModelCard, ...]
    model: np.ndarray  # int index into cards
    lr: np.ndarray
    frozen: np.ndarray
    epochs: np.ndarray
    batch_size: int = BATCH_SIZE

    def __len__(self) -> int:
        return len(self.model)

    def schedule(self, i: int) -> Schedule:
        """Schedule ``i`` as the wire format's record."""
        return Schedule(model_id=self.cards[int(self.model[i])].id, lr=float(self.lr[i]),
                        frozen_stages=int(self.frozen[i]), epochs=int(self.epochs[i]), batch_size=self.batch_size)

    def schedules(self) -> list[Schedule]:
        return [self.schedule(i) for i in range(len(self))]

    @classmethod
    def of(cls, zoo: Zoo, schedules: Sequence[Schedule]) -> ScheduleGrid:
        """The grid of given schedules (their batch size is the first one's; the predictor ignores it)."""
        ids = list(dict.fromkeys(s.model_id for s in schedules))
        index = {m: i for i, m in enumerate(ids)}
        return cls(cards=tuple(zoo.card(m) for m in ids),
                   model=np.array([index[s.model_id] for s in schedules], dtype=np.int64),
                   lr=np.array([s.lr for s in schedules], dtype=np.float64),
                   frozen=np.array([s.frozen_stages for s in schedules], dtype=np.int64),
                   epochs=np.array([s.epochs for s in schedules], dtype=np.int64),
                   batch_size=schedules[0].batch_size if schedules else BATCH_SIZE)
