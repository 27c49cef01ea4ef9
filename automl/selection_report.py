"""How the model-selection rules compare on a study: each rule's pick with its test-environment accuracy
(``ood_accuracy``: shown, never used to choose), and a scatter of −v(h) against that accuracy
(``selection.png``), the check PAPERS.md §9 asks for."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from rich.table import Table

from automl.errors import ConfigError
from automl.ledger import Trial, comparable
from automl.selection import OOD_ACCURACY, ORACLE_ACCURACY, VARIATION, make_selection, selections
from automl.space import Objective
from automl.strategies.base import TrialState


def _candidates(trials: Sequence[Trial]) -> list[Trial]:
    return comparable([t for t in trials if t.state is TrialState.COMPLETE and t.values])


def rule_picks(trials: Sequence[Trial], objectives: Sequence[Objective]) -> dict[str, Trial]:
    """Each registered rule's pick among the comparable completed trials, for the rules that can choose
    among them (a rule whose metrics no trial reports, or that cannot use these objectives, is left out)."""
    done = _candidates(trials)
    picks: dict[str, Trial] = {}
    for name in selections.names():
        try:
            rule = make_selection(name, {}, objectives)
        except ConfigError:
            continue
        chosen = rule.pick(done, objectives) if done else None
        if chosen is not None:
            picks[name] = chosen
    return picks


def _cell(trial: Trial, metric: str) -> str:
    value = trial.metrics.get(metric)
    return f"{value:.4f}" if isinstance(value, (int, float)) else "-"


def selection_table(trials: Sequence[Trial], objectives: Sequence[Objective], used: str) -> Table | None:
    """The picks of every rule side by side, the study's own (``used``) marked; None unless the trials report
    the test environments' accuracy (a multi-environment study)."""
    picks = rule_picks(trials, objectives)
    if not any(OOD_ACCURACY in t.metrics for t in picks.values()):
        return None
    first = objectives[0].name
    rho = spearman_variation(trials)
    table = Table(title="Model selection: each rule's pick (test-environment accuracy shown, never used to choose)"
                        + (f"; Spearman(−v(h), test accuracy) = {rho:.3f}" if rho is not None else ""),
                  caption=f"* this study's rule ({used}): study.best, best.json and the exported model follow it")
    for column in ("rule", "trial", first, "v(h)", "oracle acc", "test-env acc"):
        table.add_column(column, justify="left" if column == "rule" else "right")
    for name, trial in picks.items():
        table.add_row(name + (" *" if name == used else ""), str(trial.number),
                      _cell(trial, first) if first in trial.metrics else f"{trial.values[first]:.4f}",  # type: ignore[index]
                      _cell(trial, VARIATION), _cell(trial, ORACLE_ACCURACY), _cell(trial, OOD_ACCURACY))
    return table


def _with_variation(trials: Sequence[Trial]) -> list[Trial]:
    return [t for t in _candidates(trials) if isinstance(t.metrics.get(VARIATION), (int, float))
            and t.metrics[VARIATION] == t.metrics[VARIATION] and isinstance(t.metrics.get(OOD_ACCURACY), (int, float))]


def spearman_variation(trials: Sequence[Trial]) -> float | None:
    """Spearman's rank correlation of −v(h) with the test-environment accuracy over the trials reporting both
    (None with fewer than 3)."""
    from scipy.stats import spearmanr

    usable = _with_variation(trials)
    if len(usable) < 3:
        return None
    rho = spearmanr([-float(t.metrics[VARIATION]) for t in usable],
                    [float(t.metrics[OOD_ACCURACY]) for t in usable]).statistic
    return float(rho) if rho == rho else None


def plot_selection(trials: Sequence[Trial], objectives: Sequence[Objective], out_dir: Path) -> Path | None:
    """Write selection.png: −v(h) against test-environment accuracy, each rule's pick marked; None when no
    trial reports v(h)."""
    usable = _with_variation(trials)
    if not usable:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.scatter([-float(t.metrics[VARIATION]) for t in usable], [float(t.metrics[OOD_ACCURACY]) for t in usable],
               s=16, alpha=0.5, label="trials")
    for i, (name, trial) in enumerate(rule_picks(trials, objectives).items()):
        if trial in usable:
            ax.scatter([-float(trial.metrics[VARIATION])], [float(trial.metrics[OOD_ACCURACY])], s=90,
                       marker="*^s"[i % 3], color=f"C{i + 1}", label=f"{name} pick (#{trial.number})")
    rho = spearman_variation(trials)
    ax.set_xlabel("−v(h): feature variation across training environments (higher: more invariant)")
    ax.set_ylabel("test-environment accuracy")
    ax.set_title("Expansion criterion" + (f" (Spearman {rho:.2f})" if rho is not None else ""))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out_dir / "selection.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
