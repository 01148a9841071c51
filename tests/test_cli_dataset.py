"""`nasctl dataset stats|export|import|import-csv` on real NB201 rows, and bad input."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nasctl.cli.main import app

N_ROWS = 40
runner = CliRunner()


def _run(*args: object) -> tuple[int, str]:
    res = runner.invoke(app, [str(a) for a in args])
    return res.exit_code, res.output


def _import_nb201(column: str, db: Path, data_dir: Path, *extra: str) -> tuple[int, str]:
    """`nasctl dataset import nb201 --column COLUMN --db DB --data-dir DIR EXTRA...`."""
    return _run(
        "dataset", "import", "nb201", "--column", column, "--db", db, "--data-dir", data_dir, *extra
    )


@pytest.fixture(scope="module")
def small_data(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """A --data-dir with the first rows of the real NB201 table (keeps the test fast)."""
    root = tmp_path_factory.mktemp("data")
    (root / "nb201").mkdir()
    src = (shared_data / "nb201" / "latency_ms.csv").read_text().splitlines()
    (root / "nb201" / "latency_ms.csv").write_text("\n".join(src[: N_ROWS + 1]) + "\n")
    return root


def _rows(small_data: Path) -> list[dict[str, str]]:
    with (small_data / "nb201" / "latency_ms.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def test_import_nb201_resumes_and_matches_the_table(tmp_path: Path, small_data: Path) -> None:
    db = tmp_path / "n.db"
    code, out = _import_nb201("titan_rtx_1", db, small_data, "--json")
    assert code == 0, out
    res = json.loads(out)
    assert res["device_id"] == "replay-nb201-titan_rtx_1"
    assert res["imported"] + res["duplicates"] == N_ROWS and res["skipped"] == 0
    code, out = _import_nb201("titan_rtx_1", db, small_data, "--json")
    assert json.loads(out)["skipped"] == res["imported"] and json.loads(out)["imported"] == 0

    from nasctl.datasets.store import Store

    table = {r["arch"]: float(r["titan_rtx_1"]) for r in _rows(small_data)}
    with Store(db, readonly=True) as s:
        rows = s.training_rows("replay:nb201/titan_rtx_1")
        assert len(rows) == res["imported"]
        for r in rows:
            assert r.space == "nb201" and r.latency_ms == table[r.genotype]
        assert rows[0].graph.meta["genotype"] == rows[0].genotype  # rebuilt from the genotype

    code, out = _run("dataset", "stats", "--db", db, "--json")
    st = json.loads(out)
    assert code == 0
    assert st["measurements"] == res["imported"] and st["architectures"] == res["imported"]
    assert st["layer_measurements"] == 0
    assert st["devices"]["replay-nb201-titan_rtx_1"]["ok"] == res["imported"]
    assert st["spaces"]["nb201"]["measurements"] == res["imported"]
    code, out = _run("dataset", "stats", "--db", db)
    assert code == 0 and "replay-nb201-titan_rtx_1" in out


def test_batch_column_and_bad_column(tmp_path: Path, small_data: Path) -> None:
    db = tmp_path / "n.db"
    code, out = _import_nb201("titan_rtx_256", db, small_data, "--limit", "3", "--json")
    assert code == 0, out
    assert json.loads(out)["batch"] == 256 and json.loads(out)["rows"] == 3
    code, out = _import_nb201("tpu_v9", db, small_data)
    assert code == 1 and "no device column 'tpu_v9'" in out and "titan_rtx_1" in out
    assert "Traceback" not in out
    code, out = _run("dataset", "import", "imagenet", "--column", "x", "--db", db)
    assert code == 1 and "unknown table 'imagenet'" in out
    code, out = _import_nb201("x", db, tmp_path / "nowhere")
    assert code == 1 and "--data-dir" in out


def test_export_csv_and_parquet(tmp_path: Path, small_data: Path) -> None:
    import pyarrow.parquet as pq

    from nasctl.datasets.exporters import COLUMNS

    db = tmp_path / "n.db"
    _import_nb201("pixel3", db, small_data, "--limit", "10")
    code, out = _run(
        "dataset", "export", "--db", db, "--format", "csv", "--out", tmp_path / "m.csv"
    )
    assert code == 0, out
    with (tmp_path / "m.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == COLUMNS and len(rows) == 10
    expected = {r["arch"]: float(r["pixel3"]) for r in _rows(small_data)}
    assert all(float(r["median_ms"]) == expected[r["genotype"]] for r in rows)
    code, out = _run(
        "dataset",
        "export",
        "--db",
        db,
        "--format",
        "parquet",
        "--out",
        tmp_path / "m.parquet",
        "--json",
    )
    assert code == 0 and json.loads(out)["rows"] == 10
    t = pq.read_table(tmp_path / "m.parquet")
    assert tuple(t.column_names) == COLUMNS and t.num_rows == 10
    assert t.column("median_ms").to_pylist() == [float(r["median_ms"]) for r in rows]
    assert set(t.column("device_id").to_pylist()) == {"replay-nb201-pixel3"}
    code, out = _run(
        "dataset", "export", "--db", db, "--format", "xlsx", "--out", tmp_path / "m.xlsx"
    )
    assert code == 1 and "unknown export format 'xlsx'" in out
    assert not (tmp_path / "m.xlsx").exists()
    code, out = _run("dataset", "export", "--db", tmp_path / "none.db", "--out", tmp_path / "x")
    assert code == 1 and "no database" in out and not (tmp_path / "none.db").exists()


def _user_csv(path: Path, small_data: Path, bad: str | None = None) -> Path:
    rows = _rows(small_data)[:6]
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["cell", "orin_ms", "note"])
        for i, r in enumerate(rows):
            w.writerow(
                [
                    bad if (bad and i == 3) else r["arch"],
                    f"{1 + i / 10:.2f}",
                    "" if i != 5 else "empty latency",
                ]
            )
        w.writerow([rows[0]["arch"].replace("none", "skip_connect"), "", "no value"])
    return path


def test_import_csv(tmp_path: Path, small_data: Path) -> None:
    db = tmp_path / "u.db"
    f = _user_csv(tmp_path / "mine.csv", small_data)
    args = [
        "dataset",
        "import-csv",
        f,
        "--space",
        "nb201",
        "--arch-column",
        "cell",
        "--latency-column",
        "orin_ms",
        "--device",
        "orin-trt10-fp16",
        "--db",
        db,
    ]
    code, out = _run(*args, "--json")
    assert code == 0, out
    res = json.loads(out)
    assert res["rows"] == 7 and res["empty"] == 1 and res["imported"] + res["duplicates"] == 6
    code, out = _run(*args, "--json")
    assert json.loads(out)["imported"] == 0
    from nasctl.datasets.store import Store

    with Store(db, readonly=True) as s:
        assert sorted(r.latency_ms for r in s.training_rows("orin"))[0] == 1.0


def test_import_csv_bad_input_stores_nothing(tmp_path: Path, small_data: Path) -> None:
    db = tmp_path / "u.db"
    f = _user_csv(tmp_path / "bad.csv", small_data, bad="|conv_9x9~0|+|")
    base = [
        "dataset",
        "import-csv",
        f,
        "--space",
        "nb201",
        "--arch-column",
        "cell",
        "--device",
        "orin",
        "--db",
        db,
    ]
    code, out = _run(*base, "--latency-column", "orin_ms")
    assert code == 1 and "bad.csv:5:" in out and "Traceback" not in out
    with Store_ro(db) as s:
        assert s.stats()["measurements"] == 0
    code, out = _run(*base, "--latency-column", "latency")
    assert code == 1 and "no column 'latency'" in out and "orin_ms" in out
    code, out = _run(*base[:-4], "--latency-column", "note", "--device", "orin", "--db", db)
    assert code == 1 and "is not a number" in out
    code, out = _run(*base[:2], tmp_path / "missing.csv", *base[3:], "--latency-column", "x")
    assert code == 1 and "missing.csv" in out


def Store_ro(db: Path):  # noqa: N802 - a tiny helper that reads like the class
    from nasctl.datasets.store import Store

    return Store(db, readonly=True)


def test_bad_databases_exit_1_and_are_unchanged(tmp_path: Path, small_data: Path) -> None:
    db = tmp_path / "n.db"
    _import_nb201("pixel3", db, small_data, "--limit", "2")
    con = sqlite3.connect(db)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.execute("PRAGMA user_version = 7")
    con.close()
    before = db.read_bytes()
    for args in (
        ["dataset", "stats", "--db", db],
        ["dataset", "import", "nb201", "--column", "pixel3", "--db", db, "--data-dir", small_data],
    ):
        code, out = _run(*args)
        assert code == 1 and "newer nasctl (schema 7 > 1); upgrade nasctl" in out
    assert db.read_bytes() == before
    garbage = tmp_path / "g.db"
    garbage.write_bytes(b"not sqlite at all" * 10)
    code, out = _run("dataset", "stats", "--db", garbage)
    assert code == 1 and "not a nasctl database" in out
    assert garbage.read_bytes() == b"not sqlite at all" * 10


def test_locked_database_via_cli(
    tmp_path: Path, small_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nasctl.datasets.store import Store

    db = tmp_path / "n.db"
    _import_nb201("pixel3", db, small_data, "--limit", "2")
    monkeypatch.setitem(Store.__init__.__kwdefaults__, "timeout_s", 0.2)  # don't wait 10 s
    holder = sqlite3.connect(db, isolation_level=None, timeout=0.1)
    holder.execute("BEGIN IMMEDIATE")  # another process is writing
    try:
        code, out = _import_nb201("pixel3", db, small_data, "--limit", "4")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert code == 1 and "database is locked by another process" in out
    with Store_ro(db) as s:
        assert s.stats()["measurements"] == 2
