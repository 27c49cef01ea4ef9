"""Experience storage in SQLAlchemy: an SQLite file by default, PostgreSQL (psycopg 3) by URL.

Two tables: ``zoo_requests`` (each schedule decision the service made, so an outcome can name it by
id) and ``zoo_outcomes`` (each finished fine-tuning: the predictor's training rows). Every write is
one transaction (``Session.begin()``): a killed service leaves either the whole record or none.
SQLite runs in WAL mode with ``synchronous=FULL`` and a busy timeout, so concurrent requests wait
for the write lock instead of failing with "database is locked"; writers of several processes
(``automl serve --workers N``) also queue on an ``flock`` beside the file, which wakes the next one
as soon as the lock is free (SQLite's own busy handler sleeps up to 100 ms between tries).

Reading never trusts what is stored: a row this version cannot parse (written by an older version
under looser rules, or edited by hand) is skipped and counted (:class:`StoredExperience`), never raised.
"""
from __future__ import annotations

import fcntl
import logging
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator, Sequence

from pydantic import ValidationError
from sqlalchemy import Float, ForeignKey, Integer, String, Text, create_engine, event, func, insert, select
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from zoo.errors import ZooError
from zoo.schema import Decision, Experience, Schedule, TaskMeta

log = logging.getLogger("zoo.store")


class Base(DeclarativeBase):
    pass


class RequestRow(Base):
    __tablename__ = "zoo_requests"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[float] = mapped_column(Float, nullable=False)
    task_json: Mapped[str] = mapped_column(Text, nullable=False)
    budget_s: Mapped[float] = mapped_column(Float, nullable=False)
    decision_json: Mapped[str] = mapped_column(Text, nullable=False)


class OutcomeRow(Base):
    __tablename__ = "zoo_outcomes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[float] = mapped_column(Float, nullable=False)
    request_id: Mapped[str | None] = mapped_column(String(32), ForeignKey("zoo_requests.id"), nullable=True)
    model_id: Mapped[str] = mapped_column(String(64), nullable=False, index=True)
    task_json: Mapped[str] = mapped_column(Text, nullable=False)
    schedule_json: Mapped[str] = mapped_column(Text, nullable=False)
    accuracy: Mapped[float] = mapped_column(Float, nullable=False)
    seconds: Mapped[float] = mapped_column(Float, nullable=False)


@dataclass(frozen=True)
class RequestRecord:
    """A decision to store, under the id the service already handed out."""

    id: str
    task: TaskMeta
    budget_s: float
    decision: Decision


@dataclass(frozen=True)
class OutcomeRecord:
    """A finished fine-tuning to store."""

    task: TaskMeta
    schedule: Schedule
    accuracy: float
    seconds: float
    request_id: str | None = None


@dataclass(frozen=True)
class StoredExperience:
    """The outcomes in the store that this version can read, and how many rows it could not."""

    records: list[Experience]
    unreadable: int = 0
    latest_id: int = 0  # the id of the newest row read (``after_id`` when none)


def normalise_url(url: str) -> str:
    """``postgresql://`` -> ``postgresql+psycopg://`` (psycopg 3 is the installed driver)."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def redacted(url: str) -> str:
    """The URL with any password hidden (for logs and /health)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<invalid url>"


class Store:
    """Experience and decisions in one database (thread-safe: one session per call)."""

    def __init__(self, url: str) -> None:
        self.url = normalise_url(url)
        try:
            parsed = make_url(self.url)
        except ArgumentError as exc:
            raise ZooError(f"storage URL {url!r} is not a SQLAlchemy URL: {exc}") from None
        self.backend = parsed.get_backend_name()
        self._write_lock: IO[bytes] | None = None
        if self.backend == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                database = Path(parsed.database).expanduser()
                database.parent.mkdir(parents=True, exist_ok=True)
                self._write_lock = open(database.with_name(database.name + ".write-lock"), "ab")
            self.engine: Engine = create_engine(self.url, connect_args={"timeout": 30, "check_same_thread": False})
            event.listen(self.engine, "connect", _sqlite_pragmas)
        else:
            self.engine = create_engine(self.url, pool_pre_ping=True, pool_size=8, max_overflow=32)
        try:
            Base.metadata.create_all(self.engine)
        except (OperationalError, SQLAlchemyError) as exc:
            raise ZooError(f"cannot open storage {redacted(self.url)}: {exc.__class__.__name__}: "
                           f"{str(exc).splitlines()[0]}") from None
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def close(self) -> None:
        self.engine.dispose()
        if self._write_lock is not None:
            self._write_lock.close()

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Hold the cross-process write lock of a SQLite file (nothing to hold for a server database)."""
        if self._write_lock is None:
            yield
            return
        fcntl.flock(self._write_lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._write_lock, fcntl.LOCK_UN)

    def add_request(self, task: TaskMeta, budget_s: float, decision: Decision) -> str:
        """Record a decision; returns its request id."""
        request_id = new_request_id()
        self.write_batch([RequestRecord(request_id, task, budget_s, decision)], [])
        return request_id

    def write_batch(self, requests: Sequence[RequestRecord], outcomes: Sequence[OutcomeRecord]) -> list[int]:
        """Store decisions and outcomes in one transaction (all or none; one commit, so one fsync, for the
        whole batch); returns the outcomes' ids in order. Decisions go first, so an outcome may name a
        decision of the same batch."""
        now = time.time()
        with self._writing(), self._sessions.begin() as session:
            if requests:
                session.execute(insert(RequestRow), [
                    {"id": r.id, "created_at": now, "task_json": r.task.model_dump_json(), "budget_s": r.budget_s,
                     "decision_json": r.decision.model_dump_json()} for r in requests])
            if not outcomes:
                return []
            ids = session.scalars(insert(OutcomeRow).returning(OutcomeRow.id, sort_by_parameter_order=True), [
                {"created_at": now, "request_id": o.request_id, "model_id": o.schedule.model_id,
                 "task_json": o.task.model_dump_json(), "schedule_json": o.schedule.model_dump_json(),
                 "accuracy": o.accuracy, "seconds": o.seconds} for o in outcomes])
            return [int(i) for i in ids]

    def get_request(self, request_id: str) -> tuple[TaskMeta, Decision] | None:
        with self._sessions() as session:
            row = session.get(RequestRow, request_id)
            if row is None:
                return None
            try:
                return TaskMeta.model_validate_json(row.task_json), Decision.model_validate_json(row.decision_json)
            except ValidationError as exc:
                log.warning("stored request %s cannot be read by this version: %s", request_id, _first_error(exc))
                raise ZooError(f"request_id {request_id!r} names a schedule stored in a form this version cannot "
                               f"read ({_first_error(exc)}); report the outcome with task and schedule "
                               f"instead") from None

    def add_outcome(self, task: TaskMeta, schedule: Schedule, accuracy: float, seconds: float,
                    request_id: str | None = None) -> int:
        """Record a finished fine-tuning (one transaction); returns its id."""
        return self.write_batch([], [OutcomeRecord(task, schedule, accuracy, seconds, request_id)])[0]

    def experience(self) -> list[Experience]:
        """All readable recorded outcomes, oldest first (see :meth:`read_experience`)."""
        return self.read_experience().records

    def read_experience(self, after_id: int = 0) -> StoredExperience:
        """The recorded outcomes with ids above ``after_id`` (all by default) this version can read, oldest
        first; rows it cannot (malformed JSON, values outside today's schema) are skipped, counted and logged."""
        records: list[Experience] = []
        unreadable = 0
        first = ""
        latest = after_id
        with self._sessions() as session:
            for r in session.scalars(select(OutcomeRow).where(OutcomeRow.id > after_id).order_by(OutcomeRow.id)):
                latest = max(latest, int(r.id))
                try:
                    records.append(Experience(task=TaskMeta.model_validate_json(r.task_json),
                                              schedule=Schedule.model_validate_json(r.schedule_json),
                                              accuracy=r.accuracy, seconds=r.seconds))
                except ValidationError as exc:
                    unreadable += 1
                    first = first or f"outcome {r.id}: {_first_error(exc)}"
        if unreadable:
            log.warning("%d stored outcome(s) cannot be read by this version and are ignored (first: %s)",
                        unreadable, first)
        return StoredExperience(records, unreadable, latest)

    def latest_outcome_id(self) -> int:
        """The id of the newest outcome (0 when none): a cheap check whether experience grew."""
        return self.outcome_watermark()[0]

    def outcome_watermark(self) -> tuple[int, int]:
        """The newest outcome's id and the number of outcomes, in one query: experience changed when either
        did (the count catches a row committed late under an id below one already read, which concurrent
        writers on a server database can produce)."""
        with self._sessions() as session:
            newest, count = session.execute(select(func.coalesce(func.max(OutcomeRow.id), 0), func.count())
                                            .select_from(OutcomeRow)).one()
            return int(newest or 0), int(count or 0)

    def counts(self) -> dict[str, int]:
        with self._sessions() as session:
            return {"requests": int(session.scalar(select(func.count()).select_from(RequestRow)) or 0),
                    "outcomes": int(session.scalar(select(func.count()).select_from(OutcomeRow)) or 0)}


def new_request_id() -> str:
    """A fresh decision id (random, so several service processes never collide)."""
    return uuid.uuid4().hex


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ())) or "<root>"
    return f"{where}: {err.get('msg')}"


def _sqlite_pragmas(dbapi_connection, connection_record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
