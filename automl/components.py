"""Building a registered component (task, estimator, regime, strategy) from its YAML options, with one
clear error for an option it does not take or a value it refuses."""
from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping, TypeVar

from automl.errors import ConfigError

T = TypeVar("T")


def reject_options(kind: str, component: object, options: Mapping[str, Any]) -> None:
    """What a base class's ``__init__(**options)`` does with options no subclass took: a ConfigError
    naming the first of them (``field``)."""
    if options:
        unknown = sorted(options)
        name = getattr(component, "__name__", type(component).__name__)
        raise ConfigError(f"{kind} {name} got unknown options {unknown}", field=unknown[0])


def accepted_options(factory: Callable[..., Any], skip: int = 0) -> set[str] | None:
    """The keyword options ``factory`` takes (after its first ``skip`` positional parameters), or None
    when it takes any (``**options``) or its signature cannot be read."""
    try:
        params = list(inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    params = [p for p in params if p.kind is not p.VAR_POSITIONAL][skip:]
    return {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def construct(factory: Callable[..., T], options: Mapping[str, Any], *, kind: str, name: str,
              args: tuple[Any, ...] = ()) -> T:
    """``factory(*args, **options)``; an option it does not take, or a TypeError from a value it cannot
    use, is a :class:`ConfigError` naming the component and the option (``field``: the option name)."""
    accepted = accepted_options(factory, skip=len(args))
    if accepted is not None:
        unknown = sorted(set(options) - accepted)
        if unknown:
            known = ", ".join(sorted(accepted)) or "none"
            raise ConfigError(f"{kind} {name!r} has no option{'s' if len(unknown) > 1 else ''} "
                              f"{', '.join(repr(u) for u in unknown)} (its options: {known})", field=unknown[0])
    try:
        return factory(*args, **options)
    except TypeError as exc:
        raise ConfigError(f"{kind} {name!r}: bad options {dict(options)}: {exc}") from None
