"""Estimator ``tabular``: look a candidate of the ``nb201`` cell space up in the tabulated benchmark instead of
training it (:mod:`search_spaces.nb201_table`, built by ``benchmarks/build_nas_table.py``).

It reports what the ``train`` estimator would have measured for the cell at the trial's budget (epochs):
``accuracy`` and ``loss`` (validation), ``params``, ``flops``, ``epochs`` (the tabulated budget used) and
``cost_seconds`` (the tabulated seconds of training to that budget, which the simulated executor charges);
``test_accuracy`` too when the trial may score the test split (a pipeline's ``train`` step) or with
``report_test``. A budget between two tabulated ones uses the largest at or below it (never more training
than the budget paid for); no budget means the largest. Nothing is trained, so a trial takes microseconds.
A trial that continues an earlier state (a candidate promoted with a checkpoint store, a PBT trial continuing its
parent: :mod:`estimators.simulated_progress`) costs only the seconds from that state's budget on; its numbers
are its own cell's at the new budget (a PBT member that changed cell is simulated as if trained as that cell).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Mapping

from automl.errors import ConfigError
from automl.estimator import Estimator, EvalContext, Result, estimators
from automl.space.model import Candidate
from estimators.simulated_progress import continued_from
from search_spaces.nb201 import cell_ops
from search_spaces.nb201_table import NasTable, load_nas_table


@estimators.register("tabular")
class TabularEstimator(Estimator):
    """Options: ``table`` (the table file, default ``benchmarks/data/nb201-digits.npz``) and ``report_test``
    (also report ``test_accuracy`` in a search, for regret analyses; default false)."""

    families: ClassVar[frozenset[str]] = frozenset({"supervised"})
    can_checkpoint: ClassVar[bool] = True  # simulated: a continued trial pays only the rest (see the module)

    def __init__(self, table: str | None = None, report_test: bool = False) -> None:
        super().__init__()
        if table is not None and not isinstance(table, (str, Path)):
            raise ConfigError(f"table must be the path of a table file, got {table!r}", field="table")
        if not isinstance(report_test, bool):
            raise ConfigError(f"report_test must be true or false, got {report_test!r}", field="report_test")
        self.table: NasTable = load_nas_table(table)  # a missing table fails at study creation
        self.report_test = report_test

    def lookup(self, config: Mapping[str, Any], budget: float | None) -> dict[str, float]:
        """The table's numbers for the cell of ``config`` (a candidate's config or its ``model`` part) at ``budget``."""
        try:
            ops = cell_ops(config.get("model", config))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        table = self.table
        row = table.row(ops)
        column = table.budget_column(float(budget) if budget is not None else float(table.budgets[-1]))
        return {
            "accuracy": float(table.val_accuracy[row, column]),
            "loss": float(table.val_loss[row, column]),
            "test_accuracy": float(table.test_accuracy[row, column]),
            "params": float(table.params[row]),
            "flops": float(table.flops[row]),
            "epochs": float(table.budgets[column]),
            "cost_seconds": float(table.train_seconds[row, column]),
        }

    def evaluate(self, candidate: Candidate, budget: float | None, ctx: EvalContext) -> Result:
        found = self.lookup(candidate.config, budget)
        start = continued_from(ctx, _state_key(candidate, ctx), found["epochs"])
        if start is not None:
            found["cost_seconds"] -= self.lookup(candidate.config, start)["cost_seconds"]
        costs = {"params": found.pop("params"), "flops": found.pop("flops")}
        ctx.check_constraints(costs)
        if not (self.report_test or ctx.scores_test):
            del found["test_accuracy"]
        return Result(metrics=found, cost=costs)


def _state_key(candidate: Candidate, ctx: EvalContext) -> str:
    """The name the ``train`` estimator keeps this candidate's state under (replicas train independently)."""
    replica = ctx.info.get("replica")
    return candidate.key if replica is None else f"{candidate.key}.r{replica}"
