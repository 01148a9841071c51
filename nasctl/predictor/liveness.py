"""Which nodes of a batch of graphs reach a graph output (the "live" flag of the features).

Array passes over the nodes and edges of a :class:`~nasctl.arch.arrays.GraphArrays` batch (see
:mod:`nasctl.predictor.batch`): no per-node Python, no sort over all nodes.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _csr_by_dst(n: int, src: np.ndarray, dst: np.ndarray, fan_in: np.ndarray) -> tuple[Any, ...]:
    """(producers ordered by consumer, start of each consumer's range)."""
    if dst.size > 1 and np.any(dst[1:] < dst[:-1]):
        src = src[np.argsort(dst, kind="stable")]
    starts = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(fan_in, out=starts[1:])
    return src, starts


def live_nodes(
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
