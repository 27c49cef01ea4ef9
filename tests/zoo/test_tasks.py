"""The NASOA target-task stream: six kinds (near/mid/far from the source x small/large training sets),
options a function of (rng state, seed), every kind loadable and recognisable from its options."""
from __future__ import annotations

import numpy as np
import pytest

from zoo.tasks import DISTANCES, TRAIN_SETS, TRANSFER_TASK, describe, load_task, random_transfer_options, transfer_kind

KINDS = [f"{d}/{t}" for d in DISTANCES for t in TRAIN_SETS]


def test_a_stream_is_a_function_of_its_rng_seed_and_covers_every_kind():
    stream = [random_transfer_options(np.random.default_rng(5), seed=i) for i in range(3)]
    assert stream[0] == {**stream[1], "seed": 0} and stream[1]["seed"] == 1  # seed sets only the task's seed
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    a = [random_transfer_options(rng_a, i) for i in range(60)]
    assert a == [random_transfer_options(rng_b, i) for i in range(60)]
    assert {transfer_kind(o) for o in a} == set(KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_reads_back_from_its_options_and_loads(kind):
    options = random_transfer_options(np.random.default_rng(0), seed=1, kind=kind)
    assert transfer_kind(options) == kind and describe(options).startswith(kind + " ")
    data = load_task(TRANSFER_TASK, options)
    assert data.train_x.shape[-1] == options["size"] and len(set(data.train_y.tolist())) == len(options["classes"])


def test_near_tasks_look_like_the_source_and_far_ones_do_not_and_small_ones_hold_few_images():
    near = [random_transfer_options(np.random.default_rng(i), i, kind="near/large") for i in range(20)]
    far = [random_transfer_options(np.random.default_rng(i), i, kind="far/small") for i in range(20)]
    assert all(o["size"] == 12 and abs(o["rotation"]) <= 15 and o["noise"] <= 0.2 for o in near)
    assert all(o["size"] > 12 and abs(o["rotation"]) >= 70 and o["noise"] >= 0.4 for o in far)
    small = load_task(TRANSFER_TASK, far[0])
    large = load_task(TRANSFER_TASK, {**near[0], "classes": far[0]["classes"]})
    assert len(small.train_x) * 3 < len(large.train_x)


def test_an_unknown_kind_is_refused_and_hand_written_options_are_other():
    with pytest.raises(ValueError, match="unknown task kind 'far/huge'"):
        random_transfer_options(np.random.default_rng(0), 0, kind="far/huge")
    assert transfer_kind({"rotation": 20.0, "size": 8, "subsample": 0.5}) == "other/other"
