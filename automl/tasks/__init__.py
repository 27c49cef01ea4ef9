"""Tasks: data plus the metric a model is scored by, in families (:mod:`automl.tasks.base`)."""
