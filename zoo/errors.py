"""Errors the zoo raises on purpose; they are :class:`automl.errors.AutomlError`s, so the ``automl``
command prints them as one line and the service turns them into 4xx answers."""
from __future__ import annotations

from automl.errors import AutomlError


class ZooError(AutomlError):
    """Something about a zoo, a schedule or a task is wrong (the message says what)."""


class UnknownModel(ZooError):
    """A model id that the zoo does not hold."""


class UnservableTask(ZooError):
    """A task the zoo cannot serve: wrong input channels, input too small, a budget too small for any model."""


class ServiceError(ZooError):
    """The schedule service answered with an error (its status and message are in the text)."""


class ImplausibleOutcome(ZooError):
    """A reported outcome the service will not learn from: its numbers make no physical sense for its
    task and schedule, or it is of a task or model the service would not schedule (the message says which)."""
