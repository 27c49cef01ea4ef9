"""Error types users see: each carries where the problem is (file, line, field) and what was expected."""
from __future__ import annotations


class AutomlError(Exception):
    """Base class of every error automl raises on purpose; the CLI prints these without a traceback."""


class ConfigError(AutomlError):
    """A bad input: names the source file, the line (when known) and the field, then what was expected."""

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.message = message
        self.source = source
        self.line = line
        self.field = field
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = ""
        if self.source:
            where = self.source + (f":{self.line}" if self.line else "") + ": "
        elif self.line:
            where = f"line {self.line}: "
        field = f"{self.field}: " if self.field else ""
        return f"{where}{field}{self.message}"


class DatasetError(ConfigError):
    """A dataset file (an annotation file or its images) that cannot be used; the message names the file,
    the first offending record and how many more records share the problem."""


class RegistryError(AutomlError):
    """An unknown or duplicate component name."""


class StorageError(AutomlError):
    """The ledger's storage cannot be opened or does not match the study being resumed."""


class Infeasible(AutomlError):
    """Raised by an estimator or objective when a candidate violates a hard constraint before training."""
