"""Plain NSGA-II over any space, using the space's own ``mutate``/``crossover``.

Used for structured genotypes (mbconv, resnet, fbnet: variable depth) that do not fit Optuna's
fixed categorical parameters. Constraint handling as in Deb et al.: feasible before infeasible,
infeasible by violation; then non-dominated rank, then crowding distance.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nasctl.search.pareto import crowding_distance, non_dominated_sort
from nasctl.search.strategies.base import Strategy, Told


def survivors(pool: Sequence[Told], k: int) -> list[Told]:
    """The ``k`` best of ``pool``: failed last, infeasible by violation, feasible by
    non-dominated rank then crowding distance (larger first)."""
    ok = [t for t in pool if t.values is not None]
    feas = [t for t in ok if t.violation <= 0]
    infeas = sorted((t for t in ok if t.violation > 0), key=lambda t: t.violation)
    chosen: list[Told] = []
    if feas:
        pts = np.array([t.values for t in feas], dtype=float)
        for front in non_dominated_sort(pts):
            if len(chosen) + len(front) <= k:
                chosen.extend(feas[i] for i in front)
                continue
            cd = crowding_distance(pts[front])
            order = np.argsort(-cd, kind="stable")
            chosen.extend(feas[front[i]] for i in order[: k - len(chosen)])
            break
    chosen.extend(infeas[: k - len(chosen)])
    failed = [t for t in pool if t.values is None]
    chosen.extend(failed[: k - len(chosen)])
    return chosen


class NSGA2(Strategy):
    """NSGA-II with binary tournaments, the space's crossover (probability ``p_crossover``) and
    mutation (always; a child equal to a seen genotype is mutated again, up to 10 times)."""

    name = "nsga2-plain"

    def __init__(self, *args, p_crossover: float = 0.9, **kwargs) -> None:  # noqa: ANN002, ANN003
        super().__init__(*args, **kwargs)
        self.p_crossover = p_crossover
        self.parents: list[Told] = []
        self._rank: dict[str, int] = {}
        self._seen: set[str] = set()

    def ask(self, generation: int) -> list[str]:
        rng = self.rng(generation)
        if not self.parents:
            out: list[str] = []
            for _ in range(self.population):
                g = self.space.sample(rng)
                for _try in range(20):
                    if g not in out:
                        break
                    g = self.space.sample(rng)
                out.append(g)
            return out
        children: list[str] = []
        for _ in range(self.population):
            a, b = self._tournament(rng), self._tournament(rng)
            child = self.space.crossover(a, b, rng) if rng.random() < self.p_crossover else a
            child = self.space.mutate(child, rng)
            for _try in range(10):
                if child not in self._seen and child not in children:
                    break
                child = self.space.mutate(child, rng)
            children.append(child)
        return children

    def _tournament(self, rng) -> str:  # noqa: ANN001 - random.Random
        a, b = rng.choice(self.parents), rng.choice(self.parents)
        return a.genotype if self._rank[a.genotype] <= self._rank[b.genotype] else b.genotype

    def tell(self, generation: int, results: Sequence[Told]) -> None:
        self._seen.update(r.genotype for r in results)
        pool = {t.genotype: t for t in [*self.parents, *results]}  # dedupe, latest wins
        self.parents = survivors(list(pool.values()), self.population)
        self._rank = {t.genotype: i for i, t in enumerate(self.parents)}
