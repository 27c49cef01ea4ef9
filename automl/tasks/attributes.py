"""Attribute filters over records (SODA10M-style image attributes such as ``period: night``): the
generic form of selecting the examples of one environment (``where={"period": "night"}``), and of
grouping records into environments by an attribute's value."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from automl.errors import ConfigError


def check_where(where: object, *, name: str = "where") -> dict[str, tuple[object, ...]] | None:
    """Normalise a ``where`` filter: attribute -> allowed values (a scalar or a list of them).

    Raises ConfigError (field ``name``) for anything else."""
    if where is None:
        return None
    if not isinstance(where, Mapping):
        raise ConfigError(f"expected a mapping of image attribute -> value or list of values, e.g. "
                          f"{{period: night}}, got {where!r}", field=name)
    out: dict[str, tuple[object, ...]] = {}
    for key, value in where.items():
        if not isinstance(key, str):
            raise ConfigError(f"attribute names must be strings, got {key!r}", field=name)
        values = tuple(value) if isinstance(value, (list, tuple, set, frozenset)) else (value,)
        if not values:
            raise ConfigError(f"{key}: an empty list of values keeps no image", field=name)
        for v in values:
            if isinstance(v, (dict, list)):
                raise ConfigError(f"{key}: values must be scalars, got {v!r}", field=name)
        out[key] = values
    return out


def matches(value: object, allowed: tuple[object, ...]) -> bool:
    """Strings compare case-insensitively (SODA10M writes ``Night``, users type ``night``)."""
    for a in allowed:
        if isinstance(value, str) and isinstance(a, str):
            if value.casefold() == a.casefold():
                return True
        elif value == a and isinstance(value, bool) == isinstance(a, bool):  # True is not 1
            return True
    return False


def format_where(spec: Mapping[str, tuple[object, ...]]) -> str:
    return "{" + ", ".join(f"{k}: {v[0]!r}" if len(v) == 1 else f"{k}: {list(v)!r}" for k, v in spec.items()) + "}"


def select_records(records: Sequence[Mapping[str, Any]], spec: Mapping[str, tuple[object, ...]]) -> list[int]:
    """The indices of the records whose attributes match every entry of ``spec`` (a checked ``where``)."""
    return [i for i, record in enumerate(records) if all(matches(record.get(k), vs) for k, vs in spec.items())]


def group_records(records: Sequence[Mapping[str, Any]], attribute: str) -> dict[str, list[int]]:
    """Record indices by the value of ``attribute`` (as text, in order of first appearance); records
    without it are left out: one group per environment."""
    groups: dict[str, list[int]] = {}
    for i, record in enumerate(records):
        if attribute in record and record[attribute] is not None:
            groups.setdefault(str(record[attribute]), []).append(i)
    return groups
