"""A search over (architecture, precision) pairs (issue #15.3): ``nasctl search --precision
fp32,int8``.

Each precision gets its own search loop (:class:`~nasctl.search.loop.SearchLoop`) in
``<out>/<precision>/``: the device measures at that precision (its own device id, so its own
latency model and stored rows, e.g. ``cpu-ort1.32-int8-t1``), and the accuracy estimator scores
at that precision (:meth:`~nasctl.search.accuracy.base.AccuracyEstimator.for_precision`:
``train:digits`` trains each architecture once and evaluates its FP32 and Q/DQ INT8 models with
ONNX Runtime; a ``python:`` function receives the precision; a table needs an INT8 accuracy-drop
model). A reserve of the device budget is kept for the merged phase (:func:`front_reserve`: one
run per precision for each architecture of an expected front, at most half the budget; 8 of
``--device-budget 20`` over two precisions), the rest split evenly between the precisions (the
first ones get the remainder); all loops share one measurement store (``<out>/measurements.db``
unless ``db``).

The answer merges the loops: every candidate is an (architecture, precision) pair. Each
architecture first keeps its better precision (:func:`~nasctl.search.frontier.choose_precisions`):
a pair is dropped when the same architecture at another precision is faster and not less
accurate beyond the estimator's noise (``train:*``: one binomial standard error of the held-out
accuracy, :meth:`~nasctl.search.accuracy.base.AccuracyEstimator.accuracy_se`; estimators that
state no noise are compared exactly). So an INT8 twin one held-out image "more accurate" but
slower than its FP32 twin does not stand beside it, and an FP32 twin half a point "more
accurate" but slower than its INT8 twin is dropped for it; a drop beyond the noise keeps both as
trade-offs. Latency ties too (:func:`latency_spread`): two measured twins within the device's
run-to-run spread of each other (the stored noise gate's probes, :func:`~nasctl.profiler.gate.
run_spread`; 1.11x on this repo's cpu) are equally fast, so the more accurate beyond the noise
is kept, and a tie in both keeps the higher precision (fp32 before int8: one measurement each
cannot say INT8 is faster, and FP32 carries no quantization risk). The frontier is then the
non-dominated set of the pairs kept, on measured latency only
(:func:`~nasctl.search.frontier.measured_front`); predicted-only pairs that would extend or beat
it are reported apart, as unverified.

After the loops (each measures its own front), the merged phase runs on the loops it keeps open:
each architecture on the merged working front is scored and predicted at every precision (no
device time; ``train:*`` trained it once for all precisions), then the merged front is measured
architecture by architecture, most accurate first: its front pair and its twins at the other
precisions, each through its precision's loop (:meth:`~nasctl.search.budget.DeviceBudget.
measure`, refit and re-predict after each) with the runs the loops left (at least the reserve,
:func:`front_reserve`). So each precision choice rests on measured latencies of both twins (a
measured twin faster within the noise takes the point's place, and the front is re-read), until
every front architecture is measured at every precision or the budget is spent. Architectures
within ``--latency-budget`` come first (then the most accurate), so the reserve is not spent on
front points over the budget before those under it. A choice still made against a predicted
twin says so in ``precision_choice`` (:func:`~nasctl.search.frontier.explain_precision`).

Then the close choices are decided in pairs: a front architecture whose measured twins are as
accurate within the estimator's noise (the choice rests on latency), or both stand on the front
as trade-offs (the less accurate one only for being faster), and lie within the pairing band
(:func:`~nasctl.search.frontier.pair_band`: 1.5x, the drift between separate runs on the shared
cpu) is re-measured in up to 3 alternating rounds (:func:`pair_order`,
fp32, int8, int8, fp32, fp32, int8), every run through its precision's ``DeviceBudget`` (counted
against ``--device-budget``: the reserve and what the loops left), in the same order as the
front's measurement; the choice is then the median of the per-round ratios (drift cancels within
a round), and each twin's latency the median of its paired runs. When the runs left do not
complete 2 rounds for an architecture, it is not paired (nothing is spent on it) and its
``precision_choice`` says that it rests on one measurement each; the phase stops there.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from typing import Any

from nasctl.search.accuracy.base import AccuracyEstimator, get_estimator
from nasctl.search.config import SearchConfig, SearchResult
from nasctl.search.frontier import (
    MIN_PAIRS,
    PAIRS,
    Band,
    explain_precision,
    measured_front,
    needs_pairs,
    unverified,
    usable,
    working_front,
)
from nasctl.search.objectives import Candidate, best_measured, fastest_measured
from nasctl.search.precisions import (
    accuracy_precision,
    check_precisions,
    device_options_for,
    parse_precisions,
)

MakeDevice = Callable[[str], Any]


def budgets(total: int, n: int) -> list[int]:
    """``total`` device measurements split over ``n`` precisions (the first get the rest)."""
    return [total // n + (1 if i < total % n else 0) for i in range(n)]


class PrecisionSearch:
    """One loop per precision, set up (every check done) before any of them runs."""

    def __init__(
        self,
        config: SearchConfig,
        precisions: str | list[str],
        *,
        int8_drop: Any = None,
        estimator: AccuracyEstimator | None = None,
        make_device: MakeDevice | None = None,
        space: Any = None,
    ) -> None:
        from nasctl.search.loop import SearchLoop

        self.cfg = config
        self.precisions = parse_precisions(precisions)
        base = estimator or get_estimator(config.accuracy)
        if hasattr(base, "int8_activations"):  # INT8 accuracy in the device's own form
            base.int8_activations = "uint8" if config.device == "cpu" else "int8"
        devices = {p: (make_device or self._local_device)(p) for p in self.precisions}
        check_precisions(config.device, devices)
        views = {p: base.for_precision(accuracy_precision(p), int8_drop) for p in self.precisions}
        if hasattr(base, "scores_path"):  # a training estimator's scores, kept for a resume
            config.out.mkdir(parents=True, exist_ok=True)
            base.scores_path = config.out / "accuracy_by_precision.json"
        self.estimator, self.devices, self.views, self.space = base, devices, views, space
        db = config.db or (config.out / "measurements.db")
        self.spread = latency_spread(devices.values())
        self.loops = []
        self.reserve = front_reserve(config.device_budget, len(self.precisions))
        shares = budgets(config.device_budget - self.reserve, len(self.precisions))
        for p, n in zip(self.precisions, shares, strict=True):
            sub = dataclasses.replace(
                config, out=config.out / p, precision=p, device_budget=n, db=db
            )
            self.loops.append(SearchLoop(sub, space=space, device=devices[p], estimator=views[p]))
        self._twin_priors()

    def _twin_priors(self) -> None:
        """Each later loop's latency model, unless it has a prior of its own (a trained
        predictor), starts from the first loop's (:class:`~nasctl.search.latency.twin.TwinPrior`:
        its predictions times the median measured ratio of the twins)."""
        from nasctl.search.latency.models import SurrogateLatencyModel
        from nasctl.search.latency.twin import TwinPrior

        first = self.loops[0]
        if not isinstance(first.model, SurrogateLatencyModel):
            return
        for loop in self.loops[1:]:
            if isinstance(loop.model, SurrogateLatencyModel) and loop.model.prior is None:
                loop.model.prior = TwinPrior(first.model, _ratios(loop, first))

    def _local_device(self, p: str) -> Any:
        from nasctl.profiler import get_device

        return get_device(self.cfg.device, **device_options_for(p, self.cfg.device_opts))

    @property
    def progress(self) -> Callable[..., None]:
        return self.loops[0].progress

    @progress.setter
    def progress(self, fn: Callable[..., None]) -> None:
        for p, loop in zip(self.precisions, self.loops, strict=True):
            loop.progress = _tagged(fn, p)

    def settings(self) -> dict[str, Any]:
        """The run's settings (``summary.json``): the loops' own plus the precisions."""
        return {
            **self.cfg.settings(),
            "precision": ",".join(self.precisions),
            "latency_tie_spread": self.spread,
        }

    def band(self, a: float, b: float) -> float:
        """The accuracy difference within which two precisions of one architecture tie: the
        estimator's standard error at their mean accuracy (0 when it states none)."""
        return float(self.estimator.accuracy_se((a + b) / 2.0) or 0.0)

    def run(self) -> SearchResult:
        t0 = time.perf_counter()
        ran: list[tuple[Any, float, str | None]] = []  # (loop, seconds, stopped)
        try:
            for loop in self.loops:
                t = time.perf_counter()
                stopped = loop.search()
                ran.append((loop, time.perf_counter() - t, stopped))
                if stopped:
                    break  # the device failed: the same command resumes
            stopped = next((s for _, _, s in ran if s), None)
            if stopped is None:
                stopped = self._merged_front()
            results = [loop.result(sec, None) for loop, sec, _ in ran]
        finally:
            for loop in self.loops:
                loop.close()
        result = merge(results, self.cfg, self.band, self.spread)
        result.stopped = stopped
        result.elapsed_s = time.perf_counter() - t0
        return result

    def _pairs(self) -> list[Candidate]:
        out = []
        for loop in self.loops:
            for c in loop.archive.values():
                c.precision = loop.cfg.precision
                out.append(c)
        return out

    def _merged_front(self) -> str | None:
        """The merged phase (see the module doc); returns why it stopped (the device failed),
        else None."""
        from nasctl.errors import DeviceError

        by_p = {loop.cfg.precision: loop for loop in self.loops}
        budget = self.cfg.constraints.latency_budget_ms
        while True:
            for c in self._pairs():
                settle(c)
            work = working_front(self._pairs(), self.band, self.spread)
            archs = list(dict.fromkeys(c.genotype for c in work))
            twins = {p: [g for g in archs if g not in lp.archive] for p, lp in by_p.items()}
            if any(twins.values()):  # every front architecture weighed at every precision
                for p, gs in twins.items():
                    if gs:
                        by_p[p].consider(gs)
                continue

            def open_(c: Candidate) -> bool:
                return (
                    c.measured_ms is None
                    and usable(c)
                    and c.genotype not in by_p[str(c.precision)].attempted
                    and not (budget is not None and c.low_ms is not None and c.low_ms > budget)
                )

            # front architectures within the latency budget first, then most accurate first,
            # each its front pair then its twins: the precision choice rests on measured
            # latencies of both before the next one
            order = sorted(work, key=lambda c: within_first(c, budget))
            todo = [
                x
                for c in order
                for x in (c, *(by_p[p].archive[c.genotype] for p in by_p if p != c.precision))
                if open_(x)
            ]
            left = self.cfg.device_budget - sum(lp.used for lp in self.loops)
            if todo:
                if left <= 0:
                    return None
                c = todo[0]
                try:
                    self._run(by_p[str(c.precision)], c.genotype)
                except DeviceError as e:
                    return f"device {self.cfg.device!r} failed: {e}; run again to resume"
                continue
            # every front architecture measured where it can be: the close choices in pairs
            front = {(c.genotype, str(c.precision)) for c in work}
            close = [g for g in dict.fromkeys(c.genotype for c in order) if self._close(g, front)]
            if not close:
                return None
            try:
                self._pair(close[0], left)
            except DeviceError as e:
                return f"device {self.cfg.device!r} failed: {e}; run again to resume"

    def _run(self, loop: Any, genotype: str, *, again: bool = False) -> float | None:
        """One device run of ``genotype`` through ``loop``'s budget, a run of the kept reserve
        when the loop's own share is spent; ``again``: a repeat of a measured genotype."""
        if loop.budget.left <= 0:  # a run of the kept reserve (or another loop's leftover);
            # a resumed search restores ``used`` but not earlier grants: left may be negative
            loop.budget.grant(1 - loop.budget.left)
        if again:
            return loop.budget.remeasure(genotype, "paired", self.cfg.generations)
        loop.budget.measure(genotype, "merged-front", self.cfg.generations)
        loop.budget.refit()
        loop.budget.repredict()
        return None

    def _twins(self, genotype: str) -> dict[str, Candidate]:
        """The measured, usable pairs of ``genotype``, by precision (the search's order)."""
        out = {}
        for loop in self.loops:
            c = loop.archive.get(genotype)
            if c is not None and usable(c) and c.measured_ms is not None:
                out[str(loop.cfg.precision)] = c
        return out

    def _close(self, genotype: str, front: set[tuple[str, str]] | None = None) -> bool:
        """Two of its measured twins need a paired decision (:func:`~nasctl.search.frontier.
        needs_pairs`: latencies within the pairing band, and as accurate within the
        estimator's noise, or both on the merged ``front`` (genotype, precision) as trade-offs,
        the less accurate one there only for being faster) and the budget was not found short
        for it before. A choice that accuracy alone decides spends no runs on pairs."""
        ts = list(self._twins(genotype).values())
        if any("pairing_short" in c.extra for c in ts):
            return False
        on = front or set()

        def close(a: Candidate, b: Candidate) -> bool:
            both = {(a.genotype, str(a.precision)), (b.genotype, str(b.precision))} <= on
            return needs_pairs(a, b, self.spread, self.band, trade_off=both)

        return any(close(a, b) for i, a in enumerate(ts) for b in ts[i + 1 :])

    def _pair(self, genotype: str, left: int) -> None:
        """Re-measure ``genotype``'s measured twins in alternating rounds (:func:`pair_order`:
        fp32, int8, then int8, fp32, ...) up to :data:`~nasctl.search.frontier.PAIRS` rounds,
        each run through its precision's loop budget (a run of the reserve once a loop's share
        is spent), then settle each twin's latency on its paired runs. ``left``: device runs
        the search has left. Short of runs for :data:`~nasctl.search.frontier.MIN_PAIRS`
        rounds, nothing runs and the twins are marked (``extra["pairing_short"]``): their
        choice stays on one measurement each, and says so."""
        twins = self._twins(genotype)
        rounds = affordable_rounds(twins, left)
        if rounds < MIN_PAIRS:
            why = f"not re-measured in pairs: {left} device runs left"
            for c in twins.values():
                c.extra["pairing_short"] = why
            return
        by_p = {loop.cfg.precision: loop for loop in self.loops}
        ran = 0
        for k, p in pair_order(list(twins), rounds):
            runs = twins[p].extra.setdefault("paired_ms", [])
            if len(runs) > k:  # done before an interruption (a resumed search)
                continue
            runs.append(self._run(by_p[p], genotype, again=True))
            ran += 1
        for c in twins.values():
            settle(c)
            if not ran:  # nothing left to run, yet undecided (a paired run failed)
                c.extra["pairing_short"] = "paired re-measure incomplete: a run failed"


def pair_order(precisions: list[str], rounds: int) -> list[tuple[int, str]]:
    """(round, precision) in run order: each round runs every twin once, in the search's
    precision order in even rounds and reversed in odd ones (fp32, int8, int8, fp32, fp32,
    int8: as ``bench/bench_int8_cpu.py`` does), so a drift of the machine falls on each
    precision alike."""
    return [
        (k, p)
        for k in range(rounds)
        for p in (precisions if k % 2 == 0 else list(reversed(precisions)))
    ]


def affordable_rounds(twins: dict[str, Candidate], left: int) -> int:
    """How many rounds (at most :data:`~nasctl.search.frontier.PAIRS`) the ``left`` device runs
    complete, counting the runs a resumed search already made."""
    done = [len(c.extra.get("paired_ms") or []) for c in twins.values()]
    rounds = 0
    for k in range(1, PAIRS + 1):
        need = sum(max(0, k - d) for d in done)
        if need <= max(0, left):
            rounds = k
    return rounds


def settle(c: Candidate) -> None:
    """A twin re-measured in at least :data:`~nasctl.search.frontier.MIN_PAIRS` rounds takes
    the median of its paired runs as its latency (its first, single run kept in
    ``extra["single_ms"]``)."""
    runs = [x for x in c.extra.get("paired_ms") or [] if x]
    if len(runs) >= MIN_PAIRS:
        c.extra.setdefault("single_ms", c.measured_ms)
        c.measured_ms = statistics.median(runs)


def within_first(c: Candidate, budget: float | None) -> tuple[bool, float]:
    """Sort key of the merged front's architectures: within the latency budget first (latency
    measured, else predicted), then most accurate first."""
    over = budget is not None and c.latency_ms is not None and c.latency_ms > budget
    return (over, -(c.accuracy or 0.0))


#: the share of the device budget one precision's front is expected to take, and at most how many
#: points it is expected to hold (observed: fronts of 4 points on mbconv and 6 on resnet with
#: ``--device-budget 20``, docs/benchmarks.md; a front does not grow in step with the budget)
FRONT_SHARE, FRONT_MAX = 0.2, 8
#: device runs each precision's loop keeps whatever the reserve: its bootstrap's least, the points
#: its latency model needs before it predicts (``LatencyModel.min_points``)
LOOP_MIN = 3


def front_reserve(budget: int, n: int) -> int:
    """Device measurements kept outside the per-precision loops for the merged phase: every
    architecture of the merged front measured at *each* of the ``n`` precisions, so that its
    precision choice rests on measured latencies of both twins, not on a prediction. That is
    ``n`` runs per front architecture, for an expected front of ``FRONT_SHARE`` of the budget
    (at least 1, at most ``FRONT_MAX`` points): ``n * min(8, max(1, round(0.2 * budget)))``
    (2x the expected front for two precisions), at most half the budget (the loops keep the
    rest to find the front) and never so much that a loop gets fewer than ``LOOP_MIN`` runs
    (its latency model could not predict). The one precision of a plain search needs none.
    Runs the loops leave unused go to the merged phase as well; this is the least it gets."""
    if n <= 1:
        return 0
    expected_front = min(FRONT_MAX, max(1, round(FRONT_SHARE * budget)))
    return max(0, min(n * expected_front, budget // 2, budget - n * LOOP_MIN))


def _ratios(loop: Any, source: Any) -> Callable[[], list[float]]:
    def ratios() -> list[float]:
        mine, theirs = loop.budget.measured_latencies(), source.budget.measured_latencies()
        return [ms / theirs[g] for g, ms in mine.items() if theirs.get(g)]

    return ratios


def _tagged(fn: Callable[..., None], precision: str) -> Callable[..., None]:
    def call(event: str, **info: Any) -> None:
        fn(event, precision=precision, **info)

    return call


def latency_spread(devices: Any) -> float | None:
    """The latency tie band of a search over precisions: the largest run-to-run spread
    (:func:`~nasctl.profiler.gate.run_spread`, from the stored noise gate's calibration probes)
    of its devices; None when none of them has a gate (latencies are then compared exactly)."""
    from nasctl.errors import DeviceError
    from nasctl.profiler.gate import load_gate, run_spread

    got = []
    for d in devices:
        try:
            s = run_spread(load_gate(str(getattr(d, "device_id", ""))))
        except DeviceError:  # a corrupt gate file: profile reports it; here it states no spread
            s = None
        if s is not None:
            got.append(s)
    return max(got) if got else None


def merge(
    results: list[SearchResult],
    cfg: SearchConfig,
    band: Band | None = None,
    spread: float | None = None,
) -> SearchResult:
    """One result of the per-precision loops: pairs, their frontier (measured pairs only, each
    architecture at its better precision within ``band`` and the latency tie ``spread``), the
    unverified pairs, the best measured; each frontier and unverified pair says in
    ``extra["precision_choice"]`` why it is there against its twins."""
    cands = [c for r in results for c in r.candidates]
    measurements = [
        {**m, "precision": r.candidates[0].precision if r.candidates else None}
        for r in results
        for m in r.measurements
    ]
    frontier = measured_front(cands, band, spread)
    pending = unverified(cands, band, spread)
    for c in (*frontier, *pending):
        why = explain_precision(c, cands, band, spread)
        if why:
            c.extra["precision_choice"] = why
    return SearchResult(
        best=best_measured(cands, cfg.constraints),
        fastest=fastest_measured(cands),
        frontier=frontier,
        unverified=pending,
        candidates=cands,
        device_measurements=sum(r.device_measurements for r in results),
        predictor_queries=sum(r.predictor_queries for r in results),
        candidates_scored=sum(r.candidates_scored for r in results),
        scoring_s=sum(r.scoring_s for r in results),
        elapsed_s=sum(r.elapsed_s for r in results),
        message=" ".join(dict.fromkeys(r.message for r in results if r.message)),
        stopped=next((r.stopped for r in results if r.stopped), None),
        resumed=any(r.resumed for r in results),
        measurements=measurements,
    )
