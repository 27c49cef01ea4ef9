"""Robustness of the schedule service (issue 15): the abuse cases against a real ``automl serve``.

One ``automl serve`` process over a synthetic zoo (:mod:`zoo.testing`: two small nasoa networks, 12
seed runs) and a fresh SQLite file, both in a temporary folder, on a free loopback port. Each abuse
case sends its requests over HTTP and records the status codes it got back (or the client-side error,
e.g. a reset connection), the wall time, and the service process's peak resident memory during the
case. Cases:

- ``poison_outcomes``: twelve schema-valid outcomes with ``seconds: 5e-324`` (issue 15's poison), then
  a normal schedule request;
- ``poison_in_database``: the same poison (and infinite/out-of-range values) written straight into the
  database, as an older version would have stored it, then a normal schedule request;
- ``million_models`` / ``million_models_chunked``: ``"models": ["nasoa-0"] * 10**6`` (a 9 MB body), with a
  Content-Length and streamed without one;
- ``oversized_body``: a 1 MB task name; ``long_lists``: 257 models / 300 probe scores inside the limit;
- ``duplicate_models``: 120 repeats of two ids (answered; ``candidates`` counts each model once);
- ``malformed_json``, ``out_of_range_numbers``, ``refused_outcomes`` (tasks/models the service would not
  schedule).

Latency: normal schedule requests (median and p95, ms, one client, sequential) measured alone, then
again while a second client (a forked process) replays the abuse cases in a loop. All figures are
measured on this machine at run time; the result also says how much CPU other processes used
meanwhile (a shared machine distorts latencies).

    .venv/bin/python benchmarks/robustness_service.py [--quick]      # prints the JSON result
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterator

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/machine.py

import httpx
import psutil
from machine import ForeignCpu, git_commit, version

AUTOML = str(Path(sys.executable).parent / "automl")
MB = 1024 * 1024


# ==================================================================================================
# The service and its memory
# ==================================================================================================
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Service:
    """``automl serve`` in a subprocess; ready once /health answers."""

    def __init__(self, zoo_dir: Path, workdir: Path) -> None:
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.storage = f"sqlite:///{workdir}/experience.db"
        self.log_path = workdir / "serve.log"
        self._log = open(self.log_path, "w")
        executable = AUTOML if Path(AUTOML).exists() else shutil.which("automl") or AUTOML
        started = time.perf_counter()
        self.proc = subprocess.Popen([executable, "serve", "--zoo", str(zoo_dir), "--port", str(port),
                                      "--storage", self.storage, "--log-level", "warning"],
                                     stdout=self._log, stderr=subprocess.STDOUT, cwd=workdir)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"automl serve exited with {self.proc.returncode}: {self.log_path.read_text()}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    self.startup_s = time.perf_counter() - started
                    self.ps = psutil.Process(self.proc.pid)
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("automl serve did not answer /health within 120 s")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


class PeakRss:
    """The service's peak resident memory while a block runs. On Linux the kernel's high-water mark
    (``VmHWM``), reset at the start through ``/proc/PID/clear_refs``; where that is not possible, the
    maximum of psutil samples every 5 ms (which can miss a short spike: ``method`` says which)."""

    def __init__(self, ps: psutil.Process) -> None:
        self.ps = ps
        self.samples: list[int] = []
        self._stop = threading.Event()
        self.method = "sampled every 5 ms"

    def __enter__(self) -> PeakRss:
        self.before = self.ps.memory_info().rss
        try:
            Path(f"/proc/{self.ps.pid}/clear_refs").write_text("5")  # 5: reset the peak RSS
            self.method = "kernel high-water mark (VmHWM)"
        except OSError:
            pass
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append(self.ps.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.005)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max([self.before, *self.samples])
        if self.method.startswith("kernel"):
            hwm = _vm_hwm(self.ps.pid)
            if hwm is not None:
                self.peak = max(self.peak, hwm)
            else:
                self.method = "sampled every 5 ms"

    def result(self) -> dict[str, Any]:
        return {"rss_before_mb": round(self.before / MB, 1), "peak_rss_mb": round(self.peak / MB, 1),
                "peak_rss_method": self.method}


def _vm_hwm(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


# ==================================================================================================
# Requests
# ==================================================================================================
def _task(**kw: Any) -> dict[str, Any]:
    return {"name": "bench", "num_classes": 3, "num_samples": 200, "input_shape": [1, 8, 8],
            "probe_scores": {"nasoa-0": 0.6, "nasoa-1": 0.75}, **kw}


NORMAL = {"task": _task(), "time_budget_s": 2.0}


def _outcome(**kw: Any) -> dict[str, Any]:
    return {"task": _task(), "schedule": {"model_id": "nasoa-0", "lr": 0.01, "frozen_stages": 0, "epochs": 5},
            "accuracy": 0.7, "seconds": 0.6, **kw}


def _send(client: httpx.Client, path: str, body: Any, *, chunked: bool = False) -> str:
    """POST ``body`` (JSON-able, or raw bytes) and return the status code, or the client-side error's name."""
    data = body if isinstance(body, bytes) else json.dumps(body, allow_nan=True).encode()
    headers = {"content-type": "application/json"}
    try:
        if chunked:
            def stream() -> Iterator[bytes]:
                for start in range(0, len(data), 64 * 1024):
                    yield data[start:start + 64 * 1024]

            r = client.post(path, content=stream(), headers=headers)
        else:
            r = client.post(path, content=data, headers=headers)
    except httpx.HTTPError as exc:
        return type(exc).__name__
    return str(r.status_code)


MILLION = json.dumps({"task": _task(), "time_budget_s": 2.0, "models": ["nasoa-0"] * 10**6}).encode()

MALFORMED: list[bytes] = [
    b'{"task": {"num_classes": 3,',                      # truncated
    b"\x80\x81\xfe\xff",                                  # not UTF-8
    b"[" * 100_000,                                       # deep nesting (the body limit cuts it first)
    b"[" * 5_000 + b"]" * 5_000,                          # deep nesting inside the limit
    b'{"task": ' + json.dumps(_task()).encode() + b', "time_budget_s": 1' + b"0" * 5000 + b"}",  # 5000 digits
    b'{"task": ' + json.dumps(_task()).encode() + b', "time_budget_s": NaN}',
    b'{"task": ' + json.dumps(_task()).encode() + b', "time_budget_s": 1e999}',
    b'"just a string"', b"null", b"",
]

OUT_OF_RANGE: list[tuple[str, dict[str, Any]]] = [
    ("/v1/schedule", {"task": _task(), "time_budget_s": -1}),
    ("/v1/schedule", {"task": _task(), "time_budget_s": 1e308}),
    ("/v1/schedule", {"task": _task(num_classes=10**30), "time_budget_s": 2}),
    ("/v1/schedule", {"task": _task(num_samples=-5), "time_budget_s": 2}),
    ("/v1/schedule", {"task": _task(input_shape=[1, 10**9, 8]), "time_budget_s": 2}),
    ("/v1/schedule", {"task": _task(probe_scores={"nasoa-0": 2.0}), "time_budget_s": 2}),
    ("/v1/outcomes", _outcome(accuracy=7)),
    ("/v1/outcomes", _outcome(seconds=-1)),
    ("/v1/outcomes", _outcome(seconds=1e300)),
    ("/v1/outcomes", _outcome(schedule={"model_id": "nasoa-0", "lr": 0, "frozen_stages": 0, "epochs": 10**9})),
]

REFUSED_OUTCOMES: list[dict[str, Any]] = [
    _outcome(task=_task(input_shape=[3, 8, 8])),
    _outcome(task=_task(input_shape=[1, 1, 1])),
    _outcome(task=_task(probe_scores={"resnet9000": 0.5})),
    _outcome(schedule={"model_id": "nope", "lr": 0.01, "frozen_stages": 0, "epochs": 5}),
    _outcome(schedule={"model_id": "nasoa-0", "lr": 0.01, "frozen_stages": 7, "epochs": 5}),
]


def _poison_outcomes(c: httpx.Client) -> list[str]:
    return [_send(c, "/v1/outcomes", _outcome(seconds=5e-324)) for _ in range(12)]


def _million(c: httpx.Client) -> list[str]:
    return [_send(c, "/v1/schedule", MILLION)]


def _million_chunked(c: httpx.Client) -> list[str]:
    return [_send(c, "/v1/schedule", MILLION, chunked=True)]


def _oversized(c: httpx.Client) -> list[str]:
    return [_send(c, "/v1/schedule", {"task": _task(name="x" * MB), "time_budget_s": 2.0})]


def _long_lists(c: httpx.Client) -> list[str]:
    return [_send(c, "/v1/schedule", {**NORMAL, "models": ["nasoa-0"] * 257}),
            _send(c, "/v1/schedule", {"task": _task(probe_scores={f"m{i}": 0.5 for i in range(300)}),
                                      "time_budget_s": 2.0})]


def _malformed(c: httpx.Client) -> list[str]:
    return [_send(c, "/v1/schedule", body) for body in MALFORMED]


def _out_of_range(c: httpx.Client) -> list[str]:
    return [_send(c, path, body) for path, body in OUT_OF_RANGE]


def _refused(c: httpx.Client) -> list[str]:
    return [_send(c, "/v1/outcomes", body) for body in REFUSED_OUTCOMES]


def _duplicates(c: httpx.Client) -> list[str]:
    return [_send(c, "/v1/schedule", {**NORMAL, "models": ["nasoa-1", "nasoa-0"] * 120})]


#: The abuse cases replayed in a loop while latency is measured (the database poison is written once).
ABUSE: dict[str, Callable[[httpx.Client], list[str]]] = {
    "poison_outcomes": _poison_outcomes,
    "million_models": _million,
    "million_models_chunked": _million_chunked,
    "oversized_body": _oversized,
    "long_lists": _long_lists,
    "duplicate_models": _duplicates,
    "malformed_json": _malformed,
    "out_of_range_numbers": _out_of_range,
    "refused_outcomes": _refused,
}


def _abuse_loop(url: str, stop: Any, results: Any) -> None:
    """Replay :data:`ABUSE` against ``url`` until ``stop`` is set; put the status counts on ``results``."""
    seen: Counter[str] = Counter()
    with httpx.Client(base_url=url, timeout=60) as client:
        while not stop.is_set():
            for fn in ABUSE.values():
                seen.update(fn(client))
                if stop.is_set():
                    break
    results.put(dict(seen))


class _Abuser:
    """:func:`_abuse_loop` in a forked process (a thread where fork is unavailable)."""

    def __init__(self, url: str) -> None:
        import multiprocessing

        try:
            ctx: Any = multiprocessing.get_context("fork")
        except ValueError:
            ctx = None
        if ctx is not None:
            self.stop_event: Any = ctx.Event()
            self.results: Any = ctx.Queue()
            self.worker: Any = ctx.Process(target=_abuse_loop, args=(url, self.stop_event, self.results), daemon=True)
            self.kind = "process"
        else:
            import queue

            self.stop_event = threading.Event()
            self.results = queue.Queue()
            self.worker = threading.Thread(target=_abuse_loop, args=(url, self.stop_event, self.results), daemon=True)
            self.kind = "thread"

    def start(self) -> None:
        self.worker.start()

    def stop(self) -> dict[str, int]:
        self.stop_event.set()
        counts: dict[str, int] = self.results.get(timeout=120)
        self.worker.join(30)
        return counts


def _poison_database(storage: str) -> int:
    """Write what an older version could have stored straight into the service's database."""
    from zoo.schema import Schedule, TaskMeta
    from zoo.store import Store

    store = Store(storage)
    task = TaskMeta(num_classes=3, num_samples=200, input_shape=(1, 8, 8))
    rows = [(f"nasoa-{i % 2}", 0.5, 5e-324) for i in range(12)] + [("nasoa-0", 0.5, float("inf")),
                                                                   ("nasoa-0", 7.0, 1.0)]
    try:
        for model_id, accuracy, seconds in rows:
            store.add_outcome(task, Schedule(model_id=model_id, lr=0.01, frozen_stages=0, epochs=5), accuracy, seconds)
    finally:
        store.close()
    return len(rows)


# ==================================================================================================
# The run
# ==================================================================================================
def _normal_latencies(c: httpx.Client, count: int) -> tuple[list[float], Counter[str]]:
    times: list[float] = []
    statuses: Counter[str] = Counter()
    for _ in range(count):
        start = time.perf_counter()
        statuses[_send(c, "/v1/schedule", NORMAL)] += 1
        times.append((time.perf_counter() - start) * 1000)
    return times, statuses


def _summary(times: list[float]) -> dict[str, Any]:
    ordered = sorted(times)
    return {"requests": len(times), "median_ms": round(statistics.median(ordered), 2),
            "p95_ms": round(ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))], 2),
            "max_ms": round(ordered[-1], 2)}


def _case(service: Service, name: str, fn: Callable[[httpx.Client], list[str]]) -> dict[str, Any]:
    with httpx.Client(base_url=service.url, timeout=60) as c, PeakRss(service.ps) as rss:
        start = time.perf_counter()
        statuses = fn(c)
        wall = time.perf_counter() - start
        after = _send(c, "/v1/schedule", NORMAL)  # a normal request right after the abuse
    return {"statuses": dict(Counter(statuses)), "normal_request_after": after, "wall_s": round(wall, 3),
            **rss.result(), "service_alive": service.alive()}


def run(quick: bool = False) -> dict[str, Any]:
    """Run every abuse case against a fresh ``automl serve`` in a temporary folder and return what was
    measured (JSON-serialisable). ``quick`` measures fewer normal requests (30 instead of 120 per arm)."""
    from zoo.testing import synthetic_zoo

    normal_count = 30 if quick else 120
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="robustness-service-") as tmp:
        workdir = Path(tmp)
        synthetic_zoo(workdir / "zoo", models=2, seed_experience=12)
        service = Service(workdir / "zoo", workdir)
        try:
            foreign = ForeignCpu()
            with httpx.Client(base_url=service.url, timeout=60) as c:
                _normal_latencies(c, 5)  # warm-up
                baseline_times, baseline_statuses = _normal_latencies(c, normal_count)
            cases = {name: _case(service, name, fn) for name, fn in ABUSE.items()}

            written: list[int] = []

            def poison_db(c: httpx.Client) -> list[str]:
                written.append(_poison_database(service.storage))
                return []  # no request: the rows go straight into the database; the request after tells

            cases["poison_in_database"] = {**_case(service, "poison_in_database", poison_db),
                                           "rows_written": written[0]}

            # latency of normal requests while a second client replays the abuse in a loop; the abuser is
            # a separate process, so its JSON encoding and 9 MB uploads do not take this client's GIL
            abuser = _Abuser(service.url)
            with PeakRss(service.ps) as rss_abuse:
                abuser.start()
                time.sleep(0.2)
                with httpx.Client(base_url=service.url, timeout=60) as c:
                    abuse_times, abuse_statuses = _normal_latencies(c, normal_count)
                rounds = abuser.stop()
            with httpx.Client(base_url=service.url, timeout=60) as c:
                health = c.get("/health").json()
                final = _send(c, "/v1/schedule", NORMAL)
            cpu = foreign.stop()
            seen = [*(s for case in cases.values() for s in [*case["statuses"], case["normal_request_after"]]),
                    *rounds, *baseline_statuses, *abuse_statuses, final]
            result: dict[str, Any] = {
                "benchmark": "robustness_service",
                "quick": quick,
                "cases": cases,
                "latency_without_abuse": {**_summary(baseline_times), "statuses": dict(baseline_statuses)},
                "latency_during_abuse": {**_summary(abuse_times), "statuses": dict(abuse_statuses),
                                         "abuse_requests_meanwhile": rounds, "abuser": abuser.kind,
                                         **rss_abuse.result()},
                "any_5xx": any(s.isdigit() and int(s) >= 500 for s in seen),
                "client_errors_seen": sorted({s for s in seen if not s.isdigit()}),
                "final_normal_request": final,
                "health_after": health,
                "service_alive_after": service.alive(),
                "service_startup_s": round(service.startup_s, 2),
                "other_processes_cpu": cpu,
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                            "fastapi": version("fastapi"), "uvicorn": version("uvicorn"),
                            "load_average": [round(v, 2) for v in os.getloadavg()], "commit": git_commit()},
            }
        finally:
            service.stop()
    result["wall_s"] = round(time.perf_counter() - started, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer normal requests per latency arm")
    args = parser.parse_args()
    print(json.dumps(run(quick=args.quick), indent=2))


if __name__ == "__main__":
    main()
