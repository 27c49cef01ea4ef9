"""Issue 15 (hardening), the schedule service: it can be neither poisoned nor exhausted.

1. Poison: implausible outcomes are refused at the door (422 naming the field and the expected range);
   rows already in a database written by an older version are ignored with a count; whatever the
   stored data, a schedule request never becomes a 5xx (it degrades to the uncorrected schedule).
2. Exhaustion: request bodies are bounded before parsing (413), lists and numbers by the schema (422),
   duplicates in ``models`` are dropped.
3. Outcomes for tasks or models the service would not schedule are refused and never stored.

The service runs in-process (FastAPI's TestClient) over a synthetic zoo (:mod:`zoo.testing`), so these
tests take seconds; ``test_service.py`` runs the real ``automl serve`` over a built zoo.
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, Iterator

import pytest
from fastapi.testclient import TestClient

from zoo.testing import synthetic_zoo


@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synthetic") / "zoo"
    synthetic_zoo(out, models=2, seed_experience=10)
    return out


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/experience.db"


def _app(zoo_dir: Path, db: str, **kw: Any) -> Any:
    from zoo.service import create_app

    return create_app(zoo_dir, db, **kw)


@pytest.fixture
def client(zoo_dir: Path, db: str) -> Iterator[TestClient]:
    with TestClient(_app(zoo_dir, db), raise_server_exceptions=False) as c:
        yield c


def _task(**kw: Any) -> dict[str, Any]:
    return {"name": "t", "num_classes": 3, "num_samples": 200, "input_shape": [1, 8, 8], **kw}


def _schedule(**kw: Any) -> dict[str, Any]:
    return {"model_id": "nasoa-0", "lr": 0.01, "frozen_stages": 0, "epochs": 5, **kw}


def _outcome(**kw: Any) -> dict[str, Any]:
    return {"task": _task(), "schedule": _schedule(), "accuracy": 0.7, "seconds": 1.0, **kw}


SCHEDULE = {"task": _task(probe_scores={"nasoa-0": 0.6, "nasoa-1": 0.7}), "time_budget_s": 2.0}


def _assert_schedules(client: TestClient) -> dict[str, Any]:
    r = client.post("/v1/schedule", json=SCHEDULE)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert 0 < body["best"]["predicted_seconds"] <= 2.0 and math.isfinite(body["best"]["predicted_accuracy"])
    return body


# --- 1. poison ------------------------------------------------------------------------------------------

def test_twelve_denormal_outcomes_are_refused_and_schedules_still_answer(client: TestClient) -> None:
    for _ in range(12):
        r = client.post("/v1/outcomes", json=_outcome(seconds=5e-324))
        assert r.status_code == 422, r.text
        assert r.json()["error"].startswith("invalid request: body.seconds: ")
    assert client.get("/health").json()["reported_outcomes"] == 0
    _assert_schedules(client)


@pytest.mark.parametrize("samples,seconds", [(10_000, 0.01), (200, 5e5)], ids=["too-fast", "too-slow"])
def test_implausible_outcome_times_are_refused_with_the_expected_range(client: TestClient, samples: int,
                                                                       seconds: float) -> None:
    # 5 epochs at 2000 samples/s: 10000 samples take ~25 s, and 0.01 s is 2500x faster; 200 samples
    # take ~0.5 s, and 5e5 s (6 days) is 1e6x slower. Both lie outside TIME_RATIO_RANGE (1e-3..1e3).
    body = _outcome(task=_task(num_samples=samples), seconds=seconds)
    r = client.post("/v1/outcomes", json=body)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error.startswith("seconds: ") and "expected between" in error and "nasoa-0" in error, error
    assert client.get("/health").json()["reported_outcomes"] == 0
    body["seconds"] = 0.6 * samples / 200  # a plausible one is kept
    assert client.post("/v1/outcomes", json=body).status_code == 200


def test_non_finite_numbers_in_json_are_refused(client: TestClient) -> None:
    for body in (b'{"request_id": "ab", "accuracy": NaN, "seconds": 1}',
                 b'{"task": {"name": "t", "num_classes": 3, "num_samples": 200, "input_shape": [1, 8, 8]},'
                 b' "time_budget_s": Infinity}'):
        path = "/v1/outcomes" if b"accuracy" in body else "/v1/schedule"
        r = client.post(path, content=body, headers={"content-type": "application/json"})
        assert r.status_code == 422, r.text
        assert ("accuracy" if b"accuracy" in body else "time_budget_s") in r.json()["error"]


@pytest.mark.parametrize("body,reason", [(b"\x80\x81", "UnicodeDecodeError"),
                                         (b'{"time_budget_s": 1' + b"0" * 5000 + b"}", "4300 digits"),
                                         (b"[" * 5000 + b"]" * 5000, "RecursionError")],
                         ids=["not-utf8", "5000-digits", "deep-nesting"])
def test_an_unparsable_body_is_a_400_saying_why(client: TestClient, body: bytes, reason: str) -> None:
    r = client.post("/v1/schedule", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["error"].startswith("the body could not be parsed as JSON (") and reason in r.json()["error"]


def _poison_database(db: str, rows: int = 12) -> None:
    """What an older version stored: schema-valid outcomes that take 5e-324 s (and a few other absurdities)."""
    from zoo.schema import Schedule, TaskMeta
    from zoo.store import Store

    store = Store(db)
    task = TaskMeta(num_classes=3, num_samples=200, input_shape=(1, 8, 8))
    for i in range(rows):
        store.add_outcome(task, Schedule(model_id=f"nasoa-{i % 2}", lr=0.01, frozen_stages=0, epochs=5),
                          accuracy=0.5, seconds=5e-324)
    store.add_outcome(task, Schedule(model_id="nasoa-0", lr=0.01, frozen_stages=0, epochs=5), accuracy=0.5,
                      seconds=float("inf"))
    store.add_outcome(task, Schedule(model_id="nasoa-0", lr=0.01, frozen_stages=0, epochs=5),
                      accuracy=7.0, seconds=1.0)  # (NaN cannot be stored: SQLite turns it into NULL)
    store.close()


def test_poison_already_in_the_database_is_ignored_with_a_count(zoo_dir: Path, db: str,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    _poison_database(db)
    for _restart in range(2):  # the poison survives a restart; the service does too
        with caplog.at_level(logging.WARNING, logger="zoo"), \
                TestClient(_app(zoo_dir, db), raise_server_exceptions=False) as client:
            _assert_schedules(client)
            health = client.get("/health").json()
            assert health["reported_outcomes"] == 14 and health["ignored_outcomes"] == 14, health
    assert "ignoring 14 experience record(s)" in caplog.text


def test_fit_predictor_drops_implausible_rows_and_keeps_corrections_bounded(zoo_dir: Path) -> None:
    from zoo.card import Zoo
    from zoo.features import TIME_RATIO_RANGE, estimated_seconds
    from zoo.predictor import fit_predictor
    from zoo.schema import Experience, Schedule, TaskMeta

    zoo = Zoo.load(zoo_dir)
    task = TaskMeta(num_classes=3, num_samples=200, input_shape=(1, 8, 8))
    s = Schedule(model_id="nasoa-0", lr=0.01, frozen_stages=0, epochs=5)
    estimate = estimated_seconds(zoo.card("nasoa-0"), task, 0, 5)
    good = [Experience(task=task, schedule=s, accuracy=0.6, seconds=2 * estimate) for _ in range(5)]
    poison = [Experience.model_construct(task=task, schedule=s, accuracy=0.5, seconds=v)
              for v in (5e-324, 0.0, -1.0, float("inf"), float("nan"), estimate * 1e6)]
    poison.append(Experience.model_construct(task=task, schedule=s, accuracy=float("nan"), seconds=estimate))
    predictor = fit_predictor(zoo, [*good, *poison])
    assert predictor.rejected == len(poison) and predictor.experience == len(good)
    assert predictor.time_ratio["nasoa-0"] == pytest.approx(2.0)
    # many plausible-but-extreme rows move the median, within the clip range: never 0, never infinite
    fast = [Experience(task=task, schedule=s, accuracy=0.6, seconds=estimate * TIME_RATIO_RANGE[0] * 1.01)
            for _ in range(12)]
    ratio = fit_predictor(zoo, fast).time_ratio["nasoa-0"]
    assert TIME_RATIO_RANGE[0] <= ratio <= TIME_RATIO_RANGE[1]


def test_unreadable_rows_are_skipped_with_a_count(zoo_dir: Path, db: str) -> None:
    from sqlalchemy import create_engine, text

    from zoo.store import Store

    Store(db).close()  # create the tables
    engine = create_engine(db)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO zoo_outcomes (created_at, model_id, task_json, schedule_json, accuracy, "
                          "seconds) VALUES (0, 'nasoa-0', '{not json', '{}', 0.5, 1.0)"))
        conn.execute(text("INSERT INTO zoo_outcomes (created_at, model_id, task_json, schedule_json, accuracy, "
                          "seconds) VALUES (0, 'nasoa-0', :t, :s, 0.5, 1.0)"),
                     {"t": json.dumps(_task(probe_scores={f"m{i}": 0.5 for i in range(1000)})),
                      "s": json.dumps(_schedule())})
    engine.dispose()
    stored = Store(db).read_experience()
    assert stored.records == [] and stored.unreadable == 2
    with TestClient(_app(zoo_dir, db), raise_server_exceptions=False) as client:
        _assert_schedules(client)
        assert client.get("/health").json()["ignored_outcomes"] == 2


@pytest.mark.parametrize("ratio", [0.0, float("nan"), float("inf")])
def test_a_broken_predictor_degrades_to_the_uncorrected_schedule(client: TestClient, ratio: float,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    """Whatever the learned corrections are (a bug, a future format), the request is answered."""
    from zoo.predictor import Predictor

    state = client.app.state.zoo_state  # type: ignore[attr-defined]
    broken = Predictor(forest=state.predictor.forest, time_ratio={"nasoa-0": ratio, "nasoa-1": ratio},
                       global_time_ratio=ratio, experience=state.predictor.experience)
    state._predictor = broken
    with caplog.at_level(logging.WARNING, logger="zoo"):
        body = _assert_schedules(client)
    assert body["predictor"] == "prior"
    assert "uncorrected" in caplog.text


def test_a_failing_refit_keeps_the_service_answering(client: TestClient, monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    import zoo.state

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("sklearn fell over")

    monkeypatch.setattr(zoo.state, "fit_predictor", boom)
    with caplog.at_level(logging.WARNING, logger="zoo"):
        ack = client.post("/v1/outcomes?refit=true", json=_outcome(seconds=0.6))
        assert ack.status_code == 200, ack.text
        _assert_schedules(client)
    assert "sklearn fell over" in caplog.text


def test_an_unreachable_store_is_a_503_naming_the_storage(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy.exc import OperationalError

    state = client.app.state.zoo_state  # type: ignore[attr-defined]

    def down(*args: Any) -> Any:
        raise OperationalError("INSERT", {}, Exception("connection refused"))

    monkeypatch.setattr(state.store, "write_batch", down)
    r = client.post("/v1/schedule", json=SCHEDULE)  # its record cannot be stored: no request id is handed out
    assert r.status_code == 503 and "storage" in r.json()["error"], r.text
    assert r.headers["retry-after"] == "1"
    monkeypatch.setattr(state.store, "latest_outcome_id", down)
    assert client.get("/ready").status_code == 503


# --- 2. exhaustion --------------------------------------------------------------------------------------

def test_a_million_model_body_is_refused_before_it_is_parsed(client: TestClient) -> None:
    body = json.dumps({"task": _task(), "time_budget_s": 2.0, "models": ["nasoa-0"] * 10**6}).encode()
    assert len(body) > 9_000_000
    r = client.post("/v1/schedule", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 413, r.text[:300]
    assert "exceeds the limit" in r.json()["error"] and r.json()["max_body_bytes"] == 65536
    _assert_schedules(client)


def test_a_chunked_body_without_content_length_is_counted(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"task": {"name": "'
        for _ in range(100):
            yield b"x" * 1000
        yield b'"}}'

    r = client.post("/v1/schedule", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413, r.text[:300]
    assert "exceeds the limit" in r.json()["error"]


def test_a_bad_content_length_is_a_400() -> None:
    from zoo.middleware import BodyLimit

    sent: list[dict[str, Any]] = []
    called = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        called.append(scope)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    import asyncio

    scope = {"type": "http", "method": "POST", "path": "/v1/schedule", "headers": [(b"content-length", b"12x")]}
    asyncio.run(BodyLimit(app, max_body_bytes=100)(scope, receive, send))
    assert not called and sent[0]["status"] == 400 and b"Content-Length" in sent[1]["body"]


def test_the_body_limit_counts_streamed_chunks_and_replays_small_bodies() -> None:
    import asyncio

    from zoo.middleware import BodyLimit

    def run(chunks: list[bytes], limit: int) -> tuple[list[bytes], list[dict[str, Any]]]:
        seen: list[bytes] = []
        sent: list[dict[str, Any]] = []
        queue = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]

        async def app(scope: Any, receive: Any, send: Any) -> None:
            while True:
                message = await receive()
                seen.append(message["body"])
                if not message.get("more_body"):
                    return

        async def receive() -> dict[str, Any]:
            return queue.pop(0)

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/", "headers": []}
        asyncio.run(BodyLimit(app, max_body_bytes=limit)(scope, receive, send))
        return seen, sent

    seen, sent = run([b"a" * 40] * 3, limit=100)
    assert not seen and sent[0]["status"] == 413
    seen, sent = run([b"a" * 40] * 2, limit=100)
    assert b"".join(seen) == b"a" * 80 and not sent


def test_the_body_limit_is_an_option_of_create_app(zoo_dir: Path, db: str) -> None:
    body = {"task": _task(name="x" * 150), "time_budget_s": 2.0}
    with TestClient(_app(zoo_dir, db, max_body_bytes=100), raise_server_exceptions=False) as small:
        r = small.post("/v1/schedule", json=body)
        assert r.status_code == 413 and r.json()["max_body_bytes"] == 100
        assert small.get("/health").status_code == 200  # bodiless requests are unaffected


def test_long_lists_are_refused_by_the_schema(client: TestClient) -> None:
    from zoo.schema import MAX_LIST_ITEMS

    r = client.post("/v1/schedule", json={**SCHEDULE, "models": ["nasoa-0"] * (MAX_LIST_ITEMS + 1)})
    assert r.status_code == 422 and f"at most {MAX_LIST_ITEMS}" in r.json()["error"], r.text
    assert r.json()["error"].startswith("invalid request: body.models: ")
    probes = {f"m{i}": 0.5 for i in range(MAX_LIST_ITEMS + 1)}
    r = client.post("/v1/schedule", json={"task": _task(probe_scores=probes), "time_budget_s": 2.0})
    assert r.status_code == 422 and "body.task.probe_scores" in r.json()["error"], r.text


def test_a_million_models_with_a_raised_body_limit_stay_bounded(zoo_dir: Path, db: str) -> None:
    body = json.dumps({"task": _task(), "time_budget_s": 2.0, "models": ["nasoa-0"] * 10**6}).encode()
    with TestClient(_app(zoo_dir, db, max_body_bytes=16 << 20), raise_server_exceptions=False) as c:
        r = c.post("/v1/schedule", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 422 and "body.models" in r.json()["error"], r.text[:300]


def test_duplicate_models_are_dropped(client: TestClient) -> None:
    once = client.post("/v1/schedule", json={**SCHEDULE, "models": ["nasoa-1", "nasoa-0"]}).json()
    many = client.post("/v1/schedule", json={**SCHEDULE, "models": ["nasoa-1", "nasoa-0", "nasoa-1"] * 50})
    assert many.status_code == 200, many.text
    assert many.json()["candidates"] == once["candidates"]
    assert many.json()["best"]["schedule"] == once["best"]["schedule"]


def test_an_empty_model_restriction_is_refused(client: TestClient) -> None:
    r = client.post("/v1/schedule", json={**SCHEDULE, "models": []})
    assert r.status_code == 422 and "body.models" in r.json()["error"], r.text


# --- 3. outcomes of tasks the service would not schedule ------------------------------------------------

REFUSED_OUTCOMES = [
    ("RGB task", _outcome(task=_task(input_shape=[3, 8, 8])), "3 channel"),
    ("inputs too small", _outcome(task=_task(input_shape=[1, 1, 1]), schedule=_schedule(model_id="nasoa-1")),
     "at least"),
    ("unknown model in the probes", _outcome(task=_task(probe_scores={"resnet9000": 0.5})),
     "unknown zoo model 'resnet9000'"),
    ("unknown model", _outcome(schedule=_schedule(model_id="nope")), "unknown zoo model 'nope'"),
    ("too many frozen stages", _outcome(schedule=_schedule(frozen_stages=7)), "frozen_stages=7"),
]


@pytest.mark.parametrize("label,body,expected", REFUSED_OUTCOMES, ids=[r[0] for r in REFUSED_OUTCOMES])
def test_outcomes_the_service_would_not_schedule_are_refused(client: TestClient, label: str, body: dict[str, Any],
                                                             expected: str) -> None:
    r = client.post("/v1/outcomes", json=body)
    assert r.status_code == 422, (label, r.text)
    assert expected in r.json()["error"], (label, r.json())
    assert client.get("/health").json()["reported_outcomes"] == 0


def test_a_card_with_zero_throughput_is_refused_at_load(zoo_dir: Path, tmp_path: Path) -> None:
    import shutil

    from zoo.card import Zoo
    from zoo.errors import ZooError

    copy = tmp_path / "zoo"
    shutil.copytree(zoo_dir, copy)
    card_path = copy / "models" / "nasoa-0.json"
    card = json.loads(card_path.read_text())
    card["train_samples_per_s"]["0"] = 0.0
    card_path.write_text(json.dumps(card))
    with pytest.raises(ZooError, match=r"nasoa-0\.json: train_samples_per_s"):
        Zoo.load(copy)


def test_automl_serve_takes_the_body_limit(zoo_dir: Path, db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    import uvicorn

    from zoo.cli import add_serve_command

    parser = argparse.ArgumentParser()
    add_serve_command(parser.add_subparsers())
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "--zoo", str(zoo_dir), "--max-body-bytes", "0"])
    args = parser.parse_args(["serve", "--zoo", str(zoo_dir), "--storage", db, "--max-body-bytes", "1000"])
    served: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.append(app))
    monkeypatch.setattr("zoo.cli._torch_threads", lambda: None)  # leave this process's torch threads alone
    zoo_logger = logging.getLogger("zoo")
    level = zoo_logger.level
    try:
        assert args.handler(args) == 0
    finally:
        zoo_logger.setLevel(level)
    with TestClient(served[0], raise_server_exceptions=False) as c:
        r = c.post("/v1/schedule", json={"task": _task(name="x" * 190), "time_budget_s": 2.0,
                                         "models": ["nasoa-0"] * 80})
        assert r.status_code == 413 and r.json()["max_body_bytes"] == 1000
