"""Reading side of the store: lookups, training rows, per-layer rows, stats (milliseconds).

:class:`StoreReader` holds the store's connection (given, not opened here); the
:class:`~nasctl.datasets.store.Store` owns one and answers its read methods through it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nasctl.arch.graph import Graph
from nasctl.datasets.rows import LayerRow, TrainingRow, is_single_layer, load_graph
from nasctl.datasets.schema import SCHEMA_VERSION
from nasctl.datasets.sqlite_errors import store_errors
from nasctl.errors import StoreError
from nasctl.records import LayerTiming, Measurement

#: Statuses that count as measured (a failed one is retried).
DONE_STATUSES = ("ok", "noisy")


class StoreReader:
    """Read queries over an open store connection (rows as :class:`sqlite3.Row`).

    Args:
        con: the store's connection (``row_factory = sqlite3.Row``); not closed here.
        path: the store's file, for messages.
        timeout_s: the connection's lock timeout, for messages.
    """

    def __init__(self, con: sqlite3.Connection, path: Path, timeout_s: float) -> None:
        self._con = con
        self.path = path
        self.timeout_s = timeout_s

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with store_errors(self.path, self.timeout_s):
            return self._con.execute(sql, params).fetchall()

    def has_measurement(
        self, arch_hash: str, device_id: str, precision: str = "fp32", batch: int = 1
    ) -> bool:
        """True when an ok or noisy measurement of this key is stored (failed ones are retried)."""
        return bool(
            self._query(
                "SELECT 1 FROM measurements WHERE arch_hash = ? AND device_id = ? "
                "AND precision = ? AND batch = ? AND status IN ('ok', 'noisy')",
                (arch_hash, device_id, precision, batch),
            )
        )

    def measured_hashes(self, device_id: str, precision: str = "fp32", batch: int = 1) -> set[str]:
        """Hashes with an ok/noisy measurement of this device, precision and batch."""
        rows = self._query(
            "SELECT arch_hash FROM measurements WHERE device_id = ? AND precision = ? AND "
            "batch = ? AND status IN ('ok', 'noisy')",
            (device_id, precision, batch),
        )
        return {r[0] for r in rows}

    def hash_of(self, space: str, genotype: str) -> str | None:
        """The stored architecture hash of a genotype, if seen before (no graph is built)."""
        rows = self._query(
            "SELECT arch_hash FROM genotypes WHERE space = ? AND genotype = ?", (space, genotype)
        )
        return rows[0][0] if rows else None

    def genotype_hashes(self, space: str) -> dict[str, str]:
        """Every stored genotype of a space -> its architecture hash."""
        rows = self._query("SELECT genotype, arch_hash FROM genotypes WHERE space = ?", (space,))
        return {r[0]: r[1] for r in rows}

    def get_measurement(
        self, arch_hash: str, device_id: str, precision: str = "fp32", batch: int = 1
    ) -> Measurement | None:
        rows = self._query(
            "SELECT * FROM measurements WHERE arch_hash = ? AND device_id = ? AND precision = ? "
            "AND batch = ?",
            (arch_hash, device_id, precision, batch),
        )
        if not rows:
            return None
        r = rows[0]
        layers = self._layers_of([int(r["id"])]).get(int(r["id"]), [])
        return Measurement(
            arch_hash=r["arch_hash"],
            device_id=r["device_id"],
            precision=r["precision"],
            batch=r["batch"],
            status=r["status"],
            median_ms=r["median_ms"],
            mean_ms=r["mean_ms"],
            p90_ms=r["p90_ms"],
            std_ms=r["std_ms"],
            cv=r["cv"],
            runs=r["runs"],
            warmup=r["warmup"],
            attempts=r["attempts"],
            error=r["error"],
            fingerprint=json.loads(r["fingerprint_json"]),
            layers=layers,
            extra=json.loads(r["extra_json"]),
        )

    def device_ids(self) -> list[str]:
        return [
            r[0]
            for r in self._query("SELECT DISTINCT device_id FROM measurements ORDER BY device_id")
        ]

    def resolve_device_id(self, name_or_id: str) -> str:
        """An exact stored device id, or the one id a device name/prefix matches.

        ``"cpu"`` matches ``"cpu-ort1.32-fp32-t1"``; ``"replay:nb201/titan_rtx_1"`` matches
        ``"replay-nb201-titan_rtx_1"``. No match or several: :class:`StoreError` listing them.
        """
        ids = self.device_ids()
        if name_or_id in ids:
            return name_or_id
        key = name_or_id.replace(":", "-").replace("/", "-")
        for cands in (
            [i for i in ids if i == key],
            [i for i in ids if i.startswith(key + "-")],
            [i for i in ids if i.startswith(key)],
        ):
            if len(cands) == 1:
                return cands[0]
            if len(cands) > 1:
                raise StoreError(
                    f"device {name_or_id!r} is ambiguous in {self.path}: "
                    f"{', '.join(cands)}; pass one of these ids"
                )
        raise StoreError(
            f"no measurements for device {name_or_id!r} in {self.path}; "
            f"stored devices: {', '.join(ids) or 'none'}"
        )

    def _layers_of(
        self, ids: list[int] | None, device_id: str | None = None
    ) -> dict[int, list[LayerTiming]]:
        if ids is not None:
            marks = ",".join("?" * len(ids))
            rows = self._query(
                "SELECT * FROM layer_measurements WHERE measurement_id IN "
                f"({marks}) ORDER BY measurement_id, idx",
                tuple(ids),
            )
        else:
            rows = self._query(
                "SELECT l.* FROM layer_measurements l JOIN measurements m ON m.id = "
                "l.measurement_id WHERE m.device_id = ? ORDER BY l.measurement_id, l.idx",
                (device_id,),
            )
        out: dict[int, list[LayerTiming]] = {}
        for r in rows:
            out.setdefault(int(r["measurement_id"]), []).append(
                LayerTiming(
                    name=r["name"],
                    time_ms=r["time_ms"],
                    nodes=json.loads(r["nodes_json"]),
                    kind=r["kind"],
                    extra=json.loads(r["extra_json"]),
                )
            )
        return out

    def training_rows(
        self,
        device_id: str,
        precision: str | None = None,
        batch: int | None = None,
        *,
        include_noisy: bool = True,
        space: str | None = None,
    ) -> list[TrainingRow]:
        """Measured architectures of one device (id, or a name :meth:`resolve_device_id` takes),
        oldest first. Failed measurements are left out; noisy ones unless ``include_noisy=False``.

        ``precision``/``batch`` None: the one stored for this device (several: StoreError asking
        to choose). ``space`` None: any space.
        """
        dev = self.resolve_device_id(device_id)
        precision = precision or self._only(dev, "precision")
        batch = batch if batch is not None else self._only(dev, "batch")
        statuses = DONE_STATUSES if include_noisy else ("ok",)
        sql = (
            "SELECT m.id, m.arch_hash, m.median_ms, m.std_ms, m.cv, m.status, m.precision, "
            "m.batch, a.space, a.genotype, a.model, a.graph_json, "
            "json_extract(m.extra_json, '$.probe.median_ms') AS probe_ms, "
            "json_extract(m.extra_json, '$.memory.model_peak_bytes') AS mem_bytes "
            "FROM measurements m JOIN "
            "architectures a ON a.hash = m.arch_hash WHERE m.device_id = ? AND m.status IN "
            f"({','.join('?' * len(statuses))})"
        )
        params: list[Any] = [dev, *statuses]
        for col, val in (("m.precision", precision), ("m.batch", batch), ("a.space", space)):
            if val is not None:
                sql += f" AND {col} = ?"
                params.append(val)
        rows = self._query(sql + " ORDER BY m.id", tuple(params))
        layers = self._layers_of(None, dev)
        return [
            TrainingRow(
                arch_hash=r["arch_hash"],
                latency_ms=r["median_ms"],
                space=r["space"],
                genotype=r["genotype"],
                model=r["model"],
                layers=layers.get(int(r["id"]), []),
                std_ms=r["std_ms"],
                cv=r["cv"],
                status=r["status"],
                precision=r["precision"],
                batch=r["batch"],
                graph_json=r["graph_json"],
                single_layer=is_single_layer(r["space"]),
                probe_ms=r["probe_ms"],
                memory_mb=None if r["mem_bytes"] is None else r["mem_bytes"] / 1e6,
            )
            for r in rows
        ]

    def _only(self, device_id: str, column: str) -> Any:
        vals = [
            r[0]
            for r in self._query(
                f"SELECT DISTINCT {column} FROM measurements WHERE device_id = ? ORDER BY 1",
                (device_id,),
            )
        ]
        if len(vals) > 1:
            raise StoreError(
                f"device {device_id} has measurements at {column} "
                f"{', '.join(map(str, vals))}; choose one ({column}=...)"
            )
        return vals[0] if vals else None

    def layer_rows(self, device_id: str) -> list[LayerRow]:
        """Every per-layer time of one device (ok/noisy measurements), in stored order."""
        dev = self.resolve_device_id(device_id)
        rows = self._query(
            "SELECT l.*, m.arch_hash, m.precision, m.batch, a.space, a.genotype FROM "
            "layer_measurements l JOIN measurements m ON m.id = l.measurement_id JOIN "
            "architectures a ON a.hash = m.arch_hash WHERE m.device_id = ? AND m.status IN "
            "('ok', 'noisy') ORDER BY l.measurement_id, l.idx",
            (dev,),
        )
        return [
            LayerRow(
                measurement_id=r["measurement_id"],
                arch_hash=r["arch_hash"],
                space=r["space"],
                genotype=r["genotype"],
                precision=r["precision"],
                batch=r["batch"],
                name=r["name"],
                kind=r["kind"],
                time_ms=r["time_ms"],
                nodes=json.loads(r["nodes_json"]),
                extra=json.loads(r["extra_json"]),
            )
            for r in rows
        ]

    def graph(self, arch_hash: str) -> Graph:
        """The graph of a stored architecture."""
        rows = self._query(
            "SELECT graph_json, space, genotype FROM architectures WHERE hash = ?", (arch_hash,)
        )
        if not rows:
            raise StoreError(f"no architecture {arch_hash[:12]} in {self.path}")
        return load_graph(rows[0][0], rows[0][1], rows[0][2], arch_hash)

    def iter_measurements(self) -> Iterator[dict[str, Any]]:
        """Every measurement joined with its architecture, as dicts (for exporters)."""
        with store_errors(self.path, self.timeout_s):
            cur = self._con.execute(
                "SELECT m.*, a.space, a.genotype, a.model FROM measurements m JOIN architectures "
                "a ON a.hash = m.arch_hash ORDER BY m.id"
            )
            for r in cur:
                yield dict(r)

    def stats(self) -> dict[str, Any]:
        """Counts: ``architectures``, ``measurements``, ``layer_measurements``, ``by_status``,
        ``devices`` (id -> counts per status and layers) and ``spaces`` (space -> counts)."""
        one = lambda sql: self._query(sql)[0][0]  # noqa: E731
        out: dict[str, Any] = {
            "path": str(self.path),
            "schema_version": SCHEMA_VERSION,
            "architectures": one("SELECT COUNT(*) FROM architectures"),
            "measurements": one("SELECT COUNT(*) FROM measurements"),
            "layer_measurements": one("SELECT COUNT(*) FROM layer_measurements"),
            "by_status": {
                r[0]: r[1]
                for r in self._query("SELECT status, COUNT(*) FROM measurements GROUP BY status")
            },
        }
        devices: dict[str, dict[str, int]] = {}
        for r in self._query(
            "SELECT device_id, status, COUNT(*) FROM measurements GROUP BY device_id, status"
        ):
            d = devices.setdefault(r[0], {"measurements": 0, "ok": 0, "noisy": 0, "failed": 0})
            d[r[1]] = r[2]
            d["measurements"] += r[2]
        for r in self._query(
            "SELECT m.device_id, COUNT(*) FROM layer_measurements l JOIN "
            "measurements m ON m.id = l.measurement_id GROUP BY m.device_id"
        ):
            devices[r[0]]["layer_measurements"] = r[1]
        out["devices"] = devices
        spaces: dict[str, dict[str, int]] = {}
        for r in self._query(
            "SELECT COALESCE(space, '(onnx)'), COUNT(*) FROM architectures GROUP BY 1"
        ):
            spaces[r[0]] = {"architectures": r[1], "measurements": 0}
        for r in self._query(
            "SELECT COALESCE(a.space, '(onnx)'), COUNT(*) FROM measurements m "
            "JOIN architectures a ON a.hash = m.arch_hash GROUP BY 1"
        ):
            spaces.setdefault(r[0], {"architectures": 0})["measurements"] = r[1]
        out["spaces"] = spaces
        return out
