"""The predictor-first loop on a replay device (real NB201 latencies): validation schedule,
device budget, resume, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nasctl.errors import DeviceError, SearchError
from nasctl.search.loop import SearchConfig, SearchLoop, run_search
from nasctl.search.objectives import Constraints

DEVICE = "replay:nb201/fpga"


@pytest.fixture(autouse=True)
def _data_dir(shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NASCTL_DATA_DIR", str(shared_data))


class CountingDevice:
    """A real replay device that records every request and can disappear after ``fail_after``
    measurements (raises DeviceError, as an unplugged board would)."""

    def __init__(self, fail_after: int | None = None) -> None:
        from nasctl.profiler import get_device

        self.inner = get_device(DEVICE)
        self.device_id = self.inner.device_id
        self.fail_after = fail_after
        self.genotypes: list[str] = []

    def measure(self, request):  # noqa: ANN001, ANN201 - Device.measure signature
        if self.fail_after is not None and len(self.genotypes) >= self.fail_after:
            raise DeviceError("device went away (test)")
        self.genotypes.append(request.genotype)
        return self.inner.measure(request)


def _cfg(out: Path, **kw) -> SearchConfig:  # noqa: ANN003
    base = dict(
        space="nb201",
        device=DEVICE,
        accuracy="nb201:cifar10",
        out=out,
        constraints=Constraints(latency_budget_ms=3.5),
        device_budget=16,
        generations=6,
        population=16,
        seed=1,
        validate_every=2,
        bootstrap=6,
    )
    base.update(kw)
    return SearchConfig(**base)


def _phases(out: Path) -> list[tuple[str, int]]:
    lines = (out / "measurements.jsonl").read_text().splitlines()
    return [(json.loads(x)["phase"], json.loads(x)["generation"]) for x in lines]


def test_validation_schedule_and_budget(tmp_path: Path) -> None:
    dev = CountingDevice()
    res = run_search(_cfg(tmp_path), device=dev)
    phases = _phases(tmp_path)
    assert res.device_measurements == len(dev.genotypes) <= 16
    assert len(set(dev.genotypes)) == len(dev.genotypes)  # never measured twice
    assert [p for p, _ in phases[:6]] == ["bootstrap"] * 6
    # validation rounds only after generations K-1, 2K-1, ... (not after the last one)
    assert {g for p, g in phases if p == "validate"} <= {1, 3}
    assert {p for p, _ in phases} <= {"bootstrap", "validate", "final", "secure", "front"}
    assert res.best is not None and res.best.measured_ms <= 3.5
    assert res.candidates_scored >= 6 * 16  # plus the refinement neighbours
    log = [json.loads(x) for x in (tmp_path / "measurements.jsonl").read_text().splitlines()]
    assert all(r["predicted_ms"] is not None for r in log if r["phase"] != "bootstrap")


def test_without_predictor_every_candidate_is_measured(tmp_path: Path) -> None:
    dev = CountingDevice()
    res = run_search(_cfg(tmp_path, use_predictor=False, device_budget=20), device=dev)
    assert res.device_measurements == len(dev.genotypes) == 20
    assert res.predictor_queries == 0
    assert {p for p, _ in _phases(tmp_path)} == {"search"}


def test_resume_matches_continuous_run(tmp_path: Path) -> None:
    full = run_search(_cfg(tmp_path / "full"), device=CountingDevice())
    stopped = run_search(_cfg(tmp_path / "part"), device=CountingDevice(fail_after=10))
    assert stopped.stopped  # interrupted in the middle of the validation rounds
    dev = CountingDevice()
    resumed = run_search(_cfg(tmp_path / "part"), device=dev)
    assert resumed.resumed and resumed.stopped is None
    got = [m["genotype"] for m in resumed.measurements]
    assert len(got) == len(set(got))  # nothing measured twice across the two runs
    assert got == [m["genotype"] for m in full.measurements]  # same as uninterrupted
    assert resumed.device_measurements == full.device_measurements <= 16
    assert resumed.best.genotype == full.best.genotype


def test_device_disappears_stops_cleanly_and_keeps_measurements(tmp_path: Path) -> None:
    dev = CountingDevice(fail_after=4)  # during the bootstrap: no model yet
    res = run_search(_cfg(tmp_path), device=dev)
    assert res.stopped and "resume" in res.stopped
    assert [m["genotype"] for m in res.measurements] == dev.genotypes
    from nasctl.datasets.store import Store

    with Store(tmp_path / "measurements.db") as store:
        assert store.stats()["measurements"] == 4


def test_impossible_budget_reports_fastest(tmp_path: Path) -> None:
    res = run_search(
        _cfg(tmp_path, constraints=Constraints(latency_budget_ms=0.01), generations=2),
        device=CountingDevice(),
    )
    assert res.best is None
    assert res.fastest is not None and "fastest found" in res.message


def _flaky_estimator(genotype: str, graph) -> float:  # noqa: ANN001 - user estimator shape
    if "avg_pool_3x3~0|+" in genotype:
        raise RuntimeError("simulated estimator crash")
    return float(genotype.count("conv"))


def test_estimator_that_raises_marks_candidates_failed(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, accuracy=f"python:{__name__}:_flaky_estimator", generations=3)
    res = run_search(cfg, device=CountingDevice())
    failed = [c for c in res.candidates if c.failed]
    assert failed and all("simulated estimator crash" in c.error for c in failed)
    assert res.best is not None and not res.best.failed


def test_bad_input(tmp_path: Path) -> None:
    with pytest.raises(SearchError, match="unknown accuracy estimator"):
        SearchLoop(_cfg(tmp_path, accuracy="oracle:magic"), device=CountingDevice())
    with pytest.raises(SearchError, match="nb201 space only"):
        SearchLoop(_cfg(tmp_path, space="mbconv"), device=CountingDevice())
    with pytest.raises(SearchError, match="latency_budget_ms"):
        Constraints(latency_budget_ms=-1)
    run_search(_cfg(tmp_path / "a", generations=1), device=CountingDevice())
    with pytest.raises(SearchError, match="seed"):
        SearchLoop(_cfg(tmp_path / "a", seed=2), device=CountingDevice())
