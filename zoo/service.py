"""The schedule service: a FastAPI app over a zoo, a predictor and an experience store.

Endpoints (OpenAPI at /docs and /openapi.json):

- ``GET  /health``                 liveness: status, zoo size, experience counts, predictor mode, storage
- ``GET  /ready``                  readiness: 200 when the storage answers and the service is not stopping
- ``GET  /metrics``                Prometheus metrics (requests, latency, load shed, refits, experience)
- ``GET  /v1/manifest``            the zoo's manifest (source task, build settings)
- ``GET  /v1/zoo``                 the model cards
- ``GET  /v1/zoo/{id}``            one card (404 if unknown)
- ``GET  /v1/zoo/{id}/weights``    its pre-trained weights (so a client can probe and fine-tune)
- ``POST /v1/schedule``            task + time budget -> model, regime, predicted accuracy and seconds
- ``POST /v1/outcomes``            what a schedule achieved -> stored durably; the predictor refits
                                   in the background (``?refit=true``: answer after the refit)

Every bad input is a 4xx whose ``error`` says what is wrong. State lives in the app (no globals).

Speed (issue 22): a schedule is one vectorised prediction over the current predictor, which the
background refitter of :mod:`zoo.state` swaps in (requests never wait for a refit or query the
store for one); writes are group-committed by :mod:`zoo.batch_writer` (a request is answered after
its record is durable, and concurrent requests share one transaction); above ``max_in_flight``
concurrent requests the service sheds load with 503 + ``Retry-After`` (:mod:`zoo.middleware`).

Hardening (issue 15): request bodies above ``max_body_bytes`` are refused with 413 before parsing;
every list and number is bounded by the schema (:mod:`zoo.schema`); an outcome is stored only when
the service could have scheduled its task on its model and its seconds and accuracy make physical
sense (:mod:`zoo.checks`); stored rows that are unreadable or implausible are ignored and counted
(``/health``'s ``ignored_outcomes``); and when the learned predictor cannot answer, a schedule
request is answered from the uncorrected prior with a logged warning, so no stored data turns a
request into a 5xx. A failing database is a 503.
"""
from __future__ import annotations

import gc
import logging
import os
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator

from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from zoo.batch_writer import BatchWriter
from zoo.card import Manifest, ModelCard, Zoo
from zoo.checks import outcome_problem
from zoo.errors import ImplausibleOutcome, UnknownModel, ZooError
from zoo.metrics import ServiceMetrics
from zoo.middleware import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_IN_FLIGHT, BodyLimit, RequestGate
from zoo.schema import Decision, OutcomeReport, ScheduleRequest
from zoo.state import DEFAULT_POLL_S, ServiceState
from zoo.store import OutcomeRecord, RequestRecord, Store, new_request_id, redacted

log = logging.getLogger("zoo.service")

#: Environment variables :func:`app_from_environment` reads (``automl serve --workers N`` sets them,
#: since each worker process builds its own app).
ENV_ZOO, ENV_STORAGE, ENV_MAX_BODY, ENV_MAX_IN_FLIGHT = (
    "AUTOML_ZOO_DIR", "AUTOML_ZOO_STORAGE", "AUTOML_ZOO_MAX_BODY_BYTES", "AUTOML_ZOO_MAX_IN_FLIGHT")


class OutcomeAck(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: int
    experience: int
    predictor: str
    learned: bool


class Health(BaseModel):
    model_config = ConfigDict(frozen=True)

    status: str
    models: int
    seed_experience: int
    reported_outcomes: int
    requests: int
    ignored_outcomes: int
    predictor: str
    predictor_version: int
    storage: str


def create_app(zoo: Zoo | str | Path, storage_url: str, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
               max_in_flight: int = DEFAULT_MAX_IN_FLIGHT, poll_s: float = DEFAULT_POLL_S) -> FastAPI:
    """The service app for ``zoo`` (a loaded zoo or its directory) storing experience at ``storage_url``;
    request bodies above ``max_body_bytes`` are refused (413) before they are parsed, and requests beyond
    ``max_in_flight`` at once are shed (503); the store is checked for new outcomes every ``poll_s``."""
    if max_body_bytes < 1:
        raise ZooError(f"max_body_bytes must be at least 1, got {max_body_bytes}")
    if max_in_flight < 1:
        raise ZooError(f"max_in_flight must be at least 1, got {max_in_flight}")
    if not poll_s > 0:
        raise ZooError(f"poll_s must be positive, got {poll_s}")
    zoo = zoo if isinstance(zoo, Zoo) else Zoo.load(zoo)
    store = Store(storage_url)
    metrics = ServiceMetrics()
    state = ServiceState(zoo, store, poll_s=poll_s, on_refit=metrics.on_refit)
    writer = BatchWriter(store, on_commit=metrics.on_commit)
    stopping = [False]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        log.info("zoo %s: %d models, storage %s, request bodies up to %d bytes, %d requests in flight at most",
                 zoo.root, len(zoo), redacted(store.url), max_body_bytes, max_in_flight)
        state.start()
        # what is loaded now (torch, sklearn, the zoo, the predictor) lives as long as the process: out of
        # the collector's sight, a full collection no longer walks it (a third of a request's CPU otherwise)
        gc.freeze()
        yield
        # the server has finished its in-flight requests: commit what is queued, then let go of the store
        stopping[0] = True
        writer.close()
        state.close()
        store.close()
        log.info("stopped: every acknowledged write is committed")

    app = FastAPI(title="automl NASOA schedule service", version="1",
                  description="Fine-tuning schedules from a NASOA model zoo, learned from reported outcomes.",
                  lifespan=lifespan)
    app.state.zoo_state = state
    app.state.writer = writer
    app.state.metrics = metrics
    app.add_middleware(BodyLimit, max_body_bytes=max_body_bytes)
    app.add_middleware(RequestGate, metrics=metrics, max_in_flight=max_in_flight)  # outermost: sheds first

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
        return JSONResponse(status_code=503, headers={"retry-after": "1"}, content={
            "error": f"the experience storage is unavailable ({type(exc).__name__}); try again later"})

    @app.get("/health", response_model=Health)
    async def health() -> Health:
        counts = await run_in_threadpool(store.counts)
        predictor = state.predictor
        return Health(status="stopping" if stopping[0] else "ok", models=len(zoo),
                      seed_experience=len(zoo.seed_experience), reported_outcomes=counts["outcomes"],
                      requests=counts["requests"], ignored_outcomes=state.ignored, predictor=predictor.mode,
                      predictor_version=state.version, storage=store.backend)

    @app.get("/ready")
    async def ready() -> JSONResponse:
        if stopping[0]:
            return JSONResponse(status_code=503, content={"ready": False, "error": "the service is stopping"})
        await run_in_threadpool(store.latest_outcome_id)  # a failing store is a 503 (the storage handler)
        return JSONResponse(content={"ready": True, "predictor_version": state.version})

    @app.get("/metrics")
    async def metrics_text() -> Response:
        body, content_type = metrics.render()
        return Response(content=body, media_type=content_type)

    @app.get("/v1/manifest", response_model=Manifest)
    async def manifest() -> Manifest:
        return zoo.manifest

    @app.get("/v1/zoo", response_model=list[ModelCard])
    async def zoo_list() -> list[ModelCard]:
        return list(zoo)

    @app.get("/v1/zoo/{model_id}", response_model=ModelCard)
    async def zoo_card(model_id: str) -> ModelCard:
        try:
            return zoo.card(model_id)
        except UnknownModel as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None

    @app.get("/v1/zoo/{model_id}/weights")
    async def zoo_weights(model_id: str) -> FileResponse:
        try:
            path = zoo.weights_path(model_id)
        except UnknownModel as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None
        return FileResponse(path, media_type="application/octet-stream", filename=path.name)

    @app.post("/v1/schedule", response_model=Decision)
    async def schedule(request: ScheduleRequest) -> Response:
        for model_id in request.task.probe_scores:
            zoo.card(model_id)  # an unknown model in the probes is a client bug: say so
        request_id = new_request_id()
        decision = state.decide(request).model_copy(update={"request_id": request_id})
        await writer.submit(RequestRecord(request_id, request.task, request.time_budget_s, decision))
        # serialised by pydantic directly (response_model still documents it): no second validation pass
        return Response(decision.model_dump_json(), media_type="application/json")

    @app.post("/v1/outcomes", response_model=OutcomeAck)
    async def outcomes(report: OutcomeReport, refit: bool = False) -> OutcomeAck:
        task, schedule_ = report.task, report.schedule
        if report.request_id is not None:
            found = await run_in_threadpool(store.get_request, report.request_id)
            if found is None:
                raise ZooError(f"unknown request_id {report.request_id!r}: no schedule was issued under that id")
            task = task or found[0]
            schedule_ = schedule_ or found[1].best.schedule
        assert task is not None and schedule_ is not None  # OutcomeReport's validator guarantees it
        # only outcomes the service could have scheduled, with times that make physical sense, are stored
        problem = outcome_problem(zoo, task, schedule_, report.accuracy, report.seconds)
        if problem is not None:
            raise ImplausibleOutcome(problem)
        outcome_id = await writer.submit(OutcomeRecord(task, schedule_, report.accuracy, report.seconds,
                                                       report.request_id))
        assert outcome_id is not None
        if refit:
            await run_in_threadpool(state.refresh)
        else:
            state.wake()
        predictor = state.predictor
        return OutcomeAck(id=outcome_id, experience=predictor.experience, predictor=predictor.mode,
                          learned=state.version >= outcome_id)

    return app


def app_from_environment() -> FastAPI:
    """The app of one ``automl serve --workers N`` worker, configured by the ``AUTOML_ZOO_*`` variables."""
    missing = [name for name in (ENV_ZOO, ENV_STORAGE) if not os.environ.get(name)]
    if missing:
        raise ZooError(f"the service worker needs {' and '.join(missing)} set (automl serve sets them)")
    return create_app(os.environ[ENV_ZOO], os.environ[ENV_STORAGE],
                      max_body_bytes=int(os.environ.get(ENV_MAX_BODY, DEFAULT_MAX_BODY_BYTES)),
                      max_in_flight=int(os.environ.get(ENV_MAX_IN_FLIGHT, DEFAULT_MAX_IN_FLIGHT)))


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
