"""NSGA-II through Optuna's :class:`optuna.samplers.NSGAIISampler` with ask/tell.

Each position of a :class:`~nasctl.search.strategies.encoding.CategoricalEncoding` is one
categorical parameter. The study lives in memory (Optuna's RDB storage costs about 10 ms a trial,
too slow for 10,000 candidates a minute); the search loop's own state database is the record, and
:meth:`OptunaNSGA2.restore` re-adds the recorded trials with their generation numbers. The sampler
is re-seeded from ``(seed, generation)`` at every generation so a resumed run proposes exactly
what an uninterrupted one would. Constraint violations are set with ``Trial.set_constraint``.
Measured speed of Optuna's stock sampler (ask/tell alone) here: about 30,000 trials/min for the
first 3,000 trials, falling to 12,000/min by 10,000, because it recounts generations and
intersects search spaces over all trials at each ask; the subclass below is told both, which
removes that growth (the evolutionary operators are Optuna's own).
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Sequence
from typing import Any

from nasctl.errors import SearchError
from nasctl.search.strategies.base import Strategy, Told
from nasctl.search.strategies.encoding import categorical_encoding


@functools.cache
def _fast_sampler_class() -> type:
    """NSGAIISampler that is told its generation and search space instead of re-deriving them
    from all trials at every ask (O(n) each, which made 3,000 asks take 30 s here). Selection,
    crossover and mutation are Optuna's, unchanged."""
    from optuna.samplers import NSGAIISampler

    class FastNSGAIISampler(NSGAIISampler):
        def __init__(self, *, generation: int, search_space: dict, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._generation = generation
            self._space = dict(search_space)

        def infer_relative_search_space(self, study: Any, trial: Any) -> dict:
            return dict(self._space)

        def get_trial_generation(self, study: Any, trial: Any) -> int:
            key = self._get_generation_key()
            gen = trial.system_attrs.get(key)
            if gen is None:
                gen = self._generation
                study._storage.set_trial_system_attr(trial._trial_id, key, gen)
            return int(gen)

    return FastNSGAIISampler


class OptunaNSGA2(Strategy):
    """Optuna's NSGA-II on a categorical space (crossover: Optuna's default uniform)."""

    name = "nsga2"

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003 - same as Strategy
        super().__init__(*args, **kwargs)
        import optuna

        enc = categorical_encoding(self.space)
        if enc is None:
            raise SearchError(
                f"space {self.space.name!r} has no categorical encoding for Optuna; "
                "use strategy='nsga2-plain'"
            )
        self.enc = enc
        self._optuna = optuna
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.dists = {
            n: optuna.distributions.CategoricalDistribution(list(c))
            for n, c in zip(enc.names, enc.choices, strict=False)
        }
        self.study = optuna.create_study(directions=["maximize", "minimize"])
        self._pending: dict[int, list] = {}

    def _sampler(self, generation: int):  # -> NSGAIISampler
        seed = zlib.crc32(f"{self.seed}|{generation}".encode())
        return _fast_sampler_class()(
            generation=generation,
            search_space=self.dists,
            population_size=self.population,
            seed=seed,
        )

    def ask(self, generation: int) -> list[str]:
        self.study.sampler = self._sampler(generation)
        trials, out = [], []
        for _ in range(self.population):
            t = self.study.ask()
            values = [
                t.suggest_categorical(n, list(c))
                for n, c in zip(self.enc.names, self.enc.choices, strict=False)
            ]
            trials.append(t)
            out.append(self.enc.genotype(values))
        self._pending[generation] = trials
        return out

    def tell(self, generation: int, results: Sequence[Told]) -> None:
        from optuna.trial import TrialState

        trials = self._pending.pop(generation, None)
        if trials is None or len(trials) != len(results):
            raise SearchError(f"tell for generation {generation} without a matching ask")
        for t, r in zip(trials, results, strict=False):
            t.set_constraint("violation", float(r.violation))
            if r.values is None:
                self.study.tell(t, state=TrialState.FAIL)
            else:
                self.study.tell(t, list(r.values))
