"""What the model-selection rules (:mod:`automl.selection`) read from a model trained on a multi-environment
task, measured on DomainBed's splits (:meth:`automl.tasks.environments.EnvironmentsData.holdout`). A study
under the default rule (``best-value``) records none of them: its trials never touch the test environments.
One that names another rule is a DomainBed-style sweep, where every trial records:

- ``oracle_accuracy``: accuracy on the held-out 20% of the test environments (the test-domain oracle);
- ``ood_accuracy``: accuracy on the other 80% of the test environments (shown beside each rule's pick,
  never used to choose);
- ``variation``: v(h) of the penultimate features on the train-domain validation split, with each
  example's environment (:func:`automl.ood.model_variation`), with ``informative_coordinates`` and
  ``max_informativeness`` (v(h) is NaN when no coordinate reaches ``info_threshold``) and
  ``variation_seconds``, its cost; only when the study's rule reads it (the expansion criterion).
"""
from __future__ import annotations

import time
from typing import Any, Mapping

from torch import nn

from automl.selection import DEFAULT_SELECTION, OOD_ACCURACY, ORACLE_ACCURACY, VARIATION, Expansion, selections
from automl.tasks.environments import EnvironmentsData
from automl.training.classification import classification_scores
from automl.training.features import penultimate_features

#: the metrics the ``train`` estimator reports for environments tasks (what a study checks a rule against)
REPORTED = frozenset({ORACLE_ACCURACY, OOD_ACCURACY, VARIATION})


def selection_metrics(model: nn.Module, fit: EnvironmentsData, held: EnvironmentsData,
                      selection: tuple[str, Mapping[str, Any]]) -> dict[str, float]:
    """The selection metrics of ``model`` (on the CPU or wherever its data is) for the study's ``selection``
    (name, options); ``fit``/``held`` are the task's environments split as the estimator trained on them."""
    out: dict[str, float] = {}
    name, options = selection
    if name == DEFAULT_SELECTION:  # a plain search never touches the test environments
        return out
    if held.test:
        out[ORACLE_ACCURACY] = classification_scores(model, *held.pooled("test")[:2], batch_size=512)[0]
        out[OOD_ACCURACY] = classification_scores(model, *fit.pooled("test")[:2], batch_size=512)[0]
    rule = selections.get(name)(**options)  # the study checked the options; the rule holds their defaults
    if isinstance(rule, Expansion):
        from automl.ood import model_variation

        started = time.perf_counter()
        x, y, env = held.pooled("train")
        z = penultimate_features(model, x)
        measured = model_variation(z.double().cpu().numpy(), y.cpu().numpy(), env.numpy(),
                                   info_threshold=rule.info_threshold)
        out[VARIATION] = measured.value  # NaN when no coordinate is informative
        # why v(h) may be NaN: how many coordinates reach the threshold, and the best one's informativeness
        out["informative_coordinates"] = float(measured.informative.sum())
        out["max_informativeness"] = float(measured.informativeness.max())
        out["variation_seconds"] = time.perf_counter() - started
    return out
