"""The thread policy: threads follow the free cores, never above usable cores / concurrent trials."""
from __future__ import annotations

import pytest

from automl.executors.threads import ThreadPlan, ThreadPolicy, choose_threads


@pytest.mark.parametrize("usable,concurrent,other,threads", [
    (2, 1, 0.0, 2),   # idle: both cores
    (2, 1, 1.0, 1),   # one busy process: the free core only
    (2, 1, 0.3, 2),   # a little background noise does not halve the trial
    (2, 1, 2.0, 1),   # fully busy: still one thread (and oversubscribed)
    (2, 2, 0.0, 1),   # two trials share two cores
    (8, 2, 4.0, 2),   # 4 free cores, 2 trials
    (8, 3, 0.0, 2),   # never above usable // concurrent
])
def test_threads_follow_the_free_cores(usable, concurrent, other, threads):
    plan = choose_threads(usable, concurrent, other)
    assert plan.threads == threads and plan.threads <= max(1, usable // concurrent) == plan.cap


def test_the_progress_line_says_when_the_machine_is_busy_or_oversubscribed():
    assert choose_threads(2, 1, 0.0).describe() == ""
    assert choose_threads(2, 1, 1.0).describe() == "machine busy: other processes use 1.0 of 2 cores, 1 thread/trial"
    assert choose_threads(2, 1, 1.9).describe().startswith("oversubscribed: other processes use 1.9 of 2 cores")
    assert ThreadPlan(threads=1, cap=1).describe() == ""  # a fixed choice is not commented on


def test_a_fixed_choice_is_kept():
    policy = ThreadPolicy(2, fixed=3)
    assert policy.plan().threads == 3 and policy.plan().other_load is None
