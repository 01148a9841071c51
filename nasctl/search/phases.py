"""The device-facing phases of :class:`~nasctl.search.loop.SearchLoop`, as a mixin.

:class:`DevicePhases` holds what the loop does with its device budget once candidates are scored:

* **validation rounds** (:meth:`~DevicePhases._validate`): measure, one at a time, the candidates
  with the largest expected improvement of the answer, after refining around the top ones
  (:meth:`~DevicePhases._ranked`), and refit after each;
* **secure** (:meth:`~DevicePhases._secure`): the last measurements, spent on the most accurate
  candidates predicted feasible at the configured confidence;
* **the final front** (:meth:`~DevicePhases._measure_front`): its unmeasured members, most
  accurate first, while budget remains;
* **one measurement** (:meth:`~DevicePhases._measure`): on the device or from the dataset store,
  recorded in ``search.db`` and ``measurements.jsonl``;
* **the result** (:meth:`~DevicePhases._result`): the :class:`SearchResult` built from the archive.

The mixin owns no state: it works on the attributes :class:`SearchLoop` sets up (declared below for
type checkers) and calls back into the loop's latency model helpers (``_predict``, ``_refit``,
``_add_residual``) and accuracy scoring (``_ensure_estimated``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from nasctl.errors import DeviceError, NasctlError, SearchError
from nasctl.search.config import SearchResult
from nasctl.search.objectives import (
    Candidate,
    best_measured,
    fastest_measured,
    measured_feasible,
)
from nasctl.search.pareto import front_of
from nasctl.search.selection import (
    acquisition,
    candidate_pool,
    neighbours,
    prefilter,
    secure_choice,
)

if TYPE_CHECKING:
    from nasctl.datasets.store import Store
    from nasctl.search.config import SearchConfig
    from nasctl.search.latency.models import LatencyModel
    from nasctl.search.objectives import Constraints
    from nasctl.search.state import SearchState
    from nasctl.search.strategies import Strategy
    from nasctl.spaces.base import SearchSpace


class DevicePhases:
    """Device measurement, validation and the result of a :class:`SearchLoop` run."""

    TEMPER_MAX = 8.0  # widest doubt (interval factor) before a validation round gives up

    # set up by SearchLoop.__init__
    cfg: SearchConfig
    cons: Constraints
    z: float
    space: SearchSpace
    device: Any
    device_id: str
    store: Store
    state: SearchState
    model: LatencyModel
    strategy: Strategy
    progress: Callable[..., None]
    resumed: bool
    archive: dict[str, Candidate]
    attempted: set[str]
    used: int
    scored: int
    scoring_s: float
    _raw: dict[str, tuple[float, float, float]]
    _temper: float
    _log: IO[str]

    if TYPE_CHECKING:  # provided by SearchLoop

        def _predict(self, cands: list[Candidate]) -> None: ...
        def _refit(self) -> None: ...
        def _add_residual(self, pred: tuple | None, measured_ms: float | None) -> None: ...
        def _ensure_estimated(self, genotypes: list[str], generation: int) -> list[Candidate]: ...

    # -- validation and final phases -----------------------------------------------------------
    def _secure(self, gen: int) -> None:
        """The last ``secure`` measurements, one at a time: the safest improvement of the best
        measured answer (:func:`~nasctl.search.selection.secure_choice`: the most accurate
        candidate predicted feasible at the configured confidence, else the one most likely
        feasible). Expected improvement keeps chasing accurate candidates well over the budget
        (each a small chance, many of them); this cashes in the likely improvements before the
        budget ends."""
        assert self.cons.latency_budget_ms is not None
        self.progress("phase", name="secure", total=self.cfg.device_budget - self.used)
        while self.used < self.cfg.device_budget:
            pool, _ = self._ranked(gen)
            i = secure_choice(pool, self.cons, self.z)
            if i is None:
                return
            self._measure(pool[i].genotype, "secure", gen)
            self._refit()

    def _measured(self) -> list[Candidate]:
        return [self.archive[g] for g in self.attempted if self.archive[g].measured_ms is not None]

    def _validate(self, quota: int, phase: str, gen: int) -> None:
        spread = [c.accuracy for c in self.archive.values() if c.accuracy is not None]
        # below this the chance of an improvement is negligible (about 1e-6 of the accuracy range)
        min_score = 1e-6 * (max(spread) - min(spread)) if len(spread) > 1 else 0.0
        start = self.used  # the quota counts device runs (stored measurements are free)
        self.progress("phase", name=phase, total=quota)
        try:
            while self.used - start < quota and self.used < self.cfg.device_budget:
                pool, score = self._ranked(gen)
                if not pool:
                    break
                i = int(np.argmax(score))
                if not score[i] > min_score:
                    # nothing can improve the answer *if the model is right*; while budget is
                    # left, doubt it: wider intervals (up to TEMPER_MAX times) before giving up
                    if self._temper >= self.TEMPER_MAX:
                        break
                    self._temper *= 2.0
                    continue
                self._measure(pool[i].genotype, phase, gen)
                self._refit()
        finally:
            self._temper = 1.0

    def _ranked(self, gen: int) -> tuple[list[Candidate], np.ndarray]:
        """Pool and acquisition scores, after refining around the top candidates."""
        seen_top: set[str] = set()
        for it in range(6):
            measured = self._measured()
            pool = prefilter(
                candidate_pool(self.archive, self.attempted, self.cons), measured, self.cons
            )
            if not pool:
                return pool, np.zeros(0)
            self._predict(pool)
            score = acquisition(pool, measured, self.cons, self.z)
            order = np.argsort(-score, kind="stable")[: self.cfg.refine_top]
            top = [pool[i].genotype for i in order if score[i] > 0]
            # and the best measured answers so far: their neighbours sit at the budget boundary
            top += [c.genotype for c in self._best_measured(self.cfg.refine_top)]
            new_top = [g for g in top if g not in seen_top]
            if not new_top or it == 5 or self.cfg.refine_top <= 0 or self.cfg.refine_cap <= 0:
                return pool, score
            seen_top.update(new_top)
            rng = self.strategy.rng(gen, f"refine{len(self.attempted)}-{it}")
            fresh = list(
                dict.fromkeys(
                    n
                    for g in new_top
                    for n in neighbours(self.space, g, rng)
                    if n not in self.archive
                )
            )[: self.cfg.refine_cap]
            if not fresh:
                return pool, score
            t = time.perf_counter()
            self._ensure_estimated(fresh, generation=gen)
            self.scored += len(fresh)
            self.scoring_s += time.perf_counter() - t
        return pool, score

    def _best_measured(self, k: int) -> list[Candidate]:
        """The ``k`` best measured candidates that meet every constraint."""
        ok = [c for c in self._measured() if measured_feasible(c, self.cons)]
        if self.cons.min_accuracy is not None:
            return sorted(ok, key=lambda c: c.measured_ms or 0.0)[:k]
        return sorted(ok, key=lambda c: -(c.accuracy or 0.0))[:k]

    def _measure_front(self) -> None:
        """Measure the final front, most accurate first, until every member of the front (as
        re-predicted after each refit) is measured or the device budget is spent."""
        while True:
            front = sorted(self._front(), key=lambda c: -(c.accuracy or 0.0))
            budget = self.cons.latency_budget_ms
            todo = [
                c
                for c in front
                if c.genotype not in self.attempted
                and not (budget is not None and c.low_ms is not None and c.low_ms > budget)
            ]
            if not todo or self.used >= self.cfg.device_budget:
                return
            for c in todo:
                if self.used >= self.cfg.device_budget:
                    break
                self._measure(c.genotype, "front", self.cfg.generations)
            self._refit()

    def _front(self, cands: list[Candidate] | None = None) -> list[Candidate]:
        """Non-dominated candidates by accuracy and latency: measured where measured, else
        predicted."""
        if cands is None:
            cands = list(self.archive.values())
        scored = [c for c in cands if not c.failed and c.latency_ms is not None]
        lat = [c.measured_ms if c.measured_ms is not None else c.latency_ms for c in scored]
        idx = front_of([c.accuracy or 0.0 for c in scored], lat)
        return [scored[i] for i in idx]

    # -- the device ----------------------------------------------------------------------------
    def _measure(self, genotype: str, phase: str, gen: int) -> Candidate:
        """Measure one genotype (or reuse the dataset store's record); DeviceError propagates."""
        from nasctl.records import MeasurementRequest

        c = self.archive.setdefault(genotype, Candidate(genotype, generation=gen))
        graph = self.space.to_graph(genotype)
        h = self.store.add_architecture(graph)
        reuse = self.cfg.reuse_stored and getattr(self.device, "reuses_by_hash", True)
        m = self.store.get_measurement(h, self.device_id) if reuse else None
        from_store = m is not None and m.status in ("ok", "noisy")
        if not from_store:
            if self.used >= self.cfg.device_budget:
                raise SearchError("device budget spent")  # callers check first; defensive
            req = MeasurementRequest(
                arch_hash=h,
                device=self.cfg.device,
                graph_json=graph.to_json(),
                space=self.space.name,
                genotype=genotype,
                per_layer=False,
            )
            self.used += 1
            try:
                m = self.device.measure(req)
            except NasctlError as e:
                if isinstance(e, DeviceError):
                    raise
                raise DeviceError(str(e)) from e
            self.store.add_measurement(m)  # ignored (kept once) if the same graph is stored
        assert m is not None
        pred = self._raw.get(genotype) if c.mean_ms is not None else None
        ok = m.status in ("ok", "noisy") and m.median_ms is not None
        c.measured_ms = float(m.median_ms) if ok and m.median_ms is not None else None
        self._add_residual(pred, c.measured_ms)
        self.attempted.add(genotype)
        self.state.add_measured(
            genotype,
            phase=phase,
            generation=gen,
            status=m.status,
            measured_ms=c.measured_ms,
            error=m.error,
            pred=pred,
            from_store=from_store,
        )
        rec = {
            "genotype": genotype,
            "phase": phase,
            "generation": gen,
            "accuracy": c.accuracy,
            "predicted_ms": pred[0] if pred else None,
            "low_ms": pred[1] if pred else None,
            "high_ms": pred[2] if pred else None,
            "from_store": from_store,
            "measurement": m.to_dict(),
        }
        self._log.write(json.dumps(rec, default=str) + "\n")
        self._log.flush()
        self.progress(
            "measure",
            genotype=genotype,
            measured_ms=c.measured_ms,
            predicted=pred,
            used=self.used,
            phase=phase,
        )
        return c

    # -- result --------------------------------------------------------------------------------
    def _result(self, elapsed: float, stopped: str | None) -> SearchResult:
        cands = list(self.archive.values())
        if self.cfg.use_predictor and self.model is not None:
            try:
                self._predict([c for c in cands if not c.failed])
            except NasctlError:
                pass  # no model yet (device lost during bootstrap): report measured only
        best = best_measured(cands, self.cons)
        fastest = fastest_measured(cands)
        frontier = self._front(cands)
        message = ""
        b = self.cons.latency_budget_ms
        if best is None and fastest is not None and b is not None:
            message = (
                f"no measured architecture meets the latency budget of {b:g} ms; the "
                f"fastest found is {fastest.measured_ms:.4g} ms ({fastest.genotype})"
            )
        elif best is None:
            message = "no architecture was measured successfully"
        queries = int(getattr(self.model, "queries", 0)) if self.cfg.use_predictor else 0
        measurements = self.state.measured()
        self.state.close()
        self.store.close()
        return SearchResult(
            best=best,
            fastest=fastest,
            frontier=frontier,
            candidates=cands,
            device_measurements=self.used,
            predictor_queries=queries,
            candidates_scored=self.scored,
            scoring_s=self.scoring_s,
            elapsed_s=elapsed,
            message=message,
            stopped=stopped,
            resumed=self.resumed,
            measurements=measurements,
        )
