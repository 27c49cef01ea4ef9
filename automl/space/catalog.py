"""The registry of named spaces: YAML files shipped in ``search_spaces/`` or by plugins.

An ``automl.spaces`` entry point may resolve to a YAML file or to a folder of them; each file is
registered under its stem, which must equal the ``name:`` inside it.

:func:`load_space` gets a space to search: it is where :func:`automl.space.trust.check_code` decides
whether the code a space names may run (every search -- ``automl search``, ``automl run``,
``create_study`` -- loads its space through it). :func:`read_space` only reads one (to show, validate or
convert it): it never imports what the space names.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from automl.errors import ConfigError
from automl.registry import Registry
from automl.space.files import SUFFIXES, space_from_file
from automl.space.limits import SpaceLimits
from automl.space.model import SearchSpace
from automl.space.trust import check_code


class SpaceCatalog(Registry[Path]):
    def _on_entry_point(self, name: str, obj: object) -> None:
        path = Path(str(obj))
        files = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
        for file in files:
            self.add(file.stem, file)


spaces = SpaceCatalog("spaces", "space")


def read_space(space: str | Path | SearchSpace, *, limits: SpaceLimits | None = None) -> SearchSpace:
    """A space from a :class:`SearchSpace`, a registered name, or a path to a space file (our YAML, NNI's
    JSON or YAML, ConfigSpace's JSON or PCS), read and checked but not checked to run: nothing it names is
    imported (``automl spaces show|validate|convert``). A registered space is trusted (its plug-in is
    installed)."""
    if isinstance(space, SearchSpace):
        return space
    text = str(space)
    looks_like_file = isinstance(space, Path) or text.endswith(SUFFIXES) or "/" in text
    if looks_like_file:
        if not Path(text).exists():
            raise ConfigError(f"no such space file (registered spaces: {', '.join(spaces.names())})",
                              source=text)
        return space_from_file(text, limits=limits)
    loaded = space_from_file(spaces.get(text), limits=limits)
    if loaded.name != text:
        raise ConfigError(f"registered as {text!r} but its name is {loaded.name!r}", source=loaded.source)
    return dataclasses.replace(loaded, trusted_code=True)


def load_space(space: str | Path | SearchSpace, *, trust_code: bool = False,
               limits: SpaceLimits | None = None) -> SearchSpace:
    """A space to search: :func:`read_space`, then checked to run (:func:`automl.space.trust.check_code`):
    its builder is registered, or an import path (``builder: "package.module:function"``) the user trusts --
    ``trust_code=True`` (``--trust-code``), a module listed in ``AUTOML_TRUSTED_MODULES``, or a space read with
    ``trust_code=True`` -- which is imported now; an untrusted one is a ConfigError at its ``builder:`` line.
    ``limits``: the :class:`SpaceLimits` a file must stay within (default: as ``AUTOML_SPACE_LIMITS`` sets)."""
    return check_code(read_space(space, limits=limits), trust_code=trust_code)
