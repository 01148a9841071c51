"""Accuracy from a benchmark table: ``nb201:cifar10|cifar100|imagenet16``.

Reads ``<data dir>/nb201/accuracy.csv`` (test accuracy in percent after 200 epochs, NATS-Bench
topology space) once; genotypes are the official arch strings.
"""

from __future__ import annotations

import csv
import functools
from pathlib import Path

from nasctl.arch.graph import Graph
from nasctl.errors import SearchError
from nasctl.profiler.backends.replay import default_data_dir
from nasctl.search.accuracy.base import AccuracyEstimator, register_estimator
from nasctl.spaces.base import SearchSpace

NB201_COLUMNS = {
    "cifar10": "cifar10_test_acc",
    "cifar100": "cifar100_test_acc",
    "imagenet16": "imagenet16_120_test_acc",
}


@functools.lru_cache(maxsize=4)
def _read_table(path: str, column: str) -> dict[str, float]:
    p = Path(path)
    if not p.is_file():
        raise SearchError(
            f"accuracy table {p} not found; set NASCTL_DATA_DIR to the folder holding nb201/"
        )
    with p.open(newline="") as f:
        reader = csv.DictReader(f)
        if column not in (reader.fieldnames or []) or "arch" not in (reader.fieldnames or []):
            raise SearchError(f"{p} has no columns 'arch' and {column!r}")
        return {r["arch"]: float(r[column]) for r in reader if r[column] != ""}


class NB201TableEstimator(AccuracyEstimator):
    """Test accuracy (%) of an NB201 cell from ``nb201/accuracy.csv``."""

    unit = "test accuracy (%)"
    needs_graph = False
    cheap = True

    def __init__(self, dataset: str) -> None:
        if dataset not in NB201_COLUMNS:
            raise SearchError(
                f"unknown nb201 dataset {dataset!r}; expected one of {', '.join(NB201_COLUMNS)}"
            )
        self.name = f"nb201:{dataset}"
        self.column = NB201_COLUMNS[dataset]
        self.path = default_data_dir() / "nb201" / "accuracy.csv"

    def check_space(self, space: SearchSpace) -> None:
        if space.name != "nb201":
            raise SearchError(f"{self.name} scores the nb201 space only; got space {space.name!r}")

    @property
    def table(self) -> dict[str, float]:
        return _read_table(str(self.path), self.column)

    def estimate(self, genotype: str, graph: Graph | None, space: SearchSpace) -> float:
        try:
            return self.table[genotype]
        except KeyError:
            raise SearchError(f"{genotype} is not in {self.path}") from None


register_estimator("nb201")(NB201TableEstimator)
