"""Few-shot learners (the contract: :mod:`automl.training.fewshot`)."""
