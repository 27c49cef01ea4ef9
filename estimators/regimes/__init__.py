"""Training regimes that add loss terms to a detector's own loss (e.g. G-DetKD distillation, :mod:`.gdetkd`)."""
