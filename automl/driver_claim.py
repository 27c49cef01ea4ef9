"""Which driver runs a study: a claim taken atomically, renewed by a heartbeat, released at the end.

On a database (Optuna's RDB storage) the claim is a row of our own table ``automl_driver_claims`` in the
same database, changed only by compare-and-set on its token, so two drivers starting at the same moment
cannot both win: the loser sees the winner's fresh claim and gets the usual "being run by another
driver" error. Other storages (in memory: one process) keep the claim as a study attribute.
"""
from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

from optuna.storages import BaseStorage, RDBStorage

from automl.errors import StorageError

GRACE_S = 30.0  # a driver silent for longer is taken for dead
_TABLE = "automl_driver_claims"
_ATTR = "automl:driver"


@dataclass(frozen=True)
class DriverRecord:
    """Who holds a study: host, pid, the time of its last heartbeat (0: released) and its claim token."""

    host: str
    pid: int
    beat: float
    token: str = ""

    def alive(self, now: float, pid_alive: Callable[[int], bool]) -> bool:
        """Whether this driver must be taken for running: it beat within the grace period and, on this
        host, its process exists (this process counts: another thread of it may be driving the study)."""
        if self.beat <= 0 or now - self.beat >= GRACE_S:
            return False
        return self.host != socket.gethostname() or pid_alive(self.pid)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class DriverClaim:
    """The claim on one study for this process."""

    def __init__(self, storage: BaseStorage, study_id: int, study_name: str) -> None:
        self.storage = storage
        self.study_id = study_id
        self.study_name = study_name
        self.token = ""
        self._table: Any = _claims_table(storage) if isinstance(storage, RDBStorage) else None

    def current(self) -> DriverRecord | None:
        """The study's claim as stored (None: no driver ever ran it)."""
        if self._table is None:
            raw = self.storage.get_study_user_attrs(self.study_id).get(_ATTR)
            return None if raw is None else DriverRecord(str(raw["host"]), int(raw["pid"]), float(raw["beat"]),
                                                         str(raw.get("token", "")))
        from sqlalchemy import select

        table = self._table
        with self._engine().begin() as conn:
            row = conn.execute(select(table.c.host, table.c.pid, table.c.beat, table.c.token)
                               .where(table.c.study_id == self.study_id)).first()
        return None if row is None else DriverRecord(row.host, int(row.pid), float(row.beat), row.token)

    def take(self) -> None:
        """Claim the study, or raise StorageError naming the live driver that holds it."""
        for _ in range(20):  # each retry means another driver changed the claim in between: re-read it
            held = self.current()
            if held is not None and held.alive(time.time(), pid_alive):
                silent_for = time.time() - held.beat
                raise StorageError(
                    f"study {self.study_name!r} is being run by another driver (pid {held.pid} on {held.host}, "
                    f"alive {silent_for:.0f}s ago); stop it first, or if it was killed on another machine, wait "
                    f"{GRACE_S:.0f}s")
            token = uuid.uuid4().hex
            if self._swap(held, DriverRecord(socket.gethostname(), os.getpid(), time.time(), token)):
                self.token = token
                return
        raise StorageError(f"study {self.study_name!r}: could not claim it, other drivers keep changing its claim")

    def beat(self, release: bool = False) -> None:
        """Renew the claim (``release``: give it up); StorageError when another driver took it over."""
        held = self.current()
        if held is None or held.token != self.token:
            raise StorageError(f"study {self.study_name!r} was taken over by another driver "
                               f"(pid {held.pid if held else '?'} on {held.host if held else '?'}): this driver was "
                               f"silent for more than {GRACE_S:.0f}s; stopping")
        mine = DriverRecord(held.host, held.pid, 0.0 if release else time.time(), self.token)
        if not self._swap(held, mine):
            raise StorageError(f"study {self.study_name!r} was taken over by another driver; stopping")

    def _swap(self, old: DriverRecord | None, new: DriverRecord) -> bool:
        """Store ``new`` if the claim is still ``old`` (compare-and-set on the token)."""
        values = {"host": new.host, "pid": new.pid, "beat": new.beat, "token": new.token}
        if self._table is None:
            self.storage.set_study_user_attr(self.study_id, _ATTR, values)
            return True
        from sqlalchemy import exc, insert, update

        table = self._table
        try:
            with self._engine().begin() as conn:
                if old is None:
                    conn.execute(insert(table).values(study_id=self.study_id, **values))
                    return True
                result = conn.execute(update(table).where(table.c.study_id == self.study_id,
                                                          table.c.token == old.token).values(**values))
                return bool(result.rowcount == 1)
        except exc.IntegrityError:  # another driver inserted the first claim at the same moment
            return False

    def _engine(self) -> Any:
        assert isinstance(self.storage, RDBStorage)
        return self.storage.engine


def _claims_table(storage: RDBStorage) -> Any:
    """Our claims table in the storage's database, created if missing (its own metadata: Optuna's
    schema and migrations are not touched)."""
    from sqlalchemy import Column, Float, Integer, MetaData, String, Table, exc, inspect

    table = Table(_TABLE, MetaData(), Column("study_id", Integer, primary_key=True, autoincrement=False),
                  Column("host", String(255), nullable=False), Column("pid", Integer, nullable=False),
                  Column("beat", Float, nullable=False), Column("token", String(64), nullable=False))
    try:
        table.create(storage.engine, checkfirst=True)
    except (exc.OperationalError, exc.ProgrammingError):  # created by another driver between check and create
        if not inspect(storage.engine).has_table(_TABLE):
            raise
    return table
