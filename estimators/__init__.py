"""Estimators: ``evaluate(candidate, budget, ctx) -> Result`` (the contract is in :mod:`automl.estimator`)."""
