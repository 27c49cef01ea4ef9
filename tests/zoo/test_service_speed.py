"""Issue 22 (service speed): what makes the schedule service fast must not change what it answers.

The vectorised scoring agrees with the row-by-row features and sklearn's forest; the prior and the
forest blend by experience size; writes are group-committed and every waiting request learns the
outcome of its commit; overload is shed with 503 + Retry-After; /metrics counts what happened;
``--workers N`` and ``--log-format json`` configure uvicorn as documented. In-process, over a
synthetic zoo (:mod:`zoo.testing`), except the one real two-worker server at the end.
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from zoo.store import Store
from zoo.testing import synthetic_zoo, wait_until_serving

AUTOML = str(Path(sys.executable).parent / "automl")


@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synthetic") / "zoo"
    synthetic_zoo(out, models=3, seed_experience=40)
    return out


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/experience.db"


def _task(**kw: Any) -> Any:
    from zoo.schema import TaskMeta

    return TaskMeta(**{"num_classes": 3, "num_samples": 300, "input_shape": (1, 8, 8),
                       "probe_scores": {"nasoa-0": 0.6, "nasoa-1": 0.8}, **kw})


def test_vectorised_scoring_matches_the_row_by_row_features_and_sklearn(zoo_dir: Path) -> None:
    from zoo.card import Zoo
    from zoo.features import FEATURE_NAMES, feature_matrix, grid_features
    from zoo.predictor import fit_predictor, forest_mean
    from zoo.schedule import candidate_grid

    zoo = Zoo.load(zoo_dir)
    predictor = fit_predictor(zoo, zoo.seed_experience)
    assert predictor.forest is not None and predictor.compiled is not None
    task = _task()
    grid = candidate_grid(zoo, predictor, task, 30.0)
    rows = feature_matrix([(task, zoo.card(s.model_id), s) for s in grid.schedules()])
    x = grid_features(task, grid)
    np.testing.assert_allclose(x, rows, rtol=1e-12, atol=0)
    # the columns mean what FEATURE_NAMES says (spelled out for the last schedule of a probed model)
    i = max(j for j in range(len(grid)) if grid.schedule(j).model_id == "nasoa-1")
    s = grid.schedule(i)
    card = zoo.card(s.model_id)
    probe = task.probe_scores[card.id]
    expected = {"log2_classes": math.log2(3), "log10_samples": math.log10(300), "log2_pixels": math.log2(64),
                "probe": probe, "probe_gap": probe - 0.8, "has_probe": 1.0, "log10_params": math.log10(card.params),
                "log10_flops": math.log10(card.flops), "source_accuracy": card.source_accuracy,
                "log10_lr": math.log10(s.lr), "frozen_stages": s.frozen_stages,
                "frozen_fraction": s.frozen_stages / card.num_stages, "log2_epochs": math.log2(s.epochs),
                "log10_samples_seen": math.log10(s.epochs * 300)}
    np.testing.assert_allclose(x[i], [expected[name] for name in FEATURE_NAMES], rtol=1e-12)
    unprobed = [j for j in range(len(grid)) if grid.schedule(j).model_id == "nasoa-2"]
    assert unprobed and np.all(x[unprobed, 3] == -1.0) and np.all(x[unprobed, 4:6] == 0.0)
    np.testing.assert_array_equal(forest_mean(predictor.forest, x), predictor.forest.predict(x))
    np.testing.assert_allclose(predictor.compiled(x), predictor.forest.predict(x), atol=1e-5)
    acc, secs = predictor.predict_grid(task, grid)
    acc_rows, secs_rows = predictor.predict(zoo, task, grid.schedules())
    np.testing.assert_allclose(acc, acc_rows, atol=1e-12)
    np.testing.assert_allclose(secs, secs_rows, rtol=1e-12)


def test_the_prior_fades_into_the_forest_as_experience_grows(zoo_dir: Path) -> None:
    from zoo.card import Zoo
    from zoo.features import grid_features
    from zoo.predictor import MIN_EXPERIENCE, PRIOR_RECORDS, fit_predictor, prior_accuracy
    from zoo.schedule import candidate_grid

    zoo = Zoo.load(zoo_dir)
    assert fit_predictor(zoo, zoo.seed_experience[: MIN_EXPERIENCE - 1]).mode == "prior"
    young = fit_predictor(zoo, zoo.seed_experience[:MIN_EXPERIENCE])
    old = fit_predictor(zoo, zoo.seed_experience)
    assert young.mode == old.mode == "learned"
    assert young.forest_weight == pytest.approx(MIN_EXPERIENCE / (MIN_EXPERIENCE + PRIOR_RECORDS))
    assert old.forest_weight > young.forest_weight
    task = _task()
    grid = candidate_grid(zoo, young, task, 30.0)
    acc, _ = young.predict_grid(task, grid)
    assert young.compiled is not None
    learned = young.compiled(grid_features(task, grid))
    w = young.forest_weight
    np.testing.assert_allclose(acc, np.clip(w * learned + (1 - w) * prior_accuracy(task, grid), 0, 1), atol=1e-9)


def test_an_outcome_committed_late_under_a_lower_id_is_still_learned(zoo_dir: Path, db: str) -> None:
    """Concurrent writers on a server database can commit id 11 before id 10: the refitter reads only new
    rows, yet must not skip the late one (it is caught by the outcome count)."""
    from sqlalchemy import insert

    from zoo.card import Zoo
    from zoo.state import ServiceState
    from zoo.store import OutcomeRow, Store
    from zoo.testing import synthetic_experience

    zoo = Zoo.load(zoo_dir)
    store = Store(db)
    try:
        state = ServiceState(zoo, store)
        seed = state.predictor.experience
        records = synthetic_experience(zoo, 3, seed=5)

        def commit(outcome_id: int, e: Any) -> None:  # an insert under an id handed out earlier
            with store._sessions.begin() as session:
                session.execute(insert(OutcomeRow).values(
                    id=outcome_id, created_at=0.0, request_id=None, model_id=e.schedule.model_id,
                    task_json=e.task.model_dump_json(), schedule_json=e.schedule.model_dump_json(),
                    accuracy=e.accuracy, seconds=e.seconds))

        commit(10, records[0])
        commit(12, records[1])
        assert state.refresh().experience == seed + 2 and state.version == 12
        commit(11, records[2])  # the late one, below what was read
        assert state.refresh().experience == seed + 3 and state.version == 12
        assert state.refresh().experience == seed + 3  # nothing changed: no refit, nothing read twice
    finally:
        store.close()


def test_concurrent_writes_share_transactions_and_all_are_acknowledged(tmp_path: Path) -> None:
    from zoo.batch_writer import BatchWriter
    from zoo.schema import Schedule
    from zoo.store import OutcomeRecord, Store

    store = Store(f"sqlite:///{tmp_path}/w.db")
    batches: list[int] = []
    writer = BatchWriter(store, on_commit=lambda n, s: batches.append(n))
    schedule = Schedule(model_id="nasoa-0", lr=0.01, frozen_stages=0, epochs=3)

    async def many() -> list[int | None]:
        futures = [writer.submit(OutcomeRecord(_task(), schedule, 0.5 + i / 1000, 1.0)) for i in range(200)]
        return list(await asyncio.gather(*futures))

    ids = asyncio.run(many())
    writer.close()
    assert len(set(ids)) == 200 and sum(batches) == 200 and len(batches) < 200  # grouped, none dropped
    stored = store.read_experience().records
    assert [round(e.accuracy, 3) for e in stored] == [round(0.5 + i / 1000, 3) for i in range(200)]
    with pytest.raises(RuntimeError, match="shutting down"):
        asyncio.run(_submit(writer, OutcomeRecord(_task(), schedule, 0.5, 1.0)))


async def _submit(writer: Any, record: Any) -> Any:
    return await writer.submit(record)


def test_a_failing_commit_reaches_every_waiting_request(tmp_path: Path) -> None:
    from sqlalchemy.exc import OperationalError

    from zoo.batch_writer import BatchWriter
    from zoo.schema import Schedule
    from zoo.store import OutcomeRecord, Store

    store = Store(f"sqlite:///{tmp_path}/w.db")

    def down(*args: Any) -> Any:
        raise OperationalError("INSERT", {}, Exception("disk full"))

    store.write_batch = down  # type: ignore[method-assign]
    writer = BatchWriter(store)
    schedule = Schedule(model_id="nasoa-0", lr=0.01, frozen_stages=0, epochs=3)

    async def many() -> list[Any]:
        futures = [writer.submit(OutcomeRecord(_task(), schedule, 0.5, 1.0)) for _ in range(20)]
        return list(await asyncio.gather(*futures, return_exceptions=True))

    results = asyncio.run(many())
    writer.close()
    assert len(results) == 20 and all(isinstance(r, OperationalError) for r in results)


def test_overload_is_shed_with_retry_after_and_probes_still_answer() -> None:
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from zoo.metrics import ServiceMetrics
    from zoo.middleware import RequestGate

    release = asyncio.Event()

    async def slow(request: Any) -> JSONResponse:
        await release.wait()
        return JSONResponse({"ok": True})

    async def health(request: Any) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    metrics = ServiceMetrics()
    app = RequestGate(Starlette(routes=[Route("/slow", slow), Route("/health", health)]), metrics, max_in_flight=2)

    async def scenario() -> tuple[list[httpx.Response], httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            held = [asyncio.create_task(client.get("/slow")) for _ in range(2)]
            await asyncio.sleep(0.05)
            refused = await client.get("/slow")
            probe = await client.get("/health")
            release.set()
            return list(await asyncio.gather(*held)), refused, probe

    held, refused, probe = asyncio.run(scenario())
    assert [r.status_code for r in held] == [200, 200]
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1" and "limit" in refused.json()["error"]
    assert probe.status_code == 200
    text = metrics.render()[0].decode()
    assert "automl_zoo_shed_requests_total 1.0" in text
    assert 'automl_zoo_http_requests_total{endpoint="/slow",method="GET",status="200"} 2.0' in text


def test_metrics_count_requests_refits_and_experience(zoo_dir: Path, db: str) -> None:
    from zoo.service import create_app

    with TestClient(create_app(zoo_dir, db), raise_server_exceptions=False) as client:
        body = {"task": _task().model_dump(mode="json"), "time_budget_s": 5.0}
        for _ in range(3):
            assert client.post("/v1/schedule", json=body).status_code == 200
        assert client.post("/v1/schedule", json={**body, "time_budget_s": -1}).status_code == 422
        decision = client.post("/v1/schedule", json=body).json()
        ack = client.post("/v1/outcomes?refit=true", json={"request_id": decision["request_id"], "accuracy": 0.7,
                                                           "seconds": decision["best"]["predicted_seconds"]})
        assert ack.status_code == 200 and ack.json()["learned"] is True, ack.text
        r = client.get("/metrics")
        assert client.get("/ready").json()["ready"] is True
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert 'automl_zoo_http_requests_total{endpoint="/v1/schedule",method="POST",status="200"} 4.0' in text
    assert 'automl_zoo_http_requests_total{endpoint="/v1/schedule",method="POST",status="422"} 1.0' in text
    assert 'automl_zoo_http_request_seconds_count{endpoint="/v1/schedule"} 5.0' in text
    assert "automl_zoo_predictor_refits_total 2.0" in text  # at start, and after the outcome
    assert "automl_zoo_experience_records 41.0" in text
    assert "automl_zoo_write_batch_records_sum 5.0" in text  # four decisions and one outcome, all committed


def test_json_logs_are_one_object_per_line() -> None:
    from zoo.logs import JsonFormatter, configure_logging

    record = logging.LogRecord("zoo.service", logging.WARNING, __file__, 1, "stored %d rows", (3,), None)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["level"] == "warning" and entry["logger"] == "zoo.service" and entry["message"] == "stored 3 rows"
    assert entry["time"].endswith("Z")
    config = configure_logging("json", "info")
    assert config["formatters"]["service"]["()"] == "zoo.logs.JsonFormatter"
    assert set(config["loggers"]) >= {"uvicorn", "uvicorn.access", "zoo"}
    with pytest.raises(ValueError, match="log_format"):
        configure_logging("xml", "info")


def test_serve_with_workers_hands_uvicorn_an_app_factory_and_its_settings(zoo_dir: Path, db: str,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    import uvicorn

    from zoo.cli import add_serve_command
    from zoo.errors import ZooError
    from zoo.service import ENV_STORAGE, ENV_ZOO, app_from_environment

    parser = argparse.ArgumentParser()
    add_serve_command(parser.add_subparsers())
    for bad in (["--workers", "0"], ["--max-in-flight", "0"], ["--log-format", "xml"]):
        with pytest.raises(SystemExit):
            parser.parse_args(["serve", "--zoo", str(zoo_dir), *bad])
    args = parser.parse_args(["serve", "--zoo", str(zoo_dir), "--storage", db, "--workers", "2",
                              "--max-in-flight", "9", "--log-format", "json"])
    calls: list[tuple[Any, dict[str, Any]]] = []
    seen_env: dict[str, str] = {}

    def run(app: Any, **kw: Any) -> None:
        calls.append((app, kw))
        seen_env.update(os.environ)

    monkeypatch.setattr(uvicorn, "run", run)
    monkeypatch.setattr("zoo.cli._torch_threads", lambda: None)
    for name in (ENV_ZOO, ENV_STORAGE, "AUTOML_ZOO_MAX_BODY_BYTES", "AUTOML_ZOO_MAX_IN_FLIGHT",
                 "PROMETHEUS_MULTIPROC_DIR"):
        monkeypatch.delenv(name, raising=False)
    level = logging.getLogger("zoo").level
    try:
        assert args.handler(args) == 0
    finally:
        logging.getLogger("zoo").setLevel(level)
        for name in (ENV_ZOO, ENV_STORAGE, "AUTOML_ZOO_MAX_BODY_BYTES", "AUTOML_ZOO_MAX_IN_FLIGHT",
                     "PROMETHEUS_MULTIPROC_DIR"):
            os.environ.pop(name, None)
    (app, kw), = calls
    assert app == "zoo.service:app_from_environment" and kw["factory"] is True and kw["workers"] == 2
    assert kw["log_config"]["formatters"]["service"]["()"] == "zoo.logs.JsonFormatter"
    assert seen_env[ENV_ZOO] == str(zoo_dir) and seen_env["AUTOML_ZOO_MAX_IN_FLIGHT"] == "9"
    assert seen_env["PROMETHEUS_MULTIPROC_DIR"]
    with pytest.raises(ZooError, match=ENV_ZOO):
        app_from_environment()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def two_workers(zoo_dir: Path, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    database = tmp_path / "shared.db"
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen([AUTOML, "serve", "--zoo", str(zoo_dir), "--port", str(port), "--storage",
                             f"sqlite:///{database}", "--workers", "2", "--log-level", "warning"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until_serving(url, proc, tmp_path / "serve.log", path="/ready")
        yield url, database
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(60)
        log.close()


def test_two_worker_processes_share_one_database_and_their_metrics(two_workers: tuple[str, Path]) -> None:
    url, database = two_workers
    body = {"task": _task().model_dump(mode="json"), "time_budget_s": 5.0}
    with httpx.Client(base_url=url, timeout=30) as client:
        decisions = [client.post("/v1/schedule", json=body) for _ in range(40)]
        assert all(d.status_code == 200 for d in decisions)
        # an outcome names a decision that either worker made
        for d in decisions[:10]:
            ack = client.post("/v1/outcomes", json={"request_id": d.json()["request_id"], "accuracy": 0.7,
                                                     "seconds": d.json()["best"]["predicted_seconds"]})
            assert ack.status_code == 200, ack.text
        health = client.get("/health").json()
        assert health["requests"] == 40 and health["reported_outcomes"] == 10
        text = client.get("/metrics").text
    # any worker's /metrics sums both processes
    assert 'automl_zoo_http_requests_total{endpoint="/v1/schedule",method="POST",status="200"} 40.0' in text
    # both workers wrote into the one database the command named
    store = Store(f"sqlite:///{database}")
    try:
        assert store.counts() == {"requests": 40, "outcomes": 10}
    finally:
        store.close()
