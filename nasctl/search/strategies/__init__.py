"""Search strategies: NSGA-II (Optuna's sampler for categorical spaces, a plain implementation on
the space's mutate/crossover otherwise) and random search."""

from __future__ import annotations

from nasctl.errors import SearchError
from nasctl.search.strategies.base import Strategy, Told
from nasctl.search.strategies.encoding import CategoricalEncoding, categorical_encoding
from nasctl.spaces.base import SearchSpace

STRATEGIES = ("nsga2", "nsga2-plain", "random")


def make_strategy(name: str, space: SearchSpace, population: int, seed: int = 0) -> Strategy:
    """``nsga2`` (Optuna when the space is categorical, else the plain NSGA-II),
    ``nsga2-plain`` or ``random``."""
    from nasctl.search.strategies.nsga2 import NSGA2
    from nasctl.search.strategies.random_search import RandomSearch

    if name == "random":
        return RandomSearch(space, population, seed)
    if name == "nsga2-plain" or (name == "nsga2" and categorical_encoding(space) is None):
        return NSGA2(space, population, seed)
    if name == "nsga2":
        from nasctl.search.strategies.optuna_nsga2 import OptunaNSGA2

        return OptunaNSGA2(space, population, seed)
    raise SearchError(f"unknown strategy {name!r}; expected one of {', '.join(STRATEGIES)}")


__all__ = [
    "STRATEGIES",
    "CategoricalEncoding",
    "Strategy",
    "Told",
    "categorical_encoding",
    "make_strategy",
]
