"""The search-space contract and registry.

A space maps compact genotype strings to architecture graphs. Every registered space is run through
the same parametrized test suite (``tests/test_spaces.py``)::

    @register_space
    class MySpace(SearchSpace):
        name = "myspace"
        ...

A user's own space is loaded with ``get_space("package.module:SPACE")`` where ``SPACE`` is a
:class:`SearchSpace` subclass or instance.
"""

from __future__ import annotations

import importlib
import random
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from nasctl.arch.graph import Graph
from nasctl.errors import SpaceError

if TYPE_CHECKING:
    from nasctl.arch.arrays import GraphArrays


class SearchSpace(ABC):
    """A family of architectures addressed by genotype strings.

    Contract:
      * ``sample(rng)`` returns a valid genotype; same rng state, same genotype.
      * ``parse(genotype)`` raises :class:`SpaceError` (one clear line) for anything invalid and
        returns a structured value that ``format`` turns back into the identical string.
      * ``mutate``/``crossover`` return valid genotypes of this space.
      * ``to_graph(genotype)`` returns a validated :class:`Graph` whose ``meta`` has ``space`` and
        ``genotype``.
    """

    name: str = ""
    description: str = ""
    #: a genotype is one layer, not a network: its rows train per-layer models only
    single_layer: bool = False

    @abstractmethod
    def sample(self, rng: random.Random) -> str: ...

    @abstractmethod
    def parse(self, genotype: str) -> Any: ...

    @abstractmethod
    def format(self, value: Any) -> str: ...

    @abstractmethod
    def mutate(self, genotype: str, rng: random.Random) -> str: ...

    @abstractmethod
    def crossover(self, a: str, b: str, rng: random.Random) -> str: ...

    @abstractmethod
    def to_graph(self, genotype: str) -> Graph: ...

    def graph_arrays(self, genotypes: Sequence[str]) -> GraphArrays:
        """Node arrays of the genotypes' graphs, exactly ``arrays.graph_arrays([self.to_graph(g)
        ...], keep_ids=False)``. Spaces override it to skip building graphs (built-in spaces
        assemble cached pieces); invalid genotypes raise :class:`SpaceError` as ``to_graph`` does.
        """
        from nasctl.arch import arrays

        return arrays.graph_arrays([self.to_graph(g) for g in genotypes], keep_ids=False)

    def size(self) -> int | None:
        """Number of distinct genotypes, when known and finite."""
        return None

    def enumerate(self) -> list[str] | None:
        """All genotypes in canonical order, for small spaces (e.g. nb201); else None."""
        return None

    def structure_counts(self, genotype: str) -> Sequence[float] | None:
        """Extra per-genotype counts a latency surrogate may use beside the choice counts (e.g.
        NB201: live edges per op, additions, zero maps); None when the space has none."""
        return None

    def proxy_space(self, num_classes: int) -> SearchSpace | None:
        """The space that builds this space's genotypes at its proxy-training size, with a
        ``num_classes``-way head: the same block structure at a reduced input resolution and
        channel width, small enough to train on a CPU in seconds (``train:*`` accuracy
        estimators). None (the default) when the space declares none."""
        return None

    def validate(self, genotype: str) -> str:
        """Parse and re-format; raise :class:`SpaceError` if invalid."""
        return self.format(self.parse(genotype))


T = TypeVar("T")


def other_choice(rng: random.Random, choices: Sequence[T], current: T) -> T:
    """A random element of ``choices`` different from ``current`` (``current`` if none is).

    Helper for ``mutate`` implementations, so that a mutation changes something.
    """
    rest = [c for c in choices if c != current]
    return rng.choice(rest) if rest else current


def check_resolutions(space: str, resolutions: tuple[int, ...] | list[int]) -> tuple[int, ...]:
    """Sorted input resolutions (px) of an image space; each a multiple of 16 and >= 32."""
    out = tuple(sorted(int(r) for r in resolutions))
    if not out or any(r < 32 or r % 16 for r in out):
        raise SpaceError(
            f"{space} resolutions {resolutions} invalid; expected multiples of 16, >= 32"
        )
    return out


_REGISTRY: dict[str, type[SearchSpace]] = {}


def register_space(cls: type[SearchSpace]) -> type[SearchSpace]:
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    _REGISTRY[cls.name] = cls
    return cls


def list_spaces() -> list[str]:
    return sorted(_REGISTRY)


def get_space(name: str) -> SearchSpace:
    """A registered space by name, or a user's space as ``package.module:ATTR``."""
    if name in _REGISTRY:
        return _REGISTRY[name]()
    if ":" in name:
        mod_name, _, attr = name.partition(":")
        try:
            mod = importlib.import_module(mod_name)
            obj = getattr(mod, attr)
        except (ImportError, AttributeError) as e:
            raise SpaceError(f"cannot load search space {name!r}: {e}") from e
        if isinstance(obj, type) and issubclass(obj, SearchSpace):
            return obj()
        if isinstance(obj, SearchSpace):
            return obj
        raise SpaceError(f"{name!r} is not a SearchSpace subclass or instance")
    raise SpaceError(
        f"unknown search space {name!r}; known: {', '.join(sorted(_REGISTRY))} "
        "(or a user space as package.module:SPACE)"
    )
