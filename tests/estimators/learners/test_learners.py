"""The built-in few-shot learners pass the learner conformance suite and do what their papers say."""
from __future__ import annotations

import pytest
import torch

from automl.errors import ConfigError
from automl.testing.learners import LEARNER_CHECKS
from automl.training.fewshot import learners, prototypes
from estimators.learners.leadnet import LeadNet
from estimators.learners.protonet import ProtoNet

CASES = {"protonet": {}, "leadnet": {"concepts": 3}}


def test_every_registered_learner_has_a_case():
    assert set(learners.names()) == set(CASES)


@pytest.mark.parametrize("check", LEARNER_CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("name", sorted(CASES))
def test_built_in_learners_pass_the_conformance_suite(name, check):
    check(name, CASES[name])


def test_protonet_logits_are_negative_squared_distances_over_the_temperature():
    support, query = torch.tensor([[0.0, 0.0], [2.0, 0.0], [4.0, 4.0], [6.0, 4.0]]), torch.tensor([[1.0, 1.0]])
    logits = ProtoNet(2, temperature=2.0)(support, torch.tensor([0, 0, 1, 1]), query, 2).logits
    assert torch.allclose(logits, torch.tensor([[-1.0 / 2.0, -(16 + 9) / 2.0]]))
    assert torch.equal(prototypes(support, torch.tensor([0, 0, 1, 1]), 2), torch.tensor([[1.0, 0.0], [5.0, 4.0]]))


def test_leadnet_sums_concept_scores_weighted_by_instance_and_task_affiliation():
    torch.manual_seed(0)
    net = LeadNet(4, concepts=2, dropout=0.0).eval()
    support, y, query = torch.randn(6, 4), torch.arange(3).repeat_interleave(2), torch.randn(5, 4)
    out = net(support, y, query, 3)
    proto = prototypes(support, y, 3)
    pq, _ = net.affiliation(query)
    pp, _ = net.affiliation(proto)
    expected = torch.zeros(5, 3)
    for m in range(2):  # the formula written out, concept by concept
        zq = query * (1 + net.scale[m]) + net.shift[m]
        zp = torch.nn.functional.normalize(proto * (1 + net.scale[m]) + net.shift[m], dim=-1)
        expected += (zq @ zp.t()) * pq[:, m:m + 1] * pp[:, m].unsqueeze(0) * out.task_concepts[:, m].unsqueeze(0)
    assert torch.allclose(out.logits, expected, atol=1e-5)


def test_leadnet_adds_its_concept_term_only_for_a_known_concept():
    net = LeadNet(4, concepts=2)
    support, y, query = torch.randn(3, 4), torch.arange(3), torch.randn(3, 4)
    assert net(support, y, query, 3, support_views=support).terms == {}
    assert set(net(support, y, query, 3, support_views=support, concept=1).terms) == {"concept"}


@pytest.mark.parametrize("options,field", [({"concepts": 0}, "concepts"), ({"temperature": -1}, "temperature"),
                                           ({"dropout": 1.0}, "dropout"), ({"concept_weight": -1}, "concept_weight")])
def test_bad_leadnet_options_name_the_field(options, field):
    with pytest.raises(ConfigError) as info:
        LeadNet(4, **options)
    assert info.value.field == field
