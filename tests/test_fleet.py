"""The device fleet against a real ``redis-server`` and real ``nasctl-agent worker`` processes:
rows through the fleet equal local rows, and faults (a worker killed mid-measurement, the host
killed, Redis restarted) lose nothing and measure nothing twice.

Each test serves its own device key (a replay column) so queues never mix between tests."""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fleet_harness import Fleet, in_background, run_cli, start_cli

from nasctl.datasets.store import Store

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    f = Fleet(tmp_path_factory.mktemp("fleet"))
    yield f
    f.close()


def _replay(fleet: Fleet, column: str, shared: Path, n: int = 1, **kw: object) -> list:
    dev = f"replay:nb201/{column}"
    args = ("--data-dir", str(shared), "--emulate-time")
    ws = [fleet.worker(dev, *args, wait=False, **kw) for _ in range(n)]
    for w in ws:  # started together: their imports overlap
        fleet.wait_announced(w)
    return ws


def _rows(db: Path) -> list[tuple]:
    if not db.exists():
        return []
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute(
            "SELECT arch_hash, device_id, status, median_ms, extra_json FROM measurements"
        ).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        con.close()


def _jobs_done(fleet: Fleet, names: list[str]) -> int:
    ann = fleet.announcements()
    return sum(ann[n]["jobs_done"] for n in names if n in ann)


def _profile(fleet: Fleet, column: str, db: Path, num: int, *extra: object) -> list[object]:
    return [
        "profile",
        "--device",
        f"replay:nb201/{column}",
        "--space",
        "nb201",
        "--num",
        num,
        "--db",
        db,
        "--fleet",
        fleet.url,
        "--fleet-wait",
        "5",
        *extra,
    ]


def test_profile_through_the_fleet_stores_the_same_rows(
    fleet: Fleet, tmp_path: Path, shared_data: Path
) -> None:
    cpu = fleet.worker("cpu", wait=False)
    replay = _replay(fleet, "titan_rtx_1", shared_data, 2)
    fleet.wait_announced(cpu)
    a, b = tmp_path / "fleet.db", tmp_path / "local.db"
    res = run_cli(*_profile(fleet, "titan_rtx_1", a, 6, "--json"))
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["measured"] == 6
    loc = run_cli(*_profile(fleet, "titan_rtx_1", b, 6)[:-4], "--data-dir", shared_data)
    assert loc.returncode == 0, loc.stderr
    key = "replay:nb201/titan_rtx_1"
    with Store(a, readonly=True) as sa, Store(b, readonly=True) as sb:
        fa = {(r.genotype, r.latency_ms) for r in sa.training_rows(key)}
        fb = {(r.genotype, r.latency_ms) for r in sb.training_rows(key)}
    assert len(fa) == 6 and fa == fb
    assert {json.loads(r[4])["fleet"]["worker"] for r in _rows(a)} <= {w.name for w in replay}
    # the cpu device through a worker: same device id as local, real timings and layers
    cpu = run_cli(
        "profile", "--device", "cpu", "--space", "mbconv", "--num", "2", "--db", a,
        "--fleet", fleet.url, "--option", "repeats=3", "--option", "min_time_s=0.02", "--json",
    )  # fmt: skip
    assert cpu.returncode == 0, cpu.stderr
    from nasctl.profiler import get_device

    doc = json.loads(cpu.stdout)
    assert doc["device_id"] == get_device("cpu").device_id and doc["measured"] == 2
    with Store(a, readonly=True) as s:
        rows = s.training_rows(doc["device_id"])
    assert len(rows) == 2 and all(r.latency_ms > 0 for r in rows)
    con = sqlite3.connect(f"file:{a}?mode=ro", uri=True)
    layers = con.execute(
        "SELECT l.nodes_json FROM layer_measurements l JOIN measurements m "
        "ON l.measurement_id = m.id WHERE m.device_id = ?",
        (doc["device_id"],),
    ).fetchall()
    con.close()
    mapped = [json.loads(n) for (n,) in layers]
    assert mapped and sum(bool(n) for n in mapped) > len(mapped) / 2  # engine layers -> nodes
    # a user's ONNX over the inline limit travels by path when every worker of the key sees
    # this machine's files, as Redis chunks (deleted once answered) when one does not, and by
    # path again from a folder both sides see
    big = _matmul_onnx(tmp_path / "big.onnx", 1.5)
    for i, (extra, transfer) in enumerate(
        [([], "path"), ([], "chunks"), (["--fleet-shared-dir", tmp_path], "path")]
    ):
        if i == 1:  # a second cpu worker that takes models through Redis only
            fleet.worker("cpu", "--no-local-paths", name="cpu-remote")
        db = tmp_path / f"big{i}.db"
        res = run_cli(
            "profile", "--device", "cpu", "--onnx", big, "--db", db, "--fleet", fleet.url,
            "--option", "repeats=3", "--option", "min_time_s=0.02", "--json", *extra,
        )  # fmt: skip
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)["ok"] + json.loads(res.stdout)["noisy"] == 1, res.stdout
        [row] = _rows(db)
        assert json.loads(row[4])["fleet"]["transfer"] == transfer
        r = fleet.redis.client()
        assert not list(r.scan_iter(match="nasctl:blob:*"))  # chunks gone once answered
        r.close()
    status = run_cli("fleet", "status", "--fleet", fleet.url, "--json")
    assert status.returncode == 0, status.stderr
    st = json.loads(status.stdout)
    assert {w["name"] for w in st["workers"]} >= {"w0", "w1", "w2"}
    assert any(q["device_id"] == "replay-nb201-titan_rtx_1" for q in st["queues"])


def _matmul_onnx(path: Path, mbytes: float) -> Path:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    n = int(mbytes * 2**20 / 4 / 256)
    w = numpy_helper.from_array(np.ones((256, n), dtype=np.float32), "w")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 256])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n])
    node = helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")
    graph = helper.make_graph([node], "g", [x], [y], [w])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_a_worker_killed_mid_measurement_loses_nothing(
    fleet: Fleet, tmp_path: Path, shared_data: Path
) -> None:
    ws = _replay(fleet, "1080ti_1", shared_data, 2, name=None)
    db = tmp_path / "k.db"
    taken: dict[str, str] = {}

    def kill_a_busy_worker() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            ann = fleet.announcements()
            busy = next((w for w in ws if (ann.get(w.name) or {}).get("job")), None)
            if busy is not None:
                taken[busy.name] = ann[busy.name]["job"]
                time.sleep(0.2)
                busy.kill()  # SIGKILL mid-measurement (a job takes ~1 s here)
                return
            time.sleep(0.05)

    killer = in_background(kill_a_busy_worker)
    res = run_cli(*_profile(fleet, "1080ti_1", db, 4, "--option", "repeats=100", "--json"))
    killer.join()
    assert res.returncode == 0, res.stderr
    assert taken, "no worker took a job"
    ((victim_name, job),) = taken.items()
    victim = next(w for w in ws if w.name == victim_name)
    rows = _rows(db)
    assert len(rows) == 4 and len({r[0] for r in rows}) == 4
    assert all(r[2] == "ok" for r in rows)
    by_task = {json.loads(r[4])["fleet"]["task_id"]: json.loads(r[4])["fleet"] for r in rows}
    survivor = next(w for w in ws if w is not victim)
    assert by_task[job]["worker"] == survivor.name  # the killed worker's job, measured again


def test_a_host_killed_and_restarted_measures_nothing_twice(
    fleet: Fleet, tmp_path: Path, shared_data: Path
) -> None:
    ws = _replay(fleet, "2080ti_1", shared_data, 2)
    db = tmp_path / "h.db"
    args = _profile(fleet, "2080ti_1", db, 8, "--option", "repeats=40", "--json")
    host = start_cli(*args)
    deadline = time.monotonic() + 30
    while len(_rows(db)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    host.send_signal(signal.SIGKILL)
    host.wait(10)
    stored_before = len(_rows(db))
    assert 2 <= stored_before < 8
    again = run_cli(*args)
    assert again.returncode == 0, again.stderr
    doc = json.loads(again.stdout)
    rows = _rows(db)
    assert len(rows) == 8 and len({r[0] for r in rows}) == 8
    assert doc["skipped"] == stored_before
    time.sleep(0.5)  # the workers' counters reach Redis with their next heartbeat
    assert _jobs_done(fleet, [w.name for w in ws]) == 8  # every job measured exactly once


def test_redis_restarted_mid_run_waits_and_goes_on(tmp_path: Path, shared_data: Path) -> None:
    f = Fleet(tmp_path)
    try:
        ws = _replay(f, "titanx_1", shared_data, 1)
        db = tmp_path / "r.db"
        args = _profile(f, "titanx_1", db, 5, "--option", "repeats=30", "--json")

        def restart_after_first_row() -> None:
            deadline = time.monotonic() + 30
            while len(_rows(db)) < 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            f.redis.restart(down_s=1.0)

        restarter = in_background(restart_after_first_row)
        res = run_cli(*args)
        restarter.join()
        assert res.returncode == 0, res.stderr
        rows = _rows(db)
        assert len(rows) == 5 and len({r[0] for r in rows}) == 5
        # Redis down past --fleet-wait: one line, and the same command resumes later
        f.redis.stop()
        more = _profile(f, "titanx_1", db, 7, "--option", "repeats=30")
        more[more.index("--fleet-wait") + 1] = "1"
        res = run_cli(*more)
        assert res.returncode == 1
        assert res.stderr.count("\n") == 1 and "cannot reach the broker" in res.stderr
        f.redis.start()
        f.wait_announced(ws[0])
        res = run_cli(*more)
        assert res.returncode == 0, res.stderr
        assert len(_rows(db)) == 7
    finally:
        f.close()


def test_an_int8_request_reaches_a_cpu_worker_as_the_qdq_model(
    fleet: Fleet, tmp_path: Path
) -> None:
    """The host writes the INT8 model (Q/DQ) before sending it, as the local cpu device does:
    the worker used to get the FP32 model and refuse to measure it as INT8."""
    w = fleet.worker("cpu", "--precision", "int8", name="int8w")
    db = tmp_path / "int8.db"
    res = run_cli(
        "profile", "--device", "cpu", "--precision", "int8", "--space", "mbconv", "--num", "1",
        "--db", db, "--fleet", fleet.url, "--fleet-wait", "10", "--option", "repeats=3",
        "--option", "min_time_s=0.02", "--json",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["device_id"].endswith("-int8-t1") and doc["ok"] + doc["noisy"] == 1, doc
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    prec, extra = con.execute("SELECT precision, extra_json FROM measurements").fetchone()
    con.close()
    extra = json.loads(extra)
    assert prec == "int8" and extra["fleet"]["worker"] == w.name
    assert extra["precision_written"]["precision"] == "int8"  # written on the host
    assert extra["precision_written"]["calibration"]["source"] == "random"
