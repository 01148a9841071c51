"""The replay device ``replay:<table>/<column>``: answers from a recorded latency table.

``<data_dir>/<table>/latency_ms.csv`` is keyed by its ``arch`` column (the genotype: the NB201
arch string, the FBNet layer list); ``<column>`` is one device/batch column in milliseconds. The
data dir is the ``data_dir`` option, else ``$NASCTL_DATA_DIR``, else ``../shared/data`` relative to
the working directory, else beside the repository. Each table is read once per process.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

from nasctl.errors import DeviceError
from nasctl.profiler.devices import Device, register_device
from nasctl.records import Measurement, MeasurementRequest

_CACHE: dict[tuple[str, float], tuple[list[str], dict[str, list[str]]]] = {}
KEY_COLUMN = "arch"


def default_data_dir() -> Path:
    """The public data folder (replay tables, NB201 accuracies, reference models):
    ``$NASCTL_DATA_DIR``, else the first of ``./../shared/data``, ``./shared/data`` and
    ``<repo>/../shared/data`` that exists (the last one when none does)."""
    env = os.environ.get("NASCTL_DATA_DIR")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[3]
    cands = [
        Path.cwd().parent / "shared" / "data",
        Path.cwd() / "shared" / "data",
        repo.parent / "shared" / "data",
    ]
    return next((c for c in cands if c.is_dir()), cands[-1])


def replay_tables(data_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """Tables (sub-folders with a ``latency_ms.csv``) under the data dir."""
    d = Path(data_dir) if data_dir else default_data_dir()
    if not d.is_dir():
        return []
    return sorted(p.parent.name for p in d.glob("*/latency_ms.csv"))


def load_table(path: Path) -> tuple[list[str], dict[str, list[str]]]:
    """(columns, arch -> row) of a latency CSV, cached by path and modification time."""
    try:
        key = (str(path.resolve()), path.stat().st_mtime)
    except OSError as e:
        raise DeviceError(f"replay table {path} cannot be read: {e.strerror or e}") from e
    if key not in _CACHE:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if not header or KEY_COLUMN not in header:
                raise DeviceError(f"replay table {path} has no {KEY_COLUMN!r} column")
            k = header.index(KEY_COLUMN)
            rows = {row[k]: row for row in reader if len(row) > k}
        _CACHE[key] = (header, rows)
    return _CACHE[key]


@register_device("replay")
class ReplayDevice(Device):
    """Replays ``<column>`` of ``<table>/latency_ms.csv``: a device without the hardware."""

    name = "replay"
    description = "answers from a recorded latency table (replay:<table>/<column>)"
    precisions = ("fp32", "fp16", "int8")  # the table is what it is; the id names the column
    reuses_by_hash = False  # rows are per genotype: isomorphic cells differ (by 33 % and more)

    def __init__(self, spec: str = "", **opts: Any) -> None:
        super().__init__(**opts)
        table, sep, column = spec.partition("/")
        if not table or not sep or not column:
            raise DeviceError(
                f"replay device needs 'replay:<table>/<column>' (e.g. replay:nb201/titan_rtx_1); "
                f"got 'replay:{spec}'"
            )
        self.table, self.column = table, column
        self.name = f"replay:{table}/{column}"
        d = opts.get("data_dir")
        self.data_dir = Path(d) if d else default_data_dir()
        self.path = self.data_dir / table / "latency_ms.csv"
        if not self.path.is_file():
            raise DeviceError(
                f"replay table {self.path} not found; tables in {self.data_dir}: "
                f"{', '.join(replay_tables(self.data_dir)) or 'none'} (set data_dir=DIR)"
            )
        header, _ = load_table(self.path)
        if column not in header or column == KEY_COLUMN:
            cols = [c for c in header if c not in (KEY_COLUMN, f"{table}_index")]
            raise DeviceError(
                f"table {table!r} has no column {column!r}; columns: " + ", ".join(cols)
            )

    @classmethod
    def describe(cls, name: str, **opts: Any) -> dict[str, Any]:
        """Replay is described by its pattern and the tables found."""
        tables = replay_tables(opts.get("data_dir"))
        return {
            "name": "replay:<table>/<column>",
            "available": bool(tables),
            "reason": "tables: " + (", ".join(tables) or "none found"),
            "description": "answers from a recorded latency table",
        }

    def device_id_for(self, precision: str) -> str:
        return f"replay-{self.table}-{self.column}"

    def available(self) -> tuple[bool, str]:
        return True, f"replays {self.path}"

    def measure_impl(self, request: MeasurementRequest, opts: dict[str, Any]) -> Measurement:
        header, rows = load_table(self.path)
        genotype = request.genotype or _genotype_from_graph(request.graph_json)
        if not genotype:
            return self.failed(request, "replay needs the request's genotype (arch string)")
        row = rows.get(genotype)
        if row is None:
            return self.failed(request, f"genotype not in table {self.table}: {genotype[:120]}")
        cell = row[header.index(self.column)] if header.index(self.column) < len(row) else ""
        try:
            ms = float(cell)
        except ValueError:
            return self.failed(
                request, f"table {self.table} has no {self.column} value for {genotype[:120]}"
            )
        return Measurement(
            arch_hash=request.arch_hash,
            device_id=self.device_id_for(request.precision),
            precision=request.precision,
            batch=request.batch,
            status="ok",
            median_ms=ms,
            mean_ms=ms,
            p90_ms=ms,
            std_ms=0.0,
            cv=0.0,
            runs=1,
            warmup=0,
            fingerprint={"replay": str(self.path), "table": self.table, "column": self.column},
        )


def _genotype_from_graph(graph_json: str | None) -> str | None:
    if not graph_json:
        return None
    try:
        meta = json.loads(graph_json).get("meta", {})
    except (ValueError, AttributeError):
        return None
    g = meta.get("genotype")
    return str(g) if g else None
