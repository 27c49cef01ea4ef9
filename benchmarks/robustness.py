"""Hostile inputs and kills, counted (a benchmark, not a test): what automl does with hostile space files
and NNI JSON, with abusive requests to ``automl serve``, and whether a study SIGKILLed at random moments
and rerun evaluates exactly what an uninterrupted one does.

* spaces (:mod:`robustness_spaces`): a corpus of hostile files per category, each through
  ``automl spaces validate`` and a one-trial ``automl search`` in a subprocess with a time and memory
  watch: clear error / traceback / accepted wrongly / hang / memory / code executed / wrote outside;
* service (:mod:`robustness_service`): the abuse cases against a real ``automl serve``: status codes,
  the service's peak memory, and the latency of normal requests with and without abuse running;
* resume (:mod:`robustness_resume`): kill-and-rerun sequences of ``automl search`` (>= 20 SIGKILLs),
  compared trial by trial with an uninterrupted run of the same seed.

Writes ``benchmarks/results/robustness.md`` and ``robustness.json``.

    .venv/bin/python benchmarks/robustness.py            # everything (about 10 minutes on 2 cores)
    .venv/bin/python benchmarks/robustness.py --quick    # a smoke run
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the benchmark's parts and machine.py
import robustness_resume
import robustness_service
import robustness_spaces
from machine import cpu_model, git_commit, version

RESULTS = Path(__file__).resolve().parent / "results"


def _count(requests: Any) -> str:
    """Abuse requests sent meanwhile: a count, or counts by status code."""
    if isinstance(requests, dict):
        return f"{sum(requests.values())}: " + ", ".join(f"{code}×{n}" for code, n in sorted(requests.items()))
    return str(requests)


def markdown(result: dict[str, Any]) -> str:
    spaces, service, resume = result["spaces"], result["service"], result["resume"]
    outcomes = robustness_spaces.OUTCOMES
    lines = [
        "# Robustness: hostile inputs and kills",
        "",
        f"Run {result['date']} on {result['cpu']} ({result['machine_cpus']} CPUs), commit {result['commit']}, "
        f"torch {result['versions']['torch']}, optuna {result['versions']['optuna']}; "
        f"{'quick run' if result['quick'] else 'full run'}, {result['wall_s']:.0f} s. "
        "Produced by `benchmarks/robustness.py`; every number below is measured in this one run.",
        "",
        "## Hostile space files and NNI JSON",
        "",
        f"{spaces['cases']} hostile inputs, {spaces['runs']} runs (`automl spaces validate` and a one-trial "
        f"`automl search`, each in a subprocess). Slowest run {spaces['slowest_run_s']:.1f} s, largest peak "
        f"memory {spaces['largest_peak_mb']:.0f} MB. All clear (no traceback, hang, blow-up, wrong acceptance "
        f"or code run): **{'yes' if spaces['all_clear'] else 'NO'}**.",
        "",
        "| category | tried | " + " | ".join(o.replace("_", " ") for o in outcomes) + " |",
        "|---|---:|" + "---:|" * len(outcomes),
    ]
    for name, entry in sorted(spaces["categories"].items()):
        counts = {o: entry["validate"].get(o, 0) + entry["search"].get(o, 0) for o in outcomes}
        lines.append(f"| {name} | {entry['tried']} | " + " | ".join(str(counts[o]) for o in outcomes) + " |")
    totals = spaces["totals"]
    lines += ["| **all** | " + str(spaces["cases"]) + " | " + " | ".join(f"**{totals[o]}**" for o in outcomes)
              + " |", "",
              "Counts are runs: `validate`, and a one-trial `search` wherever the case has a file to search.", "",
              "## The schedule service under abuse", ""]
    lines += ["| case | status codes | normal request right after | peak RSS growth (MB) |", "|---|---|---|---:|"]
    for name, case in service["cases"].items():
        statuses = ", ".join(f"{code}×{n}" for code, n in sorted(case["statuses"].items()))
        growth = case.get("peak_rss_mb", 0.0) - case.get("rss_before_mb", 0.0)
        lines.append(f"| {name} | {statuses or '(no request)'} | {case['normal_request_after']} | {growth:.1f} |")
    calm, abused = service["latency_without_abuse"], service["latency_during_abuse"]
    lines += ["",
              f"Normal `POST /v1/schedule` latency: {calm['median_ms']:.1f} ms median / {calm['p95_ms']:.1f} ms p95 "
              f"without abuse; {abused['median_ms']:.1f} / {abused['p95_ms']:.1f} ms while another process "
              f"replayed the abuse ({_count(abused['abuse_requests_meanwhile'])} abuse requests meanwhile). Any 5xx: "
              f"**{'yes' if service['any_5xx'] else 'no'}**; service alive after: "
              f"{'yes' if service['service_alive_after'] else 'NO'}.", "",
              "## Kill and resume", "",
              f"`automl search --space {resume['space']} --trials {resume['trials']}` SIGKILLed at random moments "
              f"and rerun until complete, compared trial by trial (candidate and objective values, by slot) with "
              f"an uninterrupted run of the same seed.", "",
              "| seed | kills | trials cut off and re-run | trials compared | mismatched | exact |",
              "|---:|---:|---:|---:|---:|---|"]
    for s in resume["sequences"]:
        lines.append(f"| {s['seed']} | {s['kills']} | {s['cut_off_attempts']} | "
                     f"{s['trials_compared']} | {s['mismatched']} | {'yes' if s['exact'] else 'NO'} |")
    lines += ["", f"{resume['kills']} SIGKILLs ({resume['cut_off_attempts']} cut a trial off; the others landed in "
              f"start-up or between trials): {resume['exact_sequences']} of "
              f"{len(resume['sequences'])} sequences exact, {resume['mismatched_trials']} mismatched trials.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run (fewer cases, kills and requests)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    started = time.perf_counter()
    result: dict[str, Any] = {
        "date": datetime.date.today().isoformat(), "quick": args.quick, "commit": git_commit(), "cpu": cpu_model(),
        "machine_cpus": __import__("os").cpu_count(),
        "versions": {name: version(name) for name in ("torch", "optuna", "fastapi", "pyyaml")},
    }
    print("spaces ...", flush=True)
    result["spaces"] = robustness_spaces.run(quick=args.quick)
    print("service ...", flush=True)
    result["service"] = robustness_service.run(quick=args.quick)
    print("kill and resume ...", flush=True)
    result["resume"] = robustness_resume.run(quick=args.quick)
    result["wall_s"] = round(time.perf_counter() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "_quick" if args.quick else ""
    (args.out / f"robustness{suffix}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / f"robustness{suffix}.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
