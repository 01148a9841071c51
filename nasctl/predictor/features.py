"""Featurize graphs: the entry points of the feature schema (:mod:`nasctl.predictor.schema`).

The array work happens once per batch in :mod:`nasctl.predictor.batch`; the functions here take
graphs (or node arrays) and return per-graph :class:`~nasctl.predictor.schema.GraphFeatures`.
"""

from __future__ import annotations

from nasctl.arch.arrays import GraphArrays, graph_arrays
from nasctl.arch.graph import Graph
from nasctl.predictor.batch import featurize_batch
from nasctl.predictor.schema import GraphFeatures

__all__ = ["featurize", "featurize_arrays", "featurize_many"]


def featurize(graph: Graph, precision: str | None = None, keep_raw: bool = False) -> GraphFeatures:
    """Features of one graph (see the module docstring). ``precision`` (fp32/fp16/int8)
    overrides ``graph.meta["precision"]`` for the element size in bytes; ``keep_raw`` keeps the
    per-node raw attributes (for per-layer rows)."""
    return featurize_many([graph], precision, keep_raw)[0]


def featurize_many(
    graphs: list[Graph], precision: str | None = None, keep_raw: bool = False
) -> list[GraphFeatures]:
    """Features of many graphs; the array work runs once over the whole batch."""
    if not graphs:
        return []
    return featurize_arrays(graph_arrays(graphs), precision, keep_raw)


def featurize_arrays(
    arr: GraphArrays, precision: str | None = None, keep_raw: bool = False
) -> list[GraphFeatures]:
    """Features of the graphs of a :class:`GraphArrays` batch (from :func:`graph_arrays` or a
    space's own builder); views into one :class:`~nasctl.predictor.batch.FeatureBatch`."""
    if len(arr) == 0:
        return []
    return featurize_batch(arr, precision, keep_raw).views()
