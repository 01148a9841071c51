"""The search's own record in ``<out>/search.db`` (SQLite, each write committed on its own).

It holds what a stopped search needs to resume exactly: the settings (a resumed run must use the
same ones), every generation's proposals with the objectives told to the strategy, every accuracy
estimate (or the estimator's error) and every device measurement with what was predicted for it
at the time. Device measurement records themselves go to the dataset store
(:class:`nasctl.datasets.store.Store`) and ``<out>/measurements.jsonl``.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from nasctl.errors import SearchError
from nasctl.search.strategies.base import Told

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS estimates (
    genotype TEXT PRIMARY KEY, accuracy REAL, error TEXT, params INTEGER, memory_mb REAL,
    memory_low_mb REAL, memory_high_mb REAL);
CREATE TABLE IF NOT EXISTS proposals (
    generation INTEGER NOT NULL, pos INTEGER NOT NULL, genotype TEXT NOT NULL,
    accuracy REAL, latency_ms REAL, violation REAL NOT NULL, PRIMARY KEY (generation, pos));
CREATE TABLE IF NOT EXISTS measured (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, genotype TEXT NOT NULL UNIQUE, phase TEXT NOT NULL,
    generation INTEGER NOT NULL, status TEXT NOT NULL, measured_ms REAL, error TEXT,
    pred_ms REAL, low_ms REAL, high_ms REAL, from_store INTEGER NOT NULL DEFAULT 0,
    memory_mb REAL);
CREATE TABLE IF NOT EXISTS repeats (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, genotype TEXT NOT NULL, phase TEXT NOT NULL,
    generation INTEGER NOT NULL, status TEXT NOT NULL, measured_ms REAL, error TEXT);
"""
#: columns added after the first release: (table, column, type), added to older files on open
ADDED_COLUMNS = (
    ("estimates", "memory_low_mb", "REAL"),
    ("estimates", "memory_high_mb", "REAL"),
    ("measured", "memory_mb", "REAL"),
)

#: settings that must match for a resume (others, e.g. --generations, may grow).
KEY_SETTINGS = (
    "space",
    "device",
    "accuracy",
    "seed",
    "strategy",
    "population",
    "use_predictor",
    "predictor_dir",
    "constraints",
    "precision",
)


class SearchState:
    """Open (or create) ``path``; :meth:`check_settings` guards resuming with other settings."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.con = sqlite3.connect(str(self.path), timeout=10.0, isolation_level=None)
            self.con.execute("PRAGMA journal_mode=WAL")
            self.con.executescript(SCHEMA)
            for table, col, kind in ADDED_COLUMNS:
                have = {r[1] for r in self.con.execute(f"PRAGMA table_info({table})")}
                if col not in have:
                    self.con.execute(f"ALTER TABLE {table} ADD COLUMN {col} {kind}")
        except sqlite3.DatabaseError as e:
            raise SearchError(
                f"search state {self.path} is unreadable ({e}); use another output folder"
            ) from e

    def close(self) -> None:
        self.con.close()

    # -- settings ------------------------------------------------------------------------------
    def check_settings(self, settings: dict[str, Any]) -> bool:
        """Store ``settings`` on first use; on resume raise unless the key settings match.
        Returns True when resuming."""
        row = self.con.execute("SELECT value FROM meta WHERE key = 'settings'").fetchone()
        if row is None:
            self.con.execute(
                "INSERT INTO meta VALUES ('settings', ?)", (json.dumps(settings, sort_keys=True),)
            )
            return False
        old = json.loads(row[0])
        diff = [k for k in KEY_SETTINGS if old.get(k) != settings.get(k)]
        if diff:
            k = diff[0]
            raise SearchError(
                f"{self.path.parent} holds a search with {k}={old.get(k)!r}, not "
                f"{settings.get(k)!r}; resume with the same settings or use another output folder"
            )
        return True

    def set_meta(self, key: str, value: Any) -> None:
        self.con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self.con.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    # -- estimates -----------------------------------------------------------------------------
    def add_estimates(self, rows: list[tuple[Any, ...]]) -> None:
        """(genotype, accuracy, error, params, memory_mb, memory_low_mb, memory_high_mb) rows,
        in one transaction."""
        with self.con:
            self.con.execute("BEGIN")
            self.con.executemany(
                "INSERT OR REPLACE INTO estimates (genotype, accuracy, error, params, memory_mb, "
                "memory_low_mb, memory_high_mb) VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def estimates(self) -> dict[str, tuple[Any, ...]]:
        """genotype -> (accuracy, error, params, memory_mb, memory_low_mb, memory_high_mb)."""
        rows = self.con.execute(
            "SELECT genotype, accuracy, error, params, memory_mb, memory_low_mb, memory_high_mb "
            "FROM estimates"
        )
        return {r[0]: tuple(r[1:]) for r in rows}

    # -- generations ---------------------------------------------------------------------------
    def add_generation(self, generation: int, results: list[Told]) -> None:
        rows = [
            (
                generation,
                i,
                t.genotype,
                t.values[0] if t.values else None,
                t.values[1] if t.values else None,
                t.violation,
            )
            for i, t in enumerate(results)
        ]
        with self.con:
            self.con.execute("BEGIN")
            self.con.executemany("INSERT OR REPLACE INTO proposals VALUES (?, ?, ?, ?, ?, ?)", rows)

    def history(self) -> list[tuple[int, list[Told]]]:
        """Recorded generations in order, as told to the strategy."""
        out: dict[int, list[Told]] = {}
        for g, _pos, gen, acc, lat, vio in self.con.execute(
            "SELECT * FROM proposals ORDER BY generation, pos"
        ):
            vals = None if acc is None or lat is None else (float(acc), float(lat))
            out.setdefault(int(g), []).append(Told(gen, vals, float(vio)))
        return sorted(out.items())

    # -- measurements --------------------------------------------------------------------------
    def add_measured(
        self,
        genotype: str,
        *,
        phase: str,
        generation: int,
        status: str,
        measured_ms: float | None,
        error: str | None,
        pred: tuple | None,
        from_store: bool = False,
        memory_mb: float | None = None,
    ) -> None:
        p = pred or (None, None, None)
        self.con.execute(
            "INSERT OR IGNORE INTO measured (genotype, phase, generation, status, measured_ms, "
            "error, pred_ms, low_ms, high_ms, from_store, memory_mb) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (genotype, phase, generation, status, measured_ms, error, *p, int(from_store))
            + (memory_mb,),
        )

    def add_repeat(
        self,
        genotype: str,
        *,
        phase: str,
        generation: int,
        status: str,
        measured_ms: float | None,
        error: str | None,
    ) -> None:
        """One more device run of an already measured genotype (a paired re-measure)."""
        self.con.execute(
            "INSERT INTO repeats (genotype, phase, generation, status, measured_ms, error) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (genotype, phase, generation, status, measured_ms, error),
        )

    def repeats(self) -> list[dict[str, Any]]:
        """Every repeated run in run order."""
        cur = self.con.execute("SELECT * FROM repeats ORDER BY seq")
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=False)) for r in cur.fetchall()]

    def measured(self) -> list[dict[str, Any]]:
        """Every measured genotype in measurement order."""
        cur = self.con.execute("SELECT * FROM measured ORDER BY seq")
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, r, strict=False)) for r in cur.fetchall()]

    def device_measurements(self) -> int:
        """Measurements that used the device (not those found in the dataset store), repeats
        included."""
        first = self.con.execute("SELECT COUNT(*) FROM measured WHERE from_store = 0").fetchone()
        again = self.con.execute("SELECT COUNT(*) FROM repeats").fetchone()
        return int(first[0]) + int(again[0])
