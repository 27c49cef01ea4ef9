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
is, without retraining (Joint-DetNAS).
"""
from __future__ import annotations

import hashlib
import json
from typing import Any


from automl.artifacts import ArtifactStore, model_artifact
from automl.errors import ConfigError
from automl.estimator import EvalContext, Estimator, Result
from automl.registry import estimators, tasks
from automl.space.model import Candidate, SearchSpace
from automl.tasks.detection import DetectionData, DetectionTask
from estimators.cost import model_costs
from estimators.detection_training import DetRecipe, Distillation, evaluate_detector, train_detector
from estimators.regimes.gdetkd import GDetKDConfig
from estimators.supernet_cache import cached_supernet
from search_spaces.detnas_detector import BACKBONE_PREFIX, build_detnas
from search_spaces.detnas_inherit import inherit_weights
from search_spaces.detnas_io import detector_bytes, read_saved
from search_spaces.detnas_teacher import DEFAULT_POOL_STEPS, TeacherPool, train_teacher_pool

DEFAULT_STORE = "automl-runs/supernets"
FEATURE_MODES = ("sgfi", "fixed", "none")


@estimators.register("detnas")
class DetNASEstimator(Estimator):
    """Options: ``init_steps`` (from-scratch individuals, default 300), ``child_steps`` (children that
    inherit, default 150), ``inherit`` (False trains children from scratch for ``child_steps``: the
    control of the inheritance benchmark), ``batch_size``, ``lr``, ``kd`` (``sgfi`` | ``fixed`` |
    ``none``), ``ckd``, ``kd_weight``, ``teacher_steps`` (progressive-shrinking steps: largest, depth
    phase, width phase), ``store`` (where the teacher pool is cached; default the
    study's checkpoints)."""

    def __init__(self, init_steps: int = 300, child_steps: int = 150, inherit: bool = True, batch_size: int = 8,
                 lr: float = 3e-3, kd: str = "sgfi", ckd: bool = True, kd_weight: float = 1.0,
                 teacher_steps: tuple[int, int, int] | list[int] = DEFAULT_POOL_STEPS, store: str | None = None,
                 **options: Any) -> None:
        super().__init__(**options)  # unknown options: a ConfigError naming them
        if kd not in FEATURE_MODES:
            raise ConfigError(f"detnas: kd must be one of {', '.join(FEATURE_MODES)}, got {kd!r}")
        if init_steps < 0 or child_steps < 0 or kd_weight < 0:
            raise ConfigError("detnas: init_steps, child_steps and kd_weight must be >= 0")
        steps = tuple(int(s) for s in teacher_steps)
        if len(steps) != 3 or min(steps) < 0:
            raise ConfigError(f"detnas: teacher_steps must be three step counts >= 0 (largest, depth phase, "
                              f"width phase), got {list(teacher_steps)}")
        self.init = DetRecipe(steps=int(init_steps), batch_size=int(batch_size), lr=float(lr))
        self.child = DetRecipe(steps=int(child_steps), batch_size=int(batch_size), lr=float(lr))
        self.inherit = bool(inherit)
        self.kd = GDetKDConfig(feature=kd, ckd=bool(ckd), feat_weight=float(kd_weight),
                               ckd_weight=float(kd_weight), kl_weight=float(kd_weight), loc_weight=float(kd_weight))
        self.kd_enabled = kd != "none" or bool(ckd)
        self.teacher_steps = steps
        self.store = store

    def evaluate(self, candidate: Candidate, budget: float | None, ctx: EvalContext) -> Result:
        space = ctx.space
        task = detection_task(space)
        config = candidate.config
        model_cfg = config.get("model", config)
        student = build_detnas(model_cfg, task.info)
        costs = model_costs(student, task.info.input_shape, latency=True)
        ctx.check_constraints(costs)

        data = task.load()
        store = ArtifactStore(self.store) if self.store else ctx.checkpoints or ArtifactStore(DEFAULT_STORE)
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
            recipe = DetRecipe(steps=int(round(budget)), batch_size=recipe.batch_size, lr=recipe.lr)

        distillation = None
        teacher_cfg = config.get("teacher")
        pool_seconds, pool_cached = 0.0, 1.0
        if self.kd_enabled and teacher_cfg is not None:
            pool, pool_seconds, pool_cached = self.teacher_pool(store, space, task, data, ctx.seed)
            pool.set_active(int(teacher_cfg["depth"]), float(teacher_cfg["width"]))
            distillation = Distillation(teacher=pool, config=self.kd)
        stats = train_detector(student, data.train, recipe, seed=ctx.seed * 100_003 + ctx.trial_number,
                               distillation=distillation)
        scores = evaluate_detector(student, data.val)
        checkpoints.write_bytes(model_artifact(candidate.key),
                                detector_bytes(student, config, task.info, space=space.name, task=space.task))
        metrics: dict[str, float] = {**scores, "train_seconds": stats.seconds, "steps": float(stats.steps),
                                     "skipped_steps": float(stats.skipped), "inherited": float(inherited is not None),
                                     "teacher_pool_seconds": pool_seconds, "teacher_pool_cached": pool_cached}
        metrics.update({f"final_{k}": v for k, v in stats.losses.items()})
        if inherited is not None:
            metrics.update(inherited_copied=float(inherited.copied), inherited_sliced=float(inherited.sliced),
                           inherited_fresh=float(inherited.fresh))
        return Result(metrics=metrics, cost=costs)

    def teacher_pool(self, store: ArtifactStore, space: SearchSpace, task: DetectionTask, data: DetectionData,
                     seed: int) -> tuple[TeacherPool, float, float]:
        """The elastic teacher pool for this task and seed: trained once (progressive shrinking) and
        cached in ``store``; other workers wait for it instead of training it again."""
        blob = json.dumps({"task": space.task, "data": task.fingerprint(), "steps": self.teacher_steps,
                           "batch": self.init.batch_size, "seed": seed}, sort_keys=True, default=str)
        name = f"detnas-teacher-{hashlib.sha1(blob.encode()).hexdigest()[:16]}.pt"

        def train(pool: TeacherPool) -> None:
            train_teacher_pool(pool, data.train, steps=self.teacher_steps, batch_size=self.init.batch_size, seed=seed)

        pool, trained_now, seconds = cached_supernet(store, name, lambda: TeacherPool(task.info.num_classes),
                                                     train, seed)
        return pool, seconds, float(not trained_now)


def detection_task(space: SearchSpace) -> DetectionTask:
    if space.task is None:
        raise ConfigError(f"space {space.name!r} needs a detection task for the detnas estimator", source=space.source)
    task = tasks.get(space.task)(**space.task_options)
    if not isinstance(task, DetectionTask):
        raise ConfigError(f"the detnas estimator needs a detection task (shapes-detection, coco); "
                          f"{space.task!r} is not one", source=space.source)
    return task
