"""Where large artifacts (checkpoints) go: a local folder or any fsspec URL (``s3://bucket/run``,
``gcs://...``, ``sftp://...``), so that cluster workers without a shared filesystem can continue a
promoted candidate from a checkpoint another worker wrote."""
from __future__ import annotations

import contextlib
import os
import uuid
from dataclasses import dataclass
from typing import Any, ContextManager, Mapping

import fsspec
from filelock import FileLock
from fsspec.implementations.local import LocalFileSystem

#: where estimators cache shared artifacts (trained supernets, teacher pools) when a study has no
#: checkpoint store of its own
DEFAULT_STORE = "automl-runs/supernets"


@dataclass(frozen=True)
class ArtifactStore:
    """Named blobs under ``root``; writes are atomic (temporary name, then rename)."""

    root: str

    def _fs(self) -> tuple[Any, str]:
        fs, path = fsspec.core.url_to_fs(self.root)
        return fs, path.rstrip("/")

    def exists(self, name: str) -> bool:
        fs, path = self._fs()
        return bool(fs.exists(f"{path}/{name}"))

    def read_bytes(self, name: str) -> bytes:
        fs, path = self._fs()
        with fs.open(f"{path}/{name}", "rb") as f:
            data: bytes = f.read()
        return data

    def write_bytes(self, name: str, data: bytes) -> None:
        fs, path = self._fs()
        fs.makedirs(path, exist_ok=True)
        tmp = f"{path}/.{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
        with fs.open(tmp, "wb") as f:
            f.write(data)
        fs.mv(tmp, f"{path}/{name}")

    def remove(self, name: str) -> None:
        fs, path = self._fs()
        fs.rm(f"{path}/{name}")

    def lock(self, name: str) -> ContextManager[Any]:
        """An exclusive lock on ``name`` across processes, so that one of several workers makes a
        shared artifact while the others wait for it. Only local stores can lock; on remote stores
        this is a no-op (workers may then each make the artifact; the atomic write keeps it whole)."""
        fs, path = self._fs()
        if not isinstance(fs, LocalFileSystem):
            return contextlib.nullcontext()
        fs.makedirs(path, exist_ok=True)
        return FileLock(f"{path}/.{name}.lock")


def model_artifact(key: str) -> str:
    """The name under which an estimator keeps a candidate's trained model (for its children to inherit
    and for ``automl search`` to export); keys are hex digests, so the name is a plain file name."""
    return f"{key}.model.pt"


def trial_model_artifact(number: int) -> str:
    """The name under which an estimator keeps trial ``number``'s trained model in its study's checkpoint
    store (what ``automl export`` exports)."""
    return f"trial-{number}.model.pt"


#: bump when :class:`TrainedModel`'s layout changes
TRAINED_MODEL_FORMAT = 1


@dataclass(frozen=True)
class TrainedModel:
    """A trained model as an estimator keeps it: the weights and what rebuilds the module around them
    (the space's builder and task, the candidate's config), with how it was trained and scored."""

    builder: str
    config: Mapping[str, Any]
    task: str
    task_options: Mapping[str, Any]
    space: str
    state_dict: Mapping[str, Any]
    trial: int
    seed: int
    estimator: str
    recipe: Mapping[str, Any] | None = None
    metrics: Mapping[str, float] | None = None

    def to_bytes(self) -> bytes:
        import io

        import torch

        buffer = io.BytesIO()
        torch.save({"format": TRAINED_MODEL_FORMAT, **{f: getattr(self, f) for f in self.__dataclass_fields__}},
                   buffer)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, source: str) -> TrainedModel:
        import io

        import torch

        from automl.errors import ConfigError

        try:
            state = torch.load(io.BytesIO(data), weights_only=False, map_location="cpu")
        except Exception as exc:  # a torn or foreign file: say which one
            raise ConfigError(f"not a trained-model file ({type(exc).__name__}: {exc})", source=source) from None
        if not isinstance(state, dict) or state.get("format") != TRAINED_MODEL_FORMAT:
            raise ConfigError(f"not a trained-model file of format {TRAINED_MODEL_FORMAT}", source=source)
        fields: dict[str, Any] = {f: state.get(f) for f in cls.__dataclass_fields__}
        return cls(**fields)
