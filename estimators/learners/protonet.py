"""Learner ``protonet`` (Snell et al., 2017): each class's prototype is the mean of its support
embeddings; a query's logit for a class is minus its squared Euclidean distance to the prototype, divided by
``temperature`` (as the LeadNet authors' ProtoNet baseline computes it)."""
from __future__ import annotations

import torch

from automl.errors import ConfigError
from automl.training.fewshot import Learner, LearnerOutput, learners, prototypes


@learners.register("protonet")
class ProtoNet(Learner):
    """Class means of the support, scored by negative squared distance.

    Options: ``temperature`` (1.0)."""

    def __init__(self, dim: int, temperature: float = 1.0) -> None:
        super().__init__(dim)
        self.temperature = positive(temperature, "temperature")

    def forward(self, support: torch.Tensor, support_y: torch.Tensor, query: torch.Tensor, n_way: int, *,
                support_views: torch.Tensor | None = None, concept: int | None = None) -> LearnerOutput:
        centres = prototypes(support, support_y, n_way)
        return LearnerOutput(logits=-torch.cdist(query, centres).pow(2) / self.temperature)


def positive(value: object, name: str) -> float:
    """``value`` as a float > 0, else a ConfigError naming the option."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"{name} must be a number > 0, got {value!r}", field=name)
    return float(value)
