"""G-DetKD's options (:class:`GDetKDConfig`) and their vocabularies, without torch: the command line
reads them before any model is built."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Mapping

from automl.errors import ConfigError

FEATURE_MODES = ("sgfi", "fixed", "none")
CKD_STUDENT_MODES = ("assigned", "sgfi")
BACKGROUND_MODES = ("last", "first", "none")
SIMILARITY_MODES = ("cosine", "dot")


@dataclass(frozen=True)
class GDetKDConfig:
    """Options of the G-DetKD regime; every value is checked on construction (:class:`ConfigError`).

    - ``feature``: ``"sgfi"`` (semantic-guided imitation, the paper's), ``"fixed"`` (same-level MSE: the
      student's feature at the teacher's assigned level, through the 1x1 adapter -- the FGFI-style
      baseline) or ``"none"`` (no feature term).
    - ``ckd``: contrastive distillation on. ``cls_kl`` / ``loc``: KL on class logits and class-aware
      localisation KD; both apply only when the caller passes RoI-head outputs (homogeneous two-stage).
    - ``feat_weight``, ``ckd_weight``, ``kl_weight``, ``loc_weight``: loss weights, all 1 [P].
    - ``gamma``: CKD temperature (0.07 [P], the usual InfoNCE value).
    - ``tau_init``: initial SGFI softmax temperature; tau is learned, log-parametrised (1.0 [P]).
    - ``queue_size``: CKD memory queue length in teacher embeddings (4096 [P]; 0 = no queue).
    - ``roi_size``: RoIAlign output side. 4, not the usual 7: images here are ~64 px, so a 6-40 px object
      covers only ~2-5 cells of its assigned level (stride 4/8/16) and a 7x7 grid would just interpolate.
    - ``finest_scale``: FPN level assignment, mmdet's rule ``floor(log2(sqrt(w*h)/finest_scale + 1e-6))``
      clipped to the levels. mmdet uses 56 on COCO; 8 here makes a level-0 (stride 4) object < 16 px,
      level 1 (stride 8) 16-32 px, level 2 (stride 16) >= 32 px, i.e. 2-4 cells of its level like
      COCO's 56, and spreads the 6/12/24/40 px objects of the 64 px tasks over 3 levels (0, 0, 1, 2).
    - ``kl_temperature``: softmax temperature of the class KL (1.0 [P]); the term is scaled by T^2.
    - ``neg_iou``: a CKD negative from the same image whose IoU with RoI i is >= this is dropped (0.5 [P]).
    - ``embed_dim``: width of the SGFI embedding and of the CKD projection (64 [P]).
    - ``ckd_student``: which student region feature CKD contrasts [P]: ``"assigned"`` (the adapted
      student RoI feature at the teacher's assigned level, what a two-stage student's RoI head sees) or
      ``"sgfi"`` (the SGFI level mixture; needs ``feature="sgfi"``).
    - ``sgfi_similarity``: the SGFI level score [P]. ``"dot"`` is the note's ``<K_l^s, K^t> / tau``;
      ``"cosine"`` (default) L2-normalises both embeddings first. Measured on the synthetic level-matching
      problem of the tests (Adam, lr 1e-2): with ``"dot"`` the unbounded scores grew until alpha was
      one-hot within ~30 steps, with some RoIs frozen on a wrong level (no gradient through a saturated
      softmax); with ``"cosine"`` alpha rose steadily to ~0.9 on the right level as tau learned to shrink.
    - ``background``: where the background column sits in ``[K, C+1]`` class logits for the localisation
      weights: ``"last"`` (mmdet), ``"first"`` (torchvision) or ``"none"`` (logits hold only the C classes).
    """

    feature: str = "sgfi"
    ckd: bool = True
    cls_kl: bool = True
    loc: bool = True
    feat_weight: float = 1.0
    ckd_weight: float = 1.0
    kl_weight: float = 1.0
    loc_weight: float = 1.0
    gamma: float = 0.07
    tau_init: float = 1.0
    queue_size: int = 4096
    roi_size: int = 4
    finest_scale: float = 8.0
    kl_temperature: float = 1.0
    neg_iou: float = 0.5
    embed_dim: int = 64
    ckd_student: str = "assigned"
    sgfi_similarity: str = "cosine"
    background: str = "last"

    def __post_init__(self) -> None:
        def bad(name: str, expected: str) -> ConfigError:
            return ConfigError(f"GDetKDConfig.{name} must be {expected}, got {getattr(self, name)!r}", field=name)

        for name, choices in (("feature", FEATURE_MODES), ("ckd_student", CKD_STUDENT_MODES),
                              ("sgfi_similarity", SIMILARITY_MODES),
                              ("background", BACKGROUND_MODES)):
            if getattr(self, name) not in choices:
                raise bad(name, "one of " + ", ".join(choices))
        for name in ("ckd", "cls_kl", "loc"):
            if not isinstance(getattr(self, name), bool):
                raise bad(name, "a bool")
        for name in ("feat_weight", "ckd_weight", "kl_weight", "loc_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise bad(name, "a finite number >= 0")
        for name in ("gamma", "tau_init", "finest_scale", "kl_temperature"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise bad(name, "a finite number > 0")
        for name, low in (("queue_size", 0), ("roi_size", 1), ("embed_dim", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise bad(name, f"an int >= {low}")
        if isinstance(self.neg_iou, bool) or not isinstance(self.neg_iou, (int, float)) or not 0 < self.neg_iou <= 1:
            raise bad("neg_iou", "a number in (0, 1]")
        if self.ckd_student == "sgfi" and self.feature != "sgfi":
            raise ConfigError(f"GDetKDConfig.ckd_student 'sgfi' needs feature='sgfi', got feature={self.feature!r}",
                              field="ckd_student")

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any], *, source: str | None = None) -> GDetKDConfig:
        """Build from a plain mapping (e.g. YAML options); an unknown key raises :class:`ConfigError`."""
        names = {f.name for f in dataclasses.fields(cls)}
        for key in options:
            if key not in names:
                raise ConfigError(f"unknown G-DetKD option {key!r}; expected one of {', '.join(sorted(names))}",
                                  source=source, field=str(key))
        return cls(**dict(options))
