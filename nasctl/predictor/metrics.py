"""Accuracy metrics of latency predictions (all on milliseconds, relative errors in %)."""

from __future__ import annotations

from typing import Any

import numpy as np


def regression_metrics(
    y_true_ms: np.ndarray,
    y_pred_ms: np.ndarray,
    low_ms: np.ndarray | None = None,
    high_ms: np.ndarray | None = None,
) -> dict[str, Any]:
    """MAPE (%), RMSPE (%), Acc@5% and Acc@10% (% of predictions within 5/10 % relative error),
    Spearman and Kendall rank correlations, interval coverage (fraction of true values inside
    ``[low_ms, high_ms]``; None without intervals) and ``n``."""
    from scipy.stats import kendalltau, spearmanr

    y = np.asarray(y_true_ms, dtype=np.float64)
    p = np.asarray(y_pred_ms, dtype=np.float64)
    n = int(y.size)
    if n == 0:
        return {
            "mape": None,
            "rmspe": None,
            "acc5": None,
            "acc10": None,
            "spearman": None,
            "kendall": None,
            "coverage": None,
            "n": 0,
        }
    rel = np.abs(p - y) / np.maximum(np.abs(y), 1e-9)
    out: dict[str, Any] = {
        "mape": float(100 * rel.mean()),
        "rmspe": float(100 * np.sqrt(np.mean(rel**2))),
        "acc5": float(100 * np.mean(rel <= 0.05)),
        "acc10": float(100 * np.mean(rel <= 0.10)),
        "spearman": _nan_none(spearmanr(y, p).statistic) if n > 1 else None,
        "kendall": _nan_none(kendalltau(y, p).statistic) if n > 1 else None,
        "coverage": None,
        "n": n,
    }
    if low_ms is not None and high_ms is not None:
        lo, hi = np.asarray(low_ms), np.asarray(high_ms)
        out["coverage"] = float(np.mean((y >= lo) & (y <= hi)))
    return out


def _nan_none(v: float) -> float | None:
    v = float(v)
    return None if np.isnan(v) else v
