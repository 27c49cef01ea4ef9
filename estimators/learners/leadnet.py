"""Learner ``leadnet`` (Zhou et al., LeadNet, 2106.08112): prototypes decomposed into ``concepts`` spaces,
each query-class score weighted by how much the query and the class belong to a concept (instance
affiliation) and by which concept the task's labels follow (task-context affiliation, from semi-hard
triplets of the support set).

Per the authors' ``model/models/LeadNet.py``: concept maps z^(m) = z * (1 + a_m) + b_m with dropout 0.5;
s_m(q, c) = <z_q^(m), normalize(p_c^(m))>; instance affiliation pi(z) = softmax(W(h(z) + z)) with h a
2-layer MLP (d -> 2d -> d) and w_m(q, c) = pi_m(q) * pi_m(p_c); task affiliation t(c) = softmax(W'(g(sum of
f(triplet)))) over triplets mined by pytorch-metric-learning's semi-hard ``TripletMarginMiner`` (margin 0.8)
for class c against the rest, 1-shot supports extended by augmented views; logit(q, c) = sum_m s_m w_m t_m.
Where we differ: the logit is divided by ``temperature`` (the authors parse one but do not apply it; the
default 1.0 matches them), and the optional concept cross-entropy (weight ``concept_weight``, 1e-3) is applied
to the instance-affiliation scores of the prototypes and queries with the episode's labelling concept as
target, when the estimator supervises concepts (a multi-concept task with as many concepts as ``concepts``).
"""
from __future__ import annotations

import math

import torch
from pytorch_metric_learning import miners
from torch import nn
from torch.nn import functional as F

from automl.errors import ConfigError
from automl.training.fewshot import Learner, LearnerOutput, learners, prototypes
from estimators.learners.protonet import positive


def _mlp(inp: int, hidden: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inp, hidden), nn.ReLU(), nn.Linear(hidden, out))


@learners.register("leadnet")
class LeadNet(Learner):
    """Prototypes in M concept spaces, weighted per query and per task.

    Options: ``concepts`` (M, 4), ``temperature`` (1.0), ``margin`` (semi-hard triplet margin, 0.8),
    ``dropout`` (on the concept maps, 0.5), ``concept_weight`` (the concept cross-entropy's weight, 1e-3)."""

    wants_support_views = True

    def __init__(self, dim: int, concepts: int = 4, temperature: float = 1.0, margin: float = 0.8,
                 dropout: float = 0.5, concept_weight: float = 1e-3) -> None:
        super().__init__(dim)
        if isinstance(concepts, bool) or not isinstance(concepts, int) or concepts < 1:
            raise ConfigError(f"concepts must be an integer >= 1, got {concepts!r}", field="concepts")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise ConfigError(f"dropout must be a number in [0, 1), got {dropout!r}", field="dropout")
        if isinstance(concept_weight, bool) or not isinstance(concept_weight, (int, float)) or concept_weight < 0:
            raise ConfigError(f"concept_weight must be a number >= 0, got {concept_weight!r}", field="concept_weight")
        self.concepts, self.temperature = concepts, positive(temperature, "temperature")
        self.margin, self.concept_weight = positive(margin, "margin"), float(concept_weight)
        bound = 1.0 / math.sqrt(dim)  # nn.Linear's weight initialisation, as the authors' maps are Linear weights
        self.scale = nn.Parameter(torch.empty(concepts, dim).uniform_(-bound, bound))
        self.shift = nn.Parameter(torch.empty(concepts, dim).uniform_(-bound, bound))
        self.drop = nn.Dropout(float(dropout))
        self.instance_proj, self.instance_cls = _mlp(dim, 2 * dim, dim), nn.Linear(dim, concepts)
        self.triplet_proj, self.task_proj = _mlp(3 * dim, 2 * dim, dim), _mlp(dim, 2 * dim, dim)
        self.task_cls = nn.Linear(dim, concepts)
        self.miner = miners.TripletMarginMiner(margin=self.margin, type_of_triplets="semihard")

    def decompose(self, z: torch.Tensor) -> torch.Tensor:
        """``(M, n, dim)``: every embedding in every concept space."""
        out: torch.Tensor = self.drop(z.unsqueeze(0) * (1.0 + self.scale.unsqueeze(1)) + self.shift.unsqueeze(1))
        return out

    def affiliation(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Instance-concept affiliation probabilities and scores, ``(n, M)`` each."""
        score = self.instance_cls(self.instance_proj(z) + z)
        return F.softmax(score, dim=-1), score

    def task_affiliation(self, support: torch.Tensor, labels: torch.Tensor, n_way: int) -> torch.Tensor:
        """``(n_way, M)``: per class, which concept its support separates it from the rest by."""
        rows = []
        for c in range(n_way):
            binary = (labels == c).long()
            with torch.no_grad():
                anchor, positive_, negative = self.miner(support.detach(), binary)
            triplets = torch.cat([support[anchor], support[positive_], support[negative]], dim=1)
            rows.append(self.triplet_proj(triplets).sum(dim=0))  # no triplet mined: a zero summary
        return F.softmax(self.task_cls(self.task_proj(torch.stack(rows))), dim=-1)

    def forward(self, support: torch.Tensor, support_y: torch.Tensor, query: torch.Tensor, n_way: int, *,
                support_views: torch.Tensor | None = None, concept: int | None = None) -> LearnerOutput:
        centres = prototypes(support, support_y, n_way)
        proto_c = F.normalize(self.decompose(centres), p=2, dim=-1)  # (M, n_way, d)
        query_c = self.decompose(query)  # (M, q, d)
        scores = torch.bmm(query_c, proto_c.transpose(1, 2))  # (M, q, n_way)
        proto_p, proto_s = self.affiliation(centres)
        query_p, query_s = self.affiliation(query)
        weights = (query_p.unsqueeze(1) * proto_p.unsqueeze(0)).permute(2, 0, 1)  # (M, q, n_way)
        mined, mined_y = support, support_y
        if support_views is not None:
            mined, mined_y = torch.cat([support, support_views]), torch.cat([support_y, support_y])
        task = self.task_affiliation(mined, mined_y, n_way)  # (n_way, M)
        logits = (scores * weights * task.t().unsqueeze(1)).sum(dim=0) / self.temperature
        terms: dict[str, torch.Tensor] = {}
        if concept is not None and self.concept_weight > 0 and 0 <= concept < self.concepts:
            both = torch.cat([proto_s, query_s])
            target = torch.full((len(both),), concept, dtype=torch.long, device=both.device)
            terms["concept"] = self.concept_weight * F.cross_entropy(both, target)
        return LearnerOutput(logits=logits, terms=terms, task_concepts=task.detach())
