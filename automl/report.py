"""Leaderboards and plots of a study: the table printed after a search and by ``automl report``."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from rich.table import Table

from automl.ledger import Trial, comparable
from automl.space import Objective, SearchSpace
from automl.space.graph import Graph
from automl.space.nodes import Constant, Group, Node, Repeat
from automl.strategies.base import CONTINUES, TrialState
from automl.strategies.pareto import pareto_front

COST_COLUMNS = ("params", "flops", "latency_ms")


def ranked(trials: Sequence[Trial], objectives: Sequence[Objective]) -> list[Trial]:
    """Completed trials at the highest budget evaluated, best first: Pareto rank, then the first objective."""
    done = comparable([t for t in trials if t.state is TrialState.COMPLETE and t.values])
    if not done:
        return []
    losses = [tuple(o.sign * t.values[o.name] for o in objectives) for t in done]  # type: ignore[index]
    front = set(pareto_front(losses)) if len(objectives) > 1 else set()
    order = sorted(range(len(done)), key=lambda i: (i not in front, losses[i], done[i].number))
    return [done[i] for i in order]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def summarize_config(config: Any, limit: int = 160, space: SearchSpace | None = None) -> str:
    """``config`` as one line of JSON; with its ``space``, constants are left out and graph cells are
    written as formulas, so that e.g. an AutoBERT backbone reads as its layers."""
    shown = _readable(space.root, config) if space is not None else config
    text = json.dumps(shown, separators=(",", ":"), default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _readable(node: Node, value: Any) -> Any:
    if isinstance(node, Graph):
        return node.formula(value)
    if isinstance(node, Group) and isinstance(value, dict):
        children = node.child_map()
        return {k: _readable(children[k], v) if k in children else v for k, v in value.items()
                if not isinstance(children.get(k), Constant)}
    if isinstance(node, Repeat) and isinstance(value, list):
        return [_readable(node.item, item) for item in value]
    return value


def leaderboard(trials: Sequence[Trial], objectives: Sequence[Objective], top: int = 10,
                title: str | None = None, space: SearchSpace | None = None, full_configs: bool = False) -> Table:
    """A rich table of the best ``top`` trials (configs summarised with ``space`` when given; with
    ``full_configs`` written out whole, wrapped over several lines, instead of cut to one)."""
    best = ranked(trials, objectives)[:top]
    table = Table(title=title)
    table.add_column("#", justify="right")
    for o in objectives:
        table.add_column(f"{o.name} ({o.direction})", justify="right")
    extra = [c for c in COST_COLUMNS if c not in {o.name for o in objectives} and any(c in t.metrics for t in best)]
    for c in extra:
        table.add_column(c, justify="right")
    if any(t.budget is not None for t in best):
        table.add_column("budget", justify="right")
    gpus = any(t.info.get("devices") for t in best)  # --gpus-per-trial: the devices each trial ran on
    if gpus:
        table.add_column("gpus")
    table.add_column("config", overflow="fold" if full_configs else "ellipsis")
    for t in best:
        row = [str(t.number), *(_fmt(t.values[o.name]) for o in objectives)]  # type: ignore[index]
        row += [_fmt(t.metrics.get(c, "")) for c in extra]
        if any(x.budget is not None for x in best):
            row.append(_fmt(t.budget))
        if gpus:
            row.append(",".join(map(str, t.info.get("devices", []))))
        row.append(summarize_config(t.config, limit=10_000 if full_configs else 160, space=space))
        table.add_row(*row)
    return table


def leaderboards(trials: Sequence[Trial], objectives: Sequence[Objective], top: int, title: str,
                 space: SearchSpace | None = None) -> list[Table]:
    """The leaderboard, and for a study with phases (one-shot) one table per non-final phase, since
    e.g. inherited-weight scores do not compare with stand-alone ones."""
    tables = [leaderboard(trials, objectives, top=top, title=title, space=space)]
    if any(t.info.get("final") for t in trials):
        phases = sorted({t.info["phase"] for t in trials if "phase" in t.info and not t.info.get("final")})
        for phase in phases:
            members = [t for t in trials if t.info.get("phase") == phase]
            tables.append(leaderboard(members, objectives, top=top, title=f"{title}: phase {phase!r}", space=space))
    return tables


def counts(trials: Sequence[Trial]) -> dict[str, int]:
    out = {s.value: 0 for s in TrialState}
    for t in trials:
        out[t.state.value] += 1
    return out


def plot(trials: Sequence[Trial], objectives: Sequence[Objective], out_dir: Path) -> list[Path]:
    """Write convergence.png (and pareto.png with several objectives); returns the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    done = sorted((t for t in trials if t.state is TrialState.COMPLETE and t.values), key=lambda t: t.number)
    written = []
    fig, axes = plt.subplots(1, len(objectives), figsize=(5.5 * len(objectives), 4), squeeze=False)
    for ax, o in zip(axes[0], objectives):
        xs = [t.number for t in done]
        ys = [t.values[o.name] for t in done]  # type: ignore[index]
        best, running = [], None
        for y in ys:
            running = y if running is None else (max(running, y) if o.direction == "max" else min(running, y))
            best.append(running)
        ax.scatter(xs, ys, s=14, alpha=0.5, label="trial")
        ax.step(xs, best, where="post", color="C3", label="best so far")
        ax.set_xlabel("trial")
        ax.set_ylabel(f"{o.name} ({o.direction})")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Convergence")
    fig.tight_layout()
    path = out_dir / "convergence.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)
    if len(objectives) >= 2 and done:
        a, b = objectives[0], objectives[1]
        losses = [tuple(o.sign * t.values[o.name] for o in objectives) for t in done]  # type: ignore[index]
        front = sorted((done[i] for i in pareto_front(losses)), key=lambda t: t.values[a.name])  # type: ignore[index]
        fig, ax = plt.subplots(figsize=(6, 4.5))
        ax.scatter([t.values[a.name] for t in done], [t.values[b.name] for t in done], s=14, alpha=0.4,  # type: ignore[index]
                   label="trials")
        ax.plot([t.values[a.name] for t in front], [t.values[b.name] for t in front], "o-", color="C3",  # type: ignore[index]
                label="Pareto front")
        ax.set_xlabel(f"{a.name} ({a.direction})")
        ax.set_ylabel(f"{b.name} ({b.direction})")
        if b.name in COST_COLUMNS:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
        ax.set_title("Pareto front")
        fig.tight_layout()
        path = out_dir / "pareto.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    priority_plot = plot_op_priorities(trials, out_dir)
    if priority_plot is not None:
        written.append(priority_plot)
    schedule_plot = plot_pbt(trials, objectives, out_dir)
    if schedule_plot is not None:
        written.append(schedule_plot)
    return written


def _with_priorities(trials: Sequence[Trial]) -> list[Trial]:
    """Trials proposed with per-op priorities (op-evolution), in order."""
    return sorted((t for t in trials if isinstance(t.info.get("op_priority"), dict)), key=lambda t: t.number)


def priority_table(trials: Sequence[Trial]) -> Table | None:
    """The per-op priorities the latest trial was drawn with (op-evolution), most probable first;
    None when the study's trials carry none."""
    carrying = _with_priorities(trials)
    if not carrying:
        return None
    last = carrying[-1]
    entropy = last.info.get("op_entropy")
    title = f"Operation priorities at trial {last.number}" + (
        f" (entropy {entropy:.3f} nats)" if entropy is not None else "")
    table = Table(title=title)
    for name in ("op", "models (n)", "mean reward", "UCB", "p"):
        table.add_column(name, justify="left" if name == "op" else "right")
    rows = sorted(last.info["op_priority"].items(), key=lambda kv: (-kv[1]["p"], kv[0]))
    for op, s in rows:
        table.add_row(op, str(s["n"]), "-" if s["mean"] is None else f"{s['mean']:.3f}",
                      "unseen" if s["ucb"] is None else f"{s['ucb']:.3f}", f"{s['p']:.3f}")
    return table


def concept_table(trials: Sequence[Trial], objectives: Sequence[Objective]) -> Table | None:
    """For a few-shot study whose learner picks concepts per task (LeadNet): the best trial's counts of which
    concept space (argmax_m t_m(c)) each labelling concept selected, on the validation episodes, with their
    mutual information; None when no trial reports them."""
    best = [t for t in ranked(trials, objectives) if any(k.startswith("concepts/") for k in t.metrics)]
    if not best:
        return None
    trial = best[0]
    cells = {tuple(k.split("/")[1:]): v for k, v in trial.metrics.items() if k.startswith("concepts/")}
    concepts = list(dict.fromkeys(c for c, _ in cells))
    spaces = sorted({m for _, m in cells}, key=lambda m: int(m[1:]))
    mi = trial.metrics.get("concept_mi")
    table = Table(title=f"Concept selected per labelling attribute, trial {trial.number}"
                        + (f" (mutual information {mi:.3f} nats)" if isinstance(mi, (int, float)) else ""))
    table.add_column("labels follow")
    for m in spaces:
        table.add_column(m, justify="right")
    for c in concepts:
        table.add_row(c, *(f"{cells.get((c, m), 0):.0f}" for m in spaces))
    return table


def plot_op_priorities(trials: Sequence[Trial], out_dir: Path) -> Path | None:
    """Write op_priority.png: each op's draw probability p(o) and the draws' entropy per trial
    (op-evolution); None when the study's trials carry no priorities."""
    carrying = _with_priorities(trials)
    if not carrying:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    xs = [t.number for t in carrying]
    ops = sorted({op for t in carrying for op in t.info["op_priority"]})
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6.5), sharex=True, height_ratios=(2, 1))
    colours = plt.get_cmap("tab20")
    for i, op in enumerate(ops):
        ys = [t.info["op_priority"].get(op, {}).get("p", float("nan")) for t in carrying]
        top.step(xs, ys, where="post", color=colours(i % 20), label=op)
    top.set_ylabel("p(o) within its arity")
    top.set_ylim(-0.02, 1.02)
    top.grid(alpha=0.3)
    top.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small")
    top.set_title("Operation priorities")
    bottom.plot(xs, [t.info.get("op_entropy", float("nan")) for t in carrying], color="C3")
    bottom.set_xlabel("trial")
    bottom.set_ylabel("entropy (nats)")
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    path = out_dir / "op_priority.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _pbt_trials(trials: Sequence[Trial]) -> list[Trial]:
    """The trials a PBT study ran (info ``member`` and ``continues``), re-queued attempts left out."""
    return [t for t in trials if CONTINUES in t.info and "member" in t.info and not t.requeued]


def pbt_lineages(trials: Sequence[Trial]) -> dict[int, list[Trial]]:
    """For each member of a PBT study's final population, the trials its weights went through, first to last:
    its latest trial, then the one it continued (``parent``: its own previous trial, or the donor's it copied),
    and so on back to a first trial. Empty when the study is not a PBT one."""
    ran = _pbt_trials(trials)
    by_number = {t.number: t for t in trials}
    latest: dict[int, Trial] = {}
    for t in ran:
        member = int(t.info["member"])
        if member not in latest or int(t.info["generation"]) > int(latest[member].info["generation"]):
            latest[member] = t
    out: dict[int, list[Trial]] = {}
    for member, last in sorted(latest.items()):
        chain, seen = [last], {last.number}
        while isinstance(chain[-1].info.get("parent"), int) and chain[-1].info["parent"] in by_number:
            parent = by_number[chain[-1].info["parent"]]
            if parent.number in seen:
                break
            chain.append(parent)
            seen.add(parent.number)
        out[member] = chain[::-1]
    return out


def pbt_table(trials: Sequence[Trial], objectives: Sequence[Objective]) -> Table | None:
    """The lineage of each member of a PBT study's final population: its trials as ``#number@budget``, an
    exploit written ``<= m<donor>`` with what it explored; None for a study that is not a PBT one."""
    lineages = pbt_lineages(trials)
    if not lineages:
        return None
    first = objectives[0]
    table = Table(title="PBT lineage of the final population (#trial@budget; <= mK: copied member K, then explored)")
    for name in ("member", "trial", f"{first.name} ({first.direction})", "budget", "lineage"):
        table.add_column(name, justify="left" if name == "lineage" else "right", overflow="fold")
    for member, chain in lineages.items():
        last = chain[-1]
        steps = []
        for t in chain:
            step = f"#{t.number}@{_fmt(t.budget)}"
            if "exploited" in t.info:
                changes = ", ".join(f"{path.rsplit('.', 1)[-1]} {_fmt(a)}->{_fmt(b)}"
                                    for path, (a, b) in dict(t.info.get("explored") or {}).items())
                step += f" <= m{t.info['exploited']}" + (f" ({changes})" if changes else "")
            steps.append(step)
        value = last.values.get(first.name) if last.values else None
        table.add_row(str(member), str(last.number), "-" if value is None else _fmt(value), _fmt(last.budget),
                      " -> ".join(steps))
    return table


def _hyperparameter_paths(ran: Sequence[Trial]) -> list[str]:
    """What PBT explored (the paths of the trials' ``explored``); without any exploit, the ``train`` leaves."""
    explored = sorted({path for t in ran for path in dict(t.info.get("explored") or {})})
    if explored:
        return explored
    train = ran[0].config.get("train") if ran else None
    if not isinstance(train, dict):
        return []
    return [f"train.{k}" for k, v in train.items() if isinstance(v, (int, float, str))]


def _at(config: Any, path: str) -> Any:
    for part in path.split("."):
        config = config.get(part) if isinstance(config, dict) else None
    return config


def plot_pbt(trials: Sequence[Trial], objectives: Sequence[Objective], out_dir: Path) -> Path | None:
    """Write pbt.png: for each member of the final population the schedule of each hyperparameter its weights
    trained under (x: budget, one line per member, a ring where it copied a better member) and its first
    objective along the way; None when the study is not a PBT one."""
    lineages = pbt_lineages(trials)
    if not lineages:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = _hyperparameter_paths(_pbt_trials(trials))
    first = objectives[0]
    fig, axes = plt.subplots(len(paths) + 1, 1, figsize=(8, 2.4 * (len(paths) + 1)), sharex=True, squeeze=False)
    colours = plt.get_cmap("tab10")
    for row, path in enumerate(paths):
        ax = axes[row][0]
        values = [_at(t.config, path) for chain in lineages.values() for t in chain]
        labels = sorted({str(v) for v in values if v is not None and not isinstance(v, (int, float))})
        for i, (member, chain) in enumerate(lineages.items()):
            xs: list[float] = []
            ys: list[float] = []
            for previous, t in zip([None, *chain[:-1]], chain):
                value = _at(t.config, path)
                y = float("nan") if value is None else (
                    float(labels.index(str(value))) if str(value) in labels else float(value))
                xs += [previous.budget if previous is not None and previous.budget is not None else 0.0,
                       t.budget if t.budget is not None else 0.0]
                ys += [y, y]
                if "exploited" in t.info:
                    ax.plot(xs[-2], y, "o", mfc="none", color=colours(i % 10), ms=8)
            ax.plot(xs, ys, color=colours(i % 10), label=f"member {member}")
        if labels:
            ax.set_yticks(range(len(labels)), labels)
        elif all(isinstance(v, (int, float)) and v > 0 for v in values if v is not None) and values and \
                max(float(v) for v in values if v is not None) > 20 * min(float(v) for v in values if v is not None):
            ax.set_yscale("log")
        ax.set_ylabel(path)
        ax.grid(alpha=0.3)
    ax = axes[-1][0]
    for i, (member, chain) in enumerate(lineages.items()):
        done = [t for t in chain if t.values and first.name in t.values]
        ax.plot([t.budget for t in done], [t.values[first.name] for t in done], "o-",  # type: ignore[index]
                color=colours(i % 10), label=f"member {member}")
    ax.set_ylabel(f"{first.name} ({first.direction})")
    ax.set_xlabel("budget")
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small")
    axes[0][0].set_title("PBT: hyperparameter schedules of the final population (o: copied a better member)")
    fig.tight_layout()
    path_out = out_dir / "pbt.png"
    fig.savefig(path_out, dpi=110)
    plt.close(fig)
    return path_out
