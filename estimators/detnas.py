"""Estimator ``detnas``: Joint-DetNAS's evaluation of one (student, teacher) individual (PAPERS.md §3).

The student is built from the config's ``model`` part. A child of the morphism search (its trial info
names a ``parent_key``) starts from its parent's weights (weight inheritance: every tensor that still
matches is copied or sliced, an added block starts as the identity, a pruned stage keeps the channels
with the largest BN gamma) and trains ``child_steps``; an individual without a parent trains
``init_steps`` from scratch. Training is the detection loss plus G-DetKD distillation from the
sub-teacher the config's ``teacher`` part picks out of the elastic teacher pool, which is trained once
per task by progressive shrinking and cached in the checkpoint store. The student is scored by COCO
mAP (pycocotools) on the validation split, with params, FLOPs and measured latency as costs, and its
weights are kept (``<key>.model.pt``) for its children and for export: the final student is used as it
is, without retraining (Joint-DetNAS). A pipeline's ``train`` step (trial info ``test``) also scores
the task's test split, when it has one (``test_mAP``, ``test_AP50``, ...); no search trial is handed it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import ClassVar

from automl.artifacts import ArtifactStore, model_artifact
from automl.errors import ConfigError
from automl.estimator import Estimator, EvalContext, Result, estimators
from automl.progress import TrialMonitor
from automl.space.model import Candidate, SearchSpace
from automl.tasks.detection import DetectionData, DetectionTask
from automl.training.regime import Regime
from automl.training.seeding import seeded
from estimators.cost import model_costs
from estimators.detection_training import detection_recipe, evaluate_detector, train_detector
from estimators.regimes.distillation import GDetKDRegime
from estimators.regimes.gdetkd_config import FEATURE_MODES, GDetKDConfig
from estimators.supernet_cache import cached_supernet
from search_spaces.detnas.detector import BACKBONE_PREFIX, build_detnas
from search_spaces.detnas.inherit import inherit_weights
from search_spaces.detnas.saved import detector_bytes, read_saved
from search_spaces.detnas.teacher import DEFAULT_POOL_STEPS, TeacherPool, train_teacher_pool


@estimators.register("detnas")
class DetNASEstimator(Estimator):
    """Options: ``init_steps`` (from-scratch individuals, default 300), ``child_steps`` (children that
    inherit, default 150), ``inherit`` (False trains children from scratch for ``child_steps``: the
    control of the inheritance benchmark), ``batch_size``, ``lr``, ``kd`` (``sgfi`` | ``fixed`` |
    ``none``), ``ckd``, ``kd_weight``, ``teacher_steps`` (progressive-shrinking steps: largest, depth
    phase, width phase), ``store`` (where the teacher pool is cached; default the study's checkpoints).

    ``kd``, ``ckd`` and ``kd_weight`` configure the ``gdetkd`` regime used when the space names no
    regime; a space that names regimes trains with those (``gdetkd`` among them gets the sub-teacher)."""

    families: ClassVar[frozenset[str]] = frozenset({"detection"})
    uses_regimes: ClassVar[bool] = True

    def __init__(self, init_steps: int = 300, child_steps: int = 150, inherit: bool = True, batch_size: int = 8,
                 lr: float = 3e-3, kd: str = "sgfi", ckd: bool = True, kd_weight: float = 1.0,
                 teacher_steps: tuple[int, int, int] | list[int] = DEFAULT_POOL_STEPS,
                 store: str | None = None) -> None:
        super().__init__()
        if kd not in FEATURE_MODES:
            raise ConfigError(f"detnas: kd must be one of {', '.join(FEATURE_MODES)}, got {kd!r}", field="kd")
        if init_steps < 0 or child_steps < 0 or kd_weight < 0:
            raise ConfigError("detnas: init_steps, child_steps and kd_weight must be >= 0")
        steps = tuple(int(s) for s in teacher_steps)
        if len(steps) != 3 or min(steps) < 0:
            raise ConfigError(f"detnas: teacher_steps must be three step counts >= 0 (largest, depth phase, "
                              f"width phase), got {list(teacher_steps)}", field="teacher_steps")
        self.init = detection_recipe(int(init_steps), int(batch_size), float(lr))
        self.child = detection_recipe(int(child_steps), int(batch_size), float(lr))
        self.inherit = bool(inherit)
        self.kd = GDetKDConfig(feature=kd, ckd=bool(ckd), feat_weight=float(kd_weight),
                               ckd_weight=float(kd_weight), kl_weight=float(kd_weight), loc_weight=float(kd_weight))
        self.kd_enabled = kd != "none" or bool(ckd)
        self.teacher_steps = steps
        self.store = store

    def evaluate(self, candidate: Candidate, budget: float | None, ctx: EvalContext) -> Result:
        space = ctx.space
        task = ctx.require_task(DetectionTask)  # type: ignore[type-abstract]  # mypy#4717: an ABC for isinstance
        config = candidate.config
        model_cfg = config.get("model", config)
        with seeded(ctx.trial_seed):
            student = build_detnas(model_cfg, task.info)
        costs = model_costs(student, task.example_input(), latency=True)
        ctx.check_constraints(costs)

        data = task.load() if ctx.scores_test else task.load().without_test()
        store = ctx.store(self.store)
        checkpoints = ctx.checkpoints or store
        parent_key = ctx.info.get("parent_key")
        inherited = None
        if self.inherit and parent_key and checkpoints.exists(model_artifact(str(parent_key))):
            name = model_artifact(str(parent_key))
            parent = read_saved(checkpoints.read_bytes(name), name)
            inherited = inherit_weights(student, parent["state_dict"], parent["config"].get("model", parent["config"]),
                                        model_cfg, prefix=BACKBONE_PREFIX)
        recipe = self.child if parent_key else self.init
        if budget is not None:
            recipe = dataclasses.replace(recipe, steps=int(round(budget)))

        teacher_cfg = config.get("teacher")
        pool_seconds, pool_cached = 0.0, 1.0
        pool = None
        if self.distils(ctx) and teacher_cfg is not None:
            pool, pool_seconds, pool_cached = self.teacher_pool(store, space, task, data, ctx.seed, ctx.monitor)
            pool.set_active(int(teacher_cfg["depth"]), float(teacher_cfg["width"]))
        stats = train_detector(student, data.train, recipe, seed=ctx.trial_seed,
                               regimes=self.regimes(ctx, pool, candidate), monitor=ctx.phase("training"))
        scores = evaluate_detector(student, data.val)
        if ctx.scores_test and data.test is not None:  # held out of every search: only a pipeline's train step
            scores.update({f"test_{k}": v for k, v in evaluate_detector(student, data.test).items()})
        checkpoints.write_bytes(model_artifact(candidate.key),
                                detector_bytes(student, config, task.info, space=space.name, task=space.task))
        metrics: dict[str, float] = {**scores, "train_seconds": stats.seconds, "steps": float(stats.steps),
                                     "skipped_steps": float(stats.skipped), "inherited": float(inherited is not None),
                                     "teacher_pool_seconds": pool_seconds, "teacher_pool_cached": pool_cached}
        metrics.update({f"final_{k}": v for k, v in stats.tail(0.1).items()})
        if inherited is not None:
            metrics.update(inherited_copied=float(inherited.copied), inherited_sliced=float(inherited.sliced),
                           inherited_fresh=float(inherited.fresh))
        return Result(metrics=metrics, cost=costs)

    def distils(self, ctx: EvalContext) -> bool:
        """Whether training distils from a teacher: a ``gdetkd`` regime in the space, or (when the space
        names none) the estimator's own kd options."""
        if ctx.regimes:
            return any(spec.name == "gdetkd" for spec in ctx.regimes)
        return self.kd_enabled

    def regimes(self, ctx: EvalContext, teacher: TeacherPool | None, candidate: Candidate) -> list[Regime]:
        if ctx.regimes:  # the candidate's `regime:` part, when the space searches the regimes' options
            return ctx.build_regimes(candidate, teacher=teacher)
        return [GDetKDRegime.of(teacher, self.kd)] if teacher is not None else []

    def teacher_pool(self, store: ArtifactStore, space: SearchSpace, task: DetectionTask, data: DetectionData,
                     seed: int, monitor: TrialMonitor | None = None) -> tuple[TeacherPool, float, float]:
        """The elastic teacher pool for this task and seed: trained once (progressive shrinking) and
        cached in ``store``; other workers wait for it instead of training it again."""
        blob = json.dumps({"task": space.task, "data": task.fingerprint(), "steps": self.teacher_steps,
                           "batch": self.init.batch_size, "seed": seed}, sort_keys=True, default=str)
        name = f"detnas-teacher-{hashlib.sha1(blob.encode()).hexdigest()[:16]}.pt"

        def train(pool: TeacherPool) -> None:
            train_teacher_pool(pool, data.train, steps=self.teacher_steps, batch_size=self.init.batch_size, seed=seed,
                               checkpoints=(store, name), monitor=monitor)

        pool, trained_now, seconds = cached_supernet(store, name, lambda: TeacherPool(task.info.num_classes),
                                                     train, seed)
        return pool, seconds, float(not trained_now)

