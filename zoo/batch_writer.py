"""Group commit for the service's writes: concurrent requests share one transaction (one fsync).

Each request hands its record to :meth:`BatchWriter.submit` and awaits the returned future; one
background thread takes everything queued, stores it with :meth:`zoo.store.Store.write_batch` and
resolves every future of the batch (with the outcome ids, or with the storage's exception). A
request is answered only after its record is committed, so an acknowledged outcome or a handed-out
request id survives a kill; while one batch commits the next one gathers, so throughput follows
the CPU, not the disk's sync latency.
"""
from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from zoo.store import OutcomeRecord, RequestRecord, Store

log = logging.getLogger("zoo.batch_writer")

#: The most records one transaction takes (a larger backlog is written in several).
MAX_BATCH: int = 512


@dataclass(frozen=True)
class _Pending:
    record: RequestRecord | OutcomeRecord
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[int | None]


class BatchWriter:
    """One writer thread over ``store``; started on first use, stopped (after draining) by :meth:`close`.

    ``on_commit(batch_size, seconds)`` is told of every committed batch (for metrics)."""

    def __init__(self, store: Store, on_commit: Callable[[int, float], None] | None = None) -> None:
        self.store = store
        self._on_commit = on_commit
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False

    def submit(self, record: RequestRecord | OutcomeRecord) -> asyncio.Future[int | None]:
        """Queue ``record``; the future resolves once it is committed: an outcome's id, None for a decision."""
        if self._closed:
            raise RuntimeError("the service is shutting down and accepts no more writes")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int | None] = loop.create_future()
        self._ensure_thread()
        self._queue.put(_Pending(record, loop, future))
        return future

    def pending(self) -> int:
        """Records queued but not yet committed (approximate)."""
        return self._queue.qsize()

    def close(self, timeout: float = 30.0) -> None:
        """Commit everything queued, then stop the thread (graceful shutdown)."""
        self._closed = True
        thread = self._thread
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout)
            if thread.is_alive():
                log.error("the writer did not drain its queue within %.0f s at shutdown", timeout)

    def _ensure_thread(self) -> None:
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="zoo-batch-writer", daemon=True)
                    self._thread.start()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            started = time.perf_counter()
            requests = [p.record for p in batch if isinstance(p.record, RequestRecord)]
            outcomes = [p for p in batch if isinstance(p.record, OutcomeRecord)]
            try:
                ids = self.store.write_batch(requests, [p.record for p in outcomes])  # type: ignore[misc]
            except Exception as exc:  # every waiting request gets the storage's error (a 503), none is lost silently
                log.error("writing a batch of %d record(s) failed: %s: %s", len(batch), type(exc).__name__, exc)
                _resolve(batch, [exc] * len(batch))
                continue
            by_outcome = {id(p): i for p, i in zip(outcomes, ids)}
            _resolve(batch, [by_outcome.get(id(p)) for p in batch])
            if self._on_commit is not None:
                self._on_commit(len(batch), time.perf_counter() - started)


def _resolve(batch: list[_Pending], values: list[int | BaseException | None]) -> None:
    """Settle the futures of ``batch`` with ``values`` (results or exceptions): one wake-up of each event
    loop per batch, not one per record."""
    by_loop: dict[int, tuple[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[int | None], Any]]]] = {}
    for p, value in zip(batch, values):
        by_loop.setdefault(id(p.loop), (p.loop, []))[1].append((p.future, value))
    for loop, settled in by_loop.values():
        try:
            loop.call_soon_threadsafe(_settle, settled)
        except RuntimeError:  # that loop is closed: nobody is waiting any more
            log.debug("an event loop closed before its %d write(s) were acknowledged", len(settled))


def _settle(settled: list[tuple[asyncio.Future[int | None], Any]]) -> None:
    for future, value in settled:
        if future.done():  # the client went away and the request was cancelled
            continue
        if isinstance(value, BaseException):
            future.set_exception(value)
        else:
            future.set_result(value)
