"""NASOA schedule service under load: wrk against ``automl serve`` and a bare FastAPI ceiling (a benchmark,
not a test).

Client and server share this machine's cores. wrk (Debian's package: ``apt-get install wrk``) runs as a
separate process with 2 threads and 32 keep-alive connections for ``--seconds`` (15) per measurement,
after a 3 s warm-up, POSTing bodies from a file of 512 *different* requests in turn (tasks of 2-10
classes, 50-5,000 samples, 8/12/16 px, probe scores for every zoo model, budgets 0.5-60 s), so nothing
a cache could answer twice. For each worker count in ``--workers`` (1 and 2):

1. ``POST /v1/schedule`` on a fresh SQLite experience database (every decision stored before it is
   answered): requests/s, p50/p90/p99 latency, statuses.
2. ``POST /v1/outcomes`` (512 different plausible outcomes): requests/s and latency; then the server is
   killed with SIGKILL and the database reopened: every acknowledged (200) outcome must be there.
3. ``GET /health``.
4. The ceiling: ``benchmarks/load/bare_app.py`` (a FastAPI endpoint that reads the body and answers a
   constant) under the same uvicorn settings and worker count; our throughput as a ratio of it.

Then overload: ``--max-in-flight 4`` and 64 connections: the share answered 503 with Retry-After, and
the latency of the rest. And ``/metrics`` after the schedule run is checked against wrk's count.

Targets (issue 22): schedule p99 <= 50 ms at 32 connections and >= 600 requests/s, outcomes >= 300/s
with none lost, ratio to the ceiling >= 0.2.

    .venv/bin/python benchmarks/nasoa_service.py                # ~4 min (builds a zoo first: ~1-3 min)
    .venv/bin/python benchmarks/nasoa_service.py --zoo DIR      # reuse a built zoo
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/machine.py

from machine import ForeignCpu, cpu_model, git_commit, version

from zoo.card import Zoo
from zoo.checks import outcome_problem
from zoo.features import estimated_seconds
from zoo.schema import FROZEN_STAGES, LEARNING_RATES, OutcomeReport, Schedule, ScheduleRequest, TaskMeta
from zoo.testing import wait_until_serving

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
AUTOML = str(Path(sys.executable).parent / "automl")
UVICORN = str(Path(sys.executable).parent / "uvicorn")
LUA = HERE / "load" / "bodies.lua"
CONNECTIONS, THREADS, WARMUP_S = 32, 2, 3
TARGET_P99_MS, TARGET_RPS, TARGET_OUTCOMES_RPS, TARGET_RATIO = 50.0, 600.0, 300.0, 0.2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ==================================================================================================
# Bodies
# ==================================================================================================
def random_task(zoo: Zoo, rng: np.random.Generator, i: int) -> TaskMeta:
    k = int(rng.integers(2, 11))
    size = int(rng.choice([8, 12, 16]))
    return TaskMeta(name=f"load-{i}", num_classes=k, num_samples=int(rng.integers(max(50, k), 5000)),
                    input_shape=(1, size, size),
                    probe_scores={c.id: round(float(rng.uniform(0.3, 1.0)), 4) for c in zoo})


def schedule_bodies(zoo: Zoo, n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [ScheduleRequest(task=random_task(zoo, rng, i), time_budget_s=round(float(rng.uniform(0.5, 60)), 2))
            .model_dump_json() for i in range(n)]


def outcome_bodies(zoo: Zoo, n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    cards = list(zoo)
    out = []
    while len(out) < n:
        task = random_task(zoo, rng, len(out))
        card = cards[int(rng.integers(len(cards)))]
        frozen = int(rng.choice([f for f in FROZEN_STAGES if f <= card.num_stages]))
        schedule = Schedule(model_id=card.id, lr=float(rng.choice(LEARNING_RATES)), frozen_stages=frozen,
                            epochs=int(rng.integers(1, 41)))
        seconds = estimated_seconds(card, task, frozen, schedule.epochs) * float(rng.uniform(0.5, 2.0))
        accuracy = round(float(rng.uniform(0.4, 1.0)), 4)
        if outcome_problem(zoo, task, schedule, accuracy, seconds) is None:
            out.append(OutcomeReport(task=task, schedule=schedule, accuracy=accuracy, seconds=seconds)
                       .model_dump_json(exclude_none=True))
    return out


# ==================================================================================================
# Servers and wrk
# ==================================================================================================
class Server:
    """A server command in its own process group; :meth:`stop` ends the group (SIGTERM or SIGKILL)."""

    def __init__(self, command: list[str], url: str, log: Path, cwd: Path | None = None) -> None:
        self.url = url
        self.log = open(log, "w")
        self.proc = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
                                     cwd=cwd)
        wait_until_serving(url, self.proc, log, timeout_s=180)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.log.close()


def wrk(url: str, bodies: Path | None, seconds: float, connections: int = CONNECTIONS) -> dict[str, Any]:
    """One wrk run: requests/s, latency percentiles and status counts (from benchmarks/load/bodies.lua)."""
    env = {**os.environ, "BODIES": str(bodies) if bodies else ""}
    meter = ForeignCpu()
    out = subprocess.run(["wrk", f"-t{THREADS}", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s",
                          "-s", str(LUA), url], capture_output=True, text=True, env=env, timeout=seconds + 60)
    foreign = meter.stop()
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed: {out.stderr}")
    text = out.stdout
    statuses = {int(k): v for k, v in json.loads(re.search(r"^STATUS (.*)$", text, re.M).group(1)).items()}  # type: ignore[union-attr]
    latency = json.loads(re.search(r"^LATENCY (.*)$", text, re.M).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", text).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Socket errors: (.*)$", text, re.M)
    return {"requests": total, "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)),  # type: ignore[union-attr]
            "ok": statuses.get(200, 0), "statuses": statuses, **latency,
            "socket_errors": errors.group(1) if errors else "", "connections": connections, "seconds": seconds,
            "foreign_cpu": foreign["share"], "foreign_top": foreign["top"]}


def stored_outcomes(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM zoo_outcomes").fetchone()[0])


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of Prometheus exposition ``text`` (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        head, _, value = line.rpartition(" ")
        if head == (f"{name}{{{want}}}" if want else name):
            return float(value)
    return 0.0


# ==================================================================================================
# Runs
# ==================================================================================================
def serve_command(zoo: Path, port: int, db: Path, workers: int, extra: list[str] | None = None) -> list[str]:
    return [AUTOML, "serve", "--zoo", str(zoo), "--port", str(port), "--storage", f"sqlite:///{db}",
            "--workers", str(workers), "--log-level", "warning", *(extra or [])]


def run_ours(zoo: Path, work: Path, workers: int, seconds: float, sched: Path, outs: Path) -> dict[str, Any]:
    db = work / f"ours-{workers}.db"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = Server(serve_command(zoo, port, db, workers), url, work / f"ours-{workers}.log")
    try:
        wrk(url + "/v1/schedule", sched, WARMUP_S)
        before = httpx.get(url + "/metrics").text
        schedule = wrk(url + "/v1/schedule", sched, seconds)
        after = httpx.get(url + "/metrics").text
        counted = (metric(after, "automl_zoo_http_requests_total", endpoint="/v1/schedule", method="POST", status="200")
                   - metric(before, "automl_zoo_http_requests_total", endpoint="/v1/schedule", method="POST",
                            status="200"))
        batches = (metric(after, "automl_zoo_write_batch_records_count")
                   - metric(before, "automl_zoo_write_batch_records_count"))
        health = wrk(url + "/health", None, seconds)
        stored_before = stored_outcomes(db)
        outcomes = wrk(url + "/v1/outcomes", outs, seconds)
    finally:
        server.stop(signal.SIGKILL)  # no graceful shutdown: what was acknowledged must already be on disk
    stored = stored_outcomes(db) - stored_before
    return {"workers": workers, "schedule": schedule, "health": health, "outcomes": outcomes,
            "metrics_counted": counted, "write_batches": batches,
            "outcomes_acknowledged": outcomes["ok"], "outcomes_stored_after_kill": stored,
            "outcomes_lost": max(0, outcomes["ok"] - stored)}


def run_bare(work: Path, workers: int, seconds: float, sched: Path) -> dict[str, Any]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = Server([UVICORN, "bare_app:app", "--app-dir", str(HERE / "load"), "--port", str(port), "--workers",
                     str(workers), "--log-level", "warning", "--no-access-log"], url, work / f"bare-{workers}.log")
    try:
        wrk(url + "/v1/schedule", sched, WARMUP_S)
        return wrk(url + "/v1/schedule", sched, seconds)
    finally:
        server.stop()


def run_overload(zoo: Path, work: Path, seconds: float, sched: Path) -> dict[str, Any]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = Server(serve_command(zoo, port, work / "overload.db", 1, ["--max-in-flight", "4"]), url,
                    work / "overload.log")
    try:
        wrk(url + "/v1/schedule", sched, WARMUP_S, connections=64)
        result = wrk(url + "/v1/schedule", sched, seconds, connections=64)
        result["shed_metric"] = metric(httpx.get(url + "/metrics").text, "automl_zoo_shed_requests_total")
        return result
    finally:
        server.stop()


def build_zoo(work: Path) -> Path:
    out = work / "zoo"
    t0 = time.perf_counter()
    subprocess.run([AUTOML, "zoo", "build", "--out", str(out)], check=True, stdout=subprocess.DEVNULL)
    print(f"zoo built in {time.perf_counter() - t0:.0f} s", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", type=Path, help="a built zoo (default: build one with automl zoo build)")
    parser.add_argument("--seconds", type=float, default=15.0, help="seconds per measurement (default 15)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts (default 1 2)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk (Debian's package)")
    started = time.time()
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="nasoa-service-") as tmp:
        work = Path(tmp)
        zoo_dir = args.zoo or build_zoo(work)
        zoo = Zoo.load(zoo_dir)
        sched, outs = work / "schedule.jsonl", work / "outcomes.jsonl"
        sched.write_text("\n".join(schedule_bodies(zoo, 512, seed=1)) + "\n")
        outs.write_text("\n".join(outcome_bodies(zoo, 512, seed=2)) + "\n")
        runs = []
        for workers in args.workers:
            ours = run_ours(zoo_dir, work, workers, args.seconds, sched, outs)
            bare = run_bare(work, workers, args.seconds, sched)
            ours["ceiling"] = bare
            ours["ratio"] = ours["schedule"]["requests_per_s"] / bare["requests_per_s"]
            runs.append(ours)
            s = ours["schedule"]
            print(f"{workers} worker(s): schedule {s['requests_per_s']:.0f}/s p50 {s['p50_ms']:.1f} ms p99 "
                  f"{s['p99_ms']:.1f} ms · outcomes {ours['outcomes']['requests_per_s']:.0f}/s, lost "
                  f"{ours['outcomes_lost']} · health {ours['health']['requests_per_s']:.0f}/s · ceiling "
                  f"{bare['requests_per_s']:.0f}/s (ratio {ours['ratio']:.2f})", flush=True)
        overload = run_overload(zoo_dir, work, args.seconds, sched)
        print(f"overload: {overload['statuses']}", flush=True)
        cards = [{"id": c.id, "arch": c.arch, "params": c.params} for c in zoo]
    report = {
        "generated": datetime.datetime.now().isoformat(timespec="seconds"), "commit": git_commit(),
        "minutes": (time.time() - started) / 60, "load_start": load_start, "load_end": os.getloadavg(),
        "machine": {"cpus": os.cpu_count(), "cpu": cpu_model(), "platform": platform.platform(),
                    "python": platform.python_version(), "fastapi": version("fastapi"), "uvicorn": version("uvicorn"),
                    "uvloop": version("uvloop"), "httptools": version("httptools"),
                    "wrk": subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[0]},
        "settings": {"connections": CONNECTIONS, "threads": THREADS, "seconds": args.seconds, "warmup_s": WARMUP_S,
                     "bodies": 512},
        "zoo": cards, "runs": runs, "overload": overload,
    }
    report["verdicts"] = verdicts(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "nasoa_service.json").write_text(json.dumps(report, indent=2))
    (args.out / "nasoa_service.md").write_text(markdown(report))
    print(f"results: {args.out / 'nasoa_service.md'}")


def verdicts(rep: dict[str, Any]) -> dict[str, Any]:
    best = max(rep["runs"], key=lambda r: r["schedule"]["requests_per_s"])
    s = best["schedule"]
    outcomes = max(r["outcomes"]["requests_per_s"] for r in rep["runs"])
    return {"best_workers": best["workers"],
            "schedule_p99": s["p99_ms"] <= TARGET_P99_MS, "schedule_rps": s["requests_per_s"] >= TARGET_RPS,
            "outcomes_rps": outcomes >= TARGET_OUTCOMES_RPS,
            "none_lost": all(r["outcomes_lost"] == 0 for r in rep["runs"]),
            "ratio": best["ratio"] >= TARGET_RATIO}


def _ok(flag: bool) -> str:
    return "**met**" if flag else "**missed**"


def markdown(rep: dict[str, Any]) -> str:
    m, v = rep["machine"], rep["verdicts"]
    best = next(r for r in rep["runs"] if r["workers"] == v["best_workers"])
    lines = [
        "# NASOA schedule service under load (wrk)", "",
        f"Generated by `benchmarks/nasoa_service.py` on {rep['generated']} (commit {rep['commit']}), "
        f"{rep['minutes']:.1f} min in all.",
        f"Machine: {m['cpus']} CPUs ({m['cpu']}), {m['platform']}, Python {m['python']}, FastAPI {m['fastapi']}, "
        f"uvicorn {m['uvicorn']} (uvloop {m['uvloop']}, httptools {m['httptools']}), {m['wrk']}. "
        f"Load average at start {', '.join(f'{x:.2f}' for x in rep['load_start'])}, at end "
        f"{', '.join(f'{x:.2f}' for x in rep['load_end'])}.",
        "",
        f"wrk and the server share the machine's {m['cpus']} cores: wrk {rep['settings']['threads']} threads, "
        f"{rep['settings']['connections']} keep-alive connections, {rep['settings']['seconds']:g} s per measurement "
        f"after a {rep['settings']['warmup_s']} s warm-up, cycling through {rep['settings']['bodies']} different "
        "request bodies. Storage: a fresh SQLite file (WAL, synchronous=FULL) per run; every decision and outcome "
        "is committed before it is answered. Zoo: "
        + ", ".join(f"`{c['arch']}`" for c in rep["zoo"]) + ".",
        "",
        "## Targets", "",
        f"- `POST /v1/schedule` p99 <= {TARGET_P99_MS:g} ms at 32 connections: {best['schedule']['p99_ms']:.1f} ms "
        f"({best['workers']} worker(s)) — {_ok(v['schedule_p99'])}",
        f"- `POST /v1/schedule` >= {TARGET_RPS:g} requests/s: {best['schedule']['requests_per_s']:.0f}/s — "
        f"{_ok(v['schedule_rps'])}",
        f"- `POST /v1/outcomes` >= {TARGET_OUTCOMES_RPS:g}/s: "
        f"{max(r['outcomes']['requests_per_s'] for r in rep['runs']):.0f}/s — {_ok(v['outcomes_rps'])}; acknowledged "
        f"outcomes lost after SIGKILL: {sum(r['outcomes_lost'] for r in rep['runs'])} — {_ok(v['none_lost'])}",
        f"- ratio to the bare FastAPI ceiling >= {TARGET_RATIO:g}: {best['ratio']:.3f} — {_ok(v['ratio'])}",
        "",
        "## Runs", "",
        "| workers | endpoint | requests/s | p50 ms | p90 ms | p99 ms | max ms | non-200 | other processes' CPU |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rep["runs"]:
        for name, x in (("POST /v1/schedule", r["schedule"]), ("POST /v1/outcomes", r["outcomes"]),
                        ("GET /health", r["health"]), ("bare FastAPI POST (ceiling)", r["ceiling"])):
            bad = x["requests"] - x["ok"]
            lines.append(f"| {r['workers']} | {name} | {x['requests_per_s']:.0f} | {x['p50_ms']:.1f} | "
                         f"{x['p90_ms']:.1f} | {x['p99_ms']:.1f} | {x['max_ms']:.1f} | {bad} | "
                         f"{x['foreign_cpu']:.0%} |")
    lines += ["", "| workers | schedule / ceiling | decisions per write transaction | /metrics count vs wrk's 200s | "
              "outcomes acknowledged | stored after SIGKILL |", "|---:|---:|---:|---|---:|---:|"]
    for r in rep["runs"]:
        per_batch = (r["metrics_counted"] / r["write_batches"]) if r["write_batches"] else math.nan
        lines.append(f"| {r['workers']} | {r['ratio']:.3f} | {per_batch:.1f} | {r['metrics_counted']:.0f} vs "
                     f"{r['schedule']['ok']} (wrk stops mid-request) | {r['outcomes_acknowledged']} | "
                     f"{r['outcomes_stored_after_kill']} |")
    o = rep["overload"]
    shed = o["statuses"].get(503, 0)
    lines += ["", "## Overload", "",
              f"`automl serve --max-in-flight 4` under 64 connections: {o['requests']} answers in "
              f"{o['seconds']:g} s, {shed} of them 503 + `Retry-After: 1` ({shed / max(1, o['requests']):.0%}; "
              f"`automl_zoo_shed_requests_total` says {o['shed_metric']:.0f}), {o['ok']} answered 200; latency p50 "
              f"{o['p50_ms']:.1f} ms, p99 {o['p99_ms']:.1f} ms (all answers). Without shedding the same load would "
              "queue: each request waits for all those ahead of it.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
