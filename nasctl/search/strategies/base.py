"""The search-strategy contract: generations of genotypes, ask/tell, seeded and replayable.

A strategy proposes one generation at a time (``ask(generation)``) and is told the objectives of
every genotype it proposed (``tell``): ``(accuracy, latency_ms)`` (accuracy maximized, latency
minimized), or None for a failed candidate, plus a constraint violation (0 = feasible; larger =
worse). Everything random derives from ``(seed, generation)``, so the same seed gives the same
search, and :meth:`Strategy.restore` rebuilds the state from the recorded history of a stopped
run: resuming continues exactly as an uninterrupted run would.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from nasctl.spaces.base import SearchSpace

Objectives = tuple[float, float]  # (accuracy, latency_ms)


@dataclass(frozen=True)
class Told:
    """One evaluated proposal: genotype, objectives (None = failed) and constraint violation."""

    genotype: str
    values: Objectives | None
    violation: float = 0.0


class Strategy(ABC):
    """Proposes genotypes by generation. Subclasses implement ``ask``/``tell``."""

    name = ""

    def __init__(self, space: SearchSpace, population: int, seed: int = 0) -> None:
        if population < 2:
            from nasctl.errors import SearchError

            raise SearchError(f"population must be >= 2; got {population}")
        self.space = space
        self.population = population
        self.seed = seed

    def rng(self, generation: int, salt: str = "") -> random.Random:
        """The random stream of one generation (independent of anything else)."""
        return random.Random(f"{self.name}|{self.seed}|{generation}|{salt}")

    @abstractmethod
    def ask(self, generation: int) -> list[str]:
        """The genotypes of ``generation`` (``population`` of them; may repeat earlier ones)."""

    @abstractmethod
    def tell(self, generation: int, results: Sequence[Told]) -> None:
        """Objectives of every genotype asked in ``generation``, in ask order."""

    def restore(self, history: Sequence[tuple[int, Sequence[Told]]]) -> None:
        """Replay recorded generations (ask + tell) to rebuild the state after a restart."""
        for gen, results in history:
            asked = self.ask(gen)
            if [r.genotype for r in results] != asked:
                from nasctl.errors import SearchError

                raise SearchError(
                    f"cannot resume: generation {gen} of the stored search differs from what "
                    f"this strategy proposes (different seed, space or nasctl version?)"
                )
            self.tell(gen, results)
