"""What one service process holds: the zoo, the store and the current (immutable) predictor.

Refits run off the request path: a background thread polls the store (one cheap query every
``poll_s``, and at once when this process stored an outcome), reads only the outcomes it has not
read yet (all of them again when the outcome count says a row was committed late under a lower id,
as concurrent writers on a server database can do), refits, and swaps the new predictor in with one
assignment, so a request reads whichever version is current and never waits for a refit. Under a
stream of outcomes it refits at most once per :data:`REFIT_PACE` times the last refit's duration
after it ended (and once per ``poll_s``), so refits take at most about a fifth of a core however fast
outcomes arrive. The process's first fit (module imports, cold caches) does not set the pace.
Several service processes over one database (``--workers``, or several hosts on PostgreSQL)
converge within ``poll_s``; a restarted service answers from everything it learned before (the
first fit runs before it serves).
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from zoo.card import Zoo
from zoo.errors import ZooError
from zoo.predictor import Predictor, fit_predictor
from zoo.schedule import decide
from zoo.schema import Decision, Experience, ScheduleRequest
from zoo.store import Store, redacted

log = logging.getLogger("zoo.state")

#: Seconds between the background thread's checks of the store for new outcomes.
DEFAULT_POLL_S: float = 0.25

#: The background thread waits this many times the last refit's duration before the next one.
REFIT_PACE: float = 4.0

#: ``on_refit(experience, version, seconds, ok)``: told of every refit (for metrics).
RefitHook = Callable[[int, int, float, bool], None]


class ServiceState:
    """The zoo, the store and the current predictor of one service process.

    Stored data can degrade the predictor but never the service: a refit that fails keeps the
    previous predictor (logged), and :meth:`decide` answers from :attr:`baseline` (the documented prior
    with uncorrected times, which depends on the zoo alone) when the learned predictor cannot.
    """

    def __init__(self, zoo: Zoo, store: Store, *, poll_s: float = DEFAULT_POLL_S,
                 on_refit: RefitHook | None = None) -> None:
        self.zoo = zoo
        self.store = store
        self.poll_s = poll_s
        self._on_refit = on_refit
        self._lock = threading.Lock()
        self.baseline = Predictor(forest=None)
        self._predictor: Predictor = self.baseline
        self._fitted_through = -1
        self._stored: list[Experience] = []  # every readable stored outcome, oldest first
        self._read_through = 0
        self._rows_read = 0  # stored rows read so far, readable or not
        self._watermark = (-1, -1)  # the store's (newest outcome id, outcome count) at the last fit
        self.unreadable = 0
        self._last_refit_s = 0.0
        self._refit_done_at = 0.0  # time.monotonic() when the last refit ended
        self._refits = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.refresh()

    @property
    def predictor(self) -> Predictor:
        return self._predictor

    @property
    def version(self) -> int:
        """The id of the newest stored outcome the current predictor learned from (0: none)."""
        return max(self._fitted_through, 0)

    @property
    def ignored(self) -> int:
        """Experience records the current predictor does not learn from (unreadable, implausible, or of
        models this zoo does not hold)."""
        return self.unreadable + self._predictor.skipped + self._predictor.rejected

    def refresh(self) -> Predictor:
        """Refit now if the store's outcomes changed since the current predictor's fit (one thread refits)."""
        if self.store.outcome_watermark() == self._watermark:
            return self._predictor
        with self._lock:
            watermark = self.store.outcome_watermark()
            if watermark != self._watermark:
                started = time.perf_counter()
                new = self.store.read_experience(after_id=self._read_through)
                if self._rows_read + len(new.records) + new.unreadable < watermark[1]:
                    # a row committed late under an id below those read (concurrent writers): read it all again
                    new = self.store.read_experience()
                    self._stored, self.unreadable, self._rows_read = [], 0, 0
                self._stored.extend(new.records)
                self.unreadable += new.unreadable
                self._rows_read += len(new.records) + new.unreadable
                self._read_through = new.latest_id
                predictor, ok = self._fit([*self.zoo.seed_experience, *self._stored], self.unreadable)
                self._predictor = predictor
                self._watermark = watermark
                self._fitted_through = max(watermark[0], new.latest_id)
                seconds = time.perf_counter() - started
                self._last_refit_s = seconds if self._refits else 0.0
                self._refits += 1
                self._refit_done_at = time.monotonic()
                if self._on_refit is not None:
                    self._on_refit(predictor.experience, self.version, seconds, ok)
        return self._predictor

    def _fit(self, experience: list[Experience], unreadable: int) -> tuple[Predictor, bool]:
        try:
            predictor = fit_predictor(self.zoo, experience)
        except Exception as exc:
            previous = self._predictor
            log.warning("refitting the predictor on %d experience record(s) failed (%s: %s); keeping the "
                        "previous one (%s, %d records)", len(experience), type(exc).__name__, exc,
                        previous.mode, previous.experience, exc_info=True)
            return previous, False
        ignored = unreadable + predictor.skipped + predictor.rejected
        if ignored:
            log.warning("ignoring %d experience record(s) (stored or seed): %d unreadable, %d implausible, %d of "
                        "models not in this zoo; learning from %d", ignored, unreadable, predictor.rejected,
                        predictor.skipped, predictor.experience)
        return predictor, True

    def decide(self, request: ScheduleRequest) -> Decision:
        """The decision of the current predictor; if it cannot give one (anything but a refusal of the
        request itself), the uncorrected prior's, with a logged warning."""
        predictor = self._predictor
        try:
            return decide(self.zoo, predictor, request)
        except ZooError:
            raise  # about the request (unknown model, unservable task): the client's to fix
        except Exception as exc:
            log.warning("the %s predictor (%d records) failed on a schedule request (%s: %s); answering with "
                        "the uncorrected prior", predictor.mode, predictor.experience, type(exc).__name__, exc,
                        exc_info=True)
            return decide(self.zoo, self.baseline, request)

    # --- the background refitter --------------------------------------------------------------------
    def start(self) -> None:
        """Start the background thread (idempotent)."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="zoo-refitter", daemon=True)
            self._thread.start()

    def wake(self) -> None:
        """Check the store now (this process just stored an outcome)."""
        self._wake.set()

    def close(self, timeout: float = 30.0) -> None:
        """Stop the background thread (a refit in progress finishes first)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _paced(self) -> bool:
        """Wait until :data:`REFIT_PACE` x the last refit's duration has passed since it ended (re-read
        while waiting: a refit on the request path moves it); True when the service is stopping."""
        while not self._stop.is_set():
            left = self._refit_done_at + REFIT_PACE * self._last_refit_s - time.monotonic()
            if left <= 0:
                return False
            self._stop.wait(min(left, self.poll_s))
        return True

    def _run(self) -> None:
        failing = False
        while not self._stop.is_set():
            self._wake.wait(self.poll_s)
            self._wake.clear()
            if self._paced():
                break
            try:
                self.refresh()
            except Exception as exc:  # a storage outage: keep serving the current predictor, say so once
                if not failing:
                    log.error("checking storage %s for new outcomes failed (%s: %s); serving the current "
                              "predictor until it answers", redacted(self.store.url), type(exc).__name__, exc)
                failing = True
                continue
            if failing:
                log.warning("storage %s answers again", redacted(self.store.url))
            failing = False
