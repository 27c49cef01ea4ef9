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
import re
import threading
from importlib.metadata import EntryPoint, entry_points
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
        """The component called ``name``, or None; loads only the entry point of that name (a plugin that
        fails to import is a RegistryError naming it)."""
        with self._lock:
            if name not in self._items:
                for ep in entry_points(group=self.group, name=name):
                    self._on_entry_point(ep.name, _load(ep, self.singular))
            return self._items.get(name)

    def known(self, name: str) -> bool:
        """Whether ``name`` is registered (decorated, or an entry point), without importing any plugin."""
        with self._lock:
            return name in self._items or any(True for _ in entry_points(group=self.group, name=name))

    def listed_names(self) -> list[str]:
        """Every registered name, without importing any plugin (for messages that list them)."""
        with self._lock:
            return sorted(set(self._items) | {ep.name for ep in entry_points(group=self.group)})

    def spelled(self, reference: str) -> str | None:
        """The registered name whose component is ``reference`` (``package.module:function``), read from the
        entry points' targets and the decorated components' own names, so nothing is imported; None if none
        is."""
        with self._lock:
            for ep in entry_points(group=self.group):
                if ep.value.replace(" ", "") == reference:
                    return str(ep.name)
            for name, obj in self._items.items():
                module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
                if module and qualname and f"{module}:{qualname}" == reference:
                    return name
        return None

    def get(self, name: str) -> T:
        """The component called ``name``; an unknown name raises with the known names listed.

        Only the entry point of that name is loaded (a plugin's heavy imports are paid when it is used).
        """
        found = self.find(name)
        if found is not None:
            return found
        self._load_entry_points()  # a plugin's module may register names besides its entry point's
        with self._lock:
            if name in self._items:
                return self._items[name]
        raise self.unknown(name)

    def unknown(self, name: str) -> RegistryError:
        """The error for an unknown ``name``: the known names listed (without importing them), the closest
        suggested."""
        known = self.listed_names()
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return RegistryError(f"unknown {self.singular} {name!r}{hint}; known: {', '.join(known) or 'none'}")

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
                self._on_entry_point(ep.name, _load(ep, self.singular))

    def _on_entry_point(self, name: str, obj: object) -> None:
        self.add(name, obj)  # type: ignore[arg-type]


def _load(ep: EntryPoint, singular: str) -> Any:
    """What entry point ``ep`` names; a plugin that cannot be imported is a RegistryError naming it."""
    try:
        return ep.load()
    except (ImportError, AttributeError) as exc:
        raise RegistryError(f"{singular} {ep.name!r} (entry point {ep.value!r} of {ep.group}) cannot be loaded: "
                            f"{type(exc).__name__}: {exc}") from exc


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


#: ``package.module:function``: how a space names a builder by its import path (dotted identifiers, a colon,
#: an identifier)
CODE_REFERENCE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*")


def is_code_reference(name: str) -> bool:
    """Whether builder ``name`` is an import path (``package.module:function``) rather than a registered name."""
    return ":" in name


def resolve_builder(name: str) -> Callable[..., nn.Module]:
    """A builder by registered name, or by ``package.module:function``, which imports that module (running
    its code) unless it is the import path of a registered builder.

    This does not decide whether a space's import path may be imported: :func:`automl.space.trust.check_code`
    does, when a space is loaded to be searched (``load_space``), and refuses code the user has not trusted.
    """
    if not is_code_reference(name):
        return builders.get(name)
    if not CODE_REFERENCE.fullmatch(name):
        raise RegistryError(f"builder {name!r}: expected a registered name or 'package.module:function'")
    registered = builders.spelled(name)
    if registered is not None:
        return builders.get(registered)
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
