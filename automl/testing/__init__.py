"""Reusable conformance checks for plugin authors (like Optuna's sampler test suite)."""
