"""The training report by part (issue 16): whole graphs per space and single kernels, each scored
with the model that answers it and that model's own calibrated 90 % interval.

Single kernels (rows measured alone, ``single_layer``) are answered by the per-kernel model
(:mod:`kernel_model`, interval from the conformal quantile of its log error on the validation
kernels, :func:`kernel_quantile`); whole graphs by the ensemble (which hands graphs outside the
training ranges to the per-kernel model, :mod:`ood`). Mixing both in one table let the many
sub-millisecond kernel rows dominate the whole-graph numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from nasctl.predictor.ensemble import conformal_quantile
from nasctl.predictor.kernel_model import kernel_row_index
from nasctl.predictor.metrics import regression_metrics


def _kernel_rows(ex: Sequence[Any]) -> list[int]:
    return kernel_row_index(ex)


def _unit_log(kernels: Any, ex: Sequence[Any], idx: list[int]) -> np.ndarray:
    """Log of the per-kernel model's answer for kernels measured alone: the kernel plus the
    layout conversions ORT runs around it (their times alone plus one per-run cost)."""
    return np.log(np.maximum(kernels.alone_ms([ex[i].units for i in idx]), 1e-9))


def kernel_quantile(pred: Any, val: Sequence[Any], y_val_ms: np.ndarray, alpha: float) -> None:
    """Store in the kernel model's meta ``q_unit``: the split-conformal quantile of the absolute
    log error of single-kernel answers on the validation kernels."""
    idx = _kernel_rows(val)
    if pred.kernels is None or not idx:
        return
    err = np.abs(_unit_log(pred.kernels, val, idx) - np.log(np.asarray(y_val_ms, float)[idx]))
    pred.kernels.meta["q_unit"] = conformal_quantile(err, alpha)


def by_part(pred: Any, ex: Sequence[Any], y_ms: np.ndarray) -> list[dict[str, Any]]:
    """Metrics per part of the test rows ``ex``: one entry per space of whole graphs (answered by
    the ensemble) and one for single kernels (answered by the per-kernel model when there is
    one, else by the ensemble); each ``{"part", "answered_by", **regression_metrics}``."""
    y = np.asarray(y_ms, float)
    out: list[dict[str, Any]] = []
    whole = [i for i, e in enumerate(ex) if not e.single_layer]
    for space in sorted({str(ex[i].space) for i in whole}):
        idx = [i for i in whole if str(ex[i].space) == space]
        logs = pred.member_logs([ex[i] for i in idx])
        lo, hi = pred.intervals(logs)["ensemble"]
        m = regression_metrics(y[idx], np.exp(logs["ensemble"]), lo, hi)
        n_ood = int(np.sum(logs.get("ood_w", np.zeros(len(idx))) > 0))
        who = "ensemble" + (f" ({n_ood} outside the ranges: per-kernel model)" if n_ood else "")
        out.append({"part": f"whole graphs: {space}", "answered_by": who, **m})
    single = [i for i, e in enumerate(ex) if e.single_layer]
    kidx = _kernel_rows(ex)
    if pred.kernels is not None and kidx:
        est = _unit_log(pred.kernels, ex, kidx)
        q = float(pred.kernels.meta.get("q_unit", 0.0))
        m = regression_metrics(y[kidx], np.exp(est), np.exp(est - q), np.exp(est + q))
        out.append({"part": "single kernels", "answered_by": "per-kernel model", **m})
    elif single:
        logs = pred.member_logs([ex[i] for i in single])
        lo, hi = pred.intervals(logs)["ensemble"]
        m = regression_metrics(y[single], np.exp(logs["ensemble"]), lo, hi)
        out.append({"part": "single kernels", "answered_by": "ensemble", **m})
    return out
