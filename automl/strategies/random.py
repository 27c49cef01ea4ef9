"""Random search: each trial an independent uniform sample of the space (the baseline every
strategy must beat)."""
from __future__ import annotations

from automl.strategies.base import Observation, Proposal, Strategy, strategies


@strategies.register("random")
class RandomSearch(Strategy):
    """Random search: independent uniform samples of the space, never repeating a candidate."""

    def ask(self, number: int) -> Proposal:
        return Proposal(self.novel(self.space.sample, number))

    def tell(self, observation: Observation) -> None:
        """Random search learns nothing."""
