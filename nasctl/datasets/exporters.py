"""Exporters: one row per measurement to Parquet (pyarrow) or CSV.

Columns (:data:`COLUMNS`): ``arch_hash, space, genotype, model, device_id, precision, batch,
status, median_ms, mean_ms, p90_ms, std_ms, cv, runs, error, created_at``; times in milliseconds,
``cv`` a fraction. The output is written to a temporary file beside ``out`` and renamed, so a
failed export never leaves half a file or clobbers an existing one.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

from nasctl.datasets.importers import DatasetError
from nasctl.datasets.store import Store

COLUMNS: tuple[str, ...] = (
    "arch_hash",
    "space",
    "genotype",
    "model",
    "device_id",
    "precision",
    "batch",
    "status",
    "median_ms",
    "mean_ms",
    "p90_ms",
    "std_ms",
    "cv",
    "runs",
    "error",
    "created_at",
)
FORMATS = ("parquet", "csv")


def export(store: Store, fmt: str, out: str | os.PathLike[str]) -> dict[str, Any]:
    """Write every measurement of ``store`` to ``out``; returns ``{"rows", "format", "out"}``."""
    if fmt not in FORMATS:
        raise DatasetError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    path = Path(out)
    if path.is_dir():
        raise DatasetError(f"{path} is a directory; expected the name of a file to write")
    if not path.parent.exists():
        raise DatasetError(f"folder {path.parent} does not exist; create it first")
    rows = [{c: r.get(c) for c in COLUMNS} for r in store.iter_measurements()]
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        (_write_parquet if fmt == "parquet" else _write_csv)(rows, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return {"rows": len(rows), "format": fmt, "out": str(path)}


def _write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(COLUMNS))
        w.writeheader()
        w.writerows(rows)


def _write_parquet(rows: list[dict[str, Any]], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            (
                c,
                pa.int64()
                if c in ("batch", "runs")
                else pa.float64()
                if c in _FLOATS
                else pa.string(),
            )
            for c in COLUMNS
        ]
    )
    table = pa.Table.from_pylist(rows, schema=schema)
    pq.write_table(table, path)


_FLOATS = frozenset({"median_ms", "mean_ms", "p90_ms", "std_ms", "cv"})


def _arrow_type(pa: Any, column: str) -> Any:
    if column in ("batch", "runs"):
        return pa.int64()
    return pa.float64() if column in _FLOATS else pa.string()
