"""Search strategies behind the ask/tell contract (:class:`~automl.strategies.base.Strategy`)."""
from automl.strategies.base import Observation, Proposal, Strategy, TrialState

__all__ = ["Observation", "Proposal", "Strategy", "TrialState"]
