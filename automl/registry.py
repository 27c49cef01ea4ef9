"""Named registries of components: the :class:`Registry` mechanism, and the registries of builders,
space checks, morphisms, exporters and commands (strategies, estimators, tasks and regimes have theirs beside
their contracts).

Each registry is filled by the ``@register`` decorator of the module that defines a component and by
the Python entry-point group ``automl.<kind>``; entry points are loaded lazily on first lookup, so
importing :mod:`automl` never imports plugin layers (estimators, builders) that sit above it.
A name registered twice for two different objects is an error, never a silent override.
"""
from __future__ import annotations

import difflib
import threading
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Callable, Generic, Iterator, Sequence, TypeVar

from automl.errors import RegistryError

if TYPE_CHECKING:
    import argparse

    from torch import nn

    from automl.space.model import SearchSpace

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> component map for one kind, with entry-point discovery."""

    def __init__(self, kind: str, singular: str | None = None) -> None:
        self.kind = kind
        self.singular = singular or kind.removesuffix("s")
        self.group = f"automl.{kind}"
        self._items: dict[str, T] = {}
        self._loaded_entry_points = False
        self._lock = threading.RLock()

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@strategies.register("evolution")`` adds the decorated object under ``name``."""

        def decorate(obj: T) -> T:
            self.add(name, obj)
            return obj

        return decorate

    def add(self, name: str, obj: T) -> None:
        """Add ``obj`` under ``name``; re-adding the very same object is a no-op."""
        with self._lock:
            existing = self._items.get(name)
            if existing is not None and existing is not obj:
                raise RegistryError(
                    f"duplicate {self.singular} name {name!r}: already registered as "
                    f"{_describe(existing)}, cannot also register {_describe(obj)}"
                )
            self._items[name] = obj

    def find(self, name: str) -> T | None:
        """The component called ``name``, or None; loads only the entry point of that name."""
        with self._lock:
            if name not in self._items:
                for ep in entry_points(group=self.group, name=name):
                    self._on_entry_point(ep.name, ep.load())
            return self._items.get(name)

    def get(self, name: str) -> T:
        """The component called ``name``; an unknown name raises with the known names listed.

        Only the entry point of that name is loaded (a plugin's heavy imports are paid when it is used).
        """
        found = self.find(name)
        if found is not None:
            return found
        self._load_entry_points()
        try:
            return self._items[name]
        except KeyError:
            known = sorted(self._items)
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise RegistryError(
                f"unknown {self.singular} {name!r}{hint}; "
                f"known: {', '.join(known) or 'none'}"
            ) from None

    def names(self) -> list[str]:
        self._load_entry_points()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        self._load_entry_points()
        with self._lock:
            return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def _load_entry_points(self) -> None:
        with self._lock:
            if self._loaded_entry_points:
                return
            self._loaded_entry_points = True
            for ep in entry_points(group=self.group):
                obj = ep.load()
                self._on_entry_point(ep.name, obj)

    def _on_entry_point(self, name: str, obj: object) -> None:
        self.add(name, obj)  # type: ignore[arg-type]


def _describe(obj: object) -> str:
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    return f"{module}.{qualname}" if module and qualname else repr(obj)


# The registries of strategies, estimators, tasks and regimes live beside their contracts
# (automl.strategies.base, automl.estimator, automl.tasks.base, automl.training.regime).
#: builder name -> ``build(model config, task info) -> nn.Module``
builders: Registry[Callable[..., nn.Module]] = Registry("builders")
#: builder name -> ``check(space) -> [(path in the space tree, message)]``: what a builder needs of a
#: space beyond its declared types (e.g. kernels no longer than the task's sequences), run at load.
space_checks: Registry[Callable[[SearchSpace], Sequence[tuple[tuple[Any, ...], str]]]] = Registry(
    "space_checks", "space check")
#: builder name -> ``morph(space, config, rng, **options) -> (child config, description)``: a builder's
#: own network morphisms (one structural change whose child can inherit the parent's weights), used by
#: the ``morphism-evolution`` strategy.
morphisms: Registry[Callable[..., tuple[dict[str, Any], str]]] = Registry("morphisms")
#: builder name -> ``export(request) -> automl.export.ExportSource``: turns a trial's kept artifact into the
#: module to export (weights loaded), a batch of example inputs and a note of what the export leaves out,
#: for builders whose kept artifact is not a ``TrainedModel`` or of which only a part exports (detnas);
#: builders without one export through ``automl.export.export_trained_model``.
exporters: Registry[Callable[..., Any]] = Registry("exporters", "exporter")
#: subcommand name -> ``add(subparsers)``, which adds the ``automl NAME`` subcommand and sets its
#: ``handler``: how plug-in layers (zoo, distill) add commands without the ground package importing them
commands: Registry[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = Registry(
    "commands", "command")


def resolve_builder(name: str) -> Callable[..., nn.Module]:
    """A builder by registered name, or by ``package.module:function`` (which imports and runs that code)."""
    if ":" not in name:
        return builders.get(name)
    import importlib

    module_name, _, attr = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise RegistryError(f"builder {name!r}: cannot import module {module_name!r}: {exc}") from None
    try:
        builder: Callable[..., nn.Module] = getattr(module, attr)
        return builder
    except AttributeError:
        raise RegistryError(f"builder {name!r}: module {module_name!r} has no attribute {attr!r}") from None
