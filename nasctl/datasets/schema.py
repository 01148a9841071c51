"""The measurement store's SQLite schema (version :data:`SCHEMA_VERSION`).

The version lives in ``PRAGMA user_version`` (and, for humans, in ``meta.schema_version``).
A migration from version N to N+1 is a function appended to :data:`MIGRATIONS`; stored rows are
never deleted by one.
"""

from __future__ import annotations

#: Version written by this nasctl. A database with a larger ``user_version`` is refused.
SCHEMA_VERSION = 1

#: Application id in the SQLite header ("NASC"), so a nasctl store is recognisable.
APPLICATION_ID = 0x4E415343

SCHEMA_V1 = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- One row per distinct architecture (content hash of its graph). ``graph_json`` may be NULL for
-- architectures of a built-in space (rebuilt from space + genotype on demand, e.g. 15,625
-- imported NB201 cells).
CREATE TABLE architectures (
    hash       TEXT PRIMARY KEY,
    space      TEXT,
    genotype   TEXT,
    model      TEXT,
    graph_json TEXT,
    created_at TEXT NOT NULL
);
CREATE INDEX architectures_space ON architectures(space);

-- Every (space, genotype) seen, mapped to its architecture: isomorphic genotypes share a hash.
CREATE TABLE genotypes (
    space     TEXT NOT NULL,
    genotype  TEXT NOT NULL,
    arch_hash TEXT NOT NULL REFERENCES architectures(hash),
    PRIMARY KEY (space, genotype)
);

-- One whole-graph measurement per (architecture, device, precision, batch). A failed row is
-- replaced in place by a later attempt (its error kept in extra_json.previous_failures); an ok or
-- noisy row is never replaced.
CREATE TABLE measurements (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    arch_hash        TEXT NOT NULL REFERENCES architectures(hash),
    device_id        TEXT NOT NULL,
    precision        TEXT NOT NULL,
    batch            INTEGER NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('ok', 'noisy', 'failed')),
    median_ms        REAL,
    mean_ms          REAL,
    p90_ms           REAL,
    std_ms           REAL,
    cv               REAL,
    runs             INTEGER NOT NULL DEFAULT 0,
    warmup           INTEGER NOT NULL DEFAULT 0,
    attempts         INTEGER NOT NULL DEFAULT 1,
    error            TEXT,
    fingerprint_json TEXT NOT NULL DEFAULT '{}',
    extra_json       TEXT NOT NULL DEFAULT '{}',
    created_at       TEXT NOT NULL,
    UNIQUE (arch_hash, device_id, precision, batch)
);
CREATE INDEX measurements_device ON measurements(device_id, precision, batch);

-- Per-layer (kernel) times of one measurement, from a separate profiled run.
CREATE TABLE layer_measurements (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    measurement_id INTEGER NOT NULL REFERENCES measurements(id),
    idx            INTEGER NOT NULL,
    name           TEXT NOT NULL,
    kind           TEXT NOT NULL,
    time_ms        REAL NOT NULL,
    nodes_json     TEXT NOT NULL DEFAULT '[]',
    extra_json     TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX layer_measurements_mid ON layer_measurements(measurement_id);
"""

#: MIGRATIONS[i] upgrades a database from version i+1 to i+2 (SQL script). Empty for now.
MIGRATIONS: list[str] = []
