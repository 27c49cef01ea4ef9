"""The schedule service: a FastAPI app over a zoo, a predictor and an experience store.

Endpoints (OpenAPI at /docs and /openapi.json):

- ``GET  /health``                 status, zoo size, experience counts, predictor mode, storage backend
- ``GET  /v1/manifest``            the zoo's manifest (source task, build settings)
- ``GET  /v1/zoo``                 the model cards
- ``GET  /v1/zoo/{id}``            one card (404 if unknown)
- ``GET  /v1/zoo/{id}/weights``    its pre-trained weights (so a client can probe and fine-tune)
- ``POST /v1/schedule``            task + time budget -> model, regime, predicted accuracy and seconds
- ``POST /v1/outcomes``            what a schedule achieved -> stored, and the predictor refits

Every bad input is a 4xx whose ``error`` says what is wrong. State lives in the app (no globals).

Hardening (issue 15): request bodies above ``max_body_bytes`` are refused with 413 before parsing
(:class:`BodyLimit`); every list and number is bounded by the schema (:mod:`zoo.schema`); an outcome
is stored only when the service could have scheduled its task on its model and its seconds and
accuracy make physical sense (:mod:`zoo.checks`); stored rows that are unreadable or implausible
are ignored and counted (``/health``'s ``ignored_outcomes``); and when the learned predictor cannot
answer, a schedule request is answered from the uncorrected prior with a logged warning, so no stored
data turns a request into a 5xx. A failing database is a 503.
The predictor is refit whenever the store holds outcomes it has not seen (checked on every request
with one cheap query), so several service processes over one PostgreSQL database stay in step and a
restarted service answers from everything it learned before.
"""
from __future__ import annotations

import json
import logging
import threading
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from zoo.card import Manifest, ModelCard, Zoo
from zoo.checks import outcome_problem
from zoo.errors import ImplausibleOutcome, UnknownModel, ZooError
from zoo.predictor import Predictor, fit_predictor
from zoo.schedule import decide
from zoo.schema import Decision, Experience, OutcomeReport, ScheduleRequest
from zoo.store import Store, redacted

log = logging.getLogger("zoo.service")

#: Request bodies above this many bytes are refused (413) before they are parsed. The largest
#: legitimate body (a task with probe scores of MAX_LIST_ITEMS models and as many ids in ``models``,
#: 64-character ids) is about 40 KB; 64 KiB leaves room and keeps a request's memory small.
#: ``automl serve --max-body-bytes`` changes it.
DEFAULT_MAX_BODY_BYTES: int = 64 * 1024


class OutcomeAck(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int
    experience: int
    predictor: str


class Health(BaseModel):
    model_config = ConfigDict(frozen=True)

    status: str
    models: int
    seed_experience: int
    reported_outcomes: int
    requests: int
    ignored_outcomes: int
    predictor: str
    storage: str


class ServiceState:
    """What one app instance holds: the zoo, the store and the current (immutable) predictor.

    Stored data can degrade the predictor but never the service: a refit that fails keeps the
    previous predictor (logged), and :meth:`decide` answers from :attr:`baseline` (the documented prior
    with uncorrected times, which depends on the zoo alone) when the learned predictor cannot.
    """

    def __init__(self, zoo: Zoo, store: Store) -> None:
        self.zoo = zoo
        self.store = store
        self._lock = threading.Lock()
        self.baseline = Predictor(forest=None)
        self._predictor: Predictor = self.baseline
        self._fitted_through = -1
        self.unreadable = 0
        self.refresh()

    @property
    def predictor(self) -> Predictor:
        return self._predictor

    @property
    def ignored(self) -> int:
        """Experience records the current predictor does not learn from (unreadable, implausible, or of
        models this zoo does not hold)."""
        return self.unreadable + self._predictor.skipped + self._predictor.rejected

    def refresh(self) -> Predictor:
        """Refit if the store holds outcomes newer than the current predictor's (one thread refits)."""
        latest = self.store.latest_outcome_id()
        if latest == self._fitted_through:
            return self._predictor
        with self._lock:
            latest = self.store.latest_outcome_id()
            if latest != self._fitted_through:
                stored = self.store.read_experience()
                self._predictor = self._fit([*self.zoo.seed_experience, *stored.records], stored.unreadable)
                self.unreadable = stored.unreadable
                self._fitted_through = max(latest, stored.latest_id)
        return self._predictor

    def _fit(self, experience: list[Experience], unreadable: int) -> Predictor:
        try:
            predictor = fit_predictor(self.zoo, experience)
        except Exception as exc:
            previous = self._predictor
            log.warning("refitting the predictor on %d experience record(s) failed (%s: %s); keeping the "
                        "previous one (%s, %d records)", len(experience), type(exc).__name__, exc,
                        previous.mode, previous.experience, exc_info=True)
            return previous
        ignored = unreadable + predictor.skipped + predictor.rejected
        if ignored:
            log.warning("ignoring %d experience record(s) (stored or seed): %d unreadable, %d implausible, %d of "
                        "models not in this zoo; learning from %d", ignored, unreadable, predictor.rejected,
                        predictor.skipped, predictor.experience)
        return predictor

    def decide(self, request: ScheduleRequest) -> Decision:
        """The decision of the current predictor; if it cannot give one (anything but a refusal of the
        request itself), the uncorrected prior's, with a logged warning."""
        predictor = self.refresh()
        try:
            return decide(self.zoo, predictor, request)
        except ZooError:
            raise  # about the request (unknown model, unservable task): the client's to fix
        except Exception as exc:
            log.warning("the %s predictor (%d records) failed on a schedule request (%s: %s); answering with "
                        "the uncorrected prior", predictor.mode, predictor.experience, type(exc).__name__, exc,
                        exc_info=True)
            return decide(self.zoo, self.baseline, request)


def create_app(zoo: Zoo | str | Path, storage_url: str, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> FastAPI:
    """The service app for ``zoo`` (a loaded zoo or its directory) storing experience at ``storage_url``;
    request bodies above ``max_body_bytes`` are refused (413) before they are parsed."""
    if max_body_bytes < 1:
        raise ZooError(f"max_body_bytes must be at least 1, got {max_body_bytes}")
    zoo = zoo if isinstance(zoo, Zoo) else Zoo.load(zoo)
    store = Store(storage_url)
    state = ServiceState(zoo, store)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        log.info("zoo %s: %d models, storage %s, request bodies up to %d bytes", zoo.root, len(zoo),
                 redacted(store.url), max_body_bytes)
        yield
        store.close()

    app = FastAPI(title="automl NASOA schedule service", version="1",
                  description="Fine-tuning schedules from a NASOA model zoo, learned from reported outcomes.",
                  lifespan=lifespan)
    app.state.zoo_state = state
    app.add_middleware(BodyLimit, max_body_bytes=max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"error": "invalid request: " + describe_errors(exc.errors()),
                                                      "detail": _jsonable(exc.errors())})

    @app.exception_handler(ZooError)
    async def _zoo_error(request: Request, exc: ZooError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"error": str(exc)})

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # FastAPI's own refusals (404, 405, an unparsable body's 400) in the service's shape; for a body
        # FastAPI could not parse, say why (not UTF-8, a number of too many digits, nesting too deep)
        error = str(exc.detail)
        cause = exc.__cause__
        if exc.status_code == 400 and cause is not None:
            reason = str(cause).splitlines()[0][:200] if str(cause) else ""
            error = (f"the body could not be parsed as JSON ({type(cause).__name__}"
                     + (f": {reason})" if reason else ")"))
        return JSONResponse(status_code=exc.status_code, content={"error": error, "detail": exc.detail},
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(SQLAlchemyError)
    async def _storage_error(request: Request, exc: SQLAlchemyError) -> JSONResponse:
        log.error("storage %s failed: %s: %s", redacted(store.url), type(exc).__name__, exc)
        return JSONResponse(status_code=503, content={
            "error": f"the experience storage is unavailable ({type(exc).__name__}); try again later"})

    @app.get("/health", response_model=Health)
    def health() -> Health:
        counts = store.counts()
        predictor = state.refresh()
        return Health(status="ok", models=len(zoo), seed_experience=len(zoo.seed_experience),
                      reported_outcomes=counts["outcomes"], requests=counts["requests"],
                      ignored_outcomes=state.ignored, predictor=predictor.mode, storage=store.backend)

    @app.get("/v1/manifest", response_model=Manifest)
    def manifest() -> Manifest:
        return zoo.manifest

    @app.get("/v1/zoo", response_model=list[ModelCard])
    def zoo_list() -> list[ModelCard]:
        return list(zoo)

    @app.get("/v1/zoo/{model_id}", response_model=ModelCard)
    def zoo_card(model_id: str) -> ModelCard:
        try:
            return zoo.card(model_id)
        except UnknownModel as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None

    @app.get("/v1/zoo/{model_id}/weights")
    def zoo_weights(model_id: str) -> FileResponse:
        try:
            path = zoo.weights_path(model_id)
        except UnknownModel as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None
        return FileResponse(path, media_type="application/octet-stream", filename=path.name)

    @app.post("/v1/schedule", response_model=Decision)
    def schedule(request: ScheduleRequest) -> Decision:
        for model_id in request.task.probe_scores:
            zoo.card(model_id)  # an unknown model in the probes is a client bug: say so
        decision = state.decide(request)
        request_id = store.add_request(request.task, request.time_budget_s, decision)
        return decision.model_copy(update={"request_id": request_id})

    @app.post("/v1/outcomes", response_model=OutcomeAck)
    def outcomes(report: OutcomeReport) -> OutcomeAck:
        task, schedule_ = report.task, report.schedule
        if report.request_id is not None:
            found = store.get_request(report.request_id)
            if found is None:
                raise ZooError(f"unknown request_id {report.request_id!r}: no schedule was issued under that id")
            task = task or found[0]
            schedule_ = schedule_ or found[1].best.schedule
        assert task is not None and schedule_ is not None  # OutcomeReport's validator guarantees it
        # only outcomes the service could have scheduled, with times that make physical sense, are stored
        problem = outcome_problem(zoo, task, schedule_, report.accuracy, report.seconds)
        if problem is not None:
            raise ImplausibleOutcome(problem)
        outcome_id = store.add_outcome(task, schedule_, report.accuracy, report.seconds, report.request_id)
        predictor = state.refresh()
        return OutcomeAck(id=outcome_id, experience=predictor.experience, predictor=predictor.mode)

    return app


class BodyLimit:
    """ASGI middleware: HTTP request bodies above ``max_body_bytes`` are answered with 413 before the app
    (and its JSON parser) sees a byte of them.

    A declared ``Content-Length`` above the limit is refused at once (a malformed one is a 400); a body
    without one (chunked) is read and counted chunk by chunk, refused as soon as the count passes the
    limit, and otherwise handed to the app as it came. Memory per request is thus at most the limit.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = [v for k, v in scope.get("headers", ()) if k.lower() == b"content-length"]
        if declared:
            try:
                length = int(declared[0])
                if length < 0 or len(set(declared)) > 1:
                    raise ValueError
            except ValueError:
                await _refuse(send, 400, f"the Content-Length header {declared[0][:40]!r} is not one "
                                         "non-negative integer")
                return
            if length > self.max_body_bytes:
                await _refuse(send, 413, f"the request body of {length} bytes exceeds the limit of "
                                         f"{self.max_body_bytes} bytes", max_body_bytes=self.max_body_bytes)
                return
        chunks: list[bytes] = []
        size = 0
        first: Message | None = None
        while first is None:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: let the app see that
                first = message
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await _refuse(send, 413, f"the request body exceeds the limit of {self.max_body_bytes} bytes "
                                         f"(more than {size - len(chunk)} bytes were already received)",
                              max_body_bytes=self.max_body_bytes)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                first = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed and first is not None:
                replayed = True
                return first
            return await receive()

        await self.app(scope, replay, send)


async def _refuse(send: Send, status: int, error: str, **extra: Any) -> None:
    body = json.dumps({"error": error, **extra}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def describe_errors(errors: Any) -> str:
    """Pydantic/FastAPI validation errors as one readable line: ``body.task.num_classes: ...; ...``."""
    parts = []
    for err in list(errors)[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()))
        msg = err.get("msg", "invalid")
        if err.get("type") == "json_invalid":
            msg = f"the body is not valid JSON ({err.get('ctx', {}).get('error', 'parse error')})"
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts) or "invalid input"


def _jsonable(errors: Any) -> list[dict[str, Any]]:
    return [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg")), "type": str(e.get("type"))}
            for e in errors]
