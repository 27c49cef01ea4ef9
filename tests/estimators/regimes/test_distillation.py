"""The ``gdetkd`` regime passes the regime conformance suite on a small detection problem, and refuses
what a space file cannot give it."""
from __future__ import annotations

import pytest
import torch

pytest.importorskip("mmcv.ops", reason="mmdet/mmcv with compiled ops are installed by tools/install_mmdet.sh")

from automl.errors import ConfigError
from automl.testing.regimes import REGIME_CHECKS, RegimeProblem
from automl.training.recipe import Recipe
from automl.training.regime import RegimeSpec
from automl.training.seeding import seeded
from automl.training.streams import DrawStream
from estimators.detection_training import detection_step
from search_spaces.detnas.detector import build_detnas
from tests.search_spaces.detnas.test_detector import INFO, SMALL, synthetic_batch

pytestmark = pytest.mark.filterwarnings("ignore:torch.meshgrid:UserWarning")


def detection_problem(student: str = "fcos") -> RegimeProblem:
    """A tiny student and a Faster R-CNN teacher on 4 synthetic 64x64 images."""
    images, boxes, labels = synthetic_batch(4, seed=1)
    with seeded(0):
        teacher = build_detnas({**SMALL, "detector": "faster-rcnn"}, INFO).eval()

    def batches() -> DrawStream:
        return DrawStream(lambda: (images, boxes, labels))

    return RegimeProblem(make_model=lambda: build_detnas({**SMALL, "detector": student}, INFO),
                         make_batches=batches, loss=detection_step, steps=2,
                         recipe=Recipe(steps=2, lr=1e-3, optimizer="adamw", clip=10.0),
                         runtime=lambda: {"teacher": teacher})


@pytest.mark.parametrize("check", REGIME_CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("student", ["fcos", "faster-rcnn"])  # heterogeneous and homogeneous pairs
def test_gdetkd_passes_the_conformance_suite(check, student):
    check("gdetkd", {"feature": "sgfi", "ckd": True}, detection_problem(student))


def test_gdetkd_options_are_checked_without_a_teacher():
    RegimeSpec("gdetkd", {"feature": "fixed", "rois": "predicted"}).check_options()
    with pytest.raises(ConfigError, match="unknown G-DetKD option 'featur'"):
        RegimeSpec("gdetkd", {"featur": "sgfi"}).check_options()
    with pytest.raises(ConfigError, match="rois must be one of gt, predicted"):
        RegimeSpec("gdetkd", {"rois": "all"}).check_options()
    with pytest.raises(ConfigError, match="detection tasks, not supervised"):
        RegimeSpec("gdetkd").check_family("supervised")


def test_gdetkd_adds_its_terms_to_the_detection_loss():
    problem = detection_problem()
    regime = RegimeSpec("gdetkd", {}).build(**problem.runtime())
    from automl.training.fit import fit

    with seeded(0):
        student = problem.make_model()
    result = fit(student, problem.make_batches(), problem.recipe, problem.loss, regimes=[regime], seed=0)
    assert {"kd_feat", "kd_ckd", "loss_cls"} <= set(result.history[0])
    assert all(torch.isfinite(torch.tensor(list(h.values()))).all() for h in result.history)
