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
The predictor is refit whenever the store holds outcomes it has not seen (checked on every request
with one cheap query), so several service processes over one PostgreSQL database stay in step and a
restarted service answers from everything it learned before.
"""
from __future__ import annotations

import logging
import threading
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict

from zoo.card import Manifest, ModelCard, Zoo
from zoo.errors import UnknownModel, UnservableTask, ZooError
from zoo.predictor import Predictor, fit_predictor
from zoo.schedule import decide
from zoo.schema import Decision, OutcomeReport, ScheduleRequest
from zoo.store import Store, redacted

log = logging.getLogger("zoo.service")


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
    predictor: str
    storage: str


class ServiceState:
    """What one app instance holds: the zoo, the store and the current (immutable) predictor."""

    def __init__(self, zoo: Zoo, store: Store) -> None:
        self.zoo = zoo
        self.store = store
        self._lock = threading.Lock()
        self._predictor: Predictor = fit_predictor(zoo, zoo.seed_experience)
        self._fitted_through = -1
        self.refresh()

    @property
    def predictor(self) -> Predictor:
        return self._predictor

    def refresh(self) -> Predictor:
        """Refit if the store holds outcomes newer than the current predictor's (one thread refits)."""
        latest = self.store.latest_outcome_id()
        if latest == self._fitted_through:
            return self._predictor
        with self._lock:
            latest = self.store.latest_outcome_id()
            if latest != self._fitted_through:
                experience = [*self.zoo.seed_experience, *self.store.experience()]
                self._predictor = fit_predictor(self.zoo, experience)
                self._fitted_through = latest
        return self._predictor


def create_app(zoo: Zoo | str | Path, storage_url: str) -> FastAPI:
    """The service app for ``zoo`` (a loaded zoo or its directory) storing experience at ``storage_url``."""
    zoo = zoo if isinstance(zoo, Zoo) else Zoo.load(zoo)
    store = Store(storage_url)
    state = ServiceState(zoo, store)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        log.info("zoo %s: %d models, storage %s", zoo.root, len(zoo), redacted(store.url))
        yield
        store.close()

    app = FastAPI(title="automl NASOA schedule service", version="1",
                  description="Fine-tuning schedules from a NASOA model zoo, learned from reported outcomes.",
                  lifespan=lifespan)
    app.state.zoo_state = state

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"error": "invalid request: " + describe_errors(exc.errors()),
                                                      "detail": _jsonable(exc.errors())})

    @app.exception_handler(ZooError)
    async def _zoo_error(request: Request, exc: ZooError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"error": str(exc)})

    @app.get("/health", response_model=Health)
    def health() -> Health:
        counts = store.counts()
        return Health(status="ok", models=len(zoo), seed_experience=len(zoo.seed_experience),
                      reported_outcomes=counts["outcomes"], requests=counts["requests"],
                      predictor=state.refresh().mode, storage=store.backend)

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
        decision = decide(zoo, state.refresh(), request)
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
        card = zoo.card(schedule_.model_id)
        if schedule_.frozen_stages > card.num_stages:
            raise UnservableTask(f"model {card.id!r} has {card.num_stages} stages; "
                                 f"frozen_stages={schedule_.frozen_stages} is impossible")
        outcome_id = store.add_outcome(task, schedule_, report.accuracy, report.seconds, report.request_id)
        predictor = state.refresh()
        return OutcomeAck(id=outcome_id, experience=predictor.experience, predictor=predictor.mode)

    return app


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
