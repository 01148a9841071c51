"""The measurement store: one SQLite file (WAL), append-only, resumable.

Contract (every method; tested in ``tests/test_store*.py``):

* ``add_architecture`` and ``add_measurement`` commit on their own (one transaction each, a
  measurement together with its per-layer rows), unless inside ``with store.transaction():``.
* A measurement's key is ``(arch_hash, device_id, precision, batch)``: a second ok/noisy record for
  a key is ignored; a failed record is replaced by a later attempt (the old error is kept).
* Nothing is ever deleted. A truncated, foreign or newer-schema file is refused with
  :class:`StoreError` and left byte-for-byte unchanged.

Latencies are milliseconds; ``cv`` is std / mean (a fraction, not percent).
"""

from __future__ import annotations

import json
import os
import sqlite3
import struct
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nasctl.arch.graph import Graph
from nasctl.datasets.queries import DONE_STATUSES, StoreReader
from nasctl.datasets.rows import LayerRow, TrainingRow
from nasctl.datasets.schema import APPLICATION_ID, MIGRATIONS, SCHEMA_V1, SCHEMA_VERSION
from nasctl.datasets.sqlite_errors import store_errors
from nasctl.errors import StoreError, StoreLockedError
from nasctl.records import Measurement

_SQLITE_MAGIC = b"SQLite format 3\x00"


def graph_hash(graph: Graph) -> str:
    """Content hash of an architecture (:func:`nasctl.arch.hashing.graph_hash`)."""
    from nasctl.arch.hashing import graph_hash as _graph_hash

    return _graph_hash(graph)


def _statements(script: str) -> list[str]:
    """Split an SQL script into statements (executescript would commit the open transaction)."""
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    return [s for s in out if s.strip(" ;\n")]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _check_file(path: Path) -> None:
    """Refuse a file that is not SQLite or is shorter than its header says (truncated)."""
    size = path.stat().st_size
    if size == 0:
        return
    with path.open("rb") as f:
        head = f.read(100)
    if len(head) < 100 or not head.startswith(_SQLITE_MAGIC):
        raise StoreError(
            f"{path} is not a nasctl database (not an SQLite file); nothing was changed"
        )
    page_size = struct.unpack(">H", head[16:18])[0]
    page_size = 65536 if page_size == 1 else page_size
    change_counter, n_pages = struct.unpack(">II", head[24:32])
    valid_for = struct.unpack(">I", head[92:96])[0]
    if n_pages and valid_for == change_counter and size < n_pages * page_size:
        raise StoreError(
            f"{path} is truncated ({size} bytes, header says {n_pages * page_size}); "
            "restore it from a backup; nothing was changed"
        )


class Store:
    """The measurement store in one SQLite file: it writes, and answers reads through its
    :class:`~nasctl.datasets.queries.StoreReader` (``store.reader``), which holds the same
    connection.

    Args:
        path: database file; created (with parent folders) unless ``readonly``.
        timeout_s: how long a write waits for another process's lock before failing.
        readonly: open without write access (``dataset stats/export``); the file must exist.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, timeout_s: float = 10.0, readonly: bool = False
    ) -> None:
        self.path = Path(path)
        self.timeout_s = timeout_s
        self.readonly = readonly
        self._depth = 0
        if self.path.is_dir():
            raise StoreError(f"{self.path} is a directory; expected a database file")
        if self.path.exists():
            _check_file(self.path)
        elif readonly:
            raise StoreError(
                f"no database at {self.path}; create one with `nasctl profile` or "
                "`nasctl dataset import`"
            )
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._con = self._connect()
        try:
            self._open_schema()
        except BaseException:
            self._con.close()
            raise
        self.reader = StoreReader(self._con, self.path, self.timeout_s)
        #: measurements replayed from the sidecar journal on this open (see :mod:`.journal`)
        self.replayed = 0 if readonly else self._replay_journal()

    # -- connection / schema -------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        try:
            if self.readonly:
                uri = f"file:{self.path.resolve()}?mode=ro"
                con = sqlite3.connect(uri, uri=True, timeout=self.timeout_s, isolation_level=None)
            else:
                con = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None)
        except sqlite3.Error as e:
            raise StoreError(f"cannot open {self.path}: {e}") from e
        con.row_factory = sqlite3.Row
        return con

    def _open_schema(self) -> None:
        with self._errors():
            # one read transaction: a consistent snapshot when another process is creating the
            # schema right now (else the version could be read before its commit and the tables
            # after it, and the file would look like a foreign database)
            self._con.execute("BEGIN")
            try:
                version = self._con.execute("PRAGMA user_version").fetchone()[0]
                app_id = self._con.execute("PRAGMA application_id").fetchone()[0]
                tables = {
                    r[0]
                    for r in self._con.execute(
                        "SELECT name FROM sqlite_master WHERE type = 'table'"
                    )
                }
            finally:
                self._con.execute("COMMIT")
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} was created by a newer nasctl (schema {version} > {SCHEMA_VERSION}); "
                "upgrade nasctl"
            )
        if version == 0 and tables - {"sqlite_sequence"}:
            raise StoreError(
                f"{self.path} is an SQLite file but not a nasctl database "
                f"(tables: {', '.join(sorted(tables))}); nothing was changed"
            )
        if version and app_id not in (0, APPLICATION_ID):
            raise StoreError(f"{self.path} is not a nasctl database (application id {app_id:#x})")
        if self.readonly:
            if version == 0:
                raise StoreError(f"{self.path} is an empty database")
            if version < SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} has schema {version}; open it once without "
                    "read-only (e.g. `nasctl profile`) to upgrade it"
                )
            return
        # Several processes opening one new file at once: switching to WAL and creating the
        # schema take the write lock, and SQLite answers "locked" at once (without waiting) where
        # waiting could deadlock; such a conflict clears in milliseconds, so try again until
        # timeout_s has passed.
        deadline = time.monotonic() + self.timeout_s
        pause = 0.01
        while True:
            try:
                self._setup_writable(version)
                return
            except StoreLockedError:
                if self._con.in_transaction:  # a COMMIT that found the file locked
                    self._con.execute("ROLLBACK")
                if time.monotonic() + pause > deadline:
                    raise
                time.sleep(pause)
                pause = min(pause * 2, 0.5)

    def _setup_writable(self, version: int) -> None:
        with self._errors():
            self._con.execute(f"PRAGMA busy_timeout = {int(self.timeout_s * 1000)}")
            self._con.execute("PRAGMA foreign_keys = ON")
            if self._con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                self._con.execute("PRAGMA journal_mode = WAL")
            self._con.execute("PRAGMA synchronous = NORMAL")
        if version < SCHEMA_VERSION:
            self._migrate(version)

    def _migrate(self, version: int) -> None:
        """Create or upgrade the schema in one write transaction. The version is read again
        inside it: another process may have created or upgraded the file since we looked (two
        profilers started together on a new ``--db``)."""
        with self.transaction():
            version = self._con.execute("PRAGMA user_version").fetchone()[0]
            if version >= SCHEMA_VERSION:
                return
            scripts = ([SCHEMA_V1] if version == 0 else []) + MIGRATIONS[max(version, 1) - 1 :]
            for script in scripts:
                for stmt in _statements(script):
                    self._con.execute(stmt)
            self._con.execute(
                "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
            self._con.execute("INSERT OR IGNORE INTO meta VALUES ('created_at', ?)", (_now(),))
            self._con.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            self._con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _errors(self) -> AbstractContextManager[None]:
        """Turn sqlite3 errors into one-line :class:`StoreError` s."""
        return store_errors(self.path, self.timeout_s)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes into one transaction (bulk imports). Nested uses join the outer one."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        with self._errors():
            self._con.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
        except BaseException:
            self._depth = 0
            if self._con.in_transaction:
                self._con.execute("ROLLBACK")
            raise
        self._depth = 0
        with self._errors():
            self._con.execute("COMMIT")

    def _replay_journal(self) -> int:
        """Store what an earlier run kept in the journal while this store was locked; a
        journal that cannot be replayed now (still locked) stays for the next open."""
        from nasctl.datasets import journal

        def add(ms: list[Measurement]) -> list[Measurement]:
            known = self._known_hashes({m.arch_hash for m in ms})
            with self.transaction():
                for m in ms:
                    if m.arch_hash in known:
                        self.add_measurement(m)
            return [m for m in ms if m.arch_hash not in known]

        try:
            return journal.replay(self.path, add)
        except StoreLockedError:
            return 0

    def _known_hashes(self, hashes: set[str]) -> set[str]:
        with self._errors():
            return {
                h
                for h in hashes
                if self._con.execute("SELECT 1 FROM architectures WHERE hash = ?", (h,)).fetchone()
            }

    def close(self) -> None:
        self._con.close()

    # -- reading (see :class:`~nasctl.datasets.queries.StoreReader`) -------------------------
    def has_measurement(
        self, arch_hash: str, device_id: str, precision: str = "fp32", batch: int = 1
    ) -> bool:
        """True when an ok or noisy measurement of this key is stored (failed ones are retried)."""
        return self.reader.has_measurement(arch_hash, device_id, precision, batch)

    def measured_hashes(self, device_id: str, precision: str = "fp32", batch: int = 1) -> set[str]:
        """Hashes with an ok/noisy measurement of this device, precision and batch."""
        return self.reader.measured_hashes(device_id, precision, batch)

    def hash_of(self, space: str, genotype: str) -> str | None:
        """The stored architecture hash of a genotype, if seen before (no graph is built)."""
        return self.reader.hash_of(space, genotype)

    def genotype_hashes(self, space: str) -> dict[str, str]:
        """Every stored genotype of a space -> its architecture hash."""
        return self.reader.genotype_hashes(space)

    def get_measurement(
        self, arch_hash: str, device_id: str, precision: str = "fp32", batch: int = 1
    ) -> Measurement | None:
        """The stored measurement of this key (any status) with its layers, or None."""
        return self.reader.get_measurement(arch_hash, device_id, precision, batch)

    def device_ids(self) -> list[str]:
        """Every device id with a stored measurement, sorted."""
        return self.reader.device_ids()

    def resolve_device_id(self, name_or_id: str) -> str:
        """An exact stored device id, or the one id a device name/prefix matches."""
        return self.reader.resolve_device_id(name_or_id)

    def training_rows(
        self,
        device_id: str,
        precision: str | None = None,
        batch: int | None = None,
        *,
        include_noisy: bool = True,
        space: str | None = None,
    ) -> list[TrainingRow]:
        """Measured architectures of one device, oldest first
        (:meth:`StoreReader.training_rows`)."""
        return self.reader.training_rows(
            device_id, precision, batch, include_noisy=include_noisy, space=space
        )

    def layer_rows(self, device_id: str) -> list[LayerRow]:
        """Every per-layer time of one device (ok/noisy measurements), in stored order."""
        return self.reader.layer_rows(device_id)

    def graph(self, arch_hash: str) -> Graph:
        """The graph of a stored architecture."""
        return self.reader.graph(arch_hash)

    def iter_measurements(self) -> Iterator[dict[str, Any]]:
        """Every measurement joined with its architecture, as dicts (for exporters)."""
        return self.reader.iter_measurements()

    def stats(self) -> dict[str, Any]:
        """Counts per status, device and space (:meth:`StoreReader.stats`)."""
        return self.reader.stats()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing -----------------------------------------------------------------------------
    def add_architecture(
        self,
        graph: Graph,
        model: str | None = None,
        *,
        store_graph: bool = True,
        arch_hash: str | None = None,
    ) -> str:
        """Record an architecture (idempotent); returns its content hash.

        ``space``/``genotype`` come from ``graph.meta``. ``store_graph=False`` keeps only the
        genotype (the graph is rebuilt from the space on demand).
        """
        h = arch_hash or graph_hash(graph)
        space, genotype = graph.meta.get("space"), graph.meta.get("genotype")
        with self._errors(), self.transaction():
            self._con.execute(
                "INSERT OR IGNORE INTO architectures (hash, space, genotype, model, graph_json, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (h, space, genotype, model, graph.to_json() if store_graph else None, _now()),
            )
            if space and genotype:
                self._con.execute(
                    "INSERT OR IGNORE INTO genotypes VALUES (?, ?, ?)", (space, genotype, h)
                )
        return h

    def add_genotype(
        self,
        space: str,
        genotype: str,
        arch_hash: str,
        *,
        graph_json: str | None = None,
        model: str | None = None,
    ) -> None:
        """Record a genotype whose hash is known (bulk imports; the graph is rebuilt from the
        space on demand when ``graph_json`` is None). Idempotent."""
        with self._errors(), self.transaction():
            self._con.execute(
                "INSERT OR IGNORE INTO architectures (hash, space, genotype, model, graph_json, "
                "created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (arch_hash, space, genotype, model, graph_json, _now()),
            )
            self._con.execute(
                "INSERT OR IGNORE INTO genotypes VALUES (?, ?, ?)", (space, genotype, arch_hash)
            )

    def add_repeat(self, m: Measurement) -> int | None:
        """Keep one more run of a stored key (e.g. a search's paired re-measure): the store
        holds one row per (architecture, device, precision, batch), so the run is appended to
        that row's ``extra["repeats"]`` (its median/mean/p90/std/cv/runs/status/error and
        time); the row's own numbers stay those of its first run. Without an ok/noisy row the
        run becomes the row (:meth:`add_measurement`). Returns the row id."""
        with self._errors(), self.transaction():
            old = self._con.execute(
                "SELECT id, status, extra_json FROM measurements "
                "WHERE arch_hash = ? AND device_id = ? AND precision = ? AND batch = ?",
                (m.arch_hash, m.device_id, m.precision, m.batch),
            ).fetchone()
            if old is not None and old["status"] in DONE_STATUSES:
                extra = json.loads(old["extra_json"])
                extra.setdefault("repeats", []).append(
                    {
                        "status": m.status,
                        "median_ms": m.median_ms,
                        "mean_ms": m.mean_ms,
                        "p90_ms": m.p90_ms,
                        "std_ms": m.std_ms,
                        "cv": m.cv,
                        "runs": m.runs,
                        "error": m.error,
                        "created_at": _now(),
                    }
                )
                self._con.execute(
                    "UPDATE measurements SET extra_json = ? WHERE id = ?",
                    (json.dumps(extra, default=str), int(old["id"])),
                )
                return int(old["id"])
        return self.add_measurement(m)

    def add_measurement(self, m: Measurement) -> int | None:
        """Store one measurement with its per-layer rows; returns its row id, or None when an
        ok/noisy record of the same key already exists (the new one is then ignored)."""
        if m.status not in ("ok", "noisy", "failed"):
            raise StoreError(f"measurement status must be ok, noisy or failed; got {m.status!r}")
        with self._errors(), self.transaction():
            if not self._con.execute(
                "SELECT 1 FROM architectures WHERE hash = ?", (m.arch_hash,)
            ).fetchone():
                raise StoreError(
                    f"architecture {m.arch_hash[:12]} is not in the store; add_architecture() first"
                )
            old = self._con.execute(
                "SELECT id, status, error, created_at, extra_json FROM measurements "
                "WHERE arch_hash = ? AND device_id = ? AND precision = ? AND batch = ?",
                (m.arch_hash, m.device_id, m.precision, m.batch),
            ).fetchone()
            if old is not None and old["status"] in DONE_STATUSES:
                return None
            extra = dict(m.extra)
            if old is not None:  # a failed attempt: replace it, keep its error
                prev = json.loads(old["extra_json"]).get("previous_failures", [])
                extra["previous_failures"] = [
                    *prev,
                    {"error": old["error"], "created_at": old["created_at"]},
                ]
            values = (
                m.status,
                m.median_ms,
                m.mean_ms,
                m.p90_ms,
                m.std_ms,
                m.cv,
                m.runs,
                m.warmup,
                m.attempts,
                m.error,
                json.dumps(m.fingerprint, default=str),
                json.dumps(extra, default=str),
                _now(),
            )
            if old is None:
                cur = self._con.execute(
                    "INSERT INTO measurements (arch_hash, device_id, precision, batch, status, "
                    "median_ms, mean_ms, p90_ms, std_ms, cv, runs, warmup, attempts, error, "
                    "fingerprint_json, extra_json, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (m.arch_hash, m.device_id, m.precision, m.batch, *values),
                )
                mid = int(cur.lastrowid or 0)
            else:
                mid = int(old["id"])
                self._con.execute(
                    "UPDATE measurements SET status = ?, median_ms = ?, mean_ms = ?, p90_ms = ?, "
                    "std_ms = ?, cv = ?, runs = ?, warmup = ?, attempts = ?, error = ?, "
                    "fingerprint_json = ?, extra_json = ?, created_at = ? WHERE id = ?",
                    (*values, mid),
                )
            self._con.executemany(
                "INSERT INTO layer_measurements (measurement_id, idx, name, kind, time_ms, "
                "nodes_json, extra_json) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        mid,
                        i,
                        lt.name,
                        lt.kind,
                        float(lt.time_ms),
                        json.dumps(list(lt.nodes)),
                        json.dumps(lt.extra, default=str),
                    )
                    for i, lt in enumerate(m.layers)
                ],
            )
        return mid
