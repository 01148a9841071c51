"""The device budget of a search: what the loop spends its device measurements on.

:class:`DeviceBudget` owns the count of device measurements and the phases that spend them once
candidates are scored:

* **validation rounds** (:meth:`~DeviceBudget.validate`): measure, one at a time, the candidates
  with the largest expected improvement of the answer, after refining around the top ones
  (:meth:`~DeviceBudget.ranked`), and refit after each;
* **secure** (:meth:`~DeviceBudget.secure`): the last measurements (20% of the device budget),
  spent on the safest improvements: the most accurate candidate predicted feasible at the
  configured confidence, else the one most likely feasible;
* **the final front** (:meth:`~DeviceBudget.measure_front`): its unmeasured members, most accurate
  first, while budget remains. The final phase keeps device runs for it: with ``keep_front``,
  validation and secure stop measuring anything else once the runs left would no longer cover
  the unmeasured members of the current front (:meth:`~DeviceBudget.front_todo`; a measurement
  of a front member pays for itself). What the budget still cannot cover is not on the reported
  front but listed apart as unverified (:mod:`nasctl.search.frontier`);
* **one measurement** (:meth:`~DeviceBudget.measure`): on the device through the one
  measure-and-store path (:func:`nasctl.datasets.measure.measure_and_store`) or from the dataset
  store, recorded in ``search.db`` and ``measurements.jsonl``. :meth:`~DeviceBudget.grant` raises
  the budget's ceiling (a search over precisions measures its merged front with the runs it kept
  outside the loops).

It is handed everything it works on: the latency model with its intervals
(:class:`~nasctl.search.latency.intervals.LatencyIntervals`), the dataset store, the search state,
the shared archive of candidates and the set of attempted genotypes (the loop's, by reference), a
``score(genotypes, generation)`` callable that gives new genotypes their accuracy (used when
refining), and a ``progress(event, **info)`` callable. It never calls into the loop otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import IO, Any

import numpy as np

from nasctl.datasets.measure import measure, measure_and_store
from nasctl.datasets.store import Store
from nasctl.errors import SearchError, StoreLockedError
from nasctl.records import MeasurementRequest
from nasctl.search.config import SearchConfig
from nasctl.search.frontier import working_front
from nasctl.search.latency.intervals import LatencyIntervals
from nasctl.search.memory import measured_memory_mib
from nasctl.search.objectives import Candidate, measured_feasible
from nasctl.search.precisions import measure_precision
from nasctl.search.selection import (
    acquisition,
    candidate_pool,
    neighbours,
    prefilter,
    secure_choice,
)
from nasctl.search.state import SearchState
from nasctl.search.strategies import Strategy
from nasctl.spaces.base import SearchSpace

Score = Callable[[list[str], int], Any]
Progress = Callable[..., None]


class DeviceBudget:
    """Spends a search's device measurements (see the module doc).

    ``used`` counts device runs (measurements found in the dataset store are free), ``limit``
    is the most it may use (the configured device budget, raised by :meth:`grant`);
    ``journaled`` those the locked store could not take (kept in its journal).
    """

    TEMPER_MAX = 8.0  # widest doubt (interval factor) before a validation round gives up

    def __init__(
        self,
        cfg: SearchConfig,
        *,
        space: SearchSpace,
        device: Any,
        store: Store,
        state: SearchState,
        latency: LatencyIntervals,
        archive: dict[str, Candidate],
        attempted: set[str],
        strategy: Strategy,
        score: Score,
        progress: Progress,
        log: IO[str],
    ) -> None:
        self.cfg = cfg
        self.cons = cfg.constraints
        self.space = space
        self.device = device
        self.device_id: str = device.device_id
        self.store = store
        self.state = state
        self.latency = latency
        self.archive = archive
        self.attempted = attempted
        self.strategy = strategy
        self.score = score
        self.progress = progress
        self.log = log
        self.used = 0
        self.limit = cfg.device_budget
        self.journaled = 0

    @property
    def left(self) -> int:
        return self.limit - self.used

    def grant(self, n: int) -> None:
        """Allow ``n`` more device runs than the configured budget."""
        self.limit += max(0, n)

    # -- what is known -------------------------------------------------------------------------
    def measured(self) -> list[Candidate]:
        return [self.archive[g] for g in self.attempted if self.archive[g].measured_ms is not None]

    def measured_latencies(self) -> dict[str, float]:
        """``{genotype: measured ms}`` of every attempted genotype that measured."""
        out = {}
        for g in self.attempted:
            ms = self.archive[g].measured_ms
            if ms is not None:
                out[g] = ms
        return out

    def refit(self) -> None:
        self.latency.refit(self.measured_latencies())

    def best_measured(self, k: int) -> list[Candidate]:
        """The ``k`` best measured candidates that meet every constraint."""
        ok = [c for c in self.measured() if measured_feasible(c, self.cons)]
        if self.cons.min_accuracy is not None:
            return sorted(ok, key=lambda c: c.measured_ms or 0.0)[:k]
        return sorted(ok, key=lambda c: -(c.accuracy or 0.0))[:k]

    # -- phases --------------------------------------------------------------------------------
    def secure(self, gen: int, *, keep_front: bool = False) -> None:
        """The last ``secure`` measurements, one at a time: the safest improvement of the best
        measured answer (:func:`~nasctl.search.selection.secure_choice`: the most accurate
        candidate predicted feasible at the configured confidence, else the one most likely
        feasible). Expected improvement keeps chasing accurate candidates well over the budget
        (each a small chance, many of them); this cashes in the likely improvements before the
        budget ends. ``keep_front``: stop where :meth:`affords` says no."""
        assert self.cons.latency_budget_ms is not None
        self.progress("phase", name="secure", total=self.left)
        while self.used < self.limit:
            pool, _ = self.ranked(gen)
            i = secure_choice(pool, self.cons, self.latency.z)
            if i is None or (keep_front and not self.affords(pool[i].genotype)):
                return
            self.measure(pool[i].genotype, "secure", gen)
            self.refit()

    def front_todo(self, *, predict: bool = True) -> list[Candidate]:
        """The unmeasured members of the working front (:func:`~nasctl.search.frontier.
        working_front`) that :meth:`measure_front` would measure, most accurate first: all but
        those predicted over the latency budget at high confidence (interval's low end over it).
        ``predict``: re-predict every unmeasured candidate first (else their latest
        predictions, whichever model made them)."""
        if predict:
            self.repredict()
        members = working_front(list(self.archive.values()))
        budget = self.cons.latency_budget_ms
        todo = [
            c
            for c in members
            if c.genotype not in self.attempted
            and not (budget is not None and c.low_ms is not None and c.low_ms > budget)
        ]
        return sorted(todo, key=lambda c: -(c.accuracy or 0.0))

    def repredict(self) -> None:
        """Predict every scored, unmeasured candidate with the current latency model."""
        if self.latency.model is not None:
            self.latency.predict(
                [c for c in self.archive.values() if not c.failed and c.measured_ms is None]
            )

    def affords(self, genotype: str) -> bool:
        """Whether measuring ``genotype`` leaves enough device runs to measure the current
        working front: it is one of the front's unmeasured members (the run pays for itself),
        or more runs are left than the front still needs. Every unmeasured candidate is
        re-predicted first (the same model gives the same front, so a resumed search decides as
        an uninterrupted one)."""
        todo = self.front_todo()
        return genotype in {c.genotype for c in todo} or self.left > len(todo)

    def validate(self, quota: int, phase: str, gen: int, *, keep_front: bool = False) -> None:
        """Up to ``quota`` device runs on the candidates with the largest expected improvement,
        refitting after each. ``keep_front`` (the final phase): stop where :meth:`affords` says
        no, so that the runs left cover the front."""
        spread = [c.accuracy for c in self.archive.values() if c.accuracy is not None]
        # below this the chance of an improvement is negligible (about 1e-6 of the accuracy range)
        min_score = 1e-6 * (max(spread) - min(spread)) if len(spread) > 1 else 0.0
        start = self.used  # the quota counts device runs (stored measurements are free)
        self.progress("phase", name=phase, total=quota)
        try:
            while self.used - start < quota and self.used < self.limit:
                pool, score = self.ranked(gen)
                if not pool:
                    break
                i = int(np.argmax(score))
                if not score[i] > min_score:
                    # nothing can improve the answer *if the model is right*; while budget is
                    # left, doubt it: wider intervals (up to TEMPER_MAX times) before giving up
                    if self.latency.temper >= self.TEMPER_MAX:
                        break
                    self.latency.temper *= 2.0
                    continue
                if keep_front and not self.affords(pool[i].genotype):
                    break
                self.measure(pool[i].genotype, phase, gen)
                self.refit()
        finally:
            self.latency.temper = 1.0

    def ranked(self, gen: int) -> tuple[list[Candidate], np.ndarray]:
        """Pool and acquisition scores, after refining around the top candidates."""
        z = self.latency.z
        seen_top: set[str] = set()
        for it in range(6):
            measured = self.measured()
            pool = prefilter(
                candidate_pool(self.archive, self.attempted, self.cons), measured, self.cons
            )
            if not pool:
                return pool, np.zeros(0)
            self.latency.predict(pool)
            score = acquisition(pool, measured, self.cons, z)
            order = np.argsort(-score, kind="stable")[: self.cfg.refine_top]
            top = [pool[i].genotype for i in order if score[i] > 0]
            # and the best measured answers so far: their neighbours sit at the budget boundary
            top += [c.genotype for c in self.best_measured(self.cfg.refine_top)]
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
            self.score(fresh, gen)
        return pool, score

    def measure_front(self) -> None:
        """Measure the final front, most accurate first, until every member of the front (as
        re-predicted after each refit) is measured or the device budget is spent. Every scored
        candidate is re-predicted first, as the result is (a refit moves predictions: a
        candidate dominated under the last validation round's model may be on the final one's
        front). What the budget does not reach stays unmeasured and is reported apart, as
        unverified."""
        self.progress("phase", name="front", total=self.left)
        while True:
            todo = self.front_todo()
            if not todo or self.used >= self.limit:
                return
            for c in todo:
                if self.used >= self.limit:
                    break
                self.measure(c.genotype, "front", self.cfg.generations)
            self.refit()

    # -- one measurement -----------------------------------------------------------------------
    def _request(self, genotype: str, graph: Any, arch_hash: str) -> MeasurementRequest:
        """The whole-graph request of one genotype at the search's precision."""
        return MeasurementRequest(
            arch_hash=arch_hash,
            device=self.cfg.device,
            graph_json=graph.to_json(),
            space=self.space.name,
            genotype=genotype,
            per_layer=False,
            precision=measure_precision(self.cfg.precision),
        )

    def remeasure(self, genotype: str, phase: str, gen: int) -> float | None:
        """One more device run of a measured genotype (a paired re-measure): always on the
        device, never from the store, and counted in ``used``. The run is kept like any other:
        ``search.db`` (``repeats``), ``measurements.jsonl``, and the dataset store's row of its
        key (:meth:`~nasctl.datasets.store.Store.add_repeat`). Returns its median ms (None when
        the model failed); the candidate's ``measured_ms`` is the caller's to settle.
        DeviceError propagates."""
        if self.used >= self.limit:
            raise SearchError("device budget spent")  # callers check first; defensive
        graph = self.space.to_graph(genotype)
        req = self._request(genotype, graph, self.store.add_architecture(graph))
        self.used += 1
        m = measure(self.device, req)
        try:
            self.store.add_repeat(m)
        except StoreLockedError:  # the run still counts and decides; the dataset misses it
            self.progress("journal", genotype=genotype, path="(repeat not stored: store locked)")
        ok = m.status in ("ok", "noisy") and m.median_ms is not None
        ms = float(m.median_ms) if ok and m.median_ms is not None else None
        self.state.add_repeat(
            genotype, phase=phase, generation=gen, status=m.status, measured_ms=ms, error=m.error
        )
        c = self.archive.get(genotype)
        rec = {
            "genotype": genotype,
            "phase": phase,
            "generation": gen,
            "repeat": True,
            "accuracy": c.accuracy if c is not None else None,
            "from_store": False,
            "measurement": m.to_dict(),
        }
        self.log.write(json.dumps(rec, default=str) + "\n")
        self.log.flush()
        self.progress(
            "measure", genotype=genotype, measured_ms=ms, predicted=None, used=self.used,
            phase=phase,
        )  # fmt: skip
        return ms

    def measure(self, genotype: str, phase: str, gen: int) -> Candidate:
        """Measure one genotype (or reuse the dataset store's record); DeviceError propagates."""
        c = self.archive.setdefault(genotype, Candidate(genotype, generation=gen))
        graph = self.space.to_graph(genotype)
        h = self.store.add_architecture(graph)
        # a device that answers per genotype (replay tables) is never answered from another
        # genotype's record of the same graph
        reuse = self.cfg.reuse_stored and getattr(self.device, "reuses_by_hash", True)
        m = self.store.get_measurement(h, self.device_id) if reuse else None
        from_store = m is not None and m.status in ("ok", "noisy")
        if not from_store:
            if self.used >= self.limit:
                raise SearchError("device budget spent")  # callers check first; defensive
            req = self._request(genotype, graph, h)
            self.used += 1
            # a model's failure is a failed record; an answer for another graph, a DeviceError
            out = measure_and_store(self.store, self.device, req)
            m = out.measurement
            if out.journal is not None:
                self.journaled += 1
                self.progress("journal", genotype=genotype, path=str(out.journal))
        assert m is not None
        pred = self.latency.raw.get(genotype) if c.mean_ms is not None else None
        ok = m.status in ("ok", "noisy") and m.median_ms is not None
        c.measured_ms = float(m.median_ms) if ok and m.median_ms is not None else None
        c.measured_memory_mb = measured_memory_mib(m.extra) if ok else None
        if not ok:  # the device could not run it: on no front, measured or predicted
            c.extra["device_error"] = m.error or m.status
        self.latency.add_residual(pred, c.measured_ms)
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
            memory_mb=c.measured_memory_mb,
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
            "memory_mb": [c.memory_mb, c.memory_low_mb, c.memory_high_mb],
            "measured_memory_mb": c.measured_memory_mb,
            "measurement": m.to_dict(),
        }
        self.log.write(json.dumps(rec, default=str) + "\n")
        self.log.flush()
        self.progress(
            "measure",
            genotype=genotype,
            measured_ms=c.measured_ms,
            predicted=pred,
            used=self.used,
            phase=phase,
        )
        return c
