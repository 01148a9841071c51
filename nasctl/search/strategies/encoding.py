"""Categorical view of a search space: a fixed list of named choices per genotype.

Spaces whose genotype is a fixed-length tuple of categorical choices (nb201: six edges of five
ops) get a :class:`CategoricalEncoding`, used by the Optuna NSGA-II sampler (one categorical
parameter per position) and by the one-hot latency features. A space can offer its own by
defining ``choices() -> list[tuple[str, list[str]]]`` with ``parse`` returning the chosen values
in that order and ``format`` accepting them back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nasctl.spaces.base import SearchSpace


@dataclass(frozen=True)
class CategoricalEncoding:
    """Named categorical positions of a space and the genotype <-> values mapping."""

    space: SearchSpace
    names: tuple[str, ...]
    choices: tuple[tuple[str, ...], ...]

    def values(self, genotype: str) -> tuple[str, ...]:
        """The chosen value at each position."""
        return tuple(str(v) for v in self.space.parse(genotype))

    def genotype(self, values: Sequence[str]) -> str:
        """The genotype of one value per position."""
        return self.space.format(tuple(values))

    @property
    def width(self) -> int:
        """Length of the one-hot vector."""
        return sum(len(c) for c in self.choices)

    def one_hot(self, genotypes: Sequence[str]) -> np.ndarray:
        """``(n, width)`` float32 one-hot matrix."""
        offsets = np.cumsum([0, *[len(c) for c in self.choices[:-1]]])
        index = [{v: i for i, v in enumerate(c)} for c in self.choices]
        out = np.zeros((len(genotypes), self.width), dtype=np.float32)
        for r, g in enumerate(genotypes):
            for k, v in enumerate(self.values(g)):
                out[r, offsets[k] + index[k][v]] = 1.0
        return out


def categorical_encoding(space: SearchSpace) -> CategoricalEncoding | None:
    """The space's categorical encoding, or None for structured genotypes (mbconv, resnet)."""
    choices_fn = getattr(space, "choices", None)
    if callable(choices_fn):
        pairs = list(choices_fn())
        return CategoricalEncoding(
            space, tuple(n for n, _ in pairs), tuple(tuple(str(v) for v in c) for _, c in pairs)
        )
    if space.name == "nb201":
        from nasctl.spaces.nb201 import EDGES, OPS

        names = tuple(f"edge_{s}_{t}" for s, t in EDGES)
        return CategoricalEncoding(space, names, tuple(tuple(OPS) for _ in EDGES))
    return None
