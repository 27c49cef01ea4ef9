"""Conformance checks every few-shot learner must pass; a plugin's tests call them with its name and
options::

    @pytest.mark.parametrize("check", LEARNER_CHECKS)
    def test_my_learner(check):
        check("my-learner", {"temperature": 0.5})
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import pytest
import torch

from automl.components import construct
from automl.errors import ConfigError
from automl.training.fewshot import Learner, LearnerOutput, learners

DIM, N_WAY, K_SHOT, QUERIES = 8, 3, 2, 6


def _build(name: str, options: Mapping[str, Any]) -> Learner:
    learner = construct(learners.get(name), dict(options), kind="learner", name=name, args=(DIM,))
    assert isinstance(learner, Learner), f"learner {name!r} is not a Learner"
    return learner


def _episode(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Support and query embeddings of three well-separated classes (queries labelled ``query_y``)."""
    generator = torch.Generator().manual_seed(seed)
    centres = 3.0 * torch.randn(N_WAY, DIM, generator=generator)
    support_y = torch.arange(N_WAY).repeat_interleave(K_SHOT)
    query_y = torch.arange(N_WAY).repeat_interleave(QUERIES // N_WAY)
    noise = 0.3
    support = centres[support_y] + noise * torch.randn(len(support_y), DIM, generator=generator)
    query = centres[query_y] + noise * torch.randn(len(query_y), DIM, generator=generator)
    return support, support_y, query, query_y


def _run(learner: Learner, support: torch.Tensor, support_y: torch.Tensor, query: torch.Tensor) -> LearnerOutput:
    views = support + 0.01 if learner.wants_support_views else None
    out: LearnerOutput = learner(support, support_y, query, N_WAY, support_views=views)
    return out


def check_logits_shape_and_gradients(name: str, options: Mapping[str, Any]) -> None:
    """Logits are ``(queries, n_way)``, finite, and the loss reaches the embeddings and every parameter."""
    learner = _build(name, options).train()
    support, support_y, query, query_y = _episode()
    support.requires_grad_(True)
    query.requires_grad_(True)
    out = _run(learner, support, support_y, query)
    assert out.logits.shape == (len(query), N_WAY) and torch.isfinite(out.logits).all()
    loss = torch.nn.functional.cross_entropy(out.logits, query_y) + sum(out.terms.values())
    loss.backward()  # type: ignore[no-untyped-call]
    assert support.grad is not None and query.grad is not None and query.grad.abs().sum() > 0
    if out.task_concepts is not None:
        assert out.task_concepts.shape[0] == N_WAY
        assert torch.allclose(out.task_concepts.sum(dim=1), torch.ones(N_WAY), atol=1e-5)


def check_relabelling_permutes_the_logits(name: str, options: Mapping[str, Any]) -> None:
    """In eval mode, renaming the support's classes renames the logits' columns, nothing else."""
    learner = _build(name, options).eval()
    support, support_y, query, _ = _episode()
    perm = torch.tensor([2, 0, 1])
    with torch.no_grad():
        a = _run(learner, support, support_y, query).logits
        b = _run(learner, support, perm[support_y], query).logits
    assert torch.allclose(a, b[:, perm], atol=1e-5), f"learner {name!r} depends on the order of class labels"


def check_separated_classes_are_recognised_after_training(name: str, options: Mapping[str, Any]) -> None:
    """Trained on episodes of well-separated embeddings, the learner labels new such episodes mostly right."""
    torch.manual_seed(0)
    learner = _build(name, options).train()
    optimizer = torch.optim.Adam(learner.parameters(), lr=1e-2) if list(learner.parameters()) else None
    for step in range(40 if optimizer else 0):
        support, support_y, query, query_y = _episode(step + 1)
        out = _run(learner, support, support_y, query)
        loss = torch.nn.functional.cross_entropy(out.logits, query_y) + sum(out.terms.values())
        assert optimizer is not None
        optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
    learner.eval()
    right = 0
    with torch.no_grad():
        for seed in range(100, 120):
            support, support_y, query, query_y = _episode(seed)
            right += int((_run(learner, support, support_y, query).logits.argmax(1) == query_y).sum())
    assert right / (20 * len(query_y)) > 0.8, f"learner {name!r} labels {right} of {20 * len(query_y)} right"


def check_unknown_option_is_a_config_error(name: str, options: Mapping[str, Any]) -> None:
    """An option the learner does not take is one ConfigError naming it."""
    with pytest.raises(ConfigError) as info:
        _build(name, {**options, "no_such_option": 1})
    assert info.value.field == "no_such_option"


LEARNER_CHECKS: tuple[Callable[[str, Mapping[str, Any]], None], ...] = (
    check_logits_shape_and_gradients, check_relabelling_permutes_the_logits,
    check_separated_classes_are_recognised_after_training, check_unknown_option_is_a_config_error)
