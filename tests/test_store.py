"""The measurement store: dedupe, failed-then-ok, refusing bad files without touching them."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from nasctl.arch.graph import Graph, GraphBuilder
from nasctl.datasets.store import Store
from nasctl.errors import StoreError
from nasctl.records import LayerTiming, Measurement

DEV = "cpu-ort1.20-fp32-t1"


def _graph(width: int = 8, genotype: str | None = None) -> Graph:
    b = GraphBuilder("toy", (1, 3, 16, 16))
    x = b.conv(b.input, width, 3, id="/c")
    x = b.act(x, "relu", id="/r")
    return b.build([x], meta={"space": "toy", "genotype": genotype or f"w{width}"})


def _ok(h: str, median: float = 1.5, device: str = DEV, layers: int = 2) -> Measurement:
    return Measurement(
        arch_hash=h,
        device_id=device,
        precision="fp32",
        batch=1,
        status="ok",
        median_ms=median,
        mean_ms=median,
        p90_ms=median * 1.1,
        std_ms=0.01,
        cv=0.01,
        runs=50,
        warmup=10,
        fingerprint={"host": "test"},
        layers=[LayerTiming(f"k{i}", 0.5, ["/c", "/r"], "fused") for i in range(layers)],
    )


def _count(path: Path, table: str) -> int:
    con = sqlite3.connect(path)
    try:
        return con.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    finally:
        con.close()


def test_same_measurement_twice_is_one_row(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    with Store(db) as s:
        h = s.add_architecture(_graph())
        assert s.add_architecture(_graph()) == h
        assert s.add_measurement(_ok(h, 1.5)) is not None
        assert s.add_measurement(_ok(h, 9.9)) is None
        assert s.has_measurement(h, DEV, "fp32", 1)
        assert not s.has_measurement(h, DEV, "fp16", 1)
        assert s.get_measurement(h, DEV).median_ms == 1.5  # first ok record wins
    assert _count(db, "measurements") == 1
    assert _count(db, "layer_measurements") == 2
    assert _count(db, "architectures") == 1


def test_failed_then_ok_replaces_and_keeps_the_error(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as s:
        h = s.add_architecture(_graph())
        failed = Measurement(h, DEV, "fp32", 1, "failed", error="ORT: bad node")
        s.add_measurement(failed)
        assert not s.has_measurement(h, DEV)  # a failed one is retried on resume
        s.add_measurement(failed)
        s.add_measurement(_ok(h))
        m = s.get_measurement(h, DEV)
        assert m.status == "ok" and m.median_ms == 1.5 and m.error is None
        assert [f["error"] for f in m.extra["previous_failures"]] == ["ORT: bad node"] * 2
        assert s.stats()["measurements"] == 1


def test_training_rows_layers_and_lazy_graph(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    with Store(db) as s:
        hs = [s.add_architecture(_graph(w)) for w in (4, 8, 16)]
        for i, h in enumerate(hs):
            s.add_measurement(_ok(h, 1.0 + i, layers=i))
        other = s.add_architecture(_graph(32))
        s.add_measurement(_ok(other, 7.0, device="t4-trt10.3-fp16"))
        s.add_measurement(Measurement(hs[0], "t4-trt10.3-fp16", "fp32", 1, "failed", error="x"))
    with Store(db, readonly=True) as s:
        rows = s.training_rows("cpu")
        assert [r.latency_ms for r in rows] == [1.0, 2.0, 3.0]
        assert [len(r.layers) for r in rows] == [0, 1, 2]
        assert rows[2].layers[0].nodes == ["/c", "/r"]
        assert rows[1].graph.node("/c").attrs["out_channels"] == 8
        assert rows[1].genotype == "w8" and rows[1].space == "toy"
        assert [r.arch_hash for r in s.training_rows("t4")] == [other]
        assert len(s.layer_rows("cpu")) == 3
        st = s.stats()
        assert (st["architectures"], st["measurements"], st["layer_measurements"]) == (4, 5, 5)
        assert st["devices"]["t4-trt10.3-fp16"]["failed"] == 1
        assert st["spaces"]["toy"]["architectures"] == 4


def test_resolve_device_id(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as s:
        h = s.add_architecture(_graph())
        for dev in (DEV, "cpu-ort1.20-fp32-t2", "replay-nb201-titan_rtx_1"):
            s.add_measurement(_ok(h, device=dev))
        assert s.resolve_device_id(DEV) == DEV
        assert s.resolve_device_id("replay:nb201/titan_rtx_1") == "replay-nb201-titan_rtx_1"
        assert s.resolve_device_id("cpu-ort1.20-fp32-t2") == "cpu-ort1.20-fp32-t2"
        with pytest.raises(StoreError, match="ambiguous.*t1.*t2"):
            s.resolve_device_id("cpu")
        with pytest.raises(StoreError, match="no measurements for device 'xavier'"):
            s.resolve_device_id("xavier")


def test_measurement_of_unknown_architecture_is_refused(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as s, pytest.raises(StoreError, match="add_architecture"):
        s.add_measurement(_ok("f" * 64))


def _populated(tmp_path: Path) -> Path:
    db = tmp_path / "s.db"
    with Store(db) as s:
        s.add_measurement(_ok(s.add_architecture(_graph())))
    con = sqlite3.connect(db)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    return db


def test_newer_schema_is_refused_and_file_unchanged(tmp_path: Path) -> None:
    db = _populated(tmp_path)
    con = sqlite3.connect(db)
    con.execute("PRAGMA user_version = 99")
    con.close()
    before = db.read_bytes()
    for ro in (False, True):
        with pytest.raises(StoreError, match=r"newer nasctl \(schema 99 > 1\); upgrade nasctl"):
            Store(db, readonly=ro)
    assert db.read_bytes() == before


def test_truncated_db_is_refused_and_file_unchanged(tmp_path: Path) -> None:
    db = _populated(tmp_path)
    data = db.read_bytes()
    assert len(data) > 4096
    db.write_bytes(data[: len(data) // 2 + 100])
    before = db.read_bytes()
    with pytest.raises(StoreError, match="truncated"):
        Store(db)
    assert db.read_bytes() == before


@pytest.mark.parametrize(
    "content", [b"hello, not a database" * 20, b"SQLite format 3\x00" + b"\xff" * 4000]
)
def test_garbage_file_is_refused_and_unchanged(tmp_path: Path, content: bytes) -> None:
    db = tmp_path / "g.db"
    db.write_bytes(content)
    with pytest.raises(StoreError):
        Store(db)
    assert db.read_bytes() == content


def test_foreign_sqlite_file_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "other.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE people (name TEXT)")
    con.commit()
    con.close()
    before = db.read_bytes()
    with pytest.raises(StoreError, match="not a nasctl database"):
        Store(db)
    assert db.read_bytes() == before


def test_locked_db_gives_a_clear_error(tmp_path: Path) -> None:
    db = _populated(tmp_path)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process writing
    try:
        with Store(db, timeout_s=0.2) as s:
            assert s.stats()["measurements"] == 1  # WAL: reading still works
            with pytest.raises(StoreError, match="database is locked by another process"):
                s.add_architecture(_graph(64))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with Store(db) as s:  # and nothing was lost
        s.add_architecture(_graph(64))
        assert s.stats()["architectures"] == 2


def test_readonly_missing_file(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no database"):
        Store(tmp_path / "none.db", readonly=True)
    assert not (tmp_path / "none.db").exists()


def test_bulk_transaction_rolls_back_as_a_whole(tmp_path: Path) -> None:
    with Store(tmp_path / "s.db") as s:
        with pytest.raises(RuntimeError), s.transaction():
            s.add_architecture(_graph(4))
            raise RuntimeError("stop")
        assert s.stats()["architectures"] == 0
        with s.transaction():
            for w in (4, 8):
                s.add_measurement(_ok(s.add_architecture(_graph(w))))
        assert s.stats()["measurements"] == 2
