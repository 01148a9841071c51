"""The loop's latency model with its calibration: predicted intervals, widened by how wrong the
model was on the candidates measured so far.

:class:`LatencyIntervals` is what the search loop and its device budget
(:class:`~nasctl.search.budget.DeviceBudget`) both ask: ``predict`` writes ``mean_ms`` /
``low_ms`` / ``high_ms`` onto candidates, ``add_residual`` records a predicted-vs-measured error,
``refit`` refits the model on every latency known (stored ones and the loop's own measurements).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from nasctl.search.latency.models import LatencyModel
from nasctl.search.objectives import Candidate


class LatencyIntervals:
    """A latency model and the out-of-sample errors that widen its intervals.

    Args:
        model: the loop's latency model (``predict`` / ``update``), None without a predictor.
        z: the normal quantile of the interval's confidence (the model's interval is
            ``mean * exp(+-z * sigma)``).
        stored: ``{genotype: latency_ms}`` already in the dataset store (free training data).
        selftrain: the loop's own nasctl predictor (``maybe_train(data) -> bool``), or None.
        fit_without_data: refit even with no latency known (a trained predictor as prior).
        enabled: False without a predictor (``refit`` does nothing).
    """

    RESIDUALS = 20  # recent out-of-sample errors that set the interval widening

    def __init__(
        self,
        model: LatencyModel | None,
        z: float,
        *,
        stored: dict[str, float] | None = None,
        selftrain: Any = None,
        fit_without_data: bool = False,
        enabled: bool = True,
    ) -> None:
        self.model = model
        self.z = z
        self.stored = dict(stored or {})
        self.selftrain = selftrain
        self.fit_without_data = fit_without_data
        self.enabled = enabled
        self.raw: dict[str, tuple[float, float, float]] = {}  # the model's own interval
        self.residuals: list[float] = []  # standardized: (log measured - log mean) / sigma
        self.temper = 1.0  # extra interval factor while a round finds nothing worth measuring

    def predict(self, cands: list[Candidate]) -> None:
        """Predict latency and interval; the interval is widened by :meth:`widen` (how wrong
        the model was on the candidates measured so far) and by ``temper``."""
        if not cands:
            return
        assert self.model is not None
        mean, low, high = self.model.predict([c.genotype for c in cands])
        f = self.widen() * self.temper
        for c, m, lo, hi in zip(cands, mean, low, high, strict=False):
            self.raw[c.genotype] = (float(m), float(lo), float(hi))
            c.mean_ms = float(m)
            # log-space half-widths times f, capped at a factor of 20 either way
            c.low_ms = float(m * math.exp(-min(3.0, f * math.log(m / max(lo, 1e-9 * m)))))
            c.high_ms = float(m * math.exp(min(3.0, f * math.log(hi / m))))

    def widen(self) -> float:
        """>= 1: the factor on the model's log-space interval half-width that makes the spread
        of its recent out-of-sample errors (predicted before measuring vs measured, last
        ``RESIDUALS`` device measurements) that of a calibrated model (median-based: one
        early blunder must not widen every later interval)."""
        r = self.residuals[-self.RESIDUALS :]
        if len(r) < 3:
            return 1.0
        # robust scale: the median |standardized residual| of a calibrated model is 0.674
        return max(1.0, float(np.median(np.abs(r))) / 0.6745)

    def add_residual(self, pred: tuple | None, measured_ms: float | None) -> None:
        """Record how far a measurement fell from what was predicted for it (``pred``: the
        model's own ``(mean, low, high)``)."""
        if pred is None or measured_ms is None or None in pred or measured_ms <= 0:
            return
        m, lo, hi = pred
        sigma = (math.log(hi) - math.log(lo)) / (2 * self.z)
        if m > 0 and sigma > 0:
            self.residuals.append((math.log(measured_ms) - math.log(m)) / sigma)

    def refit(self, measured: dict[str, float]) -> None:
        """Refit on the stored latencies plus ``measured`` (``{genotype: ms}``, the loop's
        own device measurements, which win over stored ones)."""
        if not self.enabled:
            return
        data = {**self.stored, **measured}
        if self.selftrain is not None and self.selftrain.maybe_train(data):
            self.model.prior = self.selftrain  # type: ignore[union-attr]
        if data or self.fit_without_data:
            assert self.model is not None
            self.model.update(data)  # type: ignore[arg-type]
