"""Reading a space file: our YAML, an NNI search space, or a ConfigSpace space, told apart by extension
and content.

* ``.pcs``: a ConfigSpace PCS file (``pcs_new`` or the older ``pcs``).
* ``.json``: a ConfigSpace JSON space when it holds a ``hyperparameters`` list, else an NNI
  ``search_space.json``.
* anything else (``.yaml``, ``.yml``): our YAML; or, by content, an NNI search space written in YAML
  (every value a ``{_type, _value}`` mapping) or a ConfigSpace space in YAML (``to_yaml``).

A file is read as UTF-8 (a byte order mark is allowed), at most ``SpaceLimits.file_bytes`` of it, and only
when it is a regular file (a FIFO or a device would block or never end).
"""
from __future__ import annotations

from pathlib import Path

from automl.errors import ConfigError
from automl.space.configspace import looks_like_configspace, space_from_configspace_data, space_from_pcs
from automl.space.jsontext import read_json
from automl.space.limits import SpaceLimits, current_limits
from automl.space.loader import read_yaml, space_from_dict
from automl.space.model import SearchSpace
from automl.space.nni import looks_like_nni, space_from_nni

#: the suffixes of the files a space can be read from (others are read as YAML)
SUFFIXES = (".yaml", ".yml", ".json", ".pcs")


def read_text_file(path: str | Path, limits: SpaceLimits | None = None, what: str = "space file") -> str:
    """The text of the UTF-8 file ``path``: a ConfigError (naming the file, and the line of an invalid byte)
    for a file that cannot be read, is not a regular file, is larger than ``limits.file_bytes`` or is not
    UTF-8."""
    path = Path(path)
    limits = current_limits(limits)
    try:
        if not path.is_file():
            reason = "no such file" if not path.exists() else "not a regular file"
            raise ConfigError(f"cannot read the {what}: {reason}", source=str(path))
        with path.open("rb") as handle:
            data = handle.read(limits.file_bytes + 1)
    except (OSError, ValueError) as exc:  # ValueError: a path with a NUL byte
        raise ConfigError(f"cannot read the {what}: {getattr(exc, 'strerror', None) or exc}",
                          source=str(path)) from None
    if len(data) > limits.file_bytes:
        raise ConfigError(f"the {what} is larger than {limits.file_bytes} bytes (limit file_bytes; raise it with "
                          f"AUTOML_SPACE_LIMITS=file_bytes=N)", source=str(path))
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(f"the {what} is not valid UTF-8: byte {data[exc.start]:#04x} at column {column} "
                          f"({exc.reason})", source=str(path), line=line) from None


def space_from_file(path: str | Path, *, trust_code: bool = False, limits: SpaceLimits | None = None
                    ) -> SearchSpace:
    """The space in the file ``path`` (see the module); ``trust_code``: the user trusts the code it names
    (:mod:`automl.space.trust`), ``limits``: :class:`SpaceLimits` (default: as ``AUTOML_SPACE_LIMITS`` sets)."""
    limits = current_limits(limits)
    text = read_text_file(path, limits)
    return space_from_text(text, Path(path).suffix, source=str(path), trust_code=trust_code, limits=limits)


def space_from_text(text: str, suffix: str, source: str | None = None, *, trust_code: bool = False,
                    limits: SpaceLimits | None = None) -> SearchSpace:
    """A space from the text of a file with ``suffix`` (``.yaml``, ``.json``, ``.pcs``)."""
    limits = current_limits(limits)
    if len(text) > limits.file_bytes:
        raise ConfigError(f"the space file is larger than {limits.file_bytes} bytes (limit file_bytes)",
                          source=source)
    if suffix == ".pcs":
        return space_from_pcs(text, source, limits=limits)
    data, lines = read_json(text, source, limits) if suffix == ".json" else read_yaml(text, source, limits)
    if looks_like_configspace(data):
        return space_from_configspace_data(data, lines, source, limits=limits)
    if suffix == ".json" or looks_like_nni(data):
        return space_from_nni(data, lines, source, limits=limits)
    return space_from_dict(data, source, lines, trust_code=trust_code, limits=limits)
