"""Out-of-distribution measures on features: OoD-Bench shift (PAPERS.md §10) and expansion-function model
selection with DomainBed's three rules (PAPERS.md §9). Pure numpy/scipy/scikit-learn; no torch."""
from __future__ import annotations

from automl.ood.expansion import (
    Variation,
    model_variation,
    select_best_value,
    select_expansion,
    select_oracle,
)
from automl.ood.shift import ShiftMeasures, balance_labels, shift

__all__ = [
    "ShiftMeasures",
    "Variation",
    "balance_labels",
    "model_variation",
    "select_best_value",
    "select_expansion",
    "select_oracle",
    "shift",
]
