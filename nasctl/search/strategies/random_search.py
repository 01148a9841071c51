"""Random search: each generation samples ``population`` genotypes uniformly from the space."""

from __future__ import annotations

from collections.abc import Sequence

from nasctl.search.strategies.base import Strategy, Told


class RandomSearch(Strategy):
    """Uniform sampling; avoids repeating a genotype while fresh ones are easy to find."""

    name = "random"

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003 - same as Strategy
        super().__init__(*args, **kwargs)
        self._seen: set[str] = set()

    def ask(self, generation: int) -> list[str]:
        rng = self.rng(generation)
        out: list[str] = []
        for _ in range(self.population):
            g = self.space.sample(rng)
            for _try in range(20):
                if g not in self._seen and g not in out:
                    break
                g = self.space.sample(rng)
            out.append(g)
        return out

    def tell(self, generation: int, results: Sequence[Told]) -> None:
        self._seen.update(r.genotype for r in results)
