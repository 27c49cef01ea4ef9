"""NASOA model zoo (PAPERS.md §2): a zoo of training-efficient networks pre-trained on a source task,
an online predictor of fine-tuning accuracy and time learned from every task that reports back, a
one-shot schedule generator, and an HTTP service around them.

Modules, one job each: ``schema`` (the typed records the parts exchange), ``card`` (model cards and
the zoo directory), ``build`` (the offline search + pre-training), ``features`` (task meta-features,
linear probes), ``finetune`` (running a schedule), ``predictor`` (the adaptive predictor),
``schedule`` (the one-shot schedule generator), ``checks`` (whether an outcome makes physical sense),
``store`` (experience in SQLAlchemy), ``service`` (the FastAPI app), ``client`` (its HTTP client),
``cli`` (the ``automl zoo`` / ``automl serve`` commands) and ``testing`` (a synthetic zoo for tests and
benchmarks). Nothing here is imported by :mod:`automl` except its CLI.
"""
