"""Helpers tasks share for caching what they generate or read: canonical option keys and the data root."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping


def options_key(options: Mapping[str, Any]) -> str:
    """A canonical JSON string of task options (hashable cache key; also hashed into folder names)."""
    return json.dumps(options, sort_keys=True, default=str)


def env_data_root() -> Path:
    """Where generated datasets go by default: ``$AUTOML_DATA`` or ``~/.cache/automl/datasets``."""
    env = os.environ.get("AUTOML_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "automl" / "datasets"
