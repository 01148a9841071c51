"""Log-space ensemble with weights fit on validation data, and split-conformal intervals.

Intervals: on held-out calibration rows, the score of a prediction is its absolute log error
divided by a difficulty scale (``1`` for a single model; for the ensemble ``sigma0 + |gnn - gbdt|``,
the members' disagreement, so intervals widen where the models disagree). The interval of a new
prediction is ``exp(log_pred -/+ q * scale)`` with ``q`` the ``ceil((n+1)(1-alpha))/n`` quantile of
calibration scores: finite-sample coverage ``>= 1 - alpha`` for exchangeable data.
"""

from __future__ import annotations

import math

import numpy as np


def fit_weights(
    preds: dict[str, np.ndarray], y_log: np.ndarray, step: float = 0.05
) -> dict[str, float]:
    """Convex weights (summing to 1) of log predictions minimizing mean squared log error,
    by grid search (two or three members)."""
    names = sorted(preds)
    if len(names) == 1:
        return {names[0]: 1.0}
    grid = np.arange(0.0, 1.0 + 1e-9, step)
    best, best_w = math.inf, [1.0 / len(names)] * len(names)
    cands: list[list[float]]
    if len(names) == 2:
        cands = [[float(a), float(1 - a)] for a in grid]
    else:
        cands = [
            [float(a), float(b), float(1 - a - b)] for a in grid for b in grid if a + b <= 1 + 1e-9
        ]
    P = np.stack([preds[n] for n in names])
    for w in cands:
        err = float(np.mean((np.asarray(w) @ P - y_log) ** 2))
        if err < best - 1e-12:
            best, best_w = err, w
    return {n: float(max(w, 0.0)) for n, w in zip(names, best_w, strict=True)}


def combine(preds: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    """Weighted log prediction."""
    return sum(weights[n] * preds[n] for n in weights if weights[n] > 0)  # type: ignore[return-value]


def conformal_quantile(scores: np.ndarray, alpha: float) -> float:
    """Split-conformal quantile of nonnegative ``scores`` for miscoverage ``alpha``."""
    s = np.sort(np.asarray(scores, dtype=np.float64))
    n = s.size
    if n == 0:
        return math.inf
    k = math.ceil((n + 1) * (1 - alpha))
    return float(s[min(k, n) - 1]) if k <= n else float(s[-1] * 1.5)


def disagreement(preds: dict[str, np.ndarray]) -> np.ndarray:
    """Spread of member log predictions (max - min)."""
    P = np.stack(list(preds.values()))
    return P.max(0) - P.min(0)
