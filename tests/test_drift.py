"""Drift-corrected labels: the arithmetic, the store's probe/memory fields, refusing rows
without a probe, and the probe kept by the collection loop."""

from __future__ import annotations

import pytest

from nasctl.arch.graph import GraphBuilder
from nasctl.datasets.collect import Job, collect
from nasctl.datasets.drift import drift_correct, drift_factors
from nasctl.datasets.store import Store
from nasctl.errors import DeviceError, StoreError
from nasctl.records import LayerTiming, Measurement

DEV = "cpu-ort1.20-fp32-t1"


def _graph(width: int):
    b = GraphBuilder("toy", (1, 3, 16, 16))
    x = b.conv(b.input, width, 3, id="/c")
    return b.build([x], meta={"space": "toy", "genotype": f"w{width}"})


def _m(h: str, median: float, probe: float | None, mem: int | None = None) -> Measurement:
    extra = {}
    if probe is not None:
        extra["probe"] = {"median_ms": probe, "cv": 0.01, "status": "ok"}
    if mem is not None:
        extra["memory"] = {"peak_rss_bytes": mem + 10**8, "model_peak_bytes": mem}
    return Measurement(
        arch_hash=h,
        device_id=DEV,
        precision="fp32",
        batch=1,
        status="ok",
        median_ms=median,
        mean_ms=median,
        p90_ms=median,
        std_ms=0.1 * median,
        cv=0.1,
        runs=10,
        layers=[LayerTiming("k", median / 2, ["/c"], "kernel")],
        extra=extra,
    )


def test_factors_are_typical_over_probe() -> None:
    assert drift_factors([1.0, 2.0, 4.0]) == [2.0, 1.0, 0.5]
    assert drift_factors([2.0], typical_ms=3.0) == [1.5]
    assert drift_factors([]) == []
    with pytest.raises(StoreError, match="> 0"):
        drift_factors([1.0, 0.0])


def test_correction_from_the_store(tmp_path) -> None:
    with Store(tmp_path / "s.db") as s:
        hs = [s.add_architecture(_graph(w)) for w in (4, 8, 16)]
        # the machine ran 2x slower at the second measurement: label and probe both doubled
        s.add_measurement(_m(hs[0], 10.0, 5.0, mem=3_000_000))
        s.add_measurement(_m(hs[1], 40.0, 10.0))
        s.add_measurement(_m(hs[2], 6.0, 6.0))
        rows = s.reader.training_rows(DEV)
    assert [r.probe_ms for r in rows] == [5.0, 10.0, 6.0]
    assert rows[0].memory_mb == 3.0 and rows[1].memory_mb is None
    fixed, info = drift_correct(rows)
    # typical probe = median(5, 10, 6) = 6 ms
    assert info["typical_probe_ms"] == 6.0
    assert [r.latency_ms for r in fixed] == pytest.approx([12.0, 24.0, 6.0])
    assert fixed[1].std_ms == pytest.approx(2.4)  # std scaled, CV unchanged
    assert fixed[1].layers[0].time_ms == pytest.approx(12.0)
    assert rows[1].latency_ms == 40.0  # the originals are untouched
    assert info["factor_min"] == pytest.approx(0.6) and info["factor_max"] == pytest.approx(1.2)


def test_rows_without_probe_are_refused(tmp_path) -> None:
    with Store(tmp_path / "s.db") as s:
        hs = [s.add_architecture(_graph(w)) for w in (4, 8)]
        s.add_measurement(_m(hs[0], 10.0, 5.0))
        s.add_measurement(_m(hs[1], 10.0, None))
        rows = s.reader.training_rows(DEV)
    with pytest.raises(StoreError, match="1 of 2 measurements have no reference probe"):
        drift_correct(rows)


class _Dev:
    name = "fake"
    device_id = DEV

    def __init__(self) -> None:
        self.n = 0

    def measure(self, req):
        self.n += 1
        return _m(req.arch_hash, float(self.n), None)


def test_collect_keeps_the_latest_probe_and_stops_cleanly(tmp_path) -> None:
    probes = iter([{"median_ms": 2.0, "cv": 0.0, "status": "ok"},
                   {"median_ms": 3.0, "cv": 0.0, "status": "ok"}])  # fmt: skip

    def probe():
        try:
            return next(probes)
        except StopIteration:
            raise DeviceError("the reference probe took 9 ms: the machine changed") from None

    with Store(tmp_path / "s.db") as s:
        jobs = []
        for w in (4, 8, 16, 32, 64):
            g = _graph(w)
            jobs.append(Job(s.add_architecture(g), g, f"w{w}"))
        with pytest.raises(DeviceError, match="machine changed"):
            collect(s, _Dev(), jobs, 5, probe=probe, probe_every=2)
        stored = [m for m in (s.get_measurement(j.arch_hash, DEV) for j in jobs) if m]
    # probes before jobs 1 and 3; the third probe (before job 5) failed: 4 kept, nothing lost
    assert [m.extra["probe"]["median_ms"] for m in stored] == [2.0, 2.0, 3.0, 3.0]
    assert [m.extra["probe"]["measurements_since"] for m in stored] == [0, 1, 0, 1]
