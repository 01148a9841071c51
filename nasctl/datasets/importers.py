"""Importers: public latency tables and users' CSVs of genotypes and latencies into the store.

Each table row becomes an architecture (built from its space and genotype; the graph itself is not
stored, only the genotype, since the space rebuilds it) and an ``ok`` measurement whose
``median_ms`` is the table's value and whose fingerprint names the source. Imports are resumable:
rows already stored for the device are skipped without rebuilding their graphs.

Isomorphic genotypes (different strings, same graph, e.g. NB201 cells that only differ in dead
branches) share one architecture; the first row's latency is kept and the others are counted as
``duplicates`` (their genotypes still map to the architecture).
"""

from __future__ import annotations

import csv
import math
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from nasctl.datasets.store import Store
from nasctl.errors import StoreError
from nasctl.records import Measurement

#: Public tables shipped in ``shared/data``: table -> (file, genotype column, space).
TABLES: dict[str, tuple[str, str, str]] = {
    "nb201": ("nb201/latency_ms.csv", "arch", "nb201"),
    "fbnet": ("fbnet/latency_ms.csv", "arch", "fbnet"),
}

#: Rows per transaction in a bulk import (a crash loses at most this many uncommitted rows).
CHUNK = 500
#: Build and hash graphs in worker processes from this many new genotypes on, with up to
#: MAX_WORKERS processes.
PARALLEL_MIN = 2000
MAX_WORKERS = 8

Progress = Callable[[int, int], None]  # (rows done, rows total)


class DatasetError(StoreError):
    """A table to import or a file to export is missing or malformed."""


def default_data_dir() -> Path:
    """``$NASCTL_DATA_DIR``, else the first ``shared/data`` beside the cwd or the repository."""
    env = os.environ.get("NASCTL_DATA_DIR")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[2]
    for cand in (
        Path.cwd().parent / "shared" / "data",
        repo.parent / "shared" / "data",
        Path.cwd() / "shared" / "data",
    ):
        if cand.is_dir():
            return cand
    return repo.parent / "shared" / "data"


def replay_device_id(table: str, column: str) -> str:
    """Dataset id of a recorded-table column, e.g. ``replay-nb201-titan_rtx_1``."""
    return f"replay-{table}-{column}"


def column_batch(column: str) -> int:
    """Batch size encoded in a column name (``titan_rtx_256`` -> 256; otherwise 1)."""
    m = re.search(r"_(\d+)$", column)
    return int(m.group(1)) if m else 1


def _read_header(path: Path) -> list[str]:
    if not path.is_file():
        raise DatasetError(
            f"no table at {path}; pass data_dir=DIR (the folder holding "
            "nb201/ and fbnet/) or set NASCTL_DATA_DIR"
        )
    with path.open(newline="") as f:
        header = next(csv.reader(f), None)
    if not header:
        raise DatasetError(f"{path} is empty; expected a CSV with a header row")
    return header


def _rows(path: Path, arch_column: str, latency_column: str) -> Iterator[tuple[int, str, str]]:
    """(line number, genotype, latency text) per data row."""
    with path.open(newline="") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            yield (
                line,
                (row.get(arch_column) or "").strip(),
                (row.get(latency_column) or "").strip(),
            )


def _latency(text: str, path: Path, line: int) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DatasetError(f"{path}:{line}: latency {text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise DatasetError(f"{path}:{line}: latency {value} must be a finite number >= 0 (ms)")
    return value


def _check_columns(path: Path, header: list[str], *columns: str) -> None:
    for col in columns:
        if col not in header:
            raise DatasetError(f"{path} has no column {col!r}; columns: {', '.join(header)}")


def import_table(
    store: Store,
    table: str,
    column: str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    device_id: str | None = None,
    limit: int | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Import one device column of a public table (``nb201`` or ``fbnet``).

    Returns counts: ``rows``, ``imported``, ``skipped`` (already stored), ``empty`` (no value),
    ``duplicates`` (isomorphic to an earlier row), plus ``device_id`` and ``seconds``.
    """
    if table not in TABLES:
        raise DatasetError(
            f"unknown table {table!r}; known: {', '.join(TABLES)} "
            "(use `nasctl dataset import-csv` for your own)"
        )
    rel, arch_column, space = TABLES[table]
    path = Path(data_dir) if data_dir is not None else default_data_dir()
    path = path / rel
    header = _read_header(path)
    if column not in header or column in (arch_column, f"{table}_index"):
        cols = [c for c in header if c not in (arch_column, f"{table}_index")]
        raise DatasetError(f"{table} has no device column {column!r}; columns: {', '.join(cols)}")
    source = {"source": f"{rel}:{column}", "table": table, "column": column}
    return _import(
        store,
        path,
        space,
        arch_column,
        column,
        device_id or replay_device_id(table, column),
        "fp32",
        column_batch(column),
        source,
        limit,
        progress,
    )


def import_csv(
    store: Store,
    file: str | os.PathLike[str],
    space: str,
    arch_column: str,
    latency_column: str,
    device_id: str,
    *,
    precision: str = "fp32",
    batch: int = 1,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Import a user's CSV of genotypes (of ``space``, a name or ``package.module:SPACE``) and
    latencies in milliseconds. Every genotype is validated before anything is stored."""
    path = Path(file)
    header = _read_header(path)
    _check_columns(path, header, arch_column, latency_column)
    if not device_id.strip():
        raise DatasetError("device must be a non-empty dataset id, e.g. 'jetson-orin-trt10-fp16'")
    source = {"source": str(path.name), "column": latency_column}
    return _import(
        store,
        path,
        space,
        arch_column,
        latency_column,
        device_id,
        precision,
        batch,
        source,
        None,
        progress,
    )


def _import(
    store: Store,
    path: Path,
    space_name: str,
    arch_column: str,
    latency_column: str,
    device_id: str,
    precision: str,
    batch: int,
    source: dict[str, Any],
    limit: int | None,
    progress: Progress | None,
) -> dict[str, Any]:
    from nasctl.spaces import get_space

    t0 = time.perf_counter()
    space = get_space(space_name)
    rows: list[tuple[int, str, float | None]] = []
    for line, genotype, text in _rows(path, arch_column, latency_column):
        if limit is not None and len(rows) >= limit:
            break
        if not genotype:
            raise DatasetError(f"{path}:{line}: empty genotype in column {arch_column!r}")
        rows.append((line, genotype, _latency(text, path, line) if text else None))
    for line, genotype, _ in rows:  # validate everything before storing anything
        try:
            space.validate(genotype)
        except Exception as e:
            raise DatasetError(f"{path}:{line}: {e}".splitlines()[0]) from e
    space_id = space.name or space_name
    known = store.genotype_hashes(space_id)
    done = store.measured_hashes(device_id, precision, batch)
    new = list(dict.fromkeys(g for _, g, v in rows if v is not None and g not in known))
    described = _describe_all(space, space_name, new, not _rebuildable(space), progress)
    counts = {"rows": len(rows), "imported": 0, "skipped": 0, "empty": 0, "duplicates": 0}
    meas = {"device_id": device_id, "precision": precision, "batch": batch, "fingerprint": source}
    for start in range(0, len(rows), CHUNK):
        with store.transaction():
            for _, genotype, value in rows[start : start + CHUNK]:
                _import_row(store, space_id, genotype, value, described, known, done, counts, meas)
    return {
        **counts,
        "device_id": device_id,
        "space": space.name or space_name,
        "precision": precision,
        "batch": batch,
        "file": str(path),
        "seconds": round(time.perf_counter() - t0, 2),
    }


def _import_row(
    store: Store,
    space_id: str,
    genotype: str,
    value: float | None,
    described: dict[str, tuple[str, str | None]],
    known: dict[str, str],
    done: set[str],
    counts: dict[str, int],
    meas: dict[str, Any],
) -> None:
    if value is None:
        counts["empty"] += 1
        return
    h = known.get(genotype)
    if h is None:
        h, graph_json = described[genotype]
        store.add_genotype(space_id, genotype, h, graph_json=graph_json)
        known[genotype] = h
        if h in done:  # the same graph as an earlier genotype
            counts["duplicates"] += 1
            return
    elif h in done:
        counts["skipped"] += 1
        return
    store.add_measurement(
        Measurement(arch_hash=h, status="ok", median_ms=value, runs=0, warmup=0, **meas)
    )
    done.add(h)
    counts["imported"] += 1


def _describe(space: Any, genotype: str, keep_json: bool) -> tuple[str, str | None]:
    """(graph hash, graph JSON if it must be stored) of one genotype."""
    from nasctl.arch.hashing import graph_hash

    graph = space.to_graph(genotype)
    graph.meta.setdefault("space", space.name)
    graph.meta.setdefault("genotype", genotype)
    return graph_hash(graph), graph.to_json() if keep_json else None


def _describe_chunk(args: tuple[str, list[str], bool]) -> list[tuple[str, str | None]]:
    """Worker: describe a chunk of genotypes of the space called ``space_name``."""
    from nasctl.spaces import get_space

    space_name, genotypes, keep_json = args
    space = get_space(space_name)
    return [_describe(space, g, keep_json) for g in genotypes]


def _describe_all(
    space: Any,
    space_name: str,
    genotypes: list[str],
    keep_json: bool,
    progress: Progress | None,
    workers: int | None = None,
) -> dict[str, tuple[str, str | None]]:
    """Build and hash every new genotype (the slow part of an import: ~4 ms each for NB201),
    in worker processes when there are many."""
    workers = workers or min(os.cpu_count() or 1, MAX_WORKERS)
    chunks = [genotypes[i : i + CHUNK] for i in range(0, len(genotypes), CHUNK)]
    results: list[list[tuple[str, str | None]]] = []
    if workers > 1 and len(genotypes) >= PARALLEL_MIN:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=workers) as pool:
            for res in pool.map(_describe_chunk, [(space_name, c, keep_json) for c in chunks]):
                results.append(res)
                if progress:
                    progress(sum(map(len, results)), len(genotypes))
    else:
        for c in chunks:
            results.append([_describe(space, g, keep_json) for g in c])
            if progress:
                progress(sum(map(len, results)), len(genotypes))
    flat = [d for res in results for d in res]
    return dict(zip(genotypes, flat, strict=True))


def _rebuildable(space: Any) -> bool:
    """Built-in spaces rebuild a graph from its genotype, so the graph JSON need not be stored."""
    from nasctl.spaces import list_spaces

    return type(space).__module__.startswith("nasctl.") and space.name in list_spaces()
