"""Helpers tasks share for caching what they generate or read: canonical option keys, the data root, generated
folders written once under a lock."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Callable, Mapping

from filelock import FileLock

from automl.errors import ConfigError


def options_key(options: Mapping[str, Any]) -> str:
    """A canonical JSON string of task options (hashable cache key; also hashed into folder names)."""
    return json.dumps(options, sort_keys=True, default=str)


def env_data_root() -> Path:
    """Where generated datasets go by default: ``$AUTOML_DATA`` or ``~/.cache/automl/datasets``."""
    env = os.environ.get("AUTOML_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "automl" / "datasets"


def options_digest(options: Mapping[str, Any]) -> str:
    """A short hash of generator options (the suffix of a generated dataset's folder name)."""
    return hashlib.sha256(options_key(options).encode()).hexdigest()[:12]


def generated_folder(root: Path, prefix: str, options: Mapping[str, Any], write: Callable[[Path], object]) -> Path:
    """``root/<prefix>-<options_digest(options)>``, written by ``write(folder)`` when absent: into a temporary
    sibling renamed into place under a file lock, so concurrent processes generate it once and a killed one
    leaves no partial dataset (its leftovers are removed by the next). ``meta.json`` (the options), written
    last, marks a folder complete."""
    final = root / f"{prefix}-{options_digest(options)}"
    if (final / "meta.json").is_file():
        return final
    try:
        root.mkdir(parents=True, exist_ok=True)
        with FileLock(str(root / f".{final.name}.lock")):
            if (final / "meta.json").is_file():  # another process made it while we waited
                return final
            for stale in root.glob(f".{final.name}.tmp-*"):  # a killed generation's leftovers (we hold the lock)
                shutil.rmtree(stale)
            if final.exists():  # a folder without meta.json is incomplete (not ours): rebuilt
                shutil.rmtree(final)
            tmp = root / f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            write(tmp)
            (tmp / "meta.json").write_text(json.dumps(dict(options), indent=1, sort_keys=True))
            os.replace(tmp, final)
    except PermissionError as exc:
        raise ConfigError(f"cannot write the generated dataset here ({exc.strerror}); set the task option "
                          f"'root' or $AUTOML_DATA to a writable folder", source=str(root), field="root") from None
    return final
