"""Datasets: the measurement store (SQLite), importers of public tables, exporters.

``from nasctl.datasets import Store`` is the entry point; see :mod:`nasctl.datasets.store` for the
contract.
"""

from __future__ import annotations

from nasctl.datasets.rows import LayerRow, TrainingRow
from nasctl.datasets.store import Store

__all__ = ["LayerRow", "Store", "TrainingRow"]
