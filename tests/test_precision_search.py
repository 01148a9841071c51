"""Precision as a search dimension (issue #15.3): (architecture, precision) candidates measured
on the real cpu device at FP32 and INT8 (ONNX Runtime, Q/DQ written by the host), scored by the
estimator at that precision, merged into one frontier; exported at the chosen point's precision.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from nasctl.cli.main import app
from nasctl.errors import SearchError
from nasctl.search.accuracy import get_estimator
from nasctl.search.config import SearchConfig
from nasctl.search.multiprecision import PrecisionSearch, budgets
from nasctl.search.precisions import check_precisions, parse_precisions
from nasctl.search.report import write_outputs
from nasctl.spaces import get_space

runner = CliRunner()
FAST = {"min_time_s": 0.02, "repeats": 3, "max_attempts": 1}
CALLS: list[str] = []


def acc(genotype: str, graph: Any, precision: str = "fp32") -> float:
    """A python: estimator that takes the precision: INT8 costs skip-heavy cells more."""
    CALLS.append(precision)
    base = 50.0 + 10.0 * genotype.count("conv_3x3") + 5.0 * genotype.count("conv_1x1")
    return base - (1.0 + 2.0 * genotype.count("skip")) * (precision == "int8")


def _search(out: Path, seed: int = 3) -> tuple[PrecisionSearch, Any]:
    cfg = SearchConfig(
        space="nb201", device="cpu", accuracy="python:test_precision_search:acc", out=out,
        device_budget=8, generations=2, population=6, seed=seed, device_opts=dict(FAST),
    )  # fmt: skip
    ps = PrecisionSearch(cfg, "fp32,int8")
    return ps, ps.run()


@pytest.mark.slow
def test_search_over_fp32_and_int8_pairs_is_seeded_and_exports_the_rank_precision(
    tmp_path: Path,
) -> None:
    CALLS.clear()
    ps, res = _search(tmp_path / "a")
    assert {"fp32", "int8"} <= set(CALLS)  # the python: estimator received the precision
    by_p = {p: [c for c in res.candidates if c.precision == p] for p in ("fp32", "int8")}
    assert by_p["fp32"] and by_p["int8"]
    # INT8 measured under its own device id, FP32 under its own
    measured = {(m["precision"], m["status"]) for m in res.measurements}
    assert {p for p, _ in measured} == {"fp32", "int8"}
    assert res.device_measurements <= 8 and budgets(8, 2) == [4, 4]
    for c in by_p["int8"]:  # the estimator at INT8 scored each pair
        assert c.accuracy == acc(c.genotype, None, "int8")
    # the frontier holds measured pairs only; no architecture sits there at a precision its
    # measured twin beats (this estimator states no noise: accuracies compare exactly)
    front = {(c.genotype, c.precision): c for c in res.frontier}
    assert front and all(c.measured_ms is not None for c in res.frontier)
    assert all(c.measured_ms is None for c in res.unverified)
    for (g, _p), c in front.items():
        for other in res.candidates:
            if other.genotype == g and other is not c and other.measured_ms is not None:
                assert not (
                    (other.accuracy or 0) >= (c.accuracy or 0)
                    and other.measured_ms < (c.measured_ms or 0)
                )
    # the merged phase measures each front architecture at both precisions while runs are left
    # (a reserve of 2 of the 8: each loop keeps the 3 its latency model needs); a choice
    # against a predicted twin says so
    assert ps.reserve == 2 and [lp.cfg.device_budget for lp in ps.loops] == [3, 3]
    for c in res.frontier:
        why = c.extra.get("precision_choice")
        if why is None:  # no twin that ran (the device refused it)
            continue
        if "PREDICTED" in why:
            assert res.device_measurements == 8, why
        else:
            assert "decided on measured latencies" in why, why
    doc = write_outputs(res, tmp_path / "a", ps.cfg.constraints, "cpu", ps.settings())
    rows = json.loads((tmp_path / "a" / "frontier.json").read_text())["frontier"]
    assert doc["settings"]["precision"] == "fp32,int8"
    assert rows and all(r["precision"] in ("fp32", "int8") for r in rows)
    assert (tmp_path / "a" / "frontier.png").stat().st_size > 0
    # seeded: both loops start from the seed's proposals, so every architecture of the first
    # generation is weighed at both precisions (later ones follow the measured latencies)
    gen0 = {p: {c.genotype for c in by_p[p] if c.generation == 0} for p in by_p}
    assert gen0["fp32"] and gen0["fp32"] == gen0["int8"]
    # export picks the chosen rank's precision: INT8 Q/DQ model, card says int8
    ranked = sorted(rows, key=lambda r: -(r["accuracy"] or 0.0))
    rank = next((i for i, r in enumerate(ranked, 1) if r["precision"] == "int8"), None)
    if rank is None:  # no INT8 point on this front: export one INT8 pair by genotype
        g = by_p["int8"][0].genotype
        args = ["--genotype", g, "--precision", "int8"]
    else:
        args = ["--rank", str(rank)]
    out = tmp_path / "winner"
    r = runner.invoke(app, ["export", "--run", str(tmp_path / "a"), *args, "--out", str(out)])
    assert r.exit_code == 0, r.output
    card = json.loads((out / "card.json").read_text())
    assert card["precision"] == "int8" and "--precision fp32,int8" in card["found_by"]
    import onnx

    ops = {n.op_type for n in onnx.load(str(out / "model.onnx")).graph.node}
    assert "QuantizeLinear" in ops
    if rank is not None and ranked[rank - 1]["measured_ms"] is not None:  # its INT8 row
        assert card["device_id"].endswith("-int8-t1") and card["latency_ms"]["measured"]
    int8_ids = {json.loads(line)["measurement"]["device_id"]
                for line in (tmp_path / "a" / "int8" / "measurements.jsonl").open()}  # fmt: skip
    assert int8_ids and all(i.endswith("-int8-t1") for i in int8_ids)


@pytest.mark.slow
def test_train_digits_trains_once_and_scores_int8_with_onnx_runtime() -> None:
    est = get_estimator("train:digits")
    trained: list[str] = []
    real_train = est.train

    def counting(genotype: str, space: Any) -> Any:
        trained.append(genotype)
        return real_train(genotype, space)

    est.train = counting  # type: ignore[method-assign]
    fp32, int8 = est.for_precision("fp32"), est.for_precision("int8")
    space = get_space("nb201")
    g = "|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|"
    a32, a8 = fp32.estimate(g, None, space), int8.estimate(g, None, space)
    assert trained == [g]  # one training, two evaluations
    assert 10.0 < a32 <= 100.0 and 10.0 < a8 <= 100.0
    assert abs(a32 - a8) < 10.0  # per-channel INT8 of a trained net: a few points at most
    assert int8.name == "train:digits@int8" and int8.refine_cap == est.refine_cap


def test_table_estimators_refuse_int8_without_a_drop_model(shared_data: Path) -> None:
    est = get_estimator("nb201:cifar10")
    assert est.for_precision("fp16") is est and est.for_precision("fp32") is est
    with pytest.raises(SearchError, match="int8_drop="):
        est.for_precision("int8")
    g = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|skip_connect~1|none~2|"
    space = get_space("nb201")
    q = est.for_precision("int8", int8_drop="1.5")
    assert q.estimate(g, None, space) == pytest.approx(est.estimate(g, None, space) - 1.5)
    with pytest.raises(SearchError, match="int8_drop must be"):
        est.for_precision("int8", int8_drop="lots")


class _Trt:
    """A TensorRT device as far as the precision check sees it: its precisions and the id the
    agent gives it (real TensorRT version rules from nasctl_agent decide)."""

    precisions = ("fp32", "fp16", "int8")

    def __init__(self, trt: str) -> None:
        from nasctl.profiler.gpu_devices import T4Device

        self.trt = trt
        self.writes_precision = T4Device.writes_precision  # what the host sends: Q/DQ INT8

    def device_id_for(self, precision: str) -> str:
        return f"t4-trt{self.trt}-{precision}"


def test_precisions_a_device_cannot_run_are_one_line_errors() -> None:
    from nasctl.profiler import get_device

    assert parse_precisions("FP32, int8,fp32") == ["fp32", "int8"]
    with pytest.raises(SearchError, match="comma-separated list"):
        parse_precisions("fp32,int4")
    with pytest.raises(SearchError, match="cannot run fp16"):
        check_precisions("cpu", {"fp16": get_device("cpu", precision="fp16")})
    with pytest.raises(SearchError, match="no DLA"):
        check_precisions("t4", {"dla": get_device("t4", precision="int8", dla_core=0)})
    for trt in ("8.6", "10.3", "11.0"):  # Q/DQ INT8 builds on every version
        check_precisions("t4", {"int8": _Trt(trt)})
    check_precisions("t4", {"fp16": _Trt("10.3")})  # a builder flag below 11
    with pytest.raises(SearchError, match=r"TensorRT 11.0\) cannot run fp16"):
        check_precisions("t4", {"fp16": _Trt("11.0")})  # the FP32 ONNX builds as FP32 only


def test_cli_refuses_a_precision_before_anything_runs(tmp_path: Path) -> None:
    out = tmp_path / "run"
    r = runner.invoke(
        app,
        ["search", "--device", "cpu", "--space", "nb201", "--accuracy", "proxy:synflow",
         "--precision", "fp32,fp16", "--out", str(out)],
    )  # fmt: skip
    assert r.exit_code == 1 and "cannot run fp16" in r.output, r.output
    assert "Traceback" not in r.output and not (out / "fp32" / "search.db").exists()
    r = runner.invoke(
        app,
        ["search", "--device", "cpu", "--space", "nb201", "--accuracy", "proxy:synflow",
         "--precision", "fp32,int8", "--out", str(out)],
    )  # fmt: skip
    assert r.exit_code == 1 and "--int8-drop" in r.output, r.output


class _Budget:
    """A precision loop's DeviceBudget as the merged phase sees it: runs counted against a
    limit that the search raises (``grant``) from its kept reserve."""

    def __init__(self, p: str, limit: int, used: int, runs: list[tuple[str, str]],
                 clock: list[float]) -> None:  # fmt: skip
        self.p, self.limit, self.used, self.runs, self.clock = p, limit, used, runs, clock

    @property
    def left(self) -> int:
        return self.limit - self.used

    def grant(self, n: int) -> None:
        self.limit += n

    def remeasure(self, genotype: str, phase: str, gen: int) -> float:
        assert self.used < self.limit and phase == "paired"
        self.used += 1
        self.runs.append((self.p, genotype))
        # the load rises between rounds (each round 50 % slower than the one before, both of
        # its runs alike); INT8 truly 1.2x faster
        self.clock[0] += 1.0
        rnd = (self.clock[0] - 1) // 2
        return (2.4 if self.p == "fp32" else 2.0) * (1.0 + 0.5 * rnd)


def _paired_search(used: tuple[int, int], limits: tuple[int, int], total: int) -> Any:
    from types import SimpleNamespace

    from nasctl.search.objectives import Candidate

    runs: list[tuple[str, str]] = []
    clock = [0.0]
    loops = []
    for p, u, lim, ms in zip(("fp32", "int8"), used, limits, (1.9, 2.1), strict=True):
        twin = Candidate("g", accuracy=80.0, measured_ms=ms, precision=p)
        loops.append(SimpleNamespace(
            cfg=SimpleNamespace(precision=p), archive={"g": twin},
            budget=_Budget(p, lim, u, runs, clock),
        ))  # fmt: skip
    ps = PrecisionSearch.__new__(PrecisionSearch)
    ps.loops, ps.spread = loops, 0.1
    ps.estimator = SimpleNamespace(accuracy_se=lambda a: 1.0)  # one point of noise
    ps.cfg = SimpleNamespace(device_budget=total, generations=3)
    return ps, runs


def test_close_twins_are_re_measured_in_alternation_within_the_device_budget() -> None:
    from nasctl.search.frontier import choose_precisions, explain_precision
    from nasctl.search.multiprecision import affordable_rounds, pair_order, within_first

    # FP32 measured 1.9 ms, INT8 2.1 ms: one run each says FP32, inside the 1.5x pairing band
    ps, runs = _paired_search(used=(9, 9), limits=(10, 10), total=26)
    assert ps._close("g")
    left = ps.cfg.device_budget - sum(lp.budget.used for lp in ps.loops)
    ps._pair("g", left)
    # three rounds, the order flipped each round (as bench/bench_int8_cpu.py does)
    assert [p for p, _ in runs] == ["fp32", "int8", "int8", "fp32", "fp32", "int8"]
    assert pair_order(["fp32", "int8"], 2) == [(0, "fp32"), (0, "int8"), (1, "int8"), (1, "fp32")]
    # every run counted against its precision's budget; past a loop's own share, runs of the
    # reserve are granted one at a time: 6 runs, 26 - 18 = 8 left, 2 after
    assert [lp.budget.used for lp in ps.loops] == [12, 12]
    assert [lp.budget.limit for lp in ps.loops] == [12, 12]
    assert ps.cfg.device_budget - sum(lp.budget.used for lp in ps.loops) == 2
    f, i = (lp.archive["g"] for lp in ps.loops)
    # each round's ratio is 1.2 whatever the load: INT8 stands, on its paired latency
    assert f.extra["paired_ms"] == pytest.approx([2.4, 3.6, 4.8])
    assert i.extra["paired_ms"] == pytest.approx([2.0, 3.0, 4.0])
    assert (f.measured_ms, i.measured_ms) == pytest.approx((3.6, 3.0))
    assert f.extra["single_ms"] == 1.9 and i.extra["single_ms"] == 2.1
    assert choose_precisions([f, i], lambda a, b: 1.0, spread=ps.spread) == [i]
    why = explain_precision(i, [f, i], lambda a, b: 1.0, ps.spread) or ""
    assert "3 alternating pairs, int8/fp32 ratios 0.83, 0.83, 0.83" in why, why
    assert "median 0.83x" in why
    assert not ps._close("g")  # decided: not paired again
    # a twin more accurate beyond the noise decides by accuracy: no runs spent on pairs
    ps, runs = _paired_search(used=(9, 9), limits=(10, 10), total=26)
    ps.loops[1].archive["g"].accuracy = 70.0
    assert not ps._close("g")
    # ... unless both twins stand on the front as trade-offs: the less accurate one is there
    # only for being faster, and one run each cannot say that it is
    assert ps._close("g", {("g", "fp32"), ("g", "int8")})
    assert not ps._close("g", {("g", "fp32")})
    # short budget: 3 runs left complete one round only, below the 2 that decide: nothing
    # runs, and the choice says it rests on one measurement each
    ps, runs = _paired_search(used=(10, 10), limits=(10, 10), total=23)
    assert affordable_rounds(ps._twins("g"), 3) == 1 and affordable_rounds(ps._twins("g"), 5) == 2
    ps._pair("g", 3)
    assert runs == [] and [lp.budget.used for lp in ps.loops] == [10, 10]
    f, i = (lp.archive["g"] for lp in ps.loops)
    assert not ps._close("g") and "pairing_short" in f.extra
    why = explain_precision(f, [f, i], lambda a, b: 1.0, ps.spread) or ""
    assert "ONE measurement each (not re-measured in pairs: 3 device runs left)" in why
    # a resumed search restores each loop's runs but not the reserve runs granted before it
    # stopped (used 13 of a share of 12): a run of the reserve is still a run
    ps, runs = _paired_search(used=(13, 13), limits=(12, 12), total=40)
    ps._pair("g", 14)
    assert len(runs) == 6 and [lp.budget.used for lp in ps.loops] == [16, 16]
    # 5 left: two rounds (4 runs), not three
    ps, runs = _paired_search(used=(10, 10), limits=(10, 10), total=25)
    ps._pair("g", 5)
    assert [p for p, _ in runs] == ["fp32", "int8", "int8", "fp32"]
    # the merged phase measures front architectures within the latency budget first
    from nasctl.search.objectives import Candidate

    over, under = Candidate("a", accuracy=90.0, measured_ms=7.5), Candidate("b", accuracy=80.0)
    under.mean_ms = 3.0
    assert sorted([over, under], key=lambda c: within_first(c, 4.0)) == [under, over]
    assert sorted([under, over], key=lambda c: within_first(c, None)) == [over, under]
