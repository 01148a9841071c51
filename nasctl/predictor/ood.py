"""Out-of-distribution check: is a graph unlike every graph the predictor was trained on?

The learned members (GBDT, GNN) extrapolate badly: trees answer a constant beyond the training
range and the ridge base of the GBDT extrapolates linearly in log space (VGG-16: 46 s for 0.37 s).
So the predictor records, per graph-level feature (:data:`schema.GRAPH_FEATURES`: op counts,
log MACs/params/bytes per op type, edge-pair counts, size), the range seen in training; a graph
with more features outside that range widened by ``MARGIN`` of its span than held-out graphs of
the training distribution have (``start``: the most any validation graph has; a random graph of
a search space can exceed a count or two seen in a few hundred samples) is *outside*, and the
predictor answers it from its per-kernel model (:mod:`kernel_model`: the sum of per-kernel
predictions over the kernels the device runs plus the learned per-graph term; issue 16) when it
has one, else from the device's roofline (:meth:`layerwise.LayerwiseModel.roofline_ms`, plus a
per-node overhead), with that estimate's calibrated interval instead of from the learned members;
a graph just outside (fewer than ``start + FULL`` features) gets a log-space blend.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MARGIN = 0.05  # tolerance, as a fraction of each feature's training span


def fit_ranges(G: np.ndarray) -> dict[str, Any]:
    """Per-column [min, max] of graph features ``G`` (rows = training graphs), JSON-ready."""
    G = np.asarray(G, dtype=np.float64)
    return {"lo": G.min(0).tolist(), "hi": G.max(0).tolist(), "margin": MARGIN}


def n_outside(G: np.ndarray, ranges: dict[str, Any]) -> np.ndarray:
    """Number of features of each row of ``G`` outside the (widened) training ranges."""
    G = np.asarray(G, dtype=np.float64)
    lo, hi = np.asarray(ranges["lo"]), np.asarray(ranges["hi"])
    if G.ndim != 2 or G.shape[1] != lo.size:
        return np.zeros(len(G), dtype=np.int64)
    tol = float(ranges.get("margin", MARGIN)) * (hi - lo) + 1e-6
    return ((G < lo - tol) | (G > hi + tol)).sum(1)


FULL = 3  # features outside at which the answer is the roofline alone (fewer: a blend)


def fit_check(
    train: list[Any],
    y_train_log: np.ndarray,
    val: list[Any],
    y_val_log: np.ndarray,
    layerwise: Any,
    alpha: float,
) -> dict[str, Any] | None:
    """The check stored in a predictor's meta, from whole-graph rows (``single_layer``
    rows excluded): feature ranges of the training examples (``.feats.g``); ``ms_per_node``, the
    per-node overhead the roofline misses (median over training graphs of (latency - roofline) /
    nodes, ms, >= 0); ``q``, the split-conformal quantile of the absolute log error of roofline
    plus overhead on the validation rows (the log half-width of a roofline answer's interval).
    None without a per-layer model or without whole-graph rows."""
    from nasctl.predictor.ensemble import conformal_quantile

    ti = [i for i, e in enumerate(train) if not getattr(e, "single_layer", False)]
    vi = [i for i, e in enumerate(val) if not getattr(e, "single_layer", False)]
    if not ti or not vi:
        return None
    if layerwise is None:  # ranges only: the per-kernel model may answer outside them
        check = {**fit_ranges(np.stack([train[i].feats.g for i in ti])), "full": FULL}
        n_val = n_outside(np.stack([val[i].feats.g for i in vi]), check)
        check["start"] = int(min(n_val.max(), FULL)) if n_val.size else 0
        return check
    feats = [train[i].feats for i in ti]
    nodes = np.array([f.costs.shape[0] for f in feats], dtype=np.float64)
    resid = np.exp(np.asarray(y_train_log)[ti]) - layerwise.roofline_ms(feats)
    check = {
        **fit_ranges(np.stack([f.g for f in feats])),
        "ms_per_node": float(max(np.median(resid / np.maximum(nodes, 1.0)), 0.0)),
        "full": FULL,
    }
    roof = roofline_log([val[i] for i in vi], check, layerwise)
    check["q"] = conformal_quantile(np.abs(roof - np.asarray(y_val_log)[vi]), alpha)
    n_val = n_outside(np.stack([val[i].feats.g for i in vi]), check)
    check["start"] = int(min(n_val.max(), FULL)) if n_val.size else 0
    return check


def add_kernel_quantile(
    check: dict[str, Any] | None, val: list[Any], y_val_log: np.ndarray, kernels: Any, alpha: float
) -> None:
    """Store ``q_kernel`` in ``check``: the split-conformal quantile of the absolute log error of
    the per-kernel answer on the whole-graph validation rows (its interval's log half-width)."""
    from nasctl.predictor.ensemble import conformal_quantile

    vi = [i for i, e in enumerate(val) if not getattr(e, "single_layer", False)]
    if check is None or kernels is None or not vi:
        return
    est = kernel_log([val[i] for i in vi], kernels)
    if est is not None:
        err = np.abs(est - np.asarray(y_val_log)[vi])
        check["q_kernel"] = conformal_quantile(err, alpha)


def roofline_log(ex: list[Any], check: dict[str, Any], layerwise: Any) -> np.ndarray:
    """Log of roofline plus per-node overhead (log ms) of examples ``ex``."""
    feats = [e.feats for e in ex]
    nodes = np.array([f.costs.shape[0] for f in feats], dtype=np.float64)
    ms = layerwise.roofline_ms(feats) + float(check.get("ms_per_node", 0.0)) * nodes
    return np.log(np.maximum(ms, 1e-6))


def kernel_log(ex: list[Any], kernels: Any) -> np.ndarray | None:
    """Log ms of the per-kernel model's answer (kernel sum + per-graph term) for ``ex``; None
    without a kernel model or when an example has no graph to take its kernels from."""
    if kernels is None:
        return None
    units = [e.kernel_units() if hasattr(e, "kernel_units") else None for e in ex]
    if any(u is None for u in units):
        return None
    return np.log(np.maximum(kernels.predict_ms(units), 1e-6))


def toward_roofline(
    logs: dict[str, np.ndarray],
    ex: list[Any],
    check: dict[str, Any] | None,
    layerwise: Any,
    kernels: Any = None,
) -> None:
    """Move ``logs["ensemble"]`` of graphs outside the training ranges toward the per-kernel
    answer (:func:`kernel_log`; without one, the log roofline), in place: weight ``w =
    clip((features outside - start) / full, 0, 1)``; ``logs["ood_w"]`` keeps ``w``,
    ``logs["ood_kernel"]`` whether the per-kernel model answered."""
    if check is None or (layerwise is None and kernels is None):
        return
    n = n_outside(np.stack([e.feats.g for e in ex]), check) - int(check.get("start", 0))
    w = np.clip(n / float(check.get("full", FULL)), 0.0, 1.0)
    logs["ood_w"] = w
    if not w.any():
        return
    sel = np.flatnonzero(w)
    roof = kernel_log([ex[i] for i in sel], kernels) if "q_kernel" in check else None
    logs["ood_kernel"] = np.zeros(len(ex), dtype=bool)
    if roof is not None:
        logs["ood_kernel"][sel] = True
    elif layerwise is not None:
        roof = roofline_log([ex[i] for i in sel], check, layerwise)
    else:
        return
    ens = logs["ensemble"].astype(np.float64, copy=True)
    ens[sel] = (1 - w[sel]) * ens[sel] + w[sel] * roof
    logs["ensemble"] = ens


def interval_half(
    half: np.ndarray, logs: dict[str, np.ndarray], check: dict[str, Any] | None
) -> np.ndarray:
    """Ensemble log half-widths, moved toward the roofline's ``q`` by the same weight."""
    w = logs.get("ood_w")
    if check is None or w is None:
        return half
    q = np.full(len(w), float(check.get("q", 0.0)))
    if "ood_kernel" in logs:
        q[logs["ood_kernel"]] = float(check.get("q_kernel", 0.0))
    return (1 - w) * half + w * q
