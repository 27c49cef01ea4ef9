"""What the OpenMMLab-based builders (``detnas`` on mmdet, ``pointpillars`` on mmdet3d) share."""
from __future__ import annotations

import logging
from typing import Any

from mmengine.logging import MMLogger
from torch import nn


def init_weights_quietly(built: Any) -> nn.Module:
    """``built.init_weights()`` (an OpenMMLab ``BaseModule``: the heads' ``init_cfg``, e.g. the focal-loss
    prior on the classification bias) with mmengine's per-parameter INFO logging silenced; returns it."""
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)  # init_weights logs every parameter's init at INFO
    try:
        built.init_weights()
    finally:
        logger.setLevel(level)
    model: nn.Module = built
    return model
