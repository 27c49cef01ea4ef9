"""Whether a space may run code: the one place where that is decided (:func:`check_code`).

Reading a space file never runs code: it is parsed with a safe loader, conditions are parsed and never
``eval``-ed, and names of components (task, estimator, regimes, strategy, registered builders) are
looked up among the registered plug-ins, which their installation already trusted. The one thing in a
space that can name arbitrary code is a builder given by import path, ``builder: "package.module:function"``:
searching such a space imports that module and calls that function. That is refused unless the user
trusts it, in one of three ways, none of them inside the file:

* ``--trust-code`` on the command line (``automl search``, ``automl run``), or ``trust_code=True`` in Python
  (``load_space``, ``space_from_yaml``, ``space_from_dict``, ``space_from_file``, ``run_pipeline``);
* the module (or a package above it) listed in the environment variable ``AUTOML_TRUSTED_MODULES``
  (comma-separated: ``AUTOML_TRUSTED_MODULES=mylab.builders,mylab.nets``), read when the space is loaded
  for a search;
* an import path that is the target of a registered builder's entry point
  (``search_spaces.mlp:build_mlp`` is builder ``mlp``): nothing new is imported.

``automl spaces validate`` says that a file names code to import, and never imports it.
"""
from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from typing import Mapping

from automl.errors import ConfigError, RegistryError
from automl.registry import CODE_REFERENCE, builders, is_code_reference, resolve_builder
from automl.space.model import SearchSpace
from automl.space.paths import YamlPath

#: the environment variable listing trusted modules (comma-separated dotted names)
TRUSTED_MODULES_ENV = "AUTOML_TRUSTED_MODULES"
_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
HOW_TO_TRUST = (f"pass --trust-code (in Python trust_code=True), or list the module in {TRUSTED_MODULES_ENV}, "
                "if you trust it")


@dataclass(frozen=True)
class CodeTrust:
    """What code the user trusts: everything (``--trust-code``) or these modules and the modules below them."""

    everything: bool = False
    modules: frozenset[str] = frozenset()

    @classmethod
    def granted(cls, trust_code: bool = False, environ: Mapping[str, str] | None = None) -> CodeTrust:
        """The user's trust: ``trust_code`` and the modules ``AUTOML_TRUSTED_MODULES`` lists."""
        return cls(everything=bool(trust_code), modules=trusted_modules(environ))

    def allows(self, reference: str) -> bool:
        """Whether code reference ``package.module:function`` may be imported."""
        module = reference.partition(":")[0]
        return self.everything or any(module == m or module.startswith(m + ".") for m in self.modules)


def trusted_modules(environ: Mapping[str, str] | None = None) -> frozenset[str]:
    """The modules ``AUTOML_TRUSTED_MODULES`` lists (a name that is not a dotted module name is an error)."""
    text = (os.environ if environ is None else environ).get(TRUSTED_MODULES_ENV, "")
    names = [name.strip() for name in text.split(",") if name.strip()]
    for name in names:
        if not _MODULE.fullmatch(name):
            raise ConfigError(f"expected comma-separated module names such as mylab.builders, got {name!r}",
                              source=TRUSTED_MODULES_ENV)
    return frozenset(names)


def code_references(space: SearchSpace) -> list[tuple[YamlPath, str]]:
    """Where ``space`` names code to import, and the import path: a builder given as
    ``package.module:function`` that is not a registered builder's own import path. Nothing is imported."""
    builder = space.builder
    if builder is None or not is_code_reference(builder) or builders.spelled(builder) is not None:
        return []
    return [(("builder",), builder)]


def reference_problem(name: str) -> str | None:
    """Why builder ``name`` cannot be a builder (None when it can be): a registered name, or an import path
    ``package.module:function``. Registered names are checked without importing any plug-in."""
    if is_code_reference(name):
        if not CODE_REFERENCE.fullmatch(name):
            return (f"expected a registered builder or an import path 'package.module:function' (dotted "
                    f"identifiers, a colon, an identifier), got {name!r}")
        return None
    if builders.known(name):
        return None
    return str(builders.unknown(name))


def check_code(space: SearchSpace, *, trust_code: bool = False, environ: Mapping[str, str] | None = None
               ) -> SearchSpace:
    """``space``, checked to run: its builder is registered, or an import path the user trusts (``trust_code``,
    ``AUTOML_TRUSTED_MODULES``), which is then imported so that a missing module fails here, once, instead of
    in every trial. A space already trusted (:attr:`SearchSpace.trusted_code`, set by ``trust_code=True`` when
    it was read) needs no more trust. Returns the space, marked trusted when it names code; anything else is a
    ConfigError at the ``builder:`` line."""
    if space.builder is None:
        return space
    problem = reference_problem(space.builder)
    if problem is not None:
        raise space.error(("builder",), problem)
    references = code_references(space)
    if not references:
        return space
    trust = CodeTrust.granted(trust_code, environ)
    for path, reference in references:
        if not space.trusted_code and not trust.allows(reference):
            raise space.error(path, f"{reference!r} names code to import and run; a space file runs no code "
                                    f"unless you say so: {HOW_TO_TRUST}")
        try:
            resolve_builder(reference)
        except RegistryError as exc:
            raise space.error(path, str(exc)) from None
    return space if space.trusted_code else dataclasses.replace(space, trusted_code=True)
