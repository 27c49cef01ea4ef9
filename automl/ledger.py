"""The trial ledger: our trials stored as Optuna trials on Optuna's storage (SQLite by default).

One automl trial is one Optuna trial: flat parameters as Optuna params (so ``optuna-dashboard`` shows
them), objective values as the trial's values, and the full config, candidate key, budget, metrics and
error as user attributes. Each write is one storage transaction, so a crash or kill never leaves a
half-written trial: a trial is either RUNNING (re-queued on resume) or finished.
"""
from __future__ import annotations

import datetime
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence
from urllib.parse import urlparse

from optuna.distributions import BaseDistribution
from optuna.exceptions import DuplicatedStudyError
from optuna.storages import BaseStorage, InMemoryStorage, RDBStorage
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial
from optuna.trial import TrialState as OptunaState

from automl.driver_claim import DriverClaim
from automl.errors import StorageError
from automl.space.nodes import Objective
from automl.strategies.base import TrialState

_STATE_TO_OPTUNA = {
    TrialState.RUNNING: OptunaState.RUNNING,
    TrialState.COMPLETE: OptunaState.COMPLETE,
    TrialState.FAILED: OptunaState.FAIL,
    TrialState.INFEASIBLE: OptunaState.PRUNED,
    TrialState.PRUNED: OptunaState.PRUNED,
}
ATTR = "automl"  # user-attribute prefix
_READY = "setup_complete"  # written last by the driver that created a study


@dataclass(frozen=True)
class Trial:
    """One evaluated (or running) candidate as recorded in the ledger."""

    number: int
    config: Mapping[str, Any]
    key: str
    state: TrialState
    values: Mapping[str, float] | None
    metrics: Mapping[str, Any] = field(default_factory=dict)
    budget: float | None = None
    error: str | None = None
    duration_s: float | None = None
    info: Mapping[str, Any] = field(default_factory=dict)
    requeued: bool = False  # this attempt was cut off (killed driver, crashed worker) and is re-run

    @property
    def value(self) -> float | None:
        """The single objective's value (the first objective's with several)."""
        if not self.values:
            return None
        return next(iter(self.values.values()))


def trial_losses(objectives: Sequence[Objective], trial: Trial) -> tuple[float, ...]:
    """A completed trial's objective values as losses (lower is better for each)."""
    assert trial.values is not None
    return tuple(o.sign * trial.values[o.name] for o in objectives)


def comparable(trials: list[Trial]) -> list[Trial]:
    """The trials the best candidates are chosen among: those a strategy marked ``final`` (e.g.
    one-shot's stand-alone re-evaluations) when there are any, and of those, the ones at the largest
    budget present (multi-fidelity results at a lower budget do not compare with full-budget ones)."""
    final = [t for t in trials if t.info.get("final")]
    trials = final or trials
    budgets = [t.budget for t in trials if t.budget is not None]
    if not budgets:
        return trials
    top = max(budgets)
    return [t for t in trials if t.budget is None or t.budget == top]


def open_storage(url: str | None) -> BaseStorage:
    """Optuna storage for ``url`` (None: in memory). An unusable SQLite path fails with a clear error."""
    if url is None:
        return InMemoryStorage()
    parsed = urlparse(url)
    if not parsed.scheme:
        raise StorageError(f"storage {url!r} is not a URL; expected e.g. sqlite:///automl-runs/automl.db "
                           "or postgresql://user@host/db")
    if parsed.scheme == "sqlite" and url not in ("sqlite://", "sqlite:///:memory:"):
        path = Path(url[len("sqlite:///"):])
        parent = path.parent if str(path.parent) else Path(".")
        if not parent.is_dir():
            try:
                parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StorageError(f"cannot create the folder for storage {url!r}: {exc.strerror}") from None
        if (path.exists() and not _writable(path)) or (not path.exists() and not _writable(parent)):
            raise StorageError(f"storage {url!r} is not writable (check the permissions of {path})")
    _refuse_foreign_database(url)
    last: Exception | None = None
    for attempt in range(5):  # two processes creating the same new database race on Optuna's schema: retry
        if attempt:
            time.sleep(0.2 * attempt)
        try:
            return RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}} if parsed.scheme == "sqlite"
                              else None)
        except Exception as exc:  # SQLAlchemy raises many types; say which storage failed and why
            last = exc
            if not _schema_race(exc):
                break
    raise StorageError(f"cannot open storage {url!r}: {last}") from last


def _schema_race(exc: Exception) -> bool:
    """An error of a schema another process created at the same moment (a table or the version row)."""
    text = str(exc).lower()
    return "unique constraint" in text or "already exists" in text or "duplicate key" in text


#: tables an Optuna storage has; a database holding other tables but none of these belongs to something else
_OPTUNA_TABLES = {"studies", "trials", "alembic_version", "version_info"}


def _refuse_foreign_database(url: str) -> None:
    """Refuse a database that holds tables but is not an Optuna storage: writing Optuna's schema into
    another application's database would damage it."""
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(url)
        try:
            tables = set(sqlalchemy.inspect(engine).get_table_names())
        finally:
            engine.dispose()
    except Exception as exc:  # SQLAlchemy raises many types (no driver, no server, not a database file)
        raise StorageError(f"cannot open storage {url!r}: {exc}") from exc
    if tables and not tables & _OPTUNA_TABLES:
        shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise StorageError(f"storage {url!r} is a database of something else (tables: {shown}), not an automl "
                           "ledger; point --storage at a new file or an Optuna storage")


def _writable(path: Path) -> bool:
    return os.access(path, os.W_OK)


class Ledger:
    """A study's trials on an Optuna storage; the only place trial state is written."""

    def __init__(self, storage: BaseStorage, study_name: str, objectives: Sequence[Objective],
                 attrs: Mapping[str, Any]) -> None:
        self.storage = storage
        self.study_name = study_name
        self.objectives = tuple(objectives)
        directions = [StudyDirection.MAXIMIZE if o.direction == "max" else StudyDirection.MINIMIZE
                      for o in self.objectives]
        try:
            self.study_id = storage.get_study_id_from_name(study_name)
            created = False
        except KeyError:
            try:
                self.study_id = storage.create_new_study(directions, study_name)
                created = True
            except DuplicatedStudyError:  # another driver created it at the same moment: it is theirs to set up
                self.study_id = storage.get_study_id_from_name(study_name)
                created = False
        if created:
            self._write_setup(attrs)
        else:
            self._await_setup(attrs)
            self._check_matches(directions, attrs)

    def _write_setup(self, attrs: Mapping[str, Any], *, only_missing: bool = False) -> None:
        """The study's set-up attributes, then the ready mark that tells other drivers they are complete."""
        stored = self.study_attrs() if only_missing else {}
        if not only_missing:
            self.storage.set_study_system_attr(self.study_id, "study:metric_names", [o.name for o in self.objectives])
        for key, value in attrs.items():
            if key not in stored:
                self.storage.set_study_user_attr(self.study_id, f"{ATTR}:{key}", value)
        self.storage.set_study_user_attr(self.study_id, f"{ATTR}:{_READY}", True)

    def _await_setup(self, attrs: Mapping[str, Any], timeout: float = 30.0) -> None:
        """Wait for the driver that created this study to finish writing its set-up; a creator that died
        between creating the study and writing it leaves the missing keys for this driver to write."""
        deadline = time.monotonic() + timeout
        while True:
            stored = self.study_attrs()
            # a study from before the ready mark existed is ready once it holds every key this driver has
            if stored.get(_READY) or set(attrs) <= set(stored):
                return
            if time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        if "study:metric_names" not in self.storage.get_study_system_attrs(self.study_id):
            self.storage.set_study_system_attr(self.study_id, "study:metric_names", [o.name for o in self.objectives])
        self._write_setup(attrs, only_missing=True)

    @classmethod
    def load(cls, storage: BaseStorage, study_name: str) -> Ledger:
        """Open an existing study (for reports); its objectives come from the storage."""
        try:
            study_id = storage.get_study_id_from_name(study_name)
        except KeyError:
            known = ", ".join(study_names(storage)) or "none"
            raise StorageError(f"no study named {study_name!r} in this storage (studies: {known})") from None
        directions = storage.get_study_directions(study_id)
        names = storage.get_study_system_attrs(study_id).get("study:metric_names") or [
            f"objective_{i}" for i in range(len(directions))]
        objectives = [Objective(n, "max" if d == StudyDirection.MAXIMIZE else "min") for n, d in zip(names, directions)]
        return cls(storage, study_name, objectives, attrs={})

    def _check_matches(self, directions: list[StudyDirection], attrs: Mapping[str, Any]) -> None:
        stored = self.study_attrs()
        if self.storage.get_study_directions(self.study_id) != directions:
            raise StorageError(f"study {self.study_name!r} exists with other objectives; "
                               "choose another --study-name or delete it")
        for key in ("space_fingerprint",):
            if key in attrs and key in stored and stored[key] != attrs[key]:
                raise StorageError(f"study {self.study_name!r} was created from a different search space "
                                   f"({stored.get('space_source') or 'unknown source'}); resume it with the "
                                   "same space, or choose another --study-name")

    def driver_claim(self) -> DriverClaim:
        """This study's driver claim (one driver at a time writes the ledger)."""
        return DriverClaim(self.storage, self.study_id, self.study_name)

    def set_study_attr(self, key: str, value: Any) -> None:
        self.storage.set_study_user_attr(self.study_id, f"{ATTR}:{key}", value)

    def study_attrs(self) -> dict[str, Any]:
        prefix = f"{ATTR}:"
        return {k[len(prefix):]: v for k, v in self.storage.get_study_user_attrs(self.study_id).items()
                if k.startswith(prefix)}

    def count(self) -> int:
        """Trials in the study (O(n) on Optuna's RDB storage: call once, then count locally)."""
        return self.storage.get_n_trials(self.study_id)

    def start(self, config: Mapping[str, Any], key: str, budget: float | None,
              params: Mapping[str, Any], distributions: Mapping[str, BaseDistribution],
              info: Mapping[str, Any]) -> tuple[int, int]:
        """Record a RUNNING trial in one transaction; returns (trial id, trial number)."""
        params = {k: v for k, v in params.items() if k in distributions}
        template = FrozenTrial(
            number=0, state=OptunaState.RUNNING, value=None, values=None,
            datetime_start=datetime.datetime.now(), datetime_complete=None,
            params=dict(params), distributions={k: distributions[k] for k in params},
            user_attrs={f"{ATTR}:config": json.dumps(config), f"{ATTR}:key": key,
                        f"{ATTR}:budget": budget, f"{ATTR}:info": json.dumps(info)},
            system_attrs={}, intermediate_values={}, trial_id=0,
        )
        trial_id = self.storage.create_new_trial(self.study_id, template_trial=template)
        return trial_id, self.storage.get_trial_number_from_id(trial_id)

    def set_info(self, trial_id: int, info: Mapping[str, Any]) -> None:
        """Replace a running trial's info with what was learnt while it ran (the GPUs a Dask worker chose)."""
        self.storage.set_trial_user_attr(trial_id, f"{ATTR}:info", json.dumps(info))

    def finish(self, trial_id: int, state: TrialState, metrics: Mapping[str, Any],
               error: str | None = None, duration_s: float | None = None, requeued: bool = False,
               intermediate: Mapping[int, float] | None = None) -> None:
        """Record the outcome: metrics, error and intermediate values first, then the state change that
        finishes the trial.

        ``requeued`` marks an attempt cut off by a killed search or a crashed worker: it is re-run and
        does not count as a finished trial.
        """
        outcome = {"metrics": metrics, "error": error, "duration_s": duration_s, "requeued": requeued,
                   "state": state.value}
        self.storage.set_trial_user_attr(trial_id, f"{ATTR}:outcome", json.dumps(outcome, default=_json_default))
        for step, value in sorted((intermediate or {}).items()):
            if math.isfinite(value):
                self.storage.set_trial_intermediate_value(trial_id, int(step), float(value))
        values = None
        if state is TrialState.COMPLETE:
            values = [float(metrics[o.name]) for o in self.objectives]
        self.storage.set_trial_state_values(trial_id, _STATE_TO_OPTUNA[state], values)

    def trials(self) -> list[Trial]:
        return [self._convert(t) for t in self.storage.get_all_trials(self.study_id, deepcopy=False)]

    def _convert(self, t: FrozenTrial) -> Trial:
        attrs = t.user_attrs
        outcome = json.loads(attrs.get(f"{ATTR}:outcome", "{}"))
        if t.state == OptunaState.RUNNING:
            state = TrialState.RUNNING
        elif t.state == OptunaState.COMPLETE:
            state = TrialState.COMPLETE
        elif t.state == OptunaState.PRUNED:  # Optuna has one state for both; the outcome says which
            state = TrialState.PRUNED if outcome.get("state") == TrialState.PRUNED.value else TrialState.INFEASIBLE
        else:
            state = TrialState.FAILED
        values = None
        if t.values is not None:
            values = {o.name: v for o, v in zip(self.objectives, t.values)}
        return Trial(
            number=t.number,
            config=json.loads(attrs.get(f"{ATTR}:config", "{}")),
            key=attrs.get(f"{ATTR}:key", ""),
            state=state,
            values=values,
            metrics=outcome.get("metrics") or {},
            budget=attrs.get(f"{ATTR}:budget"),
            error=outcome.get("error"),
            duration_s=outcome.get("duration_s"),
            info=json.loads(attrs.get(f"{ATTR}:info", "{}")),
            requeued=bool(outcome.get("requeued", False)),
        )

    def trial_id(self, number: int) -> int:
        return self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"metric value {value!r} is not JSON-serialisable")


def study_names(storage: BaseStorage) -> list[str]:
    return [s.study_name for s in storage.get_all_studies()]

