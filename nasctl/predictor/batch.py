"""Featurization of a whole batch of graphs at once, kept as concatenated arrays.

:func:`featurize_batch` turns a :class:`~nasctl.arch.arrays.GraphArrays` into a
:class:`FeatureBatch`: the features of :mod:`nasctl.predictor.schema` for every graph, stored
one graph after the other (node rows, group rows, group edges with global indices, graph rows).
:meth:`FeatureBatch.views` gives the per-graph :class:`~nasctl.predictor.schema.GraphFeatures`
(slices, no copies of the big arrays); models that can consume the batch directly (the GNN's WL
quotient, :func:`layer_sum_ms`) skip the per-graph objects.

Every step is a handful of array passes over nodes or edges (live nodes:
:mod:`~nasctl.predictor.liveness`; fused groups, their edges and lead nodes:
:mod:`~nasctl.predictor.fusion`; group rows: :mod:`~nasctl.predictor.group_table`; graph rows:
:mod:`~nasctl.predictor.graph_rows`): no per-node Python, no sort over all nodes. Results equal
those of the plain algorithms described in :mod:`schema` exactly (the sums involved are of
integer-valued float64 costs, exact in any order). The node arrays must follow
:class:`GraphArrays`' contract: nodes of a graph in topological order, edges grouped by graph in
consumer order (so ``dst`` is non-decreasing); where ``dst`` is not sorted the live sweep falls
back to a sorted copy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from nasctl.arch.arrays import GraphArrays
from nasctl.predictor.fusion import fuse_groups, group_edges, group_leads
from nasctl.predictor.graph_rows import graph_rows
from nasctl.predictor.group_table import group_table, group_x
from nasctl.predictor.liveness import live_nodes
from nasctl.predictor.schema import PRECISION_BYTES, GraphFeatures


@dataclass
class FeatureBatch:
    """Features of a batch of graphs as concatenated arrays (see the module docstring).

    ``xtab``: (U, len(NODE_FEATURES)) float32 distinct group rows, ``xcode``: (K,) row of each
    group (None: ``xtab`` holds every group's row), ``xrep``: (U,) first group of each row;
    :attr:`x` is the (K, len(NODE_FEATURES)) group rows of all graphs, gathered on first use
    (the models that can work on distinct rows never need it). ``gedges``: (2, Eg) int64
    group edges with global group indices, sorted by (producer, consumer); ``g``: (B,
    len(GRAPH_FEATURES)) float32; ``group``: (N,) global group index per node; ``cost_cols``:
    per node MACs, read bytes, write bytes, weight bytes (4 arrays (N,); :attr:`costs` stacks
    them on first use); ``op``: (N,) op index per node;
    ``raw``: (N, 11) raw node rows or None; ``node_off``/``group_off``/``edge_off``: (B + 1,)
    first node / group / group edge of each graph; ``node_ids``: per graph, or None.
    """

    xtab: np.ndarray
    gedges: np.ndarray
    g: np.ndarray
    group: np.ndarray
    cost_cols: list[np.ndarray]
    op: np.ndarray
    raw: np.ndarray | None
    node_off: np.ndarray
    group_off: np.ndarray
    edge_off: np.ndarray
    node_ids: list[list[str]] | None = None
    xcode: np.ndarray | None = None
    xrep: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.g.shape[0])

    @property
    def x(self) -> np.ndarray:
        """(K, len(NODE_FEATURES)) float32 group rows of all graphs."""
        if self.xcode is None:
            return self.xtab
        x = self.__dict__.get("_x")
        if x is None:
            x = self.__dict__["_x"] = self.xtab[self.xcode]
        return x

    @property
    def costs(self) -> np.ndarray:
        """(N, 4) float64: MACs, read bytes, write bytes, weight bytes per node."""
        c = self.__dict__.get("_costs")
        if c is None:
            c = self.__dict__["_costs"] = np.column_stack(self.cost_cols)
        return c

    @property
    def group_graph(self) -> np.ndarray:
        """(K,) graph index of each group row."""
        return np.repeat(np.arange(len(self), dtype=np.int64), np.diff(self.group_off))

    def views(self) -> list[GraphFeatures]:
        """Per-graph features: slices of the batch arrays; ``x``, ``costs``, ``edges`` and
        ``group`` (the last two renumbered from 0) are taken when first read."""
        no = self.node_off.tolist()
        g, op, raw, ids = self.g, self.op, self.raw, self.node_ids
        new = _GraphView.__new__
        out: list[GraphFeatures] = []
        for i in range(len(self)):
            a, b = no[i], no[i + 1]
            v = new(_GraphView)
            v.__dict__.update(
                g=g[i],
                op=op[a:b],
                node_ids=ids[i] if ids is not None else [],
                raw=raw[a:b] if raw is not None else None,
                _at=(self, i),
            )
            out.append(v)
        return out


class _FromBatch:
    """An attribute of a :class:`_GraphView` computed from its batch on first read
    (``make(batch, i)``), then stored; assigning replaces it."""

    def __init__(self, make: Callable[[FeatureBatch, int], np.ndarray]) -> None:
        self.make = make

    def __set_name__(self, owner: type, name: str) -> None:
        self.key = f"_{name}"

    def __get__(self, view: Any, owner: type | None = None) -> Any:
        if view is None:
            return self
        d = view.__dict__
        if self.key not in d:
            d[self.key] = self.make(*d["_at"])
        return d[self.key]

    def __set__(self, view: Any, value: np.ndarray) -> None:
        view.__dict__[self.key] = value


class _GraphView(GraphFeatures):
    """:class:`GraphFeatures` of one graph of a :class:`FeatureBatch` (see
    :meth:`FeatureBatch.views`): group edges and node groups are renumbered on first access."""

    _at: tuple[FeatureBatch, int]

    edges = _FromBatch(  # type: ignore[assignment]
        lambda fb, i: fb.gedges[:, fb.edge_off[i] : fb.edge_off[i + 1]] - fb.group_off[i]
    )
    x = _FromBatch(lambda fb, i: fb.x[fb.group_off[i] : fb.group_off[i + 1]])  # type: ignore[assignment]
    costs = _FromBatch(  # type: ignore[assignment]
        lambda fb, i: fb.costs[fb.node_off[i] : fb.node_off[i + 1]]
    )
    group = _FromBatch(  # type: ignore[assignment]
        lambda fb, i: fb.group[fb.node_off[i] : fb.node_off[i + 1]] - fb.group_off[i]
    )


def featurize_batch(
    arr: GraphArrays, precision: str | None = None, keep_raw: bool = False
) -> FeatureBatch:
    """Features of the graphs of ``arr`` (``precision`` overrides each graph's element size)."""
    raw = arr.raw
    n = raw.shape[0]
    src = np.asarray(arr.src, dtype=np.int64)
    dst = np.asarray(arr.dst, dtype=np.int64)
    node_off = arr.offsets
    elem = np.array(
        [PRECISION_BYTES.get(precision or p, 4) for p in arr.precisions], dtype=np.float64
    )
    op = raw[:, 0].astype(np.int64)
    fan_out = np.bincount(src, minlength=n)
    fan_in = np.bincount(dst, minlength=n)
    costs = _costs(raw, elem, arr.sizes)
    live = live_nodes(n, src, dst, arr.outs, fan_out, fan_in)
    grp, first, root, moved = fuse_groups(op, src, dst, fan_out, fan_in)
    k = first.size
    group_off = np.searchsorted(first, node_off).astype(np.int64)
    gedges = group_edges(grp, src, dst, k)
    lead = group_leads(raw[:, 7], grp, first, root, moved, k)
    table = group_table(raw, costs, op, grp, root, moved, lead, live, gedges, k)
    xcode = xrep = None
    if table is None:
        xtab = group_x(raw, costs, op, grp, lead, live, gedges, k)
    else:
        xtab, xcode, xrep = table
    edge_off = np.searchsorted(gedges[0], group_off).astype(np.int64)
    g = graph_rows(arr, raw, costs, op, live, src, dst, elem)
    return FeatureBatch(
        xtab=xtab,
        gedges=gedges,
        g=g,
        group=grp,
        cost_cols=costs,
        op=op,
        raw=raw if keep_raw else None,
        node_off=node_off,
        group_off=group_off,
        edge_off=edge_off,
        node_ids=arr.node_ids,
        xcode=xcode,
        xrep=xrep,
    )


def _costs(raw: np.ndarray, elem: np.ndarray, sizes: np.ndarray) -> list[np.ndarray]:
    """Per node: MACs, read bytes, write bytes, weight bytes (four (N,) arrays)."""
    if elem.size and np.all(elem == elem[0]):
        e: Any = elem[0]
    else:
        e = np.repeat(elem, sizes)
    return [raw[:, 7], raw[:, 9] * e, raw[:, 10] * e, raw[:, 8] * e]


def batch_of(feats: list[GraphFeatures]) -> FeatureBatch | None:
    """The :class:`FeatureBatch` whose :meth:`~FeatureBatch.views` ``feats`` are, all of them in
    order, else None: lets a model take its batch fast path from a plain list of features."""
    if not feats:
        return None
    first = feats[0].__dict__.get("_at")
    if first is None:
        return None
    fb = first[0]
    if len(feats) != len(fb):
        return None
    for i, f in enumerate(feats):
        at = f.__dict__.get("_at")
        if at is None or at[0] is not fb or at[1] != i:
            return None
    return fb
