"""A search over (architecture, precision) pairs (issue #15.3): ``nasctl search --precision
fp32,int8``.

Each precision gets its own search loop (:class:`~nasctl.search.loop.SearchLoop`) in
``<out>/<precision>/``: the device measures at that precision (its own device id, so its own
latency model and stored rows, e.g. ``cpu-ort1.32-int8-t1``), and the accuracy estimator scores
at that precision (:meth:`~nasctl.search.accuracy.base.AccuracyEstimator.for_precision`:
``train:digits`` trains each architecture once and evaluates its FP32 and Q/DQ INT8 models with
ONNX Runtime; a ``python:`` function receives the precision; a table needs an INT8 accuracy-drop
model). 20 % of the device budget is kept for the merged frontier, the rest split evenly between
the precisions (the first ones get the remainder); all loops share one measurement store
(``<out>/measurements.db`` unless ``db``).

The answer merges the loops: every candidate is an (architecture, precision) pair, and the
frontier is the non-dominated set of all pairs (accuracy up, latency down; measured where
measured). Per architecture this keeps the better precision: a pair dominated by the same
architecture at another precision (INT8 slower and no more accurate) is dropped; when neither
dominates (INT8 faster but less accurate) both are different trade-offs and each stays if
nothing else dominates it. Each loop measures its own front on the device at its precision; then
each unmeasured pair of the merged front is measured at its precision with the budget left, so
the merged front is measured as far as the budget allows (``frontier_measured``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from nasctl.search.accuracy.base import AccuracyEstimator, get_estimator
from nasctl.search.budget import front
from nasctl.search.config import SearchConfig, SearchResult
from nasctl.search.objectives import best_measured, fastest_measured
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
        self.loops = []
        self.reserve = front_reserve(config.device_budget, len(self.precisions))
        shares = budgets(config.device_budget - self.reserve, len(self.precisions))
        for p, n in zip(self.precisions, shares, strict=True):
            sub = dataclasses.replace(
                config, out=config.out / p, precision=p, device_budget=n, db=db
            )
            self.loops.append(SearchLoop(sub, space=space, device=devices[p], estimator=views[p]))

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
        return {**self.cfg.settings(), "precision": ",".join(self.precisions)}

    def run(self) -> SearchResult:
        results = []
        for loop in self.loops:
            results.append(loop.run())
            if results[-1].stopped:
                break  # the device failed: the same command resumes
        result = merge(results, self.cfg)
        if result.stopped is None:
            self._measure_merged_front(result)
        return result

    def _measure_merged_front(self, result: SearchResult) -> None:
        """Measure the merged frontier's unmeasured pairs (most accurate first), each on the
        device at its precision, with the budget the loops left (at least the reserve)."""
        from nasctl.errors import DeviceError
        from nasctl.search.loop import SearchLoop

        by_p = {loop.cfg.precision: loop.cfg for loop in self.loops}
        while result.device_measurements < self.cfg.device_budget:
            todo = sorted(
                (c for c in result.frontier if c.measured_ms is None),
                key=lambda c: -(c.accuracy or 0.0),
            )
            if not todo:
                return
            c = todo[0]
            p = str(c.precision)
            sub = dataclasses.replace(
                by_p[p], device_budget=by_p[p].device_budget + self.cfg.device_budget
            )
            dev, est = self.devices[p], self.views[p]
            loop = SearchLoop(sub, space=self.space, device=dev, estimator=est)
            try:
                loop.budget.used = loop.state.device_measurements()
                before = loop.budget.used
                got = loop.budget.measure(c.genotype, "front", self.cfg.generations)
                result.device_measurements += loop.budget.used - before
            except DeviceError as e:
                result.stopped = f"device {self.cfg.device!r} failed: {e}; run again to resume"
                return
            finally:
                loop.state.close()
                loop.store.close()
                loop._log.close()
            c.measured_ms = got.measured_ms
            if c.measured_ms is None:  # failed on the device: no longer a front point
                c.error, c.accuracy = "failed on the device", None
            result.measurements = [*result.measurements, {**loop_last(sub), "precision": p}]
            result.frontier = front(result.candidates)
            result.best = best_measured(result.candidates, self.cfg.constraints)
            result.fastest = fastest_measured(result.candidates)


def front_reserve(budget: int, n: int) -> int:
    """Device measurements kept for the merged frontier (20% of the budget with several
    precisions: each loop measures its own front, but not every point of it is on the merged
    one, and the merged one may hold points a loop had no budget left for)."""
    return round(0.2 * budget) if n > 1 else 0


def loop_last(cfg: SearchConfig) -> dict[str, Any]:
    """The last measurement recorded in a loop's ``search.db``."""
    from nasctl.search.state import SearchState

    state = SearchState(cfg.out / "search.db")
    try:
        rows = state.measured()
    finally:
        state.close()
    return rows[-1] if rows else {}


def _tagged(fn: Callable[..., None], precision: str) -> Callable[..., None]:
    def call(event: str, **info: Any) -> None:
        fn(event, precision=precision, **info)

    return call


def merge(results: list[SearchResult], cfg: SearchConfig) -> SearchResult:
    """One result of the per-precision loops: pairs, their frontier, the best measured."""
    cands = [c for r in results for c in r.candidates]
    measurements = [
        {**m, "precision": r.candidates[0].precision if r.candidates else None}
        for r in results
        for m in r.measurements
    ]
    return SearchResult(
        best=best_measured(cands, cfg.constraints),
        fastest=fastest_measured(cands),
        frontier=front(cands),
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
