"""Graph-level feature rows of a batch of graphs (``FeatureBatch.g``, the schema's
``GRAPH_FEATURES``; see :mod:`nasctl.predictor.batch`)."""

from __future__ import annotations

import numpy as np

from nasctl.arch.arrays import GraphArrays
from nasctl.predictor.schema import _OP_GROUP, GRAPH_FEATURES, N_GROUPS, N_OPS


def graph_rows(
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
