"""Group rows of a batch of graphs (``FeatureBatch.xtab``): one row per fused group, or one per
distinct row with a code per group (see :mod:`nasctl.predictor.batch`)."""

from __future__ import annotations

import numpy as np

from nasctl.predictor.distinct_rows import POLY, factorize, mixed
from nasctl.predictor.schema import _UNARY, N_OPS, NODE_FEATURES

_F = len(NODE_FEATURES)
#: Weight of a unary op in a group's op signature: 8 ** (its position among unary ops).
_POW8 = np.zeros(N_OPS + 1, dtype=np.float64)
_POW8[_UNARY] = 8.0 ** np.arange(len(_UNARY))
_MAX_GROUP = 8  # groups up to this size get an exact op signature (larger: no dedupe)


def group_x(
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


def group_table(
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
    xt = group_x(
        raw[m], [c[m] for c in costs], op[m], new_id[grp[m]], pos[lead[rs]], live[m], empty, rs.size
    )
    xt[:, N_OPS + 11] = np.log1p(np.bincount(gedges[1], minlength=k)[rs].astype(np.float64))
    xt[:, N_OPS + 12] = np.log1p(np.bincount(gedges[0], minlength=k)[rs].astype(np.float64))
    order_of_code = new_id[reps]
    return xt[order_of_code], codes, reps
