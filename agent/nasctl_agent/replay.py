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

    def measure(
        self, request: dict[str, Any], job: dict[str, Any], emulate_time: bool = False
    ) -> dict[str, Any]:
        """An agent Result dict for ``request`` (an agent Request dict) of ``job`` (its
        ``genotype``)."""
        genotype = str(job.get("genotype") or "")
        runs = max(1, int((request.get("timing") or {}).get("repeats", 1)))
        device = f"replay:{self.table}/{self.column}"
        ms = self.rows.get(genotype)
        if ms is None:
            why = f"genotype not in table {self.table}: {genotype[:120]}"
            if not genotype:
                why = "replay needs the job's genotype (arch string)"
            return result_dict(request, device, self.device_id, "failed", error=why)
        if emulate_time:
            time.sleep(ms * runs / 1000.0)
        timing = {"median_ms": ms, "mean_ms": ms, "p90_ms": ms, "std_ms": 0.0, "cv": 0.0}
        timing.update({"runs": runs, "attempts": 1, "warmup_runs": 0, "status": "ok"})
        out = result_dict(request, device, self.device_id, "ok", timing=timing)
        out["fingerprint"] = self.fingerprint()
        return out


def result_dict(
    request: dict[str, Any], device: str, device_id: str, status: str, **fields: Any
) -> dict[str, Any]:
    """An agent Result dict (``nasctl_agent.Result.to_dict()`` shape) without measuring."""
    from nasctl_agent.request import PROTOCOL_VERSION, Result

    r = Result(
        device=device,
        device_id=device_id,
        backend="replay" if device.startswith("replay:") else "",
        precision=str(request.get("precision", "fp32")),
        batch=int(request.get("batch", 1)),
        status=status,
        protocol=PROTOCOL_VERSION,
    )
    out = r.to_dict()
    out.update(fields)
    return out


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
