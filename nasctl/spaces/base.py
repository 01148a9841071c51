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

    def proxy_graph(self, genotype: str, num_classes: int) -> Graph | None:
        """``genotype``'s graph at this space's proxy-training size (``proxy_space``), or None
        when the space declares none. Spaces may bound its compute per genotype."""
        small = self.proxy_space(num_classes)
        return None if small is None else small.to_graph(genotype)

    def validate(self, genotype: str) -> str:
        """Parse and re-format; raise :class:`SpaceError` if invalid."""
        return self.format(self.parse(genotype))


class ImageSpace(SearchSpace):
    """An image space whose genotypes name their input resolution (mbconv, resnet), with a
    proxy-training size: ``PROXY_RESOLUTION`` px and every channel count times
    ``PROXY_CHANNEL_SCALE``, so block structure and relative widths are kept.

    Compute bound: a genotype whose proxy graph exceeds ``PROXY_MAX_MACS`` multiply-accumulates
    per image is rebuilt with the channel scale stepped down (x ``PROXY_SCALE_STEP`` at a time,
    at most ``PROXY_MAX_STEPS`` times) until it fits, so no candidate's proxy training costs
    more than about the cap's worth of compute. Deterministic per genotype; the genotypes below
    the cap (most of each space) keep the plain proxy scale.
    """

    RESOLUTIONS: tuple[int, ...] = ()
    PROXY_RESOLUTION = 32
    PROXY_CHANNEL_SCALE = 1.0
    PROXY_MAX_MACS: float | None = None
    PROXY_SCALE_STEP = 0.8
    PROXY_MAX_STEPS = 6

    def __init__(
        self,
        num_classes: int = 1000,
        resolutions: Sequence[int] | None = None,
        *,
        input_resolution: int | None = None,
        channel_scale: float = 1.0,
    ) -> None:
        """``input_resolution`` (px) replaces every genotype's resolution and ``channel_scale``
        multiplies every channel count: both only for :meth:`proxy_space`."""
        self.num_classes = num_classes
        self.resolutions = check_resolutions(
            self.name, self.RESOLUTIONS if resolutions is None else tuple(resolutions)
        )
        self.input_resolution, self.channel_scale = input_resolution, channel_scale

    def proxy_space(self, num_classes: int, channel_scale: float | None = None) -> ImageSpace:
        scale = self.PROXY_CHANNEL_SCALE if channel_scale is None else channel_scale
        return type(self)(
            num_classes,
            self.resolutions,
            input_resolution=self.PROXY_RESOLUTION,
            channel_scale=scale,
        )

    def proxy_graph(self, genotype: str, num_classes: int) -> Graph:
        from nasctl.arch.costs import graph_costs

        scale = self.PROXY_CHANNEL_SCALE
        graph = self.proxy_space(num_classes, scale).to_graph(genotype)
        max_macs = self.PROXY_MAX_MACS
        for _ in range(self.PROXY_MAX_STEPS if max_macs else 0):
            if max_macs is None or graph_costs(graph).total["macs"] <= max_macs:
                break
            scale *= self.PROXY_SCALE_STEP
            graph = self.proxy_space(num_classes, scale).to_graph(genotype)
        graph.meta["channel_scale"] = scale
        return graph


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
