"""The schedule service over real HTTP: `automl serve` runs in a subprocess on a free loopback port.

Request, report, restart, request again with the experience kept; bad inputs answered with 4xx and
nothing stored lost; concurrent requests; a kill mid-write; the CLI client. The same runs against
PostgreSQL when AUTOML_TEST_POSTGRES_URL names a server (``.ci/run`` starts one), else it is skipped.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from tests.zoo.test_zoo import AUTOML, tiny_zoo, tiny_zoo_dir  # noqa: F401  (session fixtures)
from zoo.testing import wait_until_serving

POSTGRES_URL = os.environ.get("AUTOML_TEST_POSTGRES_URL")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`automl serve` in a subprocess; start() waits until /health answers."""

    def __init__(self, zoo_dir: Path, storage: str, workdir: Path) -> None:
        self.zoo_dir, self.storage, self.workdir = zoo_dir, storage, workdir
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self) -> Server:
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.log = open(self.workdir / f"serve-{port}.log", "w")
        self.proc = subprocess.Popen([AUTOML, "serve", "--zoo", str(self.zoo_dir), "--port", str(port),
                                      "--storage", self.storage, "--log-level", "warning"],
                                     cwd=self.workdir, stdout=self.log, stderr=subprocess.STDOUT)
        wait_until_serving(self.url, self.proc, self.workdir / f"serve-{port}.log", timeout_s=90)
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def _postgres_database() -> Iterator[str]:
    """A fresh database on the test server (dropped afterwards), so runs never see each other's rows."""
    import psycopg
    from sqlalchemy.engine import make_url

    base = make_url(POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://", 1))
    name = f"zoo_test_{uuid.uuid4().hex[:12]}"
    admin = base.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield base.set(drivername="postgresql+psycopg", database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/experience.db"
        return
    if not POSTGRES_URL:
        pytest.skip("AUTOML_TEST_POSTGRES_URL is not set (.ci/run starts a PostgreSQL server and sets it)")
    yield from _postgres_database()


@pytest.fixture
def server(tiny_zoo_dir: Path, storage: str, tmp_path: Path) -> Iterator[Server]:  # noqa: F811
    srv = Server(tiny_zoo_dir, storage, tmp_path).start()
    yield srv
    srv.stop()


def _task(**kw) -> dict:
    return {"name": "t", "num_classes": 3, "num_samples": 200, "input_shape": [1, 8, 8], **kw}


def test_request_report_restart_keeps_experience(server: Server, tiny_zoo):  # noqa: F811
    seed = len(tiny_zoo.seed_experience)
    health = httpx.get(server.url + "/health").json()
    assert health["status"] == "ok" and health["models"] == 2 and health["reported_outcomes"] == 0
    assert httpx.get(server.url + "/openapi.json").json()["paths"].keys() >= {"/v1/schedule", "/v1/outcomes"}
    assert httpx.get(server.url + "/docs").status_code == 200
    assert [c["id"] for c in httpx.get(server.url + "/v1/zoo").json()] == ["nasoa-0", "nasoa-1"]

    probes = {"nasoa-0": 0.7, "nasoa-1": 0.9}
    r = httpx.post(server.url + "/v1/schedule", json={"task": _task(probe_scores=probes), "time_budget_s": 1.5})
    assert r.status_code == 200, r.text
    decision = r.json()
    best = decision["best"]
    assert best["schedule"]["model_id"] in probes and best["predicted_seconds"] <= 1.5
    assert best["schedule"]["lr"] in (1e-3, 3e-3, 1e-2, 3e-2) and best["schedule"]["epochs"] >= 1
    assert decision["experience"] == seed

    for i in range(3):  # report by request id, and once with the task and schedule spelled out
        ack = httpx.post(server.url + "/v1/outcomes?refit=true", json={"request_id": decision["request_id"],
                                                                      "accuracy": 0.8, "seconds": 1.2})
        assert ack.status_code == 200, ack.text
        assert ack.json()["experience"] == seed + i + 1 and ack.json()["learned"] is True
    ack = httpx.post(server.url + "/v1/outcomes", json={"task": _task(), "schedule": best["schedule"],
                                                       "accuracy": 0.75, "seconds": 1.0})
    assert ack.status_code == 200, ack.text
    # without ?refit=true the answer does not wait for the refit: the background refitter learns it soon
    deadline = time.monotonic() + 10
    while httpx.get(server.url + "/health").json()["predictor_version"] < ack.json()["id"]:
        assert time.monotonic() < deadline, "the background refit did not learn the outcome within 10 s"
        time.sleep(0.05)
    again = httpx.post(server.url + "/v1/schedule", json={"task": _task(probe_scores=probes), "time_budget_s": 1.5})
    assert again.json()["experience"] == seed + 4

    server.stop()
    server.start()  # same storage: everything learned is still there
    health = httpx.get(server.url + "/health").json()
    assert health["reported_outcomes"] == 4 and health["requests"] == 2
    again = httpx.post(server.url + "/v1/schedule", json={"task": _task(probe_scores=probes), "time_budget_s": 1.5})
    assert again.status_code == 200 and again.json()["experience"] == seed + 4


BAD_REQUESTS = [
    ("malformed JSON", "/v1/schedule", b'{"task": {"num_classes": 3,', "not valid JSON"),
    ("negative budget", "/v1/schedule", {"task": _task(), "time_budget_s": -5}, "time_budget_s"),
    ("absurd budget", "/v1/schedule", {"task": _task(), "time_budget_s": 1e15}, "time_budget_s"),
    ("missing budget", "/v1/schedule", {"task": _task()}, "time_budget_s: Field required"),
    ("unknown model in probes", "/v1/schedule", {"task": _task(probe_scores={"resnet9000": 0.5}),
                                                 "time_budget_s": 5}, "unknown zoo model 'resnet9000'"),
    ("unknown model in restriction", "/v1/schedule", {"task": _task(), "time_budget_s": 5, "models": ["x"]},
     "unknown zoo model 'x'"),
    ("RGB task", "/v1/schedule", {"task": _task(input_shape=[3, 32, 32]), "time_budget_s": 5}, "3 channel"),
    ("budget too small", "/v1/schedule", {"task": _task(num_samples=10**6), "time_budget_s": 0.001}, "too small"),
    ("unknown field", "/v1/schedule", {"task": _task(), "time_budget_s": 5, "gpu": True}, "gpu"),
    ("unknown model in outcome", "/v1/outcomes",
     {"task": _task(), "schedule": {"model_id": "nope", "lr": 0.01, "frozen_stages": 0, "epochs": 1},
      "accuracy": 0.5, "seconds": 1}, "unknown zoo model 'nope'"),
    ("unknown request id", "/v1/outcomes", {"request_id": "deadbeef", "accuracy": 0.5, "seconds": 1},
     "unknown request_id"),
    ("accuracy above 1", "/v1/outcomes", {"request_id": "deadbeef", "accuracy": 7, "seconds": 1}, "accuracy"),
    ("outcome without schedule", "/v1/outcomes", {"accuracy": 0.5, "seconds": 1}, "request_id"),
    # issue 15: bounded bodies (413 before parsing), poison and unschedulable outcomes refused
    ("a million models (9 MB)", "/v1/schedule",
     json.dumps({"task": _task(), "time_budget_s": 5, "models": ["nasoa-0"] * 10**6}).encode(), "exceeds the limit"),
    ("denormal seconds", "/v1/outcomes", {"task": _task(), "schedule": {
        "model_id": "nasoa-0", "lr": 0.01, "frozen_stages": 0, "epochs": 2}, "accuracy": 0.5, "seconds": 5e-324},
     "body.seconds"),
    ("outcome of an RGB task", "/v1/outcomes", {"task": _task(input_shape=[3, 8, 8]), "schedule": {
        "model_id": "nasoa-0", "lr": 0.01, "frozen_stages": 0, "epochs": 2}, "accuracy": 0.5, "seconds": 1},
     "3 channel"),
]


def test_bad_inputs_get_4xx_with_a_reason_and_lose_nothing(server: Server):
    ok = httpx.post(server.url + "/v1/outcomes", json={"task": _task(), "schedule": {
        "model_id": "nasoa-0", "lr": 0.01, "frozen_stages": 0, "epochs": 2}, "accuracy": 0.6, "seconds": 0.5})
    assert ok.status_code == 200
    for label, path, body, expected in BAD_REQUESTS:
        if isinstance(body, bytes):
            r = httpx.post(server.url + path, content=body, headers={"content-type": "application/json"})
        else:
            r = httpx.post(server.url + path, json=body)
        assert 400 <= r.status_code < 500, (label, r.status_code, r.text)
        assert expected in r.json()["error"], (label, r.json())
    assert httpx.get(server.url + "/v1/zoo/nope").status_code == 404
    health = httpx.get(server.url + "/health").json()
    assert health["status"] == "ok" and health["reported_outcomes"] == 1 and health["requests"] == 0


def test_concurrent_requests_and_reports_are_all_recorded(server: Server):
    def one(i: int) -> int:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            d = c.post("/v1/schedule", json={"task": _task(num_samples=100 + i), "time_budget_s": 2.0})
            assert d.status_code == 200, d.text
            r = c.post("/v1/outcomes", json={"request_id": d.json()["request_id"], "accuracy": 0.5, "seconds": 1.0})
            assert r.status_code == 200, r.text
            return r.json()["id"]

    with ThreadPoolExecutor(16) as pool:
        ids = list(pool.map(one, range(32)))
    assert len(set(ids)) == 32
    health = httpx.get(server.url + "/health").json()
    assert health["reported_outcomes"] == 32 and health["requests"] == 32


@pytest.mark.slow
def test_kill_during_writes_leaves_a_consistent_database(server: Server):
    acked: list[int] = []
    stop = threading.Event()

    def writer() -> None:
        with httpx.Client(base_url=server.url, timeout=10) as c:
            while not stop.is_set():
                try:
                    r = c.post("/v1/outcomes", json={"task": _task(), "schedule": {
                        "model_id": "nasoa-1", "lr": 0.003, "frozen_stages": 1, "epochs": 3},
                        "accuracy": 0.7, "seconds": 0.9})
                except httpx.HTTPError:
                    return
                if r.status_code == 200:
                    acked.append(r.json()["id"])

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(2.0)
    server.stop(signal.SIGKILL)  # no chance to clean up
    stop.set()
    for t in threads:
        t.join()
    assert len(acked) > 5
    server.start()
    health = httpx.get(server.url + "/health").json()
    # every acknowledged write survived; at most the in-flight ones (one per writer) may also be there
    assert len(acked) <= health["reported_outcomes"] <= len(acked) + 4
    assert httpx.post(server.url + "/v1/schedule", json={"task": _task(), "time_budget_s": 2}).status_code == 200


@pytest.mark.slow
def test_cli_request_and_finetune_against_the_service(server: Server, tiny_zoo_dir: Path, tmp_path: Path):  # noqa: F811
    req = subprocess.run([AUTOML, "zoo", "request", "--url", server.url, "--classes", "4", "--samples", "300",
                          "--input-shape", "1,8,8", "--budget", "2", "--json"],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert req.returncode == 0, req.stderr
    assert json.loads(req.stdout)["best"]["predicted_seconds"] <= 2
    # fine-tune without a local zoo: the client downloads it from the service (checksums verified)
    ft = subprocess.run([AUTOML, "zoo", "finetune", "--url", server.url, "--task", "digits-transfer",
                         "--task-option", "rotation=30", "--task-option", "classes=[5,6,7]", "--budget", "1.5",
                         "--json"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert ft.returncode == 0, ft.stderr
    result = json.loads(ft.stdout)
    assert 0 <= result["accuracy"] <= 1 and result["reported"]["id"] >= 1
    assert result["predicted_seconds"] <= 1.5  # the schedule was planned to fit the budget (not a timing)
    assert httpx.get(server.url + "/health").json()["reported_outcomes"] == 1
    bad = subprocess.run([AUTOML, "zoo", "request", "--url", server.url, "--classes", "4", "--samples", "300",
                          "--input-shape", "3,8,8", "--budget", "2"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "HTTP 422" in bad.stderr and "channel" in bad.stderr
    down = subprocess.run([AUTOML, "zoo", "request", "--url", "http://127.0.0.1:9", "--classes", "4", "--samples",
                           "300", "--input-shape", "1,8,8", "--budget", "2"],
                          capture_output=True, text=True, timeout=60)
    assert down.returncode == 2 and "cannot reach" in down.stderr
