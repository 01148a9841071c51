"""``max_memory_mb`` on predicted memory with its interval, validated on the device's measured
memory (issue 14 point 4): a real replay device (NB201 latencies) that also reports a known peak
memory per network, as the cpu device records it, and a real LightGBM memory model."""

from __future__ import annotations

import hashlib
import json
import random
import sqlite3
from pathlib import Path

import pytest

from nasctl.predictor.memory import MemoryModel, analytic_mb
from nasctl.search.loop import SearchConfig, run_search
from nasctl.search.memory import MemoryEstimator, measured_memory_mib
from nasctl.search.objectives import Candidate, Constraints, memory_status
from nasctl.search.state import SearchState
from nasctl.spaces import get_space

MIB = 2**20


@pytest.fixture(autouse=True)
def _data_dir(shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NASCTL_DATA_DIR", str(shared_data))


def law_mb(graph) -> float:  # noqa: ANN001
    """The memory model's view of a network's peak (MB = 1e6 bytes): 4 MB of runtime plus 3x
    the analytic bound."""
    return 4.0 + 3.0 * analytic_mb(graph)


def surprise(genotype: str) -> float:
    """What the model cannot know: half of the networks take 30 % more on the device."""
    return 1.3 if hashlib.sha256(genotype.encode()).digest()[0] % 2 else 1.0


class MemoryReplayDevice:
    """replay:nb201/fpga for latency; the peak memory as the cpu device stores it
    (``extra.memory.model_peak_bytes``) = the law times :func:`surprise`."""

    reuses_by_hash = False  # answers per genotype, as the replay table does

    def __init__(self) -> None:
        from nasctl.profiler import get_device

        self.inner = get_device("replay:nb201/fpga")
        self.device_id = self.inner.device_id
        self.space = get_space("nb201")

    def measure(self, request):  # noqa: ANN001, ANN201 - Device.measure signature
        m = self.inner.measure(request)
        g = request.genotype
        peak = law_mb(self.space.to_graph(g)) * surprise(g) * 1e6
        m.extra["memory"] = {"model_peak_bytes": int(peak)}
        return m


def _memory_model() -> MemoryModel:
    space = get_space("nb201")
    rng = random.Random(0)
    graphs = [space.to_graph(space.sample(rng)) for _ in range(40)]
    model, metrics = MemoryModel.fit(graphs, [law_mb(g) for g in graphs], seed=0)
    assert metrics["mape"] < 10
    return model


def test_search_keeps_measured_memory_within_the_limit(tmp_path: Path) -> None:
    space = get_space("nb201")
    rng = random.Random(5)
    sample = [law_mb(space.to_graph(space.sample(rng))) * 1e6 / MIB for _ in range(60)]
    limit = sorted(sample)[len(sample) // 2]  # MiB: about half the space fits
    cfg = SearchConfig(
        space="nb201",
        device="replay:nb201/fpga",
        accuracy="nb201:cifar10",
        out=tmp_path,
        constraints=Constraints(max_memory_mb=limit),
        device_budget=14,
        generations=3,
        population=12,
        seed=0,
        bootstrap=5,
        validate_every=1,
        refine_top=3,
        refine_cap=30,
    )
    mem = MemoryEstimator(_memory_model())
    res = run_search(cfg, device=MemoryReplayDevice(), memory=mem)
    scored = [c for c in res.candidates if c.memory_mb is not None]
    assert scored and all(c.memory_low_mb < c.memory_mb < c.memory_high_mb for c in scored)
    measured = [c for c in res.candidates if c.measured_ms is not None]
    assert measured and all(c.measured_memory_mb is not None for c in measured)
    # measured memory is the device's, not the prediction: the surprise shows
    for c in measured:
        truth = law_mb(space.to_graph(c.genotype)) * surprise(c.genotype) * 1e6 / MIB
        assert c.measured_memory_mb == pytest.approx(truth, rel=1e-6)
    # the answer's memory is validated on the device
    assert res.best is not None and res.best.measured_memory_mb <= limit
    # a measured candidate over the limit is infeasible whatever was predicted for it
    over = [c for c in measured if c.measured_memory_mb > limit]
    assert over  # the surprise puts some over the limit: the device catches them
    for c in over:
        assert memory_status(c, cfg.constraints) == "infeasible" and c is not res.best
    # bootstrap measurements aside, nothing predicted over the limit (the interval's lower
    # end above it) was measured
    phases = {m["genotype"]: m["phase"] for m in res.measurements}
    assert all(c.memory_low_mb <= limit for c in measured if phases.get(c.genotype) != "bootstrap")
    # the search's record keeps the measured memory and the intervals (resume reads them back)
    st = SearchState(tmp_path / "search.db")
    rows = {r["genotype"]: r for r in st.measured()}
    assert rows[res.best.genotype]["memory_mb"] == pytest.approx(res.best.measured_memory_mb)
    est = st.estimates()[res.best.genotype]
    assert est[4] < est[3] < est[5]  # low < mid < high
    st.close()
    summary = json.loads((tmp_path / "measurements.jsonl").read_text().splitlines()[-1])
    assert summary["measured_memory_mb"] is not None


def test_without_a_memory_model_the_analytic_bound_stands_in(tmp_path: Path) -> None:
    est = MemoryEstimator.from_predictor_dir(tmp_path)  # a folder without memory/
    assert est.source == "analytic" and "no memory model" in est.note
    g = get_space("nb201").to_graph(get_space("nb201").sample(random.Random(0)))
    mid, low, high = est.estimate(g)
    assert mid == low == high == pytest.approx(analytic_mb(g) * 1e6 / MIB)


def test_memory_status_measured_decides() -> None:
    cons = Constraints(max_memory_mb=100.0)
    c = Candidate("g", accuracy=1.0, memory_mb=90.0, memory_low_mb=80.0, memory_high_mb=120.0)
    assert memory_status(c, cons) == "possible"
    c.memory_high_mb = 99.0
    assert memory_status(c, cons) == "feasible"
    c.measured_memory_mb = 101.0  # the device says otherwise
    assert memory_status(c, cons) == "infeasible"
    c = Candidate("h", accuracy=1.0, memory_mb=130.0, memory_low_mb=110.0, memory_high_mb=150.0)
    assert memory_status(c, cons) == "infeasible"
    assert memory_status(Candidate("u", accuracy=1.0), cons) == "unknown"
    assert measured_memory_mib({"memory": {"missing": "no /proc"}}) is None
    assert measured_memory_mib({"memory": {"model_peak_bytes": MIB}}) == 1.0


def test_an_older_search_record_gains_the_memory_columns(tmp_path: Path) -> None:
    db = tmp_path / "search.db"
    con = sqlite3.connect(db)
    con.executescript(
        "CREATE TABLE estimates (genotype TEXT PRIMARY KEY, accuracy REAL, error TEXT, "
        "params INTEGER, memory_mb REAL);"
        "INSERT INTO estimates VALUES ('g', 1.0, NULL, 10, 2.5);"
    )
    con.close()
    st = SearchState(db)
    assert st.estimates() == {"g": (1.0, None, 10, 2.5, None, None)}
    st.close()
