"""Fuzzing the schedule service with hostile HTTP bodies (Hypothesis): whatever arrives, and whatever
the database holds, no answer is a 5xx, and normal requests still answer afterwards.

The service runs in-process (FastAPI's TestClient, no network) over a synthetic zoo; one service per
module, so what earlier examples stored is still there for later ones (as on a real service under
attack). ``max_examples`` is kept small so the module runs in seconds; raise it locally with
``--hypothesis-profile`` / ``HYPOTHESIS_MAX_EXAMPLES`` to dig deeper.
"""
from __future__ import annotations

import json
import math
import os
from typing import Any, Iterator

import pytest

hypothesis = pytest.importorskip("hypothesis")

from fastapi.testclient import TestClient  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from zoo.testing import synthetic_zoo  # noqa: E402

EXAMPLES = int(os.environ.get("HYPOTHESIS_MAX_EXAMPLES", "30"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    from zoo.service import create_app

    root = tmp_path_factory.mktemp("fuzz")
    synthetic_zoo(root / "zoo", models=2, seed_experience=10)
    app = create_app(root / "zoo", f"sqlite:///{root}/experience.db", max_body_bytes=16 * 1024)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def _task() -> dict[str, Any]:
    return {"name": "t", "num_classes": 3, "num_samples": 200, "input_shape": [1, 8, 8],
            "probe_scores": {"nasoa-0": 0.6, "nasoa-1": 0.8}}


def _valid_schedule_body() -> dict[str, Any]:
    return {"task": _task(), "time_budget_s": 2.0, "models": ["nasoa-0", "nasoa-1"]}


def _valid_outcome_body() -> dict[str, Any]:
    return {"task": _task(), "schedule": {"model_id": "nasoa-1", "lr": 0.01, "frozen_stages": 1, "epochs": 4,
                                          "batch_size": 32}, "accuracy": 0.7, "seconds": 0.8}


def _ok_normal_request(client: TestClient) -> None:
    r = client.post("/v1/schedule", json=_valid_schedule_body())
    assert r.status_code == 200, r.text
    best = r.json()["best"]
    assert 0 < best["predicted_seconds"] <= 2.0 and 0 <= best["predicted_accuracy"] <= 1


def _no_5xx(r: Any, what: Any) -> None:
    assert r.status_code < 500, (what if len(repr(what)) < 2000 else repr(what)[:2000], r.status_code, r.text[:500])
    if r.status_code >= 400:
        body = r.json()  # every refusal is JSON with one readable message
        assert isinstance(body.get("error"), str) and body["error"], body


HOSTILE_NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -0.0, 5e-324, -5e-324, 1e-308, 1e308, 2**63, -(2**63), 10**30, 2**31 - 1, 1e-3, 0.5]),
    st.integers(min_value=-(10**40), max_value=10**40),
)
JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), HOSTILE_NUMBERS, st.text(max_size=40)),
    lambda inner: st.one_of(st.lists(inner, max_size=6), st.dictionaries(st.text(max_size=12), inner, max_size=6)),
    max_leaves=20,
)

SCHEDULE_PATHS = [("task",), ("task", "name"), ("task", "num_classes"), ("task", "num_samples"),
                  ("task", "input_shape"), ("task", "input_shape", 0), ("task", "input_shape", 2),
                  ("task", "probe_scores"), ("task", "probe_scores", "nasoa-0"), ("task", "extra"),
                  ("time_budget_s",), ("models",), ("models", 0), ("gpu",)]
OUTCOME_PATHS = [("task",), ("task", "num_samples"), ("task", "input_shape"), ("task", "probe_scores"),
                 ("schedule",), ("schedule", "model_id"), ("schedule", "lr"), ("schedule", "frozen_stages"),
                 ("schedule", "epochs"), ("schedule", "batch_size"), ("accuracy",), ("seconds",),
                 ("request_id",)]


def _mutate(body: dict[str, Any], mutations: list[tuple[tuple[Any, ...], Any]]) -> dict[str, Any]:
    for path, value in mutations:
        node: Any = body
        for key in path[:-1]:
            if isinstance(node, dict) and isinstance(node.get(key), (dict, list)):
                node = node[key]
            elif isinstance(node, list) and isinstance(key, int) and key < len(node):
                node = node[key]
            else:
                break
        else:
            last = path[-1]
            if isinstance(node, dict):
                node[last] = value
            elif isinstance(node, list) and isinstance(last, int) and last < len(node):
                node[last] = value
    return body


def _post(client: TestClient, path: str, body: dict[str, Any] | bytes, content_type: str = "application/json") -> Any:
    data = body if isinstance(body, bytes) else json.dumps(body, allow_nan=True).encode()
    return client.post(path, content=data, headers={"content-type": content_type})


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(SCHEDULE_PATHS), st.one_of(HOSTILE_NUMBERS, JSON)), min_size=1, max_size=3))
def test_mutated_schedule_requests_never_get_a_5xx(service: TestClient, mutations: list[Any]) -> None:
    body = _mutate(_valid_schedule_body(), mutations)
    _no_5xx(_post(service, "/v1/schedule", body), body)


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(OUTCOME_PATHS), st.one_of(HOSTILE_NUMBERS, JSON)), min_size=1, max_size=3))
def test_mutated_outcomes_never_get_a_5xx_nor_break_later_schedules(service: TestClient, mutations: list[Any]) -> None:
    body = _mutate(_valid_outcome_body(), mutations)
    r = _post(service, "/v1/outcomes", body)
    _no_5xx(r, body)
    if r.status_code == 200:  # it was stored: whatever it was, the service still schedules
        _ok_normal_request(service)


@FUZZ
@given(st.one_of(st.sampled_from([5e-324, 1e-300, 1e-6, 1e-3, 6e6]),
                 st.floats(min_value=5e-324, max_value=6e6, allow_nan=False, allow_infinity=False)),
       st.floats(min_value=0.0, max_value=1.0), st.integers(min_value=1, max_value=10_000),
       st.integers(min_value=3, max_value=10**6), st.integers(min_value=1, max_value=14))
def test_repeated_outcomes_of_any_size_never_break_schedules(service: TestClient, seconds: float, accuracy: float,
                                                             epochs: int, samples: int, repeat: int) -> None:
    """Issue 15's poison generalised: the same extreme (seconds, epochs, samples) reported up to 14 times,
    enough to outvote the seed experience in any median."""
    body = _valid_outcome_body()
    body["seconds"], body["accuracy"] = seconds, accuracy
    body["schedule"]["epochs"], body["task"]["num_samples"] = epochs, samples
    for _ in range(repeat):
        r = _post(service, "/v1/outcomes", body)
        _no_5xx(r, body)
        if r.status_code != 200:
            break  # refused once, refused every time
    _ok_normal_request(service)


@FUZZ
@given(st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(str.encode),
    st.integers(min_value=1, max_value=5000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(min_value=1, max_value=5000).map(lambda n: b'{"task":' * n),
    st.integers(min_value=1, max_value=6000).map(lambda n: b'{"time_budget_s": 1' + b"0" * n + b"}"),
    st.integers(min_value=16 * 1024 - 50, max_value=20 * 1024).map(lambda n: b'{"task": "' + b"x" * n + b'"}'),
), st.sampled_from(["/v1/schedule", "/v1/outcomes"]),
   st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]))
def test_arbitrary_bytes_never_get_a_5xx(service: TestClient, body: bytes, path: str, content_type: str) -> None:
    _no_5xx(_post(service, path, body, content_type), body[:200])


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(["nasoa-0", "nasoa-1"]),
                          st.floats(allow_nan=True, allow_infinity=True),
                          st.floats(allow_nan=True, allow_infinity=True)), min_size=1, max_size=12))
def test_anything_an_older_version_stored_never_breaks_schedules(service: TestClient,
                                                                 rows: list[tuple[str, float, float]]) -> None:
    """Rows written past the API (an older version, a hand edit): the service ignores what it cannot use."""
    from sqlalchemy.exc import IntegrityError

    from zoo.schema import Schedule, TaskMeta

    state = service.app.state.zoo_state  # type: ignore[attr-defined]
    task = TaskMeta(num_classes=3, num_samples=200, input_shape=(1, 8, 8))
    for model_id, accuracy, seconds in rows:
        try:
            state.store.add_outcome(task, Schedule(model_id=model_id, lr=0.01, frozen_stages=0, epochs=3),
                                    accuracy, seconds)
        except IntegrityError:  # SQLite stores NaN as NULL, which the NOT NULL column refuses
            assert math.isnan(accuracy) or math.isnan(seconds)
    _ok_normal_request(service)
    health = service.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"


def test_normal_requests_still_answer_after_the_fuzzing(service: TestClient) -> None:
    _ok_normal_request(service)
    ack = _post(service, "/v1/outcomes", _valid_outcome_body())
    assert ack.status_code == 200, ack.text
    assert service.get("/health").json()["status"] == "ok"

