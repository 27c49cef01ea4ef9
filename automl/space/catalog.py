"""The registry of named spaces: YAML files shipped in ``search_spaces/`` or by plugins.

An ``automl.spaces`` entry point may resolve to a YAML file or to a folder of them; each file is
registered under its stem, which must equal the ``name:`` inside it.
"""
from __future__ import annotations

from pathlib import Path

from automl.errors import ConfigError
from automl.registry import Registry
from automl.space.files import SUFFIXES, space_from_file
from automl.space.model import SearchSpace


class SpaceCatalog(Registry[Path]):
    def _on_entry_point(self, name: str, obj: object) -> None:
        path = Path(str(obj))
        files = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
        for file in files:
            self.add(file.stem, file)


spaces = SpaceCatalog("spaces", "space")


def load_space(space: str | Path | SearchSpace) -> SearchSpace:
    """A space from a :class:`SearchSpace`, a registered name, or a path to a space file (our YAML, NNI's
    JSON or YAML, ConfigSpace's JSON or PCS)."""
    if isinstance(space, SearchSpace):
        return space
    text = str(space)
    looks_like_file = isinstance(space, Path) or text.endswith(SUFFIXES) or "/" in text
    if looks_like_file:
        if not Path(text).exists():
            raise ConfigError(f"no such space file (registered spaces: {', '.join(spaces.names())})", source=text)
        return space_from_file(text)
    loaded = space_from_file(spaces.get(text))
    if loaded.name != text:
        raise ConfigError(f"registered as {text!r} but its name is {loaded.name!r}", source=loaded.source)
    return loaded
