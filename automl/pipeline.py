"""Pipelines of steps: from a search to a deployable model in one YAML (``automl run pipeline.yaml``).

```yaml
name: digits-cnn-full
steps:
  nas:    {space: digits-cnn, strategy: evolution, trials: 40, fix: {train: {lr: 0.01, optimizer: adam}}}
  hpo:    {from: nas, top_k: 3, search: train, strategy: tpe, trials: 20}
  train:  {from: hpo, top_k: 1, seeds: 3, budget: max}
  export: {from: train, formats: [pt2, onnx]}
```

Steps run in order; each is a study (a ``search: PART`` step with ``top_k`` incoming candidates, one
study per candidate) in the same ledger, named ``<pipeline>.<step>[.<i>]``. Kinds, by their keys (or
``kind:``):

* **search** (``space``, ``strategy``, ``trials``, ``options``, ``fix``, ``pruner``, ``regime``,
  ``estimator``, ``objectives``): a search of the space with the ``fix`` parts held fixed, evaluated by
  the space's estimator or the step's own (``estimator: synflow`` with ``objectives: {synflow: max}``: a
  zero-cost prefilter whose best candidates the next step trains). With ``from`` and ``search: PART``,
  PART alone is searched (``train``: the training recipe) with every other part fixed to each incoming candidate's;
  with ``from`` alone, the incoming candidates are evaluated first (a warm start).
* **train** (``from``, ``top_k``, ``seeds``, ``budget``: ``max`` or a number): the incoming configs
  trained at that budget with ``seeds`` seeds each, scored on validation *and* the task's test split
  (which no search step sees); reports mean ± std per metric.
* **export** (``from``, ``formats``): the best incoming model written by :func:`automl.export.export`.

The pipeline's record (each step's status, studies and outputs) lives in the ledger too, in a study
named after the pipeline, so a killed pipeline reruns with the same command: finished steps are not
rerun, the running step resumes from its ledger. ``from_step`` reruns from a step on (into new
studies: nothing that ran is lost). A step whose definition changed since it ran is refused.
"""
from __future__ import annotations

import hashlib
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from automl.errors import AutomlError, ConfigError, RegistryError
from automl.ledger import Ledger, comparable, open_storage
from automl.progress import Reporter, SilentReporter
from automl.space import Objective, SearchSpace, load_space
from automl.space.files import read_text_file
from automl.space.fixing import fix_space, free_part, space_from_document
from automl.space.loader import read_yaml
from automl.space.names import IDENTIFIER
from automl.space.paths import YamlPath, error_at
from automl.strategies.base import TrialState
from automl.study import Study, create_study

KINDS = ("search", "train", "export")
STEP_KEYS: Mapping[str, frozenset[str]] = {
    "search": frozenset({"kind", "space", "from", "top_k", "search", "strategy", "trials", "options", "fix",
                         "pruner", "regime", "estimator", "objectives"}),
    "train": frozenset({"kind", "from", "top_k", "seeds", "budget"}),
    "export": frozenset({"kind", "from", "formats"}),
}
TOP_KEYS = frozenset({"name", "seed", "steps"})
#: candidates a step keeps for the next one (the next step's ``top_k`` may not ask for more)
KEPT = 20
RECORD = "pipeline"  # the record study's attrs: "pipeline:<step>"
#: what a pipeline or step name may be: it becomes a folder under the results folder and part of study names
#: (one definition with space and study names: automl.space.names)
STEP_NAME = IDENTIFIER


@dataclass(frozen=True)
class StepSpec:
    """One step as written in the pipeline file (checked)."""

    name: str
    kind: str
    options: Mapping[str, Any]
    index: int

    @property
    def source(self) -> str | None:
        value = self.options.get("from")
        return str(value) if value is not None else None

    def fingerprint(self) -> str:
        return hashlib.sha1(json.dumps(self.options, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class PipelineSpec:
    """A checked pipeline file."""

    name: str
    steps: tuple[StepSpec, ...]
    seed: int = 0
    source: str | None = None
    lines: Mapping[YamlPath, int] = field(default_factory=dict, compare=False, repr=False)
    folder: Path = Path(".")

    def error(self, path: YamlPath, message: str) -> ConfigError:
        return error_at(self.source, self.lines, path, message)

    def step(self, name: str) -> StepSpec:
        for step in self.steps:
            if step.name == name:
                return step
        raise ConfigError(f"no step {name!r} in pipeline {self.name!r} (steps: "
                          f"{', '.join(s.name for s in self.steps)})")


@dataclass(frozen=True)
class Candidate:
    """What a step hands the next: a config, where it was evaluated, and its metrics (mean over seeds
    and their std after a train step)."""

    config: Mapping[str, Any]
    study: str
    trial: int
    metrics: Mapping[str, float]
    std: Mapping[str, float] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"config": dict(self.config), "study": self.study, "trial": self.trial, "metrics": dict(self.metrics),
                "std": dict(self.std)}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Candidate:
        return cls(config=raw["config"], study=raw["study"], trial=int(raw["trial"]), metrics=raw.get("metrics", {}),
                   std=raw.get("std", {}))


# -- reading a pipeline file ---------------------------------------------------------------------------
def load_pipeline(source: str | Path | Mapping[str, Any]) -> PipelineSpec:
    """A pipeline from a YAML file or an already-parsed mapping, checked: one ConfigError naming the
    file, the line and the field for anything wrong."""
    lines: dict[YamlPath, int] = {}
    if isinstance(source, Mapping):
        doc, where, folder = dict(source), None, Path(".")
    else:
        path = Path(source)
        text = read_text_file(path, what="pipeline file")
        doc, lines = read_yaml(text, str(path))
        where, folder = str(path), path.parent
    if not isinstance(doc, Mapping):
        raise ConfigError("expected a mapping with 'name' and 'steps'", source=where, line=1)

    def error(path: YamlPath, message: str) -> ConfigError:
        return error_at(where, lines, path, message)

    for key in doc:
        if key not in TOP_KEYS:
            raise error((key,), f"unknown key {key!r}; a pipeline has {', '.join(sorted(TOP_KEYS))}")
    for key in ("name", "steps"):
        if key not in doc:
            raise error((), f"missing {key!r}")
    name = doc["name"]
    if not isinstance(name, str) or not STEP_NAME.fullmatch(name):  # it names the results folder
        raise error(("name",), f"a pipeline name is letters, digits, '_' and '-' (not starting with '-'), got "
                    f"{name!r}")
    seed = doc.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise error(("seed",), f"expected an integer, got {seed!r}")
    raw_steps = doc["steps"]
    if not isinstance(raw_steps, Mapping) or not raw_steps:
        raise error(("steps",), "expected a mapping of step name -> step")
    steps: list[StepSpec] = []
    for index, (step_name, raw) in enumerate(raw_steps.items()):
        at: YamlPath = ("steps", step_name)
        if not isinstance(step_name, str) or not STEP_NAME.fullmatch(step_name):  # it names folders and studies
            raise error(at, f"a step name is letters, digits, '_' and '-' (not starting with '-'), got {step_name!r}")
        if not isinstance(raw, Mapping):
            raise error(at, f"expected a mapping of step options, got {raw!r}")
        kind = raw.get("kind") or ("export" if "formats" in raw else "train" if "seeds" in raw else "search")
        if kind not in KINDS:
            raise error((*at, "kind"), f"expected one of {', '.join(KINDS)}, got {kind!r}")
        for key in raw:
            if key not in STEP_KEYS[kind]:
                raise error((*at, key), f"unknown key {key!r} for {_article(kind)} {kind} step; expected one of "
                            f"{', '.join(sorted(STEP_KEYS[kind]))}")
        _check_step(error, at, str(step_name), kind, raw, [s.name for s in steps], [str(n) for n in raw_steps])
        steps.append(StepSpec(str(step_name), kind, dict(raw), index))
    if steps[0].source is None and "space" not in steps[0].options:
        raise error(("steps", steps[0].name), "the first step needs a 'space' (a registered name or a file)")
    return PipelineSpec(name=name, steps=tuple(steps), seed=int(seed), source=where, lines=lines, folder=folder)


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def _check_step(error: Callable[[YamlPath, str], ConfigError], at: YamlPath, name: str, kind: str,
                raw: Mapping[str, Any], earlier: list[str], every: list[str]) -> None:
    source = raw.get("from")
    if source is not None:
        if source == name or source not in earlier:
            what = "itself" if source == name else "a later step (a cycle)" if source in every else "no step"
            raise error((*at, "from"), f"'from: {source}' names {what}; expected an earlier step "
                        f"({', '.join(earlier) or 'none'})")
    elif kind != "search":
        raise error(at, f"{_article(kind)} {kind} step needs 'from: STEP' (the step whose results it takes)")
    for key, low in (("top_k", 1), ("trials", 1), ("seeds", 1)):
        if key in raw and (not isinstance(raw[key], int) or isinstance(raw[key], bool) or raw[key] < low):
            raise error((*at, key), f"expected an integer >= {low}, got {raw[key]!r}")
    if kind == "search" and "trials" not in raw:
        raise error(at, "a search step needs 'trials'")
    budget = raw.get("budget", "max")
    if budget != "max" and not (isinstance(budget, (int, float)) and not isinstance(budget, bool) and budget > 0):
        raise error((*at, "budget"), f"expected 'max' or a number > 0, got {budget!r}")
    if "search" in raw:
        if source is None:
            raise error((*at, "search"), "'search: PART' needs 'from: STEP' (whose candidates fix the other parts)")
        parts = raw["search"] if isinstance(raw["search"], list) else [raw["search"]]
        if not parts or not all(isinstance(p, str) for p in parts):
            raise error((*at, "search"), f"expected a part of the config (e.g. train) or a list, got {raw['search']!r}")
    for key in ("fix", "options"):
        if key in raw and not isinstance(raw[key], Mapping):
            raise error((*at, key), f"expected a mapping, got {raw[key]!r}")
    _check_scoring(error, at, raw)
    if kind == "export":
        from automl.export import FORMATS

        formats = raw.get("formats", list(FORMATS))
        if not isinstance(formats, list) or not formats:
            raise error((*at, "formats"), f"expected a list of formats ({', '.join(FORMATS)}), got {formats!r}")
        for i, fmt in enumerate(formats):
            if fmt not in FORMATS:
                raise error((*at, "formats", i), f"unsupported export format {fmt!r}; supported: {', '.join(FORMATS)}")


def _check_scoring(error: Callable[[YamlPath, str], ConfigError], at: YamlPath, raw: Mapping[str, Any]) -> None:
    """A search step's own ``estimator`` (a name or ``{name, options}``) and ``objectives`` (metric: max|min):
    an estimator other than the space's reports other metrics, so it comes with the objectives it reports."""
    estimator = raw.get("estimator")
    if estimator is not None and not isinstance(estimator, str) and not (
            isinstance(estimator, Mapping) and isinstance(estimator.get("name"), str)
            and set(estimator) <= {"name", "options"} and isinstance(estimator.get("options", {}), Mapping)):
        raise error((*at, "estimator"), f"expected a registered estimator name or {{name, options}}, got {estimator!r}")
    if estimator is not None:
        from automl.estimator import estimators

        try:
            estimators.get(estimator if isinstance(estimator, str) else estimator["name"])
        except RegistryError as exc:
            raise error((*at, "estimator"), str(exc)) from None
    if estimator is not None and "objectives" not in raw:
        raise error((*at, "estimator"), "a step that names its estimator names the objectives it reports too, e.g. "
                    "objectives: {synflow: max}")
    objectives = raw.get("objectives")
    if "objectives" in raw and (not isinstance(objectives, Mapping) or not objectives):
        raise error((*at, "objectives"), f"expected a mapping metric: max|min, got {objectives!r}")
    for metric, direction in (objectives or {}).items():
        if direction not in ("max", "min", "maximize", "minimize"):
            raise error((*at, "objectives", metric), f"expected 'max' or 'min', got {direction!r}")


# -- running it ------------------------------------------------------------------------------------------
ReporterFactory = Callable[[str], Reporter]
Say = Callable[[str], None]


class PipelineRun:
    """One run (or resumption) of a pipeline against a ledger."""

    def __init__(self, spec: PipelineSpec, storage: str | None, output: Path, *, workers: int = 1,
                 threads: int | None = None, reporter: ReporterFactory | None = None, say: Say | None = None,
                 on_step: Callable[[str, list[Study]], None] | None = None, trust_code: bool = False) -> None:
        self.spec, self.storage, self.workers, self.threads = spec, storage, workers, threads
        #: whether the user trusts the code the pipeline's spaces name (``--trust-code``; automl.space.trust)
        self.trust_code = trust_code
        self.on_step = on_step or (lambda name, studies: None)
        self.output = output / spec.name
        self.reporter = reporter or (lambda _: SilentReporter())
        self.say = say or (lambda _: None)
        self.record = Ledger(open_storage(storage), spec.name, (Objective("value", "min"),),
                             attrs={"pipeline": spec.name, "kind": RECORD})
        if self.record.study_attrs().get("kind") != RECORD:
            raise ConfigError(f"a study named {spec.name!r} already exists in this ledger and is not a pipeline; "
                              f"rename the pipeline", source=spec.source)
        self.studies: dict[str, list[Study]] = {}
        self.outputs: dict[str, list[Candidate]] = {}
        self.space: SearchSpace | None = None

    def status(self, step: StepSpec) -> dict[str, Any]:
        status: dict[str, Any] = dict(self.record.study_attrs().get(f"{RECORD}:{step.name}") or {})
        return status

    def _save(self, step: StepSpec, **status: Any) -> None:
        self.record.set_study_attr(f"{RECORD}:{step.name}", {**self.status(step), **status})

    def run(self, from_step: str | None = None) -> dict[str, list[Study]]:
        start = self.spec.step(from_step).index if from_step is not None else None
        for step in self.spec.steps:
            status = self.status(step)
            attempt = int(status.get("attempt", 1))
            if start is not None and step.index >= start and status:
                attempt += 1  # rerun from here: new studies, the old ones stay in the ledger
                self._save(step, state="pending", attempt=attempt, outputs=[], studies=[])
                status = self.status(step)
            elif status.get("state") == "done" and status.get("fingerprint") != step.fingerprint():
                raise self.spec.error(("steps", step.name), f"step {step.name!r} changed since it ran; rerun it with "
                                      f"--from {step.name} (its earlier studies stay in the ledger)")
            if status.get("state") == "done":
                self.outputs[step.name] = [Candidate.from_json(c) for c in status["outputs"]]
                self.studies[step.name] = [self._open(n) for n in status.get("studies", [])]
                self.say(f"step {step.name}: done earlier ({len(self.studies[step.name])} studies), not rerun")
                continue
            self._save(step, state="running", attempt=attempt, fingerprint=step.fingerprint(), index=step.index,
                       kind=step.kind)
            try:
                outputs, studies = self._run_step(step, attempt)
            except AutomlError as exc:
                self._save(step, state="failed", error=str(exc))
                raise AutomlError(f"step {step.name!r} failed: {exc}") from exc
            self.outputs[step.name] = outputs
            self.studies[step.name] = studies
            self._save(step, state="done", outputs=[c.as_json() for c in outputs],
                       studies=[s.study_name for s in studies])
            self.on_step(step.name, studies)
        return self.studies

    def _open(self, study_name: str) -> Study:
        """A study this pipeline ran, reopened on the space it recorded."""
        recorded = Ledger.load(open_storage(self.storage), study_name).study_attrs().get("space_document")
        if recorded is None:
            raise ConfigError(f"study {study_name!r} does not record its space")
        space = space_from_document(recorded["document"], recorded.get("source"), trust_code=self.trust_code)
        return create_study(space, storage=self.storage, study_name=study_name)

    # -- the steps ------------------------------------------------------------------------------
    def _incoming(self, step: StepSpec) -> list[Candidate]:
        assert step.source is not None
        produced = self.outputs[step.source]
        wanted = int(step.options.get("top_k", 1))
        if wanted > len(produced):
            raise self.spec.error(("steps", step.name, "top_k"), f"top_k ({wanted}) is larger than what step "
                                  f"{step.source!r} produced ({len(produced)} candidate"
                                  f"{'s' if len(produced) != 1 else ''})")
        return produced[:wanted]

    def _base_space(self, step: StepSpec) -> SearchSpace:
        if "space" in step.options:
            name = str(step.options["space"])
            local = self.spec.folder / name
            return load_space(local if local.suffix in (".yaml", ".yml", ".json") and local.exists() else name,
                              trust_code=self.trust_code)
        if self.space is None:
            for earlier in self.spec.steps[:step.index]:
                if "space" in earlier.options:
                    return self._base_space(earlier)
            raise self.spec.error(("steps", step.name), "no step names a space")
        return self.space

    def _run_step(self, step: StepSpec, attempt: int) -> tuple[list[Candidate], list[Study]]:
        base = self._base_space(step)
        if self.space is None:
            self.space = base
        suffix = "" if attempt == 1 else f".r{attempt}"
        stem = f"{self.spec.name}.{step.name}{suffix}"
        if step.kind == "search":
            return self._search(step, base, stem)
        if step.kind == "train":
            return self._train(step, base, stem)
        return self._export(step)

    def _search(self, step: StepSpec, base: SearchSpace, stem: str) -> tuple[list[Candidate], list[Study]]:
        opts = step.options
        base = self._scored(step, base)
        fixed = dict(opts.get("fix") or {})
        plans: list[tuple[str, dict[str, Any], list[Candidate]]] = []  # (study name, fixed values, warm start)
        if step.source is not None and "search" in opts:
            for i, candidate in enumerate(self._incoming(step)):
                held = _merge(free_part(base, candidate.config, opts["search"]), fixed)
                plans.append((f"{stem}.{i}", held, []))
        else:
            warm = self._incoming(step) if step.source is not None else []
            plans.append((stem, fixed, warm))
        studies = []
        for study_name, held, warm in plans:
            space = fix_space(base, held, where=f"steps.{step.name}.fix") if held else base
            study = self._create(study_name, space, step)
            for candidate in warm:
                study.enqueue(candidate.config, once=True)
            self.say(f"step {step.name}: study {study_name} ({opts['trials']} trials, {study.strategy_name})")
            study.optimize(total_trials=int(opts["trials"]), reporter=self.reporter(f"{step.name} {study_name}"),
                           n_workers=self.workers, threads=self.threads,
                           progress_dir=self.output / "progress" / study_name)
            studies.append(study)
        return _ranked(studies), studies

    def _scored(self, step: StepSpec, base: SearchSpace) -> SearchSpace:
        """``base`` evaluated by the step's own ``estimator`` and ``objectives`` when it names them (a cheap
        first stage: score many candidates with a zero-cost proxy, hand the best to the next step, which
        evaluates them with the space's own estimator)."""
        opts = step.options
        if "estimator" not in opts and "objectives" not in opts:
            return base
        from automl.evaluation import prepare_evaluation
        from automl.space.loader import space_from_dict

        document = {k: v for k, v in base.document.items() if k != "fixed"}
        document.update({k: opts[k] for k in ("estimator", "objectives") if k in opts})
        space = space_from_dict(document, base.source, base.lines, trust_code=self.trust_code or base.trusted_code)
        try:
            prepare_evaluation(space)  # the estimator's name, options and task family, named at the step
        except ConfigError as exc:
            raise self.spec.error(("steps", step.name, "estimator"), exc.message) from None
        return space

    def _create(self, study_name: str, space: SearchSpace, step: StepSpec, **extra: Any) -> Study:
        opts = step.options
        regimes = None
        if "regime" in opts:
            raw = opts["regime"] if isinstance(opts["regime"], list) else [opts["regime"]]
            regimes = [(r, {}) if isinstance(r, str) else (str(r["name"]), dict(r.get("options") or {})) for r in raw]
        try:
            # each step its own seed: a train step's seeds never repeat a search trial's training
            study = create_study(space, strategy=extra.pop("strategy", opts.get("strategy")), storage=self.storage,
                                 study_name=study_name, seed=self.spec.seed * 1000 + step.index,
                                 strategy_options=extra.pop("strategy_options", opts.get("options")),
                                 checkpoints=(self.output / study_name / "checkpoints").resolve(),
                                 regimes=regimes, pruner=opts.get("pruner"), **extra)
        except ConfigError as exc:
            if exc.source:
                raise
            raise self.spec.error(("steps", step.name), exc.message if not exc.field else f"{exc.field}: {exc.message}"
                                  ) from None
        study.ledger.set_study_attr("pipeline", {"name": self.spec.name, "step": step.name})
        return study

    def _train(self, step: StepSpec, base: SearchSpace, stem: str) -> tuple[list[Candidate], list[Study]]:
        incoming = self._incoming(step)
        seeds = int(step.options.get("seeds", 1))
        budget_opt = step.options.get("budget", "max")
        budget = None
        if budget_opt != "max":
            budget = {"name": base.budget.name if base.budget else "budget", "min": float(budget_opt),
                      "max": float(budget_opt)}
        at = float(budget_opt) if budget_opt != "max" else (base.budget.max if base.budget else None)
        study = self._create(stem, base, step, strategy="given", budget=budget,
                             strategy_options={"configs": [dict(c.config) for c in incoming], "replicas": seeds,
                                               "at": at, "info": {"test": True}})
        self.say(f"step {step.name}: study {stem} ({len(incoming)} config{'s' if len(incoming) > 1 else ''} x {seeds} "
                 f"seed{'s' if seeds > 1 else ''}, full budget, validation and test)")
        study.optimize(total_trials=len(incoming) * seeds, reporter=self.reporter(f"{step.name} {stem}"),
                       n_workers=self.workers, threads=self.threads, progress_dir=self.output / "progress" / stem)
        return summarise(study, len(incoming)), [study]

    def _export(self, step: StepSpec) -> tuple[list[Candidate], list[Study]]:
        from automl.export import export

        best = self._incoming(step)[0]
        source = self._open(best.study)
        out_dir = self.output / step.name
        formats = tuple(step.options.get("formats", ()) or ())
        summary = {k: (v, best.std[k]) for k, v in best.metrics.items() if k in best.std}
        export(source, out_dir, formats=formats or None, trial=best.trial, summary=summary or None)
        self.say(f"step {step.name}: exported trial {best.trial} of {best.study} to {out_dir}")
        return [Candidate(best.config, best.study, best.trial, best.metrics, best.std)], []


def _merge(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """``a`` with ``b`` laid over it, nested mappings merged."""
    out = dict(a)
    for key, value in b.items():
        nested = isinstance(out.get(key), Mapping) and isinstance(value, Mapping)
        out[key] = _merge(out[key], value) if nested else value
    return out


def _ranked(studies: Sequence[Study]) -> list[Candidate]:
    """The best completed trials over ``studies``, best first (at most :data:`KEPT`)."""
    scored: list[tuple[tuple[float, ...], Candidate]] = []
    for study in studies:
        for trial in comparable(study.completed()):
            scored.append((study.losses(trial), Candidate(trial.config, study.study_name, trial.number,
                                                          _numbers(trial.metrics))))
    if not scored:
        raise AutomlError("the step produced no completed trial (see its leaderboard for why)")
    scored.sort(key=lambda item: item[0])
    return [c for _, c in scored[:KEPT]]


def summarise(study: Study, configs: int) -> list[Candidate]:
    """A train step's candidates: per config, mean and std over its seeds of every metric; the trial kept
    for the config is its replica with the best validation value (what ``export`` writes)."""
    out: list[tuple[float, Candidate]] = []
    first = study.objectives[0]
    for index in range(configs):
        trials = [t for t in study.trials if t.info.get("given") == index and t.state is TrialState.COMPLETE]
        if not trials:
            continue
        metrics = _numbers({k: v for t in trials for k, v in t.metrics.items()})
        mean = {k: statistics.fmean(float(t.metrics[k]) for t in trials if k in t.metrics) for k in metrics}
        std = {k: statistics.stdev([float(t.metrics[k]) for t in trials if k in t.metrics])
               if sum(k in t.metrics for t in trials) > 1 else 0.0 for k in metrics}
        best = min(trials, key=lambda t: study.losses(t))
        out.append((first.sign * mean[first.name], Candidate(best.config, study.study_name, best.number, mean, std)))
    if not out:
        raise AutomlError(f"no training run of study {study.study_name!r} completed (see its leaderboard for why)")
    out.sort(key=lambda item: item[0])
    return [c for _, c in out]


def _numbers(metrics: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))}


def run_pipeline(source: str | Path | Mapping[str, Any], *, storage: str | None = None,
                 output: str | Path = "automl-runs", from_step: str | None = None, workers: int = 1,
                 threads: int | None = None, reporter: ReporterFactory | None = None,
                 say: Say | None = None, trust_code: bool = False) -> dict[str, list[Study]]:
    """Run (or resume) the pipeline at ``source`` (a YAML path or a mapping) against ``storage`` (an
    SQLAlchemy URL; None keeps it in memory); returns each step's studies, by step name. ``trust_code``: the
    user trusts the code its spaces name (``builder: "package.module:function"``, :mod:`automl.space.trust`)."""
    spec = load_pipeline(source)
    return PipelineRun(spec, storage, Path(output), workers=workers, threads=threads, reporter=reporter,
                       say=say, trust_code=trust_code).run(from_step)


def pipeline_status(name: str, storage: str | None) -> dict[str, dict[str, Any]]:
    """Each step's recorded status (state, attempt, studies, outputs) of pipeline ``name``, in step order."""
    record = Ledger.load(open_storage(storage), name)
    attrs = record.study_attrs()
    if attrs.get("kind") != RECORD:
        raise ConfigError(f"study {name!r} is not a pipeline")
    steps = {k[len(RECORD) + 1:]: v for k, v in attrs.items() if k.startswith(f"{RECORD}:")}
    return dict(sorted(steps.items(), key=lambda item: int(item[1].get("index", 0))))

