"""The typed records the zoo's parts exchange (and the service's wire format): a task's
meta-features, a fine-tuning schedule, a decision, an observed outcome.

All are frozen pydantic models that reject unknown fields and non-finite numbers, so a malformed
request fails at the door with a message naming the field, and nothing downstream sees a half-valid
record. Every list and number of the wire format is bounded (the constants below), so no request can
make the service allocate more than a bounded amount.
"""
from __future__ import annotations

import math
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: The largest time budget a request may ask for (a week): anything above is a mistake, not a plan.
MAX_BUDGET_S: float = 7 * 24 * 3600.0
#: Learning rates the schedule generator chooses from (PAPERS.md §2: {1e-3, 3e-3, 1e-2, 3e-2}).
LEARNING_RATES: tuple[float, ...] = (1e-3, 3e-3, 1e-2, 3e-2)
#: Frozen-stage counts the generator chooses from (the stem plus that many stages are frozen).
FROZEN_STAGES: tuple[int, ...] = (0, 1, 2)
#: Fine-tuning batch size (a choice: small target tasks, a few hundred samples).
BATCH_SIZE: int = 32
#: The most epochs a schedule may ask for, whatever the budget (more rarely helps these tasks).
MAX_EPOCHS: int = 40
#: The most entries of any list or mapping in a request (``models``, ``probe_scores``): four times the
#: largest zoo ``automl zoo build`` writes (64 models), so a real request never comes near it.
MAX_LIST_ITEMS: int = 256
#: The shortest fine-tuning an outcome may report: loading a model and one training step take longer.
MIN_OUTCOME_SECONDS: float = 1e-3
#: The longest fine-tuning an outcome may report: ten times the largest budget.
MAX_OUTCOME_SECONDS: float = MAX_BUDGET_S * 10

ModelId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class TaskMeta(Frozen):
    """What the predictor knows about a task: its shape and, optionally, each zoo model's
    linear-probe accuracy on it (computed by the client, which holds the data)."""

    name: str = Field(default="task", max_length=200, description="a label for the task (free text)")
    num_classes: int = Field(ge=2, le=100_000)
    num_samples: int = Field(ge=2, le=100_000_000, description="training samples the fine-tuning will use")
    input_shape: tuple[int, int, int] = Field(description="channels, height, width of one input")
    probe_scores: dict[ModelId, Annotated[float, Field(ge=0.0, le=1.0)]] = Field(
        default_factory=dict, max_length=MAX_LIST_ITEMS,
        description=f"zoo model id -> linear-probe validation accuracy on this task (at most {MAX_LIST_ITEMS})")

    @field_validator("input_shape")
    @classmethod
    def _shape(cls, value: tuple[int, int, int]) -> tuple[int, int, int]:
        c, h, w = value
        if not 1 <= c <= 64 or not 1 <= h <= 8192 or not 1 <= w <= 8192:
            raise ValueError(f"input_shape must be (channels 1..64, height 1..8192, width 1..8192), got {value}")
        return value

    @model_validator(mode="after")
    def _enough_samples(self) -> TaskMeta:
        if self.num_samples < self.num_classes:
            raise ValueError(f"num_samples ({self.num_samples}) must be at least num_classes ({self.num_classes})")
        return self


class Schedule(Frozen):
    """How to fine-tune: which zoo model, learning rate, how many stages frozen, epochs, batch size."""

    model_id: ModelId
    lr: float = Field(gt=0.0, le=1.0)
    frozen_stages: int = Field(ge=0, le=8)
    epochs: int = Field(ge=1, le=10_000)
    batch_size: int = Field(default=BATCH_SIZE, ge=1, le=65_536)


class ScheduleRequest(Frozen):
    """POST /v1/schedule: a task and the wall-clock seconds its fine-tuning may take."""

    task: TaskMeta
    time_budget_s: float = Field(gt=0.0, le=MAX_BUDGET_S,
                                 description=f"seconds of fine-tuning allowed (0 < budget <= {MAX_BUDGET_S:g})")
    models: list[ModelId] | None = Field(
        default=None, min_length=1, max_length=MAX_LIST_ITEMS,
        description=f"restrict the choice to these zoo models (1 to {MAX_LIST_ITEMS}; repeated ids count once)")

    @field_validator("time_budget_s")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("time_budget_s must be a finite number of seconds")
        return value

    @field_validator("models")
    @classmethod
    def _distinct(cls, value: list[str] | None) -> list[str] | None:
        # a repeated id restricts the choice no further: drop it (first occurrence kept) rather than
        # refuse the request, so the schedules scored and ``candidates`` count each model once
        return None if value is None else list(dict.fromkeys(value))


class Prediction(Frozen):
    """A schedule with the predictor's estimates."""

    schedule: Schedule
    predicted_accuracy: float
    predicted_seconds: float


class Decision(Frozen):
    """The generator's answer: the best predicted schedule that fits the budget, and the runners-up."""

    request_id: str | None = None
    best: Prediction
    alternatives: list[Prediction] = Field(default_factory=list)
    candidates: int = Field(description="schedules that fit the budget and were scored")
    experience: int = Field(description="finished tasks the predictor had learned from")
    predictor: str = Field(description="'learned' (a fitted model) or 'prior' (too little experience yet)")


class OutcomeReport(Frozen):
    """POST /v1/outcomes: what a schedule achieved. Either ``request_id`` of an earlier decision (task
    and schedule are taken from it) or ``task`` and ``schedule`` themselves."""

    request_id: str | None = Field(default=None, min_length=1, max_length=64)
    task: TaskMeta | None = None
    schedule: Schedule | None = None
    accuracy: float = Field(ge=0.0, le=1.0, description="validation accuracy after fine-tuning")
    seconds: float = Field(ge=MIN_OUTCOME_SECONDS, le=MAX_OUTCOME_SECONDS,
                           description="wall-clock seconds the fine-tuning took (the service also checks them "
                                       "against its estimate for the task and schedule)")

    @model_validator(mode="after")
    def _complete(self) -> OutcomeReport:
        if self.request_id is None and (self.task is None or self.schedule is None):
            raise ValueError("an outcome needs request_id, or both task and schedule")
        return self


class Experience(Frozen):
    """One finished fine-tuning: the task, the schedule, what it achieved (the predictor's training row)."""

    task: TaskMeta
    schedule: Schedule
    accuracy: float = Field(ge=0.0, le=1.0)
    seconds: float = Field(gt=0.0)
