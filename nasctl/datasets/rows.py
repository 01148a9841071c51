"""Rows the store hands out: training examples and per-layer times (milliseconds)."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from nasctl.arch.graph import Graph
from nasctl.errors import StoreError
from nasctl.records import LayerTiming


@dataclass
class TrainingRow:
    """One measured architecture on one device: a predictor's training example.

    ``latency_ms`` is the median whole-graph latency; ``layers`` the per-layer times (empty when
    the device reported none). ``graph`` is built on first access (from stored JSON, or from
    ``space``/``genotype`` for imported rows).
    """

    arch_hash: str
    latency_ms: float
    space: str | None
    genotype: str | None
    model: str | None
    layers: list[LayerTiming]
    std_ms: float | None
    cv: float | None
    status: str = "ok"
    precision: str = "fp32"
    batch: int = 1
    graph_json: str | None = field(default=None, repr=False)
    single_layer: bool = False  # one layer measured alone (its space's ``single_layer``)
    probe_ms: float | None = None  # the reference probe's median beside it (drift correction)
    memory_mb: float | None = None  # measured model peak memory (MB = 1e6 bytes); None: absent
    _graph: Graph | None = field(default=None, repr=False, compare=False)

    @property
    def graph(self) -> Graph:
        if self._graph is None:
            self._graph = load_graph(self.graph_json, self.space, self.genotype, self.arch_hash)
        return self._graph


@dataclass
class LayerRow:
    """One per-layer time with the measurement it belongs to (milliseconds)."""

    measurement_id: int
    arch_hash: str
    space: str | None
    genotype: str | None
    precision: str
    batch: int
    name: str
    kind: str
    time_ms: float
    nodes: list[str]
    extra: dict[str, Any]


@functools.lru_cache(maxsize=64)
def is_single_layer(space: str | None) -> bool:
    """Whether genotypes of ``space`` are single layers (False for unknown spaces)."""
    if not space:
        return False
    from nasctl.errors import NasctlError
    from nasctl.spaces import get_space

    try:
        return bool(get_space(space).single_layer)
    except NasctlError:
        return False


def load_graph(
    graph_json: str | None, space: str | None, genotype: str | None, arch_hash: str
) -> Graph:
    if graph_json:
        return Graph.from_json(graph_json)
    if space and genotype:
        from nasctl.spaces import get_space, list_spaces

        if space not in list_spaces():  # never import code that a store names
            raise StoreError(
                f"architecture {arch_hash[:12]} has no stored graph and its space {space!r} is "
                "not a built-in space; nasctl does not import code named in a store "
                "(re-measure it naming the space: space=pkg.mod:SPACE)"
            )
        return get_space(space).to_graph(genotype)
    raise StoreError(f"architecture {arch_hash[:12]} has neither a stored graph nor a genotype")
