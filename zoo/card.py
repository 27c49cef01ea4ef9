"""Model cards and the zoo directory.

Layout of a zoo directory (written by ``automl zoo build``, read by everything else)::

    zoo.json              the manifest: source task, build settings, model ids, build time, machine
    models/<id>.json      one model card per model (architecture, params, FLOPs, throughput, accuracy)
    models/<id>.pt        its pre-trained weights (a plain state dict, loaded with weights_only=True)
    experience.jsonl      seed fine-tuning experience gathered at build time (one Experience a line)

Cards are validated on load; a zoo whose card and weights disagree fails with the file named.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from zoo.errors import UnknownModel, ZooError
from zoo.schema import Experience, ModelId

if TYPE_CHECKING:
    from search_spaces.nasoa import NasoaNet

MANIFEST = "zoo.json"
EXPERIENCE = "experience.jsonl"


class ModelCard(BaseModel):
    """Everything the service knows about one zoo model without loading it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: ModelId
    arch: str = Field(description="architecture encoding c<base>:<block string>:<macro string>")
    config: dict[str, Any] = Field(description="the nasoa space's `model` config (what the builder takes)")
    num_stages: int = Field(ge=1)
    feature_dim: int = Field(ge=1)
    input_channels: int = Field(ge=1)
    min_input_size: int = Field(ge=1, description="smallest height/width the network accepts")
    params: int = Field(ge=1)
    flops: int = Field(ge=0, description="forward FLOPs of one source-size sample")
    train_samples_per_s: dict[int, float] = Field(
        description="measured fine-tuning throughput on this machine (samples/s at batch_size, source "
                    "input size), keyed by frozen stages")
    throughput_batch_size: int = Field(ge=1)
    throughput_input_hw: int = Field(ge=1)
    source_task: str
    source_accuracy: float = Field(ge=0.0, le=1.0)
    pretrain_epochs: int = Field(ge=0)
    weights: str
    weights_sha256: str

    @field_validator("train_samples_per_s")
    @classmethod
    def _positive_throughput(cls, value: dict[int, float]) -> dict[int, float]:
        # every schedule's time estimate divides by these: a zero, negative or non-finite one is a broken card
        if not value:
            raise ValueError("train_samples_per_s must hold the throughput of at least one frozen-stage count")
        bad = {k: v for k, v in value.items() if not (math.isfinite(v) and v > 0)}
        if bad:
            raise ValueError(f"train_samples_per_s must be positive finite samples/s, got {bad}")
        return value

    def samples_per_s(self, frozen: int) -> float:
        """Measured throughput with ``frozen`` stages frozen (the nearest measured count if not measured)."""
        if frozen in self.train_samples_per_s:
            return self.train_samples_per_s[frozen]
        nearest = min(self.train_samples_per_s, key=lambda k: abs(k - frozen))
        return self.train_samples_per_s[nearest]


class Manifest(BaseModel):
    """The zoo directory's ``zoo.json``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: int = 1
    source_task: str
    source_task_options: dict[str, Any] = Field(default_factory=dict)
    models: list[ModelId]
    build: dict[str, Any] = Field(default_factory=dict, description="settings, timings and machine of the build")


class Zoo:
    """A loaded zoo directory: its manifest, cards and seed experience (weights load on demand)."""

    def __init__(self, root: Path, manifest: Manifest, cards: dict[str, ModelCard],
                 seed_experience: tuple[Experience, ...]) -> None:
        self.root = root
        self.manifest = manifest
        self.cards = cards
        self.seed_experience = seed_experience

    @classmethod
    def load(cls, root: str | Path) -> Zoo:
        """Read and validate the zoo at ``root``."""
        root = Path(root)
        manifest_path = root / MANIFEST
        if not manifest_path.is_file():
            raise ZooError(f"{root}: not a zoo directory (no {MANIFEST}); "
                           f"build one with `automl zoo build --out {root}`")
        manifest = _parse(Manifest, manifest_path)
        cards: dict[str, ModelCard] = {}
        for model_id in manifest.models:
            card = _parse(ModelCard, root / "models" / f"{model_id}.json")
            if card.id != model_id:
                raise ZooError(f"{root / 'models' / (model_id + '.json')}: card id {card.id!r} != file name")
            if not (root / "models" / card.weights).is_file():
                raise ZooError(f"{root}: weights {card.weights} of model {model_id!r} are missing")
            cards[model_id] = card
        if not cards:
            raise ZooError(f"{manifest_path}: the zoo holds no models")
        seed: list[Experience] = []
        exp_path = root / EXPERIENCE
        if exp_path.is_file():
            for number, line in enumerate(exp_path.read_text().splitlines(), start=1):
                if line.strip():
                    try:
                        seed.append(Experience.model_validate_json(line))
                    except ValidationError as exc:
                        raise ZooError(f"{exp_path}:{number}: bad experience record: {_first_error(exc)}") from None
        return cls(root, manifest, cards, tuple(seed))

    def __iter__(self) -> Iterator[ModelCard]:
        return iter(self.cards.values())

    def __len__(self) -> int:
        return len(self.cards)

    def card(self, model_id: str) -> ModelCard:
        """The card of ``model_id``; an unknown id raises :class:`UnknownModel` naming the known ones."""
        try:
            return self.cards[model_id]
        except KeyError:
            raise UnknownModel(f"unknown zoo model {model_id!r}; "
                               f"the zoo holds {', '.join(sorted(self.cards))}") from None

    def weights_path(self, model_id: str) -> Path:
        return self.root / "models" / self.card(model_id).weights

    def load_model(self, model_id: str, num_classes: int | None = None) -> NasoaNet:
        """The pre-trained network of ``model_id`` (a :class:`search_spaces.nasoa.NasoaNet`), with a fresh
        head for ``num_classes`` classes when given."""
        import torch

        from automl.tasks.supervised import ClassificationInfo
        from search_spaces.nasoa import build_nasoa_net

        card = self.card(model_id)
        src_classes = int(self.manifest.build.get("source_classes", 5))
        net = build_nasoa_net(card.config, ClassificationInfo((card.input_channels, card.throughput_input_hw,
                                                     card.throughput_input_hw), src_classes))
        state = torch.load(self.weights_path(model_id), map_location="cpu", weights_only=True)
        net.load_state_dict(state)
        if num_classes is not None:
            net.replace_head(num_classes)
        return net


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_atomic(path: Path, payload: str | bytes) -> None:
    """Write ``payload`` to ``path`` through a temporary file and a rename (never a torn file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if isinstance(payload, bytes) else "w") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ())) or "<root>"
    return f"{where}: {err.get('msg')}"


def _parse(model: type[BaseModel], path: Path) -> Any:
    try:
        return model.model_validate(json.loads(path.read_text()))
    except FileNotFoundError:
        raise ZooError(f"{path}: missing") from None
    except json.JSONDecodeError as exc:
        raise ZooError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from None
    except ValidationError as exc:
        raise ZooError(f"{path}: {_first_error(exc)}") from None
