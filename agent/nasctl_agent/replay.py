"""The replay device on a worker: answers from a recorded latency table and, with
``emulate_time``, sleeps for the recorded latency times the protocol's runs, so a fleet of replay
workers is device-bound like a fleet of real boards (tests and the scaling benchmark).

``<data_dir>/<table>/latency_ms.csv`` is keyed by its ``arch`` column (the genotype); the device
``replay:<table>/<column>`` reads one column in milliseconds. Standard library only.
"""

from __future__ import annotations

import csv
import os
import time
from typing import Any

KEY_COLUMN = "arch"


class ReplayTable:
    """``replay:<table>/<column>`` of ``data_dir``; raises ``ValueError`` for a bad spec."""

    def __init__(self, spec: str, data_dir: str) -> None:
        table, sep, column = spec.partition("/")
        if not table or not sep or not column:
            raise ValueError(
                "replay device needs replay:<table>/<column> (e.g. replay:nb201/titan_rtx_1); "
                f"got replay:{spec}"
            )
        self.table, self.column = table, column
        self.path = os.path.join(data_dir, table, "latency_ms.csv")
        if not os.path.isfile(self.path):
            raise ValueError(f"replay table {self.path} not found (set --data-dir)")
        self.rows = _read(self.path, column)

    @property
    def device_id(self) -> str:
        return f"replay-{self.table}-{self.column}"

    def fingerprint(self) -> dict[str, Any]:
        return {"replay": self.path, "table": self.table, "column": self.column}

    def measure(self, request: dict[str, Any], emulate_time: bool = False) -> dict[str, Any]:
        """A ``Measurement`` dict for ``request`` (a ``MeasurementRequest`` dict)."""
        genotype = request.get("genotype") or ""
        runs = max(1, int((request.get("options") or {}).get("repeats", 1)))
        base = {
            "arch_hash": request["arch_hash"],
            "device_id": self.device_id,
            "precision": request.get("precision", "fp32"),
            "batch": int(request.get("batch", 1)),
            "fingerprint": self.fingerprint(),
        }
        ms = self.rows.get(genotype)
        if ms is None:
            why = f"genotype not in table {self.table}: {genotype[:120]}"
            if not genotype:
                why = "replay needs the request's genotype (arch string)"
            return dict(base, status="failed", error=why)
        if emulate_time:
            time.sleep(ms * runs / 1000.0)
        stats = {"median_ms": ms, "mean_ms": ms, "p90_ms": ms, "std_ms": 0.0, "cv": 0.0}
        return dict(base, status="ok", runs=runs, warmup=0, **stats)


def _read(path: str, column: str) -> dict[str, float]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None) or []
        if KEY_COLUMN not in header or column not in header:
            raise ValueError(f"replay table {path} has no {KEY_COLUMN!r} or {column!r} column")
        k, c = header.index(KEY_COLUMN), header.index(column)
        out: dict[str, float] = {}
        for row in reader:
            try:
                out[row[k]] = float(row[c])
            except (IndexError, ValueError):
                continue
        return out


def split_device(device: str) -> tuple[str, str | None]:
    """``("replay", "<table>/<column>")`` for a replay device, else ``(device, None)``."""
    if device.startswith("replay:"):
        return "replay", device.partition(":")[2]
    return device, None


__all__: list[str] = ["ReplayTable", "split_device"]
