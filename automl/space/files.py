"""Reading a space file: our YAML, or an NNI ``search_space.json``."""
from __future__ import annotations

from pathlib import Path

from automl.errors import ConfigError
from automl.space.loader import space_from_yaml
from automl.space.model import SearchSpace
from automl.space.nni import space_from_nni_json


def space_from_file(path: str | Path) -> SearchSpace:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read the space file: {exc.strerror}", source=str(path)) from None
    if path.suffix == ".json":
        return space_from_nni_json(text, source=str(path))
    return space_from_yaml(text, source=str(path))
