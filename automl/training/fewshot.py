"""The few-shot learner contract: a head over an encoder's embeddings that classifies an episode's queries
from its labelled support (ProtoNet's prototypes, LeadNet's concept-weighted prototypes).

A learner is an ``nn.Module`` trained with its encoder, episode by episode (:func:`episode_step` is the
step :func:`automl.training.fit` runs). Register with ``@learners.register(name)`` (or the entry-point
group ``automl.learners``); its options are the keyword arguments of ``__init__`` after ``dim`` (the
embedding size), validated there.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from automl.components import reject_options
from automl.registry import Registry
from automl.training.regime import StepOutput

if TYPE_CHECKING:  # episodes come from the tasks' layer, beside this one
    from automl.tasks.episodic import Episode


@dataclass
class LearnerOutput:
    """Query logits ``(queries, n_way)``, extra loss ``terms`` the learner adds, and for a learner that
    picks concepts per task, its task-concept weights ``(n_way, concepts)`` (LeadNet's t_m(c))."""

    logits: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)
    task_concepts: torch.Tensor | None = None


class Learner(nn.Module):
    """Base class of few-shot learners."""

    #: whether a 1-shot episode should also pass augmented views of its support (LeadNet's triplets)
    wants_support_views: ClassVar[bool] = False

    def __init__(self, dim: int, **options: Any) -> None:
        super().__init__()
        reject_options("learner", type(self), options)
        self.dim = dim

    def forward(self, support: torch.Tensor, support_y: torch.Tensor, query: torch.Tensor, n_way: int, *,
                support_views: torch.Tensor | None = None, concept: int | None = None) -> LearnerOutput:
        """Logits of ``query`` embeddings ``(q, dim)`` over the ``n_way`` classes of ``support`` ``(s, dim)``
        labelled ``support_y`` in ``0..n_way-1``; ``concept``: the concept the labels follow, when known
        (training episodes of a multi-concept task), for learners with a concept term."""
        raise NotImplementedError


#: few-shot learners by name (entry-point group ``automl.learners``)
learners: Registry[type[Learner]] = Registry("learners", "learner")


def prototypes(z: torch.Tensor, y: torch.Tensor, n_way: int) -> torch.Tensor:
    """The mean embedding of each class ``0..n_way-1`` (``(n_way, dim)``)."""
    out = torch.zeros(n_way, z.shape[-1], dtype=z.dtype, device=z.device).index_add_(0, y, z)
    return out / torch.bincount(y, minlength=n_way).clamp_min(1).unsqueeze(1).to(z.dtype)


class EpisodicModel(nn.Module):
    """An encoder and a learner, trained and evaluated together on episodes; ``supervise_concepts``: training
    episodes pass their labelling concept to the learner (a multi-concept task's concept term)."""

    def __init__(self, encoder: nn.Module, learner: Learner, supervise_concepts: bool = False) -> None:
        super().__init__()
        self.encoder, self.learner, self.supervise_concepts = encoder, learner, supervise_concepts

    def forward(self, episode: Episode, *, concept: int | None = None) -> LearnerOutput:
        device = next(self.parameters()).device
        support_x, query_x = episode.support_x.to(device), episode.query_x.to(device)
        n_way = len(episode.classes)
        z = self.encoder(torch.cat([support_x, query_x]))
        support, query = z[: len(support_x)], z[len(support_x):]
        views = None
        if self.learner.wants_support_views and len(support_x) == n_way:  # 1-shot: add augmented views
            views = self.encoder(augment(support_x))
        out: LearnerOutput = self.learner(support, episode.support_y.to(device), query, n_way,
                                          support_views=views, concept=concept)
        return out


def augment(x: torch.Tensor) -> torch.Tensor:
    """A view of each image shifted by up to one pixel (torch's global RNG): the augmented support LeadNet
    mines 1-shot triplets from."""
    if x.dim() < 3:
        return x + 0.05 * torch.randn_like(x)
    shifts = torch.randint(-1, 2, (2,)).tolist()
    return torch.roll(x, shifts=(int(shifts[0]), int(shifts[1])), dims=(-2, -1))


def episode_step(model: nn.Module, episode: Episode) -> StepOutput:
    """One training step's loss on ``episode``: cross-entropy of its queries plus the learner's terms."""
    assert isinstance(model, EpisodicModel)
    out = model(episode, concept=episode.concept if model.supervise_concepts else None)
    loss = nn.functional.cross_entropy(out.logits, episode.query_y.to(out.logits.device))
    return StepOutput(terms={"loss": loss, **out.terms}, outputs=out)


@torch.no_grad()
def episode_accuracy(model: EpisodicModel, episode: Episode) -> tuple[float, LearnerOutput]:
    """The share of ``episode``'s queries ``model`` labels right (model in eval mode, by the caller)."""
    out = model(episode)
    predicted = out.logits.argmax(dim=1).cpu()
    return float((predicted == episode.query_y).float().mean()), out
