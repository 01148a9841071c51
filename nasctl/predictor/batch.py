"""Featurization of a whole batch of graphs at once, kept as concatenated arrays.

:func:`featurize_batch` turns a :class:`~nasctl.arch.arrays.GraphArrays` into a
:class:`FeatureBatch`: the features of :mod:`nasctl.predictor.schema` for every graph, stored
one graph after the other (node rows, group rows, group edges with global indices, graph rows).
:meth:`FeatureBatch.views` gives the per-graph :class:`~nasctl.predictor.schema.GraphFeatures`
(slices, no copies of the big arrays); models that can consume the batch directly (the GNN's WL
quotient, :func:`layer_sum_ms`) skip the per-graph objects.

Every step is a handful of array passes over nodes or edges: no per-node Python, no sort over all
nodes. Results equal those of the plain algorithms described in :mod:`schema` exactly (the
sums involved are of integer-valued float64 costs, exact in any order). The node arrays must
follow :class:`GraphArrays`' contract: nodes of a graph in topological order, edges grouped by
graph in consumer order (so ``dst`` is non-decreasing); where ``dst`` is not sorted the live
sweep falls back to a sorted copy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from nasctl.arch.arrays import GraphArrays
from nasctl.predictor.distinct_rows import POLY, factorize, mixed
from nasctl.predictor.schema import (
    _OP_GROUP,
    _UNARY,
    GRAPH_FEATURES,
    N_GROUPS,
    N_OPS,
    NODE_FEATURES,
    PRECISION_BYTES,
    GraphFeatures,
)

_F = len(NODE_FEATURES)
_UNARY_MASK = np.zeros(N_OPS + 1, dtype=bool)
_UNARY_MASK[_UNARY] = True
#: Weight of a unary op in a group's op signature: 8 ** (its position among unary ops).
_POW8 = np.zeros(N_OPS + 1, dtype=np.float64)
_POW8[_UNARY] = 8.0 ** np.arange(len(_UNARY))
_MAX_GROUP = 8  # groups up to this size get an exact op signature (larger: no dedupe)


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
    live = _live(n, src, dst, arr.outs, fan_out, fan_in)
    grp, first, root, moved = _fuse(op, src, dst, fan_out, fan_in)
    k = first.size
    group_off = np.searchsorted(first, node_off).astype(np.int64)
    gedges = _group_edges(grp, src, dst, k)
    lead = _lead(raw[:, 7], grp, first, root, moved, k)
    table = _group_table(raw, costs, op, grp, root, moved, lead, live, gedges, k)
    xcode = xrep = None
    if table is None:
        xtab = _group_x(raw, costs, op, grp, lead, live, gedges, k)
    else:
        xtab, xcode, xrep = table
    edge_off = np.searchsorted(gedges[0], group_off).astype(np.int64)
    g = _graph_rows(arr, raw, costs, op, live, src, dst, elem)
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


def _csr_by_dst(n: int, src: np.ndarray, dst: np.ndarray, fan_in: np.ndarray) -> tuple[Any, ...]:
    """(producers ordered by consumer, start of each consumer's range)."""
    if dst.size > 1 and np.any(dst[1:] < dst[:-1]):
        src = src[np.argsort(dst, kind="stable")]
    starts = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(fan_in, out=starts[1:])
    return src, starts


def _live(
    n: int,
    src: np.ndarray,
    dst: np.ndarray,
    outs: np.ndarray,
    fan_out: np.ndarray,
    fan_in: np.ndarray,
) -> np.ndarray:
    """Nodes with a path to a graph output. Peels dead nodes from the sinks backwards: a node is
    dead when it is no output and every consumer is dead (one step per dead-chain length)."""
    live = np.ones(n, dtype=bool)
    is_out = np.zeros(n, dtype=bool)
    is_out[np.asarray(outs, dtype=np.int64)] = True
    dead = np.flatnonzero((fan_out == 0) & ~is_out)
    if dead.size == 0:
        return live
    prod, starts = _csr_by_dst(n, src, dst, fan_in)
    left = fan_out.copy()
    while dead.size:
        live[dead] = False
        cnt = fan_in[dead]
        total = int(cnt.sum())
        if total == 0:
            break
        first = np.repeat(starts[dead] - np.cumsum(cnt) + cnt, cnt)
        p = prod[first + np.arange(total)]
        np.subtract.at(left, p, 1)
        p = np.unique(p)
        dead = p[(left[p] == 0) & ~is_out[p]]
    return live


def _fuse(
    op: np.ndarray, src: np.ndarray, dst: np.ndarray, fan_out: np.ndarray, fan_in: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fused groups, as engines fuse kernels: a normalisation/activation/identity node joins its
    producer when it is that producer's only consumer, else its consumer when that consumer has
    no other input (ReLU-Conv-BN becomes one group); groups numbered by first member. Returns
    (group per node, first node of each group in group order, root node of each group, the
    non-root nodes). Non-root members are always unary nodes."""
    n = op.size
    ar = np.arange(n, dtype=np.int64)
    if n == 0 or src.size == 0:
        return ar, ar, ar, np.zeros(0, dtype=np.int64)
    unary = _UNARY_MASK[op]
    one = (fan_out[src] == 1) & (fan_in[dst] == 1)
    fwd = unary[dst] & one  # dst joins src
    bwd = unary[src] & one & ~unary[dst]  # src joins dst
    link = ar.copy()
    link[dst[fwd]] = src[fwd]
    link[src[bwd]] = dst[bwd]
    moved = np.flatnonzero(link != ar)
    sub = link[moved]
    for _ in range(64):  # pointer jumping over the linked nodes only
        nxt = link[sub]
        if np.array_equal(nxt, sub):
            break
        link[moved] = nxt
        sub = nxt
    first_of = ar.copy()  # first member of the group rooted at each root
    np.minimum.at(first_of, sub, moved)
    head = first_of[link]  # first member of each node's group
    is_first = head == ar
    rank = np.cumsum(is_first) - 1
    grp = rank[head]
    first = np.flatnonzero(is_first)
    root = link[first]
    return grp, first, root, moved


def _group_edges(grp: np.ndarray, src: np.ndarray, dst: np.ndarray, k: int) -> np.ndarray:
    """Distinct group pairs along node edges (self pairs dropped), (2, Eg) sorted."""
    gs, gd = grp[src], grp[dst]
    keep = gs != gd
    if not keep.any():
        return np.zeros((2, 0), np.int64)
    key = gs[keep]
    key *= k
    key += gd[keep]
    key = _sorted_unique(key)
    out = np.empty((2, key.size), dtype=np.int64)
    np.floor_divide(key, k, out=out[0])
    np.remainder(key, k, out=out[1])
    return out


def _sorted_unique(v: np.ndarray) -> np.ndarray:
    """``np.unique`` of a 1-D integer array (a plain sort: much faster than ``np.unique``)."""
    v = np.sort(v)
    if v.size < 2:
        return v
    keep = np.empty(v.size, dtype=bool)
    keep[0] = True
    np.not_equal(v[1:], v[:-1], out=keep[1:])
    return v[keep]


def _lead(
    macs: np.ndarray,
    grp: np.ndarray,
    first: np.ndarray,
    root: np.ndarray,
    members: np.ndarray,
    k: int,
) -> np.ndarray:
    """Heaviest node of each group (most MACs, lowest index on ties). Non-root members are
    unary nodes, whose MACs are 0: the root when its MACs are positive, else the first member;
    the general reduction runs when that does not hold (negative or NaN MACs)."""
    if not np.isnan(macs).any() and not np.any(macs[members] != 0) and np.all(macs >= 0):
        return np.where(macs[root] > 0, root, first)
    m = np.where(np.isnan(macs), -np.inf, macs)
    best = np.full(k, -np.inf)
    np.maximum.at(best, grp, m)
    cand = np.flatnonzero(m == best[grp])
    lead = np.full(k, grp.size, dtype=np.int64)
    np.minimum.at(lead, grp[cand], cand)
    return lead


def _group_x(
    raw: np.ndarray,
    costs: list[np.ndarray],
    op: np.ndarray,
    grp: np.ndarray,
    lead: np.ndarray,
    live: np.ndarray,
    gedges: np.ndarray,
    k: int,
) -> np.ndarray:
    """(K, len(NODE_FEATURES)) float32 group rows (see :func:`schema.group_rows`)."""
    x = np.zeros((k, _F), dtype=np.float32)
    flat = x.reshape(-1)
    key = grp * _F
    key += op
    single = np.bincount(grp, minlength=k)[grp] == 1
    # lone nodes (the bulk) are a one-hot: plain assignment; members of larger groups: counts
    flat[key[single]] = 1.0
    np.add.at(flat, key[~single], 1.0)
    num = np.empty((k, 13), dtype=np.float64)
    num[:, 0:6] = raw[lead, 1:7]
    for j in range(4):
        num[:, 6 + j] = np.bincount(grp, weights=costs[j], minlength=k)
    np.log1p(num[:, :10], out=num[:, :10])
    num[:, 10] = np.bincount(grp[live], minlength=k) > 0
    num[:, 11] = np.log1p(np.bincount(gedges[1], minlength=k))
    num[:, 12] = np.log1p(np.bincount(gedges[0], minlength=k))
    x[:, N_OPS:] = num
    return x


def _graph_rows(
    arr: GraphArrays,
    raw: np.ndarray,
    costs: list[np.ndarray],
    op: np.ndarray,
    live: np.ndarray,
    src: np.ndarray,
    dst: np.ndarray,
    elem: np.ndarray,
) -> np.ndarray:
    """Graph-level rows (B, len(GRAPH_FEATURES)) float32 (see the schema's ``GRAPH_FEATURES``)."""
    b, sizes = len(arr), arr.sizes
    gid = np.repeat(np.arange(b, dtype=np.int64), sizes)
    n_edges = np.bincount(gid[dst], minlength=b) if dst.size else np.zeros(b, np.int64)

    starts = arr.offsets[:-1] if b and sizes.min() > 0 else None

    def per_graph(w: np.ndarray) -> np.ndarray:
        """Sum per graph (graphs are contiguous runs of nodes; sums of integer-valued costs,
        exact in any order)."""
        if starts is None:
            return np.bincount(gid, weights=w, minlength=b)
        return np.add.reduceat(w, starts)

    macs = raw[:, 7]
    livef = live.astype(np.float64)
    tot = np.empty((b, 10), dtype=np.float64)
    tot[:, 0] = per_graph(macs)
    tot[:, 1] = per_graph(raw[:, 8])
    tot[:, 2] = per_graph(costs[1])
    tot[:, 3] = per_graph(costs[2])
    tot[:, 4] = per_graph(costs[3])
    tot[:, 5] = sizes
    tot[:, 6] = n_edges
    tot[:, 7] = arr.depth
    tot[:, 8] = per_graph(livef)
    tot[:, 9] = per_graph(macs * livef)
    extra = np.array(
        [
            [float(s[-1]) if len(s) >= 3 else 0.0, float(s[0]), el]
            for s, el in zip(arr.input_shapes, elem, strict=True)
        ]
    ).reshape(b, 3)
    key = gid * N_OPS
    key += op
    nb = b * N_OPS
    og = _OP_GROUP[op]
    pk = gid[dst] * (N_GROUPS * N_GROUPS)
    pk += og[src] * N_GROUPS
    pk += og[dst]
    width = len(GRAPH_FEATURES)
    g = np.empty((b, width), dtype=np.float32)
    g[:, :10] = np.log1p(tot)
    g[:, 10:13] = extra
    c = 13
    g[:, c : c + N_OPS] = np.bincount(key, minlength=nb).reshape(b, N_OPS)
    c += N_OPS
    g[:, c : c + N_OPS] = np.bincount(key[live], minlength=nb).reshape(b, N_OPS)
    c += N_OPS
    g[:, c : c + N_OPS] = np.log1p(np.bincount(key, weights=macs, minlength=nb)).reshape(b, N_OPS)
    c += N_OPS
    nbytes = costs[1] + costs[2]
    nbytes += costs[3]
    g[:, c : c + N_OPS] = np.log1p(np.bincount(key, weights=nbytes, minlength=nb)).reshape(b, N_OPS)
    c += N_OPS
    g[:, c:] = np.bincount(pk, minlength=b * N_GROUPS * N_GROUPS).reshape(b, -1)
    return g


def _group_table(
    raw: np.ndarray,
    costs: list[np.ndarray],
    op: np.ndarray,
    grp: np.ndarray,
    root: np.ndarray,
    moved: np.ndarray,
    lead: np.ndarray,
    live: np.ndarray,
    gedges: np.ndarray,
    k: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Group rows as (distinct rows, row id per group, first group of each id): a row is a
    function of the group's op multiset, its lead node's shape columns, its summed costs, live
    flag and fan-in/out; groups
    are keyed by a hash of those, and every group is then checked bit for bit against the group
    whose row stands for its key (so the result is exact). None when a check fails or a group is
    too large for the exact op signature (the caller computes every row)."""
    if k == 0 or np.bincount(grp, minlength=k).max() >= _MAX_GROUP:
        return None
    w = np.zeros(grp.size, dtype=np.float64)
    w[moved] = _POW8[op[moved]]  # non-root members are unary: counted in base 8
    fields = [np.bincount(grp, weights=w, minlength=k) + op[root] * 2.0**32]
    fields += [np.bincount(grp, weights=costs[j], minlength=k) for j in range(4)]
    shape = raw[lead, 1:7]  # one gather of the six shape columns
    fields += [shape[:, j] for j in range(6)]
    flags = np.bincount(grp[live], minlength=k) > 0
    flags = flags + 2 * np.bincount(gedges[1], minlength=k)
    flags += np.bincount(gedges[0], minlength=k) << 32
    fields.append(flags.astype(np.int64))
    h = np.zeros(k, dtype=np.uint64)
    for f in fields:
        h *= POLY
        h += mixed(f)
    codes, reps = factorize(h)
    at = reps[codes]
    for f in fields:
        u = np.ascontiguousarray(f).view(np.uint64)
        if not np.array_equal(u, u[at]):
            return None
    # rows of the representative groups only (in group order), then in code order
    is_rep = np.zeros(k, dtype=bool)
    is_rep[reps] = True
    rs = np.flatnonzero(is_rep)
    new_id = np.cumsum(is_rep) - 1
    m = is_rep[grp]
    pos = np.cumsum(m) - 1  # node index -> position among the selected nodes
    empty = np.zeros((2, 0), np.int64)
    xt = _group_x(
        raw[m], [c[m] for c in costs], op[m], new_id[grp[m]], pos[lead[rs]], live[m], empty, rs.size
    )
    xt[:, N_OPS + 11] = np.log1p(np.bincount(gedges[1], minlength=k)[rs].astype(np.float64))
    xt[:, N_OPS + 12] = np.log1p(np.bincount(gedges[0], minlength=k)[rs].astype(np.float64))
    order_of_code = new_id[reps]
    return xt[order_of_code], codes, reps


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
