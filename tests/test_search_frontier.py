"""The frontier a search reports holds measured points only; what the device budget did not
reach is listed apart as unverified; the final phase keeps device runs for the front; over
several precisions each architecture keeps its better precision, ties within the estimator's
noise going to the faster one."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from nasctl.errors import SearchError
from nasctl.search.config import SearchConfig, SearchResult
from nasctl.search.frontier import (
    choose_precisions,
    explain_precision,
    latency_tie,
    measured_front,
    unverified,
    working_front,
)
from nasctl.search.loop import SearchLoop
from nasctl.search.multiprecision import budgets, front_reserve, merge
from nasctl.search.objectives import Candidate, Constraints
from nasctl.search.report import write_outputs

DEVICE = "replay:nb201/fpga"


def _c(g: str, acc: float, *, ms: float | None = None, pred: float | None = None,
       p: str | None = None) -> Candidate:  # fmt: skip
    c = Candidate(g, accuracy=acc, measured_ms=ms, precision=p)
    if pred is not None:
        c.mean_ms, c.low_ms, c.high_ms = pred, pred * 0.8, pred * 1.25
    return c


def test_reported_front_is_measured_only_and_the_rest_is_unverified() -> None:
    a = _c("a", 90.0, ms=3.0, pred=2.9)
    b = _c("b", 80.0, ms=2.0, pred=2.1)
    fast = _c("fast", 60.0, pred=1.0)  # predicted to extend the front: never measured
    beats_b = _c("x", 85.0, pred=1.9)  # predicted to dominate b: never measured
    slow = _c("slow", 50.0, pred=5.0)  # dominated
    cands = [a, b, fast, beats_b, slow]
    assert [c.genotype for c in measured_front(cands)] == ["b", "a"]  # b stays: measured
    assert [c.genotype for c in working_front(cands)] == ["fast", "x", "a"]
    assert [c.genotype for c in unverified(cands)] == ["fast", "x"]
    refused = _c("r", 99.0, ms=None, pred=0.5)
    refused.extra["device_error"] = "engine build failed"  # the device could not run it
    assert "r" not in {c.genotype for c in working_front([*cands, refused])}


def test_a_tie_within_the_noise_goes_to_the_faster_precision() -> None:
    band = lambda a, b: 1.0  # noqa: E731 - one point of noise
    # INT8 one image "more accurate" but slower: the FP32 twin alone stands
    f, i = _c("g", 72.36, ms=1.9, p="fp32"), _c("g", 72.54, ms=2.6, p="int8")
    assert choose_precisions([f, i], band) == [f]
    assert choose_precisions([f, i]) == [f, i]  # no noise stated: exact, both non-dominated
    # FP32 half a point "more accurate" but slower: the INT8 twin alone stands
    f, i = _c("h", 80.5, ms=3.0, p="fp32"), _c("h", 80.0, ms=1.0, p="int8")
    assert choose_precisions([f, i], band) == [i]
    assert "as accurate within noise" in (explain_precision(i, [f, i], band) or "")
    # a real drop beyond the noise: both are trade-offs and both stay
    f, i = _c("k", 85.0, ms=3.0, p="fp32"), _c("k", 80.0, ms=1.0, p="int8")
    assert choose_precisions([f, i], band) == [f, i]
    assert "more accurate by 5.00" in (explain_precision(f, [f, i], band) or "")
    # other architectures are judged by plain dominance, whatever the band
    other = _c("m", 80.2, ms=2.0, p="fp32")
    assert {c.genotype for c in measured_front([f, i, other], band)} == {"k", "m"}


def test_merge_drops_the_slower_tie_twin_and_says_why(tmp_path: Path) -> None:
    fp32 = [_c("g", 72.36, ms=1.9, pred=2.0, p="fp32"), _c("q", 40.0, ms=0.9, pred=1.0, p="fp32")]
    int8 = [_c("g", 72.54, ms=2.6, pred=2.5, p="int8"), _c("q", 39.8, ms=0.5, pred=0.6, p="int8")]

    def res(cands: list[Candidate]) -> SearchResult:
        return SearchResult(None, None, [], cands, len(cands), 0, len(cands), 1.0, 1.0)

    cfg = SearchConfig("mbconv", "cpu", "train:digits", out=tmp_path)
    band = lambda a, b: 100 * math.sqrt((a + b) / 200 * (1 - (a + b) / 200) / 539)  # noqa: E731
    got = merge([res(fp32), res(int8)], cfg, band)
    assert [(c.genotype, c.precision) for c in got.frontier] == [("q", "int8"), ("g", "fp32")]
    assert got.unverified == []
    assert "vs fp32: as accurate within noise" in got.frontier[0].extra["precision_choice"]
    plain = merge([res(fp32), res(int8)], cfg)  # exact comparison: the slower INT8 twin stays
    assert ("g", "int8") in {(c.genotype, c.precision) for c in plain.frontier}


def test_a_choice_against_a_predicted_twin_says_so() -> None:
    band = lambda a, b: 1.0  # noqa: E731
    i = _c("g", 76.8, ms=2.08, pred=0.1, p="int8")
    f = _c("g", 77.0, pred=2.8, p="fp32")  # the twin the budget did not reach
    why = explain_precision(i, [f, i], band) or ""
    assert "(2.08 ms measured vs 2.8 ms predicted)" in why
    assert why.endswith("DECIDED ON PREDICTED LATENCY (fp32 not measured)")
    f.measured_ms = 2.0  # measured: FP32 is the faster twin, the choice turns on measurement
    assert choose_precisions([f, i], band, measured_only=True) == [f]
    why = explain_precision(f, [f, i], band) or ""
    assert why.endswith("decided on measured latencies") and "PREDICTED" not in why


def test_the_merged_front_reserve_covers_each_front_architecture_at_every_precision() -> None:
    # one run per precision for each point of an expected front (a fifth of the budget, at most
    # 8 points), at most half the budget, each loop keeping 3 runs; a plain search keeps none
    assert front_reserve(20, 2) == 8 and budgets(20 - 8, 2) == [6, 6]
    assert front_reserve(20, 3) == 10  # capped at half: the loops still have to find a front
    assert front_reserve(100, 2) == 16  # a front does not grow in step with the budget
    assert front_reserve(8, 2) == 2 and budgets(8 - 2, 2) == [3, 3]  # a latency model's least
    assert front_reserve(5, 2) == 0 and front_reserve(20, 1) == 0


def test_training_estimator_noise_is_the_binomial_standard_error() -> None:
    from nasctl.search.accuracy import get_estimator

    est = get_estimator("train:digits")
    n = 539  # digits' held-out images
    assert est.accuracy_se(72.0) == pytest.approx(100 * math.sqrt(0.72 * 0.28 / n))
    assert est.accuracy_se(100.0) == pytest.approx(100 * math.sqrt(0.5 / n * (1 - 0.5 / n) / n))
    assert est.for_precision("int8").accuracy_se(72.0) == est.accuracy_se(72.0)
    assert get_estimator("proxy:synflow").accuracy_se(72.0) is None


@pytest.fixture
def _data_dir(shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NASCTL_DATA_DIR", str(shared_data))


def _cfg(out: Path, budget: int) -> SearchConfig:
    return SearchConfig(
        space="nb201", device=DEVICE, accuracy="nb201:cifar10", out=out,
        constraints=Constraints(latency_budget_ms=3.5), device_budget=budget, generations=3,
        population=16, seed=2, bootstrap=4, score_all=False,
    )  # fmt: skip


@pytest.mark.usefixtures("_data_dir")
def test_the_final_phase_keeps_device_runs_for_the_front(tmp_path: Path) -> None:
    loop = SearchLoop(_cfg(tmp_path / "s", budget=14))
    try:
        assert loop.search() is None
        b = loop.budget
        todo = b.front_todo()
        off_front = next(
            g for g, c in loop.archive.items()
            if g not in loop.attempted and not c.failed and g not in {t.genotype for t in todo}
        )  # fmt: skip
        b.limit = b.used + len(todo)  # exactly the runs the front still needs
        if todo:
            assert not b.affords(off_front)  # anything else would leave a front point unmeasured
            assert b.affords(todo[-1].genotype)  # a front member pays for itself
        b.limit += 1
        assert b.affords(off_front)
        result = loop.result(0.0, None)
    finally:
        loop.close()
    assert result.frontier and all(c.measured_ms is not None for c in result.frontier)
    assert all(c.measured_ms is None for c in result.unverified)
    if result.unverified:  # only when the budget ran out
        assert result.device_measurements == 14
    doc = write_outputs(result, tmp_path / "s", loop.cons, DEVICE, loop.cfg.settings())
    saved = json.loads((tmp_path / "s" / "frontier.json").read_text())
    assert all(r["measured_ms"] is not None for r in saved["frontier"])
    assert doc["frontier_measured"] == doc["frontier_size"] == len(saved["frontier"])
    assert doc["unverified_size"] == len(saved["unverified"])
    with (tmp_path / "s" / "unverified.csv").open() as f:
        assert len(list(csv.DictReader(f))) == doc["unverified_size"]


@pytest.mark.usefixtures("_data_dir")
def test_a_budget_too_small_for_the_front_reports_the_rest_as_unverified(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path / "t", budget=5)
    cfg.constraints = Constraints()  # no latency budget: the whole front is wanted
    loop = SearchLoop(cfg)
    result = loop.run()
    assert result.device_measurements == 5
    assert result.unverified  # 4 bootstrap runs + 1 cannot cover a front of this space
    measured = {c.genotype for c in result.candidates if c.measured_ms is not None}
    assert {c.genotype for c in result.frontier} <= measured
    assert not {c.genotype for c in result.unverified} & measured


def test_a_latency_within_the_run_to_run_spread_is_a_tie() -> None:
    band = lambda a, b: 1.0  # noqa: E731 - one point of noise
    spread = math.log(1.11)  # the device's run-to-run spread: 1.11x
    # INT8 1.05x faster and as accurate: one measurement each cannot tell them apart, the tie
    # in both keeps the higher precision (whichever order they come in)
    f, i = _c("g", 80.0, ms=2.10, p="fp32"), _c("g", 80.5, ms=2.00, p="int8")
    assert choose_precisions([f, i], band) == [i]  # no spread stated: the faster one
    assert choose_precisions([i, f], band, spread=spread) == [f]
    why = explain_precision(f, [f, i], band, spread) or ""
    assert "as fast within run-to-run spread" in why and "band 1.11x" in why
    assert "keeps the higher precision, fp32" in why and why.endswith("measured latencies")
    assert [c.precision for c in measured_front([f, i], band, spread)] == ["fp32"]
    # beyond the spread (1.30x): INT8 is faster, as before
    i.measured_ms = 2.10 / 1.30
    assert choose_precisions([f, i], band, spread=spread) == [i]
    # equally fast but INT8 more accurate beyond the noise: INT8 alone (was: both trade-offs)
    f, i = _c("h", 78.0, ms=2.00, p="fp32"), _c("h", 80.0, ms=2.05, p="int8")
    assert choose_precisions([f, i], band) == [f, i]
    assert choose_precisions([f, i], band, spread=spread) == [i]
    # a predicted twin is never in a latency tie: the band is a measurement's spread
    f, i = _c("k", 80.0, pred=2.05, p="fp32"), _c("k", 80.0, ms=2.00, pred=2.0, p="int8")
    assert choose_precisions([f, i], band, spread=spread) == [i]


def test_run_spread_is_robust_to_one_outlier_probe() -> None:
    from nasctl.profiler.gate import derive_gate, run_spread

    medians = [2.36, 2.36, 2.35, 2.20, 2.06, 6.27, 2.12, 1.98, 2.03, 2.06]  # one busy probe
    gate = derive_gate("cpu-test", [0.05] * 10, medians)
    assert gate.probe_spread > 1.9  # the range: every pair would tie
    assert 1.08 < math.exp(run_spread(gate) or 0.0) < 1.15
    assert run_spread(None) is None
    gate.probe_medians_ms = [2.0, 2.1]
    assert run_spread(gate) is None  # too few probes to say


def test_the_search_takes_its_latency_tie_from_the_devices_stored_gates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from types import SimpleNamespace

    from nasctl.profiler.gate import derive_gate, save_gate
    from nasctl.search.multiprecision import latency_spread

    monkeypatch.setenv("NASCTL_CACHE_DIR", str(tmp_path))
    fp32, int8 = SimpleNamespace(device_id="cpu-a-fp32"), SimpleNamespace(device_id="cpu-a-int8")
    assert latency_spread([fp32, int8]) is None  # never calibrated: latencies compared exactly
    save_gate(derive_gate("cpu-a-fp32", [0.05] * 5, [2.0, 2.1, 2.2, 1.9, 2.0]))
    got = latency_spread([fp32, int8])  # the one gate there is speaks for both
    assert got is not None and 1.02 < math.exp(got) < 1.10
    # merge uses it: a 1.03x INT8 twin ties, and the tie keeps FP32
    f, i = _c("g", 80.0, ms=2.06, pred=2.0, p="fp32"), _c("g", 80.2, ms=2.0, pred=2.0, p="int8")

    def res(cands: list[Candidate]) -> SearchResult:
        return SearchResult(None, None, [], cands, len(cands), 0, len(cands), 1.0, 1.0)

    cfg = SearchConfig("mbconv", "cpu", "train:digits", out=tmp_path)
    got_r = merge([res([f]), res([i])], cfg, lambda a, b: 1.0, got)
    assert [(c.genotype, c.precision) for c in got_r.frontier] == [("g", "fp32")]
    assert "tie in both keeps the higher precision" in got_r.frontier[0].extra["precision_choice"]


def test_the_twin_prior_scales_the_first_precisions_model_by_the_measured_ratio() -> None:
    import numpy as np

    from nasctl.search.latency.twin import RATIO_SIGMA, TwinPrior

    class Source:  # a latency model: 2 ms for every genotype, log sigma 0.1
        def predict(self, gs: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            m = np.full(len(gs), 2.0)
            return m, m * math.exp(-0.1), m * math.exp(0.1)

        def log_sigma(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
            return (np.log(hi) - np.log(lo)) / 2

    ratios: list[float] = []
    prior = TwinPrior(Source(), lambda: ratios)
    mu, sd = prior(["a", "b"])
    assert np.allclose(np.exp(mu), 2.0) and np.allclose(sd, math.hypot(0.1, RATIO_SIGMA))
    ratios[:] = [0.5, 0.8, 0.7]  # INT8 / FP32 of three twins measured at both
    mu, sd = prior(["a"])
    assert math.isclose(float(np.exp(mu[0])), 1.4)  # 2 ms x the median ratio 0.7
    assert float(sd[0]) < math.hypot(0.1, RATIO_SIGMA)  # three ratios agree better than 0.5


def test_close_twins_are_decided_on_the_median_of_alternating_pairs() -> None:
    from nasctl.search.frontier import PAIR_RATIO, needs_pairs, pair_band, paired_ratios

    band = lambda a, b: 1.0  # noqa: E731 - one point of noise
    spread = math.log(1.11)
    # one run each says FP32 is 1.36x faster: inside the 1.5x pairing band, so not decided yet
    f, i = _c("g", 76.07, ms=1.557, p="fp32"), _c("g", 75.70, ms=2.110, p="int8")
    assert pair_band(spread) == pytest.approx(math.log(PAIR_RATIO))
    assert pair_band(0.2) == pytest.approx(0.6)  # a noisier device widens it: 3x its spread
    assert needs_pairs(f, i, spread, band) and paired_ratios(f, i) is None
    far = _c("g", 70.0, ms=2.110, p="int8")  # 6 points less accurate: accuracy decides
    assert not needs_pairs(f, far, spread, band)
    assert choose_precisions([f, i], band, spread=spread) == [f]
    why = explain_precision(f, [f, i], band, spread)
    assert why is not None and "pairing band, ONE measurement each" in why
    # three alternating rounds: FP32 slower in every one (ratios 1.14, 1.13, 1.07): INT8 stands
    f.extra["paired_ms"], i.extra["paired_ms"] = [2.5, 2.6, 2.4], [2.2, 2.3, 2.25]
    assert paired_ratios(f, i) == pytest.approx([2.5 / 2.2, 2.6 / 2.3, 2.4 / 2.25])
    assert not needs_pairs(f, i, spread)
    assert choose_precisions([f, i], band, spread=spread) == [i]
    why = explain_precision(i, [f, i], band, spread)
    assert why is not None and "3 alternating pairs, int8/fp32 ratios 0.88, 0.88, 0.94" in why
    assert "median 0.88x" in why and why.endswith("re-measured in alternating pairs")
    # the median, not the mean: one round caught in a load spike does not decide
    f.extra["paired_ms"], i.extra["paired_ms"] = [2.5, 9.0, 2.4], [2.6, 2.3, 2.5]
    assert choose_precisions([f, i], band, spread=spread) == [f]
    # a median ratio within the device's spread ties: a tie in both keeps the higher precision
    f.extra["paired_ms"], i.extra["paired_ms"] = [2.3, 2.2, 2.4], [2.2, 2.1, 2.3]
    assert latency_tie(f, i, spread)
    assert choose_precisions([f, i], band, spread=spread) == [f]
    why = explain_precision(f, [f, i], band, spread)
    assert why is not None and "a tie in both keeps the higher precision, fp32" in why
    # one round is not a decision (MIN_PAIRS = 2): back to the one run each
    f.extra["paired_ms"], i.extra["paired_ms"] = [2.5], [2.2]
    assert paired_ratios(f, i) is None and needs_pairs(f, i, spread, band)


@pytest.mark.usefixtures("_data_dir")
def test_a_paired_re_measure_is_a_device_run_kept_like_any_other(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path / "r", budget=6)
    loop = SearchLoop(cfg)
    try:
        assert loop.search() is None
        b = loop.budget
        g = next(iter(b.measured_latencies()))
        used, limit = b.used, b.limit
        b.grant(1)
        ms = b.remeasure(g, "paired", cfg.generations)
        assert ms is not None and ms > 0  # on the device, not answered from the store
        assert b.used == used + 1 and b.limit == limit + 1
        with pytest.raises(SearchError, match="budget spent"):
            b.remeasure(g, "paired", cfg.generations)
        assert [r["genotype"] for r in loop.state.repeats()] == [g]
        h = loop.store.hash_of("nb201", g)
        assert h is not None
        row = loop.store.get_measurement(h, b.device_id)
        assert row is not None and row.extra["repeats"][0]["median_ms"] == pytest.approx(ms)
        lines = (tmp_path / "r" / "measurements.jsonl").read_text().splitlines()
        last = json.loads(lines[-1])
        assert last["repeat"] and last["genotype"] == g and last["phase"] == "paired"
    finally:
        loop.close()
    again = SearchLoop(cfg)  # a resumed search counts the repeat and knows its result
    try:
        again._restore()
        assert again.budget.used == used + 1
        assert again.archive[g].extra["paired_ms"] == [pytest.approx(ms)]
    finally:
        again.close()
