"""Long phases inside a trial report steps, loss and ETA to the driver, which shows them while the trial runs."""
from __future__ import annotations

import threading
from typing import Mapping

import automl
from automl.progress import PhaseState, SilentReporter, TrialMonitor, read_phases


def test_a_phase_writes_its_progress_and_removes_it_when_done(tmp_path):
    phase = TrialMonitor(trial=3, folder=str(tmp_path)).phase("pre-training")
    phase.step(10, 100, 2.5)
    (state,) = read_phases(tmp_path).values()
    assert (state.trial, state.phase, state.done, state.total, state.loss) == (3, "pre-training", 10, 100, 2.5)
    phase.step(100, 100, 1.0)
    assert read_phases(tmp_path) == {}


def test_a_phase_without_a_folder_writes_nothing(tmp_path):
    TrialMonitor(trial=0).phase("x").step(1, 2, None)
    assert list(tmp_path.iterdir()) == []


class Recorder(SilentReporter):
    def __init__(self) -> None:
        self.seen: list[PhaseState] = []
        self.lock = threading.Lock()

    def phases(self, states: Mapping[int, PhaseState]) -> None:
        with self.lock:
            self.seen.extend(states.values())


def test_the_driver_shows_a_running_trials_phase(tmp_path):
    space = automl.space_from_yaml("""
name: long
task: digits
builder: mlp
objectives: {accuracy: max}
space:
  model:
    layers: [{width: 64, activation: relu}]
    dropout: 0.0
  train: {lr: 0.01, epochs: 40, batch_size: 16}
""", source="long.yaml")
    recorder = Recorder()
    study = automl.create_study(space, seed=0)
    study.optimize(n_trials=1, reporter=recorder, progress_dir=tmp_path)
    assert any(s.phase == "training" and s.trial == 0 and 0 < s.done < s.total for s in recorder.seen)
    assert read_phases(tmp_path) == {}  # nothing left behind
