"""The tabulated ``nb201-digits`` benchmark: every cell of the space trained once, its validation accuracy and
loss, test accuracy and training seconds recorded after each tabulated budget (epochs).

The table is a compressed ``.npz`` (``benchmarks/build_nas_table.py`` writes it; by default under
``benchmarks/data/``); :func:`load_nas_table` reads it for the ``tabular`` estimator, zero-cost proxy studies
and strategy benchmarks. Rows are keyed by NAS-Bench-201's cell text (:func:`search_spaces.nb201.arch_string`);
equivalent cells (:func:`search_spaces.nb201.canonical_cell`) were trained once and share their numbers.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from automl.errors import ConfigError
from search_spaces import SPACES_DIR
from search_spaces.nb201 import OPS, Cell, arch_string

#: where the build script writes the table and where the loader looks by default
DEFAULT_TABLE = SPACES_DIR.parent / "benchmarks" / "data" / "nb201-digits.npz"
#: bump when the file layout changes
TABLE_FORMAT = 2
_ARRAYS = ("cells", "budgets", "val_accuracy", "val_loss", "test_accuracy", "train_seconds", "params", "flops",
           "representative")


@dataclass(frozen=True, eq=False)
class NasTable:
    """Per cell (row): ``cells`` (indices into :data:`search_spaces.nb201.OPS`, one per edge), and per row and
    budget (column of ``budgets``, in epochs): ``val_accuracy``, ``val_loss``, ``test_accuracy`` and
    ``train_seconds`` (the training time to that budget: the simulated cost); per row ``params`` and ``flops``, and
    ``representative`` (the row that was trained for it: itself, or an equivalent cell's). ``metadata``:
    how and where the table was built."""

    cells: np.ndarray
    budgets: np.ndarray
    val_accuracy: np.ndarray
    val_loss: np.ndarray
    test_accuracy: np.ndarray
    train_seconds: np.ndarray
    params: np.ndarray
    flops: np.ndarray
    representative: np.ndarray
    metadata: Mapping[str, Any] = field(default_factory=dict)
    source: str = ""

    @cached_property
    def ops(self) -> list[Cell]:
        """Each row's cell as op names."""
        return [tuple(OPS[i] for i in row) for row in self.cells.tolist()]

    @cached_property
    def keys(self) -> list[str]:
        """Each row's NAS-Bench-201 cell text."""
        return [arch_string(ops) for ops in self.ops]

    @cached_property
    def _rows(self) -> dict[Cell, int]:
        return {ops: i for i, ops in enumerate(self.ops)}

    def __len__(self) -> int:
        return len(self.cells)

    def row(self, ops: Sequence[str]) -> int:
        """The row of the cell ``ops`` (one op per edge); a cell the table lacks is a ConfigError."""
        found = self._rows.get(tuple(ops))
        if found is None:
            raise ConfigError(f"cell {arch_string(ops)} is not in the table {self.source or '(in memory)'} (it "
                              f"holds {len(self)} cells over ops {self.metadata.get('ops', '?')})")
        return found

    def budget_column(self, budget: float) -> int:
        """The column of the largest tabulated budget at or below ``budget`` (never more training than paid for);
        a budget below the smallest or above the largest tabulated one is a ConfigError."""
        budgets = self.budgets.tolist()
        if not budgets[0] <= budget <= budgets[-1]:
            raise ConfigError(f"budget {budget:g} is outside the table's budgets {budgets[0]}..{budgets[-1]} "
                              f"(epochs tabulated: {budgets})", field="budget")
        return int(np.searchsorted(self.budgets, budget, side="right")) - 1

    def save(self, path: str | Path) -> Path:
        """Write the table as a compressed ``.npz`` (atomically: a temporary file renamed into place)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial.npz")
        meta = json.dumps({"format": TABLE_FORMAT, **self.metadata}, sort_keys=True)
        np.savez_compressed(partial, metadata=np.array(meta), **{name: getattr(self, name) for name in _ARRAYS})
        partial.replace(path)
        return path


def load_nas_table(path: str | Path | None = None) -> NasTable:
    """The table at ``path`` (default :data:`DEFAULT_TABLE`); a missing or unreadable file is a ConfigError
    that says how to build it."""
    where = Path(path) if path is not None else DEFAULT_TABLE
    if not where.is_file():
        raise ConfigError(f"no NAS table at {where}: run `python benchmarks/build_nas_table.py` to build it "
                          f"(or give the path of one)", field="table")
    try:
        with np.load(where, allow_pickle=False) as data:
            arrays = {name: data[name] for name in _ARRAYS}
            metadata = json.loads(str(data["metadata"]))
    except (OSError, KeyError, ValueError) as exc:
        raise ConfigError(f"{where} is not a NAS table written by benchmarks/build_nas_table.py ({exc}); rebuild it",
                          field="table") from None
    if metadata.get("format") != TABLE_FORMAT:
        raise ConfigError(f"{where} has table format {metadata.get('format')!r}, this code reads {TABLE_FORMAT}: "
                          f"rebuild it with benchmarks/build_nas_table.py", field="table")
    return NasTable(**arrays, metadata=metadata, source=str(where))
