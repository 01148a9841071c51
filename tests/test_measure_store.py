"""The one measure-and-store path (`nasctl.datasets.measure`): a model's failure is a failed
record, an answer for another graph is refused, and a measurement survives a locked store (retry,
then the sidecar journal that the next open replays)."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from nasctl.datasets.collect import collect, space_jobs
from nasctl.datasets.journal import journal_path
from nasctl.datasets.measure import measure_and_store, store_result
from nasctl.datasets.store import Store
from nasctl.errors import BackendError, DeviceError
from nasctl.records import Measurement, MeasurementRequest
from nasctl.spaces import get_space

DEVICE = "replay:nb201/fpga"


@pytest.fixture(autouse=True)
def _data_dir(shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NASCTL_DATA_DIR", str(shared_data))


class Replay:
    """A real replay device; ``hook(request)`` runs before each answer."""

    def __init__(self, hook=None) -> None:  # noqa: ANN001
        from nasctl.profiler import get_device

        self.inner = get_device(DEVICE)
        self.name = self.inner.name
        self.device_id = self.inner.device_id
        self.hook = hook

    def measure(self, request: MeasurementRequest) -> Measurement:
        if self.hook:
            self.hook(request)
        return self.inner.measure(request)


def _arch(store: Store, i: int = 0) -> MeasurementRequest:
    space = get_space("nb201")
    g = space.enumerate()[i]
    graph = space.to_graph(g)
    h = store.add_architecture(graph)
    return MeasurementRequest(arch_hash=h, device=DEVICE, space="nb201", genotype=g)


def test_model_failure_is_a_failed_record(tmp_path: Path) -> None:
    def boom(request: MeasurementRequest) -> None:
        raise BackendError("engine build failed (test)")

    with Store(tmp_path / "m.db") as store:
        req = _arch(store)
        out = measure_and_store(store, Replay(boom), req)
        assert out.stored and out.measurement.status == "failed"
        got = store.get_measurement(req.arch_hash, out.measurement.device_id)
        assert got is not None and got.status == "failed" and "engine build" in got.error


def test_device_error_and_wrong_answer_store_nothing(tmp_path: Path) -> None:
    def gone(request: MeasurementRequest) -> None:
        raise DeviceError("unplugged (test)")

    with Store(tmp_path / "m.db") as store:
        req = _arch(store)
        with pytest.raises(DeviceError, match="unplugged"):
            measure_and_store(store, Replay(gone), req)
        other = _arch(store, 1)
        m = Replay().measure(other)  # a device answering for another architecture
        with pytest.raises(DeviceError, match="answered for"):
            store_result(store, req, m, device_id=m.device_id)
        assert store.stats()["measurements"] == 0


def _lock(path: Path) -> sqlite3.Connection:
    con = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    con.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    return con


def test_busy_store_is_retried(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    with Store(db, timeout_s=0.05) as store:
        req = _arch(store)
        holder = _lock(db)
        threading.Timer(0.3, holder.rollback).start()  # the other writer finishes soon
        out = measure_and_store(store, Replay(), req, retries=5, backoff_s=0.1)
        assert out.stored and out.journal is None
        assert store.has_measurement(req.arch_hash, out.measurement.device_id)
    holder.close()


def test_locked_store_keeps_measurements_in_journal_and_replays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nasctl.datasets.measure as measure_mod

    monkeypatch.setattr(measure_mod, "RETRIES", 1)
    monkeypatch.setattr(measure_mod, "BACKOFF_S", 0.01)
    db = tmp_path / "m.db"
    holder: list[sqlite3.Connection] = []

    def lock_during_run(request: MeasurementRequest) -> None:
        if not holder:  # another process takes the lock while the device runs
            holder.append(_lock(db))

    space = get_space("nb201")
    with Store(db, timeout_s=0.05) as store:
        dev = Replay(lock_during_run)
        # the jobs are drawn (and their architectures stored) before the lock is taken
        jobs = list(space_jobs(store, space, 3, seed=0))
        t = time.perf_counter()
        summary = collect(store, dev, jobs, 3, per_layer=False)
        assert time.perf_counter() - t < 5
    assert summary.measured == 3 and summary.journaled == 3
    assert summary.journal == str(journal_path(db))
    assert len(journal_path(db).read_text().splitlines()) == 3
    holder[0].rollback()
    holder[0].close()
    with Store(db) as store:  # the next open replays the journal
        assert store.replayed == 3
        assert store.stats()["by_status"] == {"ok": 3}
    assert not journal_path(db).exists()
    with Store(db) as store:
        assert store.replayed == 0 and store.stats()["measurements"] == 3


def test_search_keeps_a_measurement_the_locked_store_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The search's single measurement takes the same path: kept in the journal, said in the
    result's note, stored by the next open."""
    import nasctl.datasets.measure as measure_mod
    from nasctl.search.loop import SearchConfig, SearchLoop
    from nasctl.search.objectives import Constraints

    monkeypatch.setattr(measure_mod, "RETRIES", 0)
    db = tmp_path / "m.db"
    holder: list[sqlite3.Connection] = []
    calls: list[int] = []

    def lock_once(request: MeasurementRequest) -> None:
        calls.append(1)
        if len(calls) == 2:  # another writer holds the store while the 2nd result comes back
            holder.append(_lock(db))

    def release(event: str, **kw: object) -> None:
        if event == "journal" and holder:
            holder.pop().rollback()

    cfg = SearchConfig(
        space="nb201",
        device=DEVICE,
        accuracy="nb201:cifar10",
        out=tmp_path / "run",
        db=db,
        constraints=Constraints(latency_budget_ms=3.5),
        device_budget=4,
        generations=1,
        population=8,
        bootstrap=3,
        use_predictor=False,
    )
    loop = SearchLoop(cfg, device=Replay(lock_once), progress=release)
    loop.store._con.execute("PRAGMA busy_timeout = 50")  # noqa: SLF001 - a short wait for the test
    res = loop.run()
    assert res.device_measurements == 4 and res.stopped is None
    assert "kept in" in res.message and str(journal_path(db)) in res.message
    with Store(db) as store:
        assert store.replayed == 1 and store.stats()["measurements"] == 4


def test_profile_on_a_locked_store_is_one_line_and_resumable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`nasctl profile` on a store another process keeps locked: exit 1 with one line (nothing
    was measured yet, nothing lost); once the lock is gone the same command runs."""
    from typer.testing import CliRunner

    from nasctl.cli.main import app

    monkeypatch.setitem(Store.__init__.__kwdefaults__, "timeout_s", 0.1)
    db = tmp_path / "m.db"
    Store(db).close()
    holder = _lock(db)
    args = ["profile", "--device", DEVICE, "--space", "nb201", "--num", "3", "--db", str(db)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 1 and "locked" in res.output and "Traceback" not in res.output
    holder.rollback()
    holder.close()
    res = CliRunner().invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    with Store(db) as store:
        assert store.stats()["measurements"] == 3
