"""Pareto fronts for (accuracy up, latency down): non-dominated sorting and crowding distance.

Points are rows ``(accuracy, latency_ms)``; accuracy is maximized, latency minimized. Everything is
plain numpy, O(n log n) for the first front and O(n^2) worst case for a full sort of ``n`` points,
which is fine for populations of a few hundred.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _as_min(points: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """(accuracy, latency) -> both-minimized array (-accuracy, latency)."""
    p = np.asarray(points, dtype=float).reshape(-1, 2)
    return np.column_stack([-p[:, 0], p[:, 1]])


def pareto_mask(points: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """Boolean mask of the non-dominated points (ties: equal points are all kept).

    Args:
        points: ``(n, 2)`` rows of ``(accuracy, latency_ms)``.
    """
    q = _as_min(points)
    n = len(q)
    if n == 0:
        return np.zeros(0, dtype=bool)
    order = np.lexsort((q[:, 0], q[:, 1]))  # by latency, then by accuracy (descending)
    keep = np.zeros(n, dtype=bool)
    best_a, best_lat = np.inf, np.nan  # best -accuracy so far, and the latency that reached it
    for i in order:
        a, lat = q[i]
        if a < best_a:
            keep[i] = True
            best_a, best_lat = a, lat
        elif a == best_a and lat == best_lat:  # an exact duplicate of a kept point
            keep[i] = True
    return keep


def non_dominated_sort(points: Sequence[Sequence[float]] | np.ndarray) -> list[np.ndarray]:
    """Fronts as index arrays, best first (front 0 = non-dominated)."""
    remaining = np.arange(len(np.asarray(points).reshape(-1, 2)))
    pts = np.asarray(points, dtype=float).reshape(-1, 2)
    fronts: list[np.ndarray] = []
    while len(remaining):
        mask = pareto_mask(pts[remaining])
        fronts.append(remaining[mask])
        remaining = remaining[~mask]
    return fronts


def crowding_distance(points: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance of each point within its own front (boundary points: inf)."""
    q = _as_min(points)
    n = len(q)
    dist = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for k in range(2):
        order = np.argsort(q[:, k], kind="stable")
        span = q[order[-1], k] - q[order[0], k]
        dist[order[0]] = dist[order[-1]] = np.inf
        if span <= 0:
            continue
        dist[order[1:-1]] += (q[order[2:], k] - q[order[:-2], k]) / span
    return dist


def front_of(
    accuracy: Sequence[float] | np.ndarray, latency_ms: Sequence[float] | np.ndarray
) -> np.ndarray:
    """Indices of the non-dominated points, sorted by latency (fastest first)."""
    acc = np.asarray(accuracy, dtype=float)
    lat = np.asarray(latency_ms, dtype=float)
    ok = np.isfinite(acc) & np.isfinite(lat)
    idx = np.flatnonzero(ok)
    if not len(idx):
        return idx
    mask = pareto_mask(np.column_stack([acc[idx], lat[idx]]))
    sel = idx[mask]
    return sel[np.lexsort((-acc[sel], lat[sel]))]
