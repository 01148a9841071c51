"""The predictor-first search loop with periodic real-device validation.

One run (:class:`SearchLoop`):

1. **Bootstrap** (no ``predictor_dir``): measure a random sample (``bootstrap`` genotypes, by
   default 20% of the device budget, 3 to 20) and fit the loop's latency model on it.
2. **Generations**: the strategy proposes ``population`` genotypes; each new one gets its accuracy
   from the estimator (an estimator that raises marks the candidate failed; the search goes on) and
   its latency from the model (mean and interval), all in one batch; objectives go back to the
   strategy with the constraint violation (latency counted by the interval's low end, so
   "possibly feasible" candidates stay in the race).
3. **Validation** every ``validate_every`` generations: measure on the device, one at a time, the
   candidates with the largest expected improvement of the answer (those that would change the
   front at the budget or whose interval straddles it, see :mod:`nasctl.search.selection`), refit
   the model after each, log predicted vs measured. Rounds spend at most ``validation_share`` of
   the budget left after the bootstrap.
4. **Final**: the same selection with the remaining budget but the last ``secure`` (20% of the
   device budget) measurements, which go to the safest improvements: the most accurate candidate
   predicted feasible at the configured confidence, else the most likely feasible one
   (:meth:`DeviceBudget.secure`), then the unmeasured members of the final front (most
   accurate first) while budget remains. With ``score_all`` (enumerable
   spaces only: nb201) every genotype of the space is scored by the predictor first, so the
   final choice does not depend on the evolution having proposed the exact cell.

Without ``use_predictor`` every proposed candidate is measured (the baseline) until the budget is
spent. Everything is recorded as it happens (``search.db``, the dataset store,
``measurements.jsonl``); a device that fails mid-search stops the run cleanly
(:attr:`SearchResult.stopped`) and running
the same search again resumes it without measuring anything twice.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nasctl.errors import DeviceError, NasctlError, SearchError
from nasctl.search.accuracy.base import AccuracyEstimator, get_estimator
from nasctl.search.budget import DeviceBudget
from nasctl.search.config import SearchConfig, SearchResult
from nasctl.search.frontier import measured_front, unverified
from nasctl.search.latency.intervals import LatencyIntervals
from nasctl.search.latency.models import (
    LatencyModel,
    PredictorPrior,
    SurrogateLatencyModel,
    z_of,
)
from nasctl.search.memory import MemoryEstimator
from nasctl.search.objectives import (
    Candidate,
    best_measured,
    fastest_measured,
    graph_cost_fields,
)
from nasctl.search.state import SearchState
from nasctl.search.strategies import Told, make_strategy
from nasctl.spaces.base import SearchSpace, get_space

Progress = Callable[..., None]
BOOTSTRAP_MODELS = ("gp", "gp+nasctl")


class SearchLoop:
    """Runs one search; collaborators can be injected (tests, benchmarks).

    The loop proposes and scores candidates; spending the device measurements (validation
    rounds, securing the best, the final front, one measurement) is asked of its
    :class:`~nasctl.search.budget.DeviceBudget`, and the latency model's calibrated intervals
    live in :class:`~nasctl.search.latency.intervals.LatencyIntervals`."""

    SCORE_ALL_MAX = 100_000  # auto score_all up to this many genotypes

    def __init__(
        self,
        config: SearchConfig,
        *,
        space: SearchSpace | None = None,
        device: Any = None,
        estimator: AccuracyEstimator | None = None,
        model: LatencyModel | None = None,
        progress: Progress | None = None,
        memory: MemoryEstimator | None = None,
    ) -> None:
        cfg = self.cfg = config
        if cfg.device_budget < 0:
            raise SearchError(f"device_budget must be >= 0; got {cfg.device_budget}")
        if cfg.generations < 0 or cfg.validate_every < 1:
            raise SearchError("generations must be >= 0 and validate_every >= 1")
        if cfg.bootstrap_model not in BOOTSTRAP_MODELS:
            raise SearchError(
                f"bootstrap_model must be one of {', '.join(BOOTSTRAP_MODELS)}; "
                f"got {cfg.bootstrap_model!r}"
            )
        self.space = space or get_space(cfg.space)
        self.estimator = estimator or get_estimator(cfg.accuracy)
        self.estimator.check_space(self.space)
        est_cap = self.estimator.refine_cap  # slow estimators (train:*) refine sparingly
        if est_cap is not None and cfg.refine_cap > est_cap:
            cfg = self.cfg = dataclasses.replace(cfg, refine_cap=est_cap)
        if device is None:
            from nasctl.profiler import get_device
            from nasctl.search.precisions import device_options_for

            opts = cfg.device_opts
            if cfg.precision != "fp32":
                opts = device_options_for(cfg.precision, opts)
            device = get_device(cfg.device, **opts)
        self.device = device
        self.cons = cfg.constraints
        self.z = z_of(self.cons.confidence)
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.state = SearchState(self.out / "search.db")
        self.resumed = self.state.check_settings(cfg.settings())
        from nasctl.datasets.store import Store

        self.store = Store(cfg.db or (self.out / "measurements.db"))
        self.device_id = self.device.device_id
        self.model = model if model is not None else self._default_model()
        if memory is None and self.cons.max_memory_mb is not None:
            memory = MemoryEstimator.from_predictor_dir(cfg.predictor_dir)
        self.memory = memory or MemoryEstimator()
        selftrain = None
        if cfg.use_predictor and not cfg.predictor_dir and cfg.bootstrap_model == "gp+nasctl":
            from nasctl.search.latency.selftrained import SelfTrainedPrior

            selftrain = SelfTrainedPrior(self.space, self.device_id, seed=cfg.seed)
        self.latency = LatencyIntervals(
            self.model,
            self.z,
            stored=self._stored_latencies() if cfg.use_predictor and cfg.reuse_stored else {},
            selftrain=selftrain,
            fit_without_data=bool(cfg.predictor_dir),
            enabled=cfg.use_predictor,
        )
        self.strategy = make_strategy(cfg.strategy, self.space, cfg.population, cfg.seed)
        self.score_all = self._auto_score_all()
        self.archive: dict[str, Candidate] = {}
        self.attempted: set[str] = set()
        self.scored = 0
        self.scoring_s = 0.0
        self._log = (self.out / "measurements.jsonl").open("a")
        self.budget = DeviceBudget(
            cfg,
            space=self.space,
            device=self.device,
            store=self.store,
            state=self.state,
            latency=self.latency,
            archive=self.archive,
            attempted=self.attempted,
            strategy=self.strategy,
            score=self._score,
            progress=progress or (lambda *a, **k: None),
            log=self._log,
        )

    @property
    def progress(self) -> Progress:
        """``progress(event, **info)``, called as the search goes (settable before ``run``)."""
        return self.budget.progress

    @progress.setter
    def progress(self, fn: Progress) -> None:
        self.budget.progress = fn

    @property
    def used(self) -> int:
        """Device measurements used so far."""
        return self.budget.used

    def _stored_latencies(self) -> dict[str, float]:
        """Latencies already in the store for this device and space (e.g. from `nasctl
        profile`): the latency model learns from them too, at no device cost."""
        from nasctl.errors import StoreError

        if self.device_id not in self.store.device_ids():
            return {}
        try:
            rows = self.store.training_rows(self.device_id, space=self.space.name)
        except StoreError:
            return {}
        return {
            r.genotype: float(r.latency_ms)
            for r in rows
            if r.genotype and r.latency_ms and r.latency_ms > 0
        }

    def _default_model(self) -> LatencyModel:
        prior = None
        if self.cfg.predictor_dir:
            prior = PredictorPrior(self.cfg.predictor_dir, self.space, self.device_id)
        return SurrogateLatencyModel(
            self.space,
            self.cons.confidence,
            prior=prior,
            seed=self.cfg.seed,
            focus_ms=self.cons.latency_budget_ms if self.cfg.focus else None,
        )

    # -- public --------------------------------------------------------------------------------
    def run(self) -> SearchResult:
        """Search, then the result; the loop's files are closed at the end."""
        t0 = time.perf_counter()
        try:
            stopped = self.search()
            return self.result(time.perf_counter() - t0, stopped)
        finally:
            self.close()

    def search(self) -> str | None:
        """Run (or resume) the search itself; returns why it stopped early (the device failed;
        everything measured is kept), else None. The loop stays open: :meth:`result`,
        :meth:`consider` and ``budget.measure`` may follow, then :meth:`close`."""
        try:
            self._restore()
            self.progress(
                "start",
                generations=self.cfg.generations,
                budget=self.cfg.device_budget,
                used=self.used,
                resumed=self.resumed,
            )
            if self.cfg.use_predictor:
                self._run_predictor_first()
            else:
                self._run_measure_all()
        except DeviceError as e:
            return (
                f"device {self.cfg.device!r} failed: {e}; everything measured is kept, "
                "run the same command again to resume"
            )
        return None

    def consider(self, genotypes: list[str]) -> list[Candidate]:
        """Score (estimator) and predict (latency model) ``genotypes`` after the search, no
        device time: e.g. an architecture another precision's loop put on a merged front."""
        cands = self._ensure_estimated(genotypes, generation=self.cfg.generations)
        if self.cfg.use_predictor and self.model is not None:
            self._predict([c for c in cands if not c.failed and c.measured_ms is None])
        return cands

    def close(self) -> None:
        """Close the loop's files (``measurements.jsonl``, ``search.db``, the dataset store)."""
        if not self._log.closed:
            self._log.close()
        self.state.close()
        self.store.close()

    # -- resume --------------------------------------------------------------------------------
    def _restore(self) -> None:
        for g, (acc, err, params, mem, mem_lo, mem_hi) in self.state.estimates().items():
            self.archive[g] = Candidate(
                g,
                accuracy=acc,
                error=err,
                params=params,
                memory_mb=mem,
                memory_low_mb=mem_lo,
                memory_high_mb=mem_hi,
            )
        for r in self.state.measured():
            c = self.archive.setdefault(r["genotype"], Candidate(r["genotype"]))
            c.measured_ms = r["measured_ms"]
            c.measured_memory_mb = r.get("memory_mb")
            if r["status"] not in ("ok", "noisy"):
                c.extra["device_error"] = r.get("error") or r["status"]
            self.attempted.add(r["genotype"])
            if r.get("pred_ms") is not None:
                self.latency.add_residual((r["pred_ms"], r["low_ms"], r["high_ms"]), c.measured_ms)
        for r in self.state.repeats():  # paired re-measures, in round order
            if r["genotype"] in self.archive:
                self.archive[r["genotype"]].extra.setdefault("paired_ms", []).append(
                    r["measured_ms"]
                )
        self.budget.used = self.state.device_measurements()
        history = self.state.history()
        for gen, results in history:
            for t in results:
                if t.genotype in self.archive:
                    self.archive[t.genotype].generation = min(
                        self.archive[t.genotype].generation, gen
                    )
        self.strategy.restore(history)
        self.next_gen = len(history)
        self._refit()

    # -- modes ---------------------------------------------------------------------------------
    def _run_predictor_first(self) -> None:
        cfg = self.cfg
        if not cfg.predictor_dir:
            self._bootstrap()
        start_used = self.state.get_meta("start_used")
        if start_used is None:
            start_used = self.used
            self.state.set_meta("start_used", start_used)
        rounds = [
            g
            for g in range(cfg.generations)
            if (g + 1) % cfg.validate_every == 0 and g + 1 < cfg.generations
        ]
        share = int(cfg.validation_share * (cfg.device_budget - start_used))
        last = self.next_gen - 1
        if last in rounds and not self.state.get_meta(f"validated:{last}"):
            self._round(last, rounds, share, start_used)  # interrupted round: finish it
        for gen in range(self.next_gen, cfg.generations):
            self._generation(gen)
            if gen in rounds:
                self._round(gen, rounds, share, start_used)
        if self.score_all:
            self._score_all()
        budgeted = self.cons.latency_budget_ms is not None and self.cons.min_accuracy is None
        secure = min(cfg.n_secure(), cfg.device_budget - self.used) if budgeted else 0
        final = cfg.device_budget - self.used - secure
        self.budget.validate(final, "final", cfg.generations, keep_front=True)
        if secure:
            self.budget.secure(cfg.generations, keep_front=True)
            left = cfg.device_budget - self.used
            self.budget.validate(left, "final", cfg.generations, keep_front=True)
        self.budget.measure_front()

    def _auto_score_all(self) -> bool:
        """``score_all`` as configured; on auto (None), on when the estimator is cheap, no
        constraint needs graph costs, and the space is enumerable with at most
        ``SCORE_ALL_MAX`` genotypes (nb201: 15,625, scored in about a second). The evolution
        alone leaves accurate cells far from its population unscored: on gold_6226 at p25 the
        optimum (a sparse cell, 20% under the budget) was never proposed in 4 of 10 seeds."""
        if self.cfg.score_all is not None:
            return bool(self.cfg.score_all)
        size = self.space.size()
        return bool(
            self.cfg.use_predictor
            and getattr(self.estimator, "cheap", False)
            and not self.cons.needs_costs  # params/memory need every graph built: slow
            and size is not None
            and size <= self.SCORE_ALL_MAX
        )

    def _score_all(self) -> None:
        """Score every genotype of an enumerable space (nb201: 15,625) before the final phase."""
        every = self.space.enumerate()
        if every is None:
            raise SearchError(f"score_all needs an enumerable space; {self.space.name!r} is not")
        self._score([g for g in every if g not in self.archive], self.cfg.generations)

    def _score(self, fresh: list[str], gen: int) -> None:
        """Estimate the accuracy of new genotypes, counted as scored (score-all, refinement)."""
        t = time.perf_counter()
        self._ensure_estimated(fresh, generation=gen)
        self.scored += len(fresh)
        self.scoring_s += time.perf_counter() - t

    def _round(self, gen: int, rounds: list[int], share: int, start_used: int) -> None:
        """One validation round; its quota is fixed (and recorded) when it first starts."""
        key = f"quota:{gen}"
        quota = self.state.get_meta(key)
        if quota is None:
            left_rounds = len([r for r in rounds if r >= gen])
            spent = self.used - start_used
            quota = max(0, (share - spent) // max(left_rounds, 1))
            self.state.set_meta(key, quota)
        done = sum(  # device runs: measurements found in the dataset store are free
            1
            for m in self.state.measured()
            if m["phase"] == "validate" and m["generation"] == gen and not m["from_store"]
        )
        self.budget.validate(quota - done, "validate", gen)
        self.state.set_meta(f"validated:{gen}", True)

    def _run_measure_all(self) -> None:
        for gen in range(self.next_gen, self.cfg.generations):
            if self.used >= self.cfg.device_budget:
                break
            self._generation(gen)

    # -- steps ---------------------------------------------------------------------------------
    def _bootstrap(self) -> None:
        n = self.cfg.n_bootstrap()
        self._start_from_transfer(n)
        ok = [g for g in self.attempted if self.archive[g].measured_ms is not None]
        ok += [
            g for g in self.latency.stored if g not in self.attempted
        ]  # stored: free training data
        rng = self.strategy.rng(-1, "bootstrap")
        tries = 0
        self.progress("phase", name="bootstrap", total=n)
        while len(ok) < n and self.used < self.cfg.device_budget and tries < 50 * n:
            tries += 1
            g = self.space.sample(rng)
            if g in self.attempted:
                continue
            c = self._ensure_estimated([g], generation=-1)[0]
            if self.budget.measure(c.genotype, "bootstrap", -1).measured_ms is not None:
                ok.append(g)
        self._refit()

    def _start_from_transfer(self, n: int) -> None:
        """A new device with other devices in the store: informative picks and a transferred
        prior (:mod:`nasctl.search.transfer_start`)."""
        if getattr(self.model, "prior", True) is not None:
            return  # a model of its own, or a prior already (a trained predictor)
        from nasctl.search.transfer_start import transfer_start

        measured = {g: c.measured_ms for g, c in self.archive.items() if c.measured_ms}
        prior = transfer_start(
            self.store,
            self.space,
            self.device_id,
            want=n,
            have={**self.latency.stored, **measured},
            seed=self.cfg.seed,
            measure=lambda g: (
                self.budget.measure(
                    self._ensure_estimated([g], generation=-1)[0].genotype, "bootstrap", -1
                ).measured_ms
            ),
            budget_left=lambda: self.cfg.device_budget - self.used,
            progress=self.progress,
        )
        if prior is not None:
            self.model.prior = prior  # type: ignore[attr-defined]

    def _generation(self, gen: int) -> None:
        t = time.perf_counter()
        genotypes = self.strategy.ask(gen)
        cands = self._ensure_estimated(genotypes, generation=gen)
        unique = [self.archive[g] for g in dict.fromkeys(genotypes)]
        if self.cfg.use_predictor:
            self._predict([c for c in unique if not c.failed and c.measured_ms is None])
        else:
            for c in unique:
                if c.genotype not in self.attempted and not c.failed:
                    if self.used >= self.cfg.device_budget:
                        break
                    self.budget.measure(c.genotype, "search", gen)
        told = [self._told(c) for c in cands]
        self.strategy.tell(gen, told)
        self.state.add_generation(gen, told)
        self.scored += len(cands)
        self.scoring_s += time.perf_counter() - t
        self.progress(
            "generation",
            generation=gen,
            scored=self.scored,
            used=self.used,
            best=best_measured(list(self.archive.values()), self.cons),
        )

    def _told(self, c: Candidate) -> Told:
        lat = c.measured_ms if c.measured_ms is not None else c.mean_ms
        if c.failed or lat is None:
            return Told(c.genotype, None, 0.0)
        low = c.measured_ms if c.measured_ms is not None else (c.low_ms or lat)
        return Told(c.genotype, (float(c.accuracy or 0.0), float(lat)), self._violation(c, low))

    def _violation(self, c: Candidate, low_ms: float) -> float:
        cons, v = self.cons, 0.0
        if cons.latency_budget_ms is not None:
            v += max(0.0, low_ms - cons.latency_budget_ms) / cons.latency_budget_ms
        if cons.min_accuracy is not None:
            v += max(0.0, cons.min_accuracy - float(c.accuracy or 0.0)) / max(
                1.0, abs(cons.min_accuracy)
            )
        if cons.max_params is not None and c.params is not None:
            v += max(0.0, c.params - cons.max_params) / cons.max_params
        if cons.max_memory_mb is not None:  # measured, else the interval's lower end
            mem = c.measured_memory_mb if c.measured_memory_mb is not None else c.memory_low_mb
            if mem is not None:
                v += max(0.0, mem - cons.max_memory_mb) / cons.max_memory_mb
        return v

    def _ensure_estimated(self, genotypes: list[str], generation: int) -> list[Candidate]:
        rows = []
        graphs: dict[str, Any] = {}  # for the memory model, predicted in one batch
        for g in dict.fromkeys(genotypes):
            if g in self.archive and (
                self.archive[g].accuracy is not None or self.archive[g].error is not None
            ):
                continue
            c = self.archive.setdefault(g, Candidate(g, generation=generation))
            try:
                graph = (
                    self.space.to_graph(g)
                    if (self.estimator.needs_graph or self.cons.needs_costs)
                    else None
                )
                if self.cons.max_params is not None:
                    c.params = graph_cost_fields(graph)[0]
                c.accuracy = float(self.estimator.estimate(g, graph, self.space))
                if not math.isfinite(c.accuracy):
                    raise SearchError(f"estimator returned {c.accuracy}")
                if self.cons.max_memory_mb is not None:
                    graphs[g] = graph
            except Exception as e:  # noqa: BLE001 - any estimator failure marks the candidate
                c.accuracy, c.error = None, f"{type(e).__name__}: {e}".splitlines()[0][:300]
        for g, est in zip(graphs, self.memory.estimate_many(list(graphs.values())), strict=True):
            c = self.archive[g]
            c.memory_mb, c.memory_low_mb, c.memory_high_mb = est
        for g in dict.fromkeys(genotypes):
            c = self.archive[g]
            rows.append(
                (g, c.accuracy, c.error, c.params, c.memory_mb, c.memory_low_mb, c.memory_high_mb)
            )
        if rows:
            self.state.add_estimates(rows)
        return [self.archive[g] for g in genotypes]

    def _predict(self, cands: list[Candidate]) -> None:
        """Predict latency and widened interval (:meth:`LatencyIntervals.predict`)."""
        self.latency.predict(cands)

    def _widen(self) -> float:
        return self.latency.widen()

    def _refit(self) -> None:
        self.budget.refit()

    # -- result --------------------------------------------------------------------------------
    def result(self, elapsed: float, stopped: str | None) -> SearchResult:
        """What the search found so far: its reported front holds measured candidates only;
        the predicted-only members of its working front are listed apart (``unverified``)."""
        cands = list(self.archive.values())
        for c in cands:
            c.precision = self.cfg.precision
        if self.cfg.use_predictor and self.model is not None:
            try:
                self._predict([c for c in cands if not c.failed])
            except NasctlError:
                pass  # no model yet (device lost during bootstrap): report measured only
        best = best_measured(cands, self.cons)
        fastest = fastest_measured(cands)
        message = ""
        b = self.cons.latency_budget_ms
        if best is None and fastest is not None and b is not None:
            message = (
                f"no measured architecture meets the latency budget of {b:g} ms; the "
                f"fastest found is {fastest.measured_ms:.4g} ms ({fastest.genotype})"
            )
        elif best is None:
            message = "no architecture was measured successfully"
        if self.budget.journaled:
            from nasctl.datasets.journal import journal_path

            message = " ".join(
                m
                for m in (
                    message,
                    f"the dataset store stayed locked: {self.budget.journaled} measurements are "
                    f"kept in {journal_path(self.store.path)} and stored on its next open",
                )
                if m
            )
        queries = int(getattr(self.model, "queries", 0)) if self.cfg.use_predictor else 0
        measurements = self.state.measured()
        return SearchResult(
            best=best,
            fastest=fastest,
            frontier=measured_front(cands),
            unverified=unverified(cands),
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


def run_search(config: SearchConfig, **kwargs: Any) -> SearchResult:
    """Run (or resume) a search; see :class:`SearchLoop`."""
    return SearchLoop(config, **kwargs).run()
