"""Fused groups of nodes, as engines fuse kernels, for a batch of graphs.

Array passes over the nodes and edges of a :class:`~nasctl.arch.arrays.GraphArrays` batch (see
:mod:`nasctl.predictor.batch`): :func:`fuse_groups` numbers the groups, :func:`group_edges` gives
the data-flow edges between them and :func:`group_leads` the heaviest node of each.
"""

from __future__ import annotations

import numpy as np

from nasctl.predictor.schema import _UNARY, N_OPS

_UNARY_MASK = np.zeros(N_OPS + 1, dtype=bool)
_UNARY_MASK[_UNARY] = True


def fuse_groups(
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


def group_edges(grp: np.ndarray, src: np.ndarray, dst: np.ndarray, k: int) -> np.ndarray:
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


def group_leads(
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
