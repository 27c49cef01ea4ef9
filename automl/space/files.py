"""Reading a space file: our YAML, an NNI search space, or a ConfigSpace space, told apart by extension
and content.

* ``.pcs``: a ConfigSpace PCS file (``pcs_new`` or the older ``pcs``).
* ``.json``: a ConfigSpace JSON space when it holds a ``hyperparameters`` list, else an NNI
  ``search_space.json``.
* anything else (``.yaml``, ``.yml``): our YAML; or, by content, an NNI search space written in YAML
  (every value a ``{_type, _value}`` mapping) or a ConfigSpace space in YAML (``to_yaml``).
"""
from __future__ import annotations

from pathlib import Path

from automl.errors import ConfigError
from automl.space.configspace import looks_like_configspace, space_from_configspace_data, space_from_pcs
from automl.space.jsontext import read_json
from automl.space.loader import read_yaml, space_from_dict
from automl.space.model import SearchSpace
from automl.space.nni import looks_like_nni, space_from_nni

#: the suffixes of the files a space can be read from (others are read as YAML)
SUFFIXES = (".yaml", ".yml", ".json", ".pcs")


def space_from_file(path: str | Path) -> SearchSpace:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read the space file: {exc.strerror}", source=str(path)) from None
    return space_from_text(text, path.suffix, source=str(path))


def space_from_text(text: str, suffix: str, source: str | None = None) -> SearchSpace:
    """A space from the text of a file with ``suffix`` (``.yaml``, ``.json``, ``.pcs``)."""
    if suffix == ".pcs":
        return space_from_pcs(text, source)
    data, lines = read_json(text, source) if suffix == ".json" else read_yaml(text, source)
    if looks_like_configspace(data):
        return space_from_configspace_data(data, lines, source)
    if suffix == ".json" or looks_like_nni(data):
        return space_from_nni(data, lines, source)
    return space_from_dict(data, source, lines)
