"""Kill-and-resume exactness: ``automl search`` SIGKILLed at random moments and rerun until the study is
complete evaluates exactly what an uninterrupted run with the same seed evaluates (the candidates, in
the same order, with the same results).

Each sequence runs the real CLI in a subprocess on its own ledger and results folder (a shared one would
hand the reruns the reference run's trained models), kills it after a random delay drawn
from the uninterrupted run's duration, reruns the same command, and repeats until the study holds its
trials. A kill cuts a trial off when the ledger shows an attempt re-queued for it (the others land in start-up
or between trials); each sequence kills until ``kills_per_sequence`` attempts were cut off.
The comparison orders the resumed study's finished trials by slot (a re-run's slot is
that of the attempt it replaces).
"""
from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from automl.ledger import Ledger, open_storage

REPO = Path(__file__).resolve().parents[1]


def _command(storage: str, output: Path, space: str, trials: int, seed: int) -> list[str]:
    return [str(Path(sys.executable).with_name("automl")), "search", "--space", space, "--trials", str(trials),
            "--seed", str(seed), "--storage", storage, "--output", str(output), "--threads", "1"]


def _sequence(storage: str, study_name: str) -> list[tuple[str, tuple[tuple[str, float], ...]]]:
    finished = [t for t in Ledger.load(open_storage(storage), study_name).trials() if not t.requeued]
    return [(t.key, tuple(sorted((k, round(v, 9)) for k, v in (t.values or {}).items())))
            for t in sorted(finished, key=lambda t: int(t.info.get("slot", t.number)))]


def _requeued(db: Path) -> int:
    """Trials the ledger shows as cut off (read without opening a study, so nothing is written)."""
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        try:
            rows = conn.execute("SELECT value_json FROM trial_user_attributes WHERE key = 'automl:outcome'").fetchall()
        except sqlite3.OperationalError:  # the schema is not there yet: killed during start-up
            return 0
    return sum(bool(json.loads(json.loads(row[0])).get("requeued")) for row in rows)  # JSON in a JSON column


def run(quick: bool = False, sequences: int = 12, kills_per_sequence: int = 3, space: str = "digits-mlp",
        trials: int = 6) -> dict[str, Any]:
    """``sequences`` kill-and-rerun sequences, each with SIGKILLs until ``kills_per_sequence`` of them cut
    off a trial (at most three times as many kills); returns the counts."""
    if quick:
        sequences, kills_per_sequence = 1, 3
    rng = random.Random(0)
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    out: dict[str, Any] = {"space": space, "trials": trials, "sequences": []}
    with tempfile.TemporaryDirectory() as tmp:
        for index in range(sequences):
            seed = 100 + index
            ref_db = Path(tmp, f"ref{index}.db")
            ref_url = f"sqlite:///{ref_db}"
            start = time.monotonic()
            subprocess.run(_command(ref_url, Path(tmp, f"ref{index}"), space, trials, seed), check=True, env=env,
                           capture_output=True, cwd=tmp)
            duration = time.monotonic() - start
            reference = _sequence(ref_url, space)

            db = Path(tmp, f"killed{index}.db")
            url = f"sqlite:///{db}"
            kills = hits = 0
            while True:
                proc = subprocess.Popen(_command(url, Path(tmp, f"killed{index}"), space, trials, seed), env=env,
                                        cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                if hits < kills_per_sequence and kills < 3 * kills_per_sequence:
                    try:
                        proc.wait(timeout=rng.uniform(0.25, 0.9) * duration)
                    except subprocess.TimeoutExpired:
                        proc.send_signal(signal.SIGKILL)
                        proc.wait()
                        kills += 1
                        hits = _requeued(db) + int(_running(db))  # trials the kills cut off so far
                        continue
                else:
                    proc.wait()
                if proc.returncode == 0:
                    break
                raise RuntimeError(f"the rerun of sequence {index} exited with {proc.returncode}")
            resumed = _sequence(url, space)
            mismatched = sum(a != b for a, b in zip(reference, resumed)) + abs(len(reference) - len(resumed))
            out["sequences"].append({"seed": seed, "kills": kills, "cut_off_attempts": _requeued(db),
                                     "uninterrupted_s": round(duration, 1), "trials_compared": len(reference),
                                     "mismatched": mismatched, "exact": mismatched == 0})
    seqs = out["sequences"]
    out["kills"] = sum(s["kills"] for s in seqs)
    out["cut_off_attempts"] = sum(s["cut_off_attempts"] for s in seqs)
    out["exact_sequences"] = sum(s["exact"] for s in seqs)
    out["mismatched_trials"] = sum(s["mismatched"] for s in seqs)
    return out


def _running(db: Path) -> bool:
    """Whether the ledger holds a RUNNING trial (what a kill mid-trial leaves)."""
    if not db.exists():
        return False
    with sqlite3.connect(db) as conn:
        try:
            return conn.execute("SELECT COUNT(*) FROM trials WHERE state = 'RUNNING'").fetchone()[0] > 0
        except sqlite3.OperationalError:
            return False
