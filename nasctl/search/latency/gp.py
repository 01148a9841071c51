"""A small exact Gaussian process for the search loop's latency model (numpy only).

Kernel on two feature blocks of the same candidates::

    k(a, b) = s2 * (w_lin * xl_a . xl_b / d_lin + w_rbf * exp(-|xr_a - xr_b|^2 / (2 ls^2))) + noise

``xl`` is the *linear* block (for NB201: how many edges carry each op, live or dead, sums and zero
nodes; latency is close to additive over them, so a Bayesian linear model on them learns a device
from 10 to 20 measurements) and ``xr`` the *RBF* block (the one-hot genotype: what is not
additive). Hyperparameters (``w_lin``, ``w_rbf``, ``ls``, ``noise``) are picked on a small grid
by marginal likelihood, ``s2`` in closed form: deterministic, a few ms for 50 points.

:func:`fit_best_space` fits the targets both in milliseconds and in log milliseconds and keeps
the one with the higher likelihood of the measured milliseconds (the log fit pays the Jacobian
``sum(log y)``): on the replay tables CPU and GPU latencies are additive in ms (the ms fit wins),
a phone's are closer to multiplicative (the log fit wins).

:meth:`GP.loo_scale` is the factor by which the predictive standard deviation must grow so that
the leave-one-out residuals of the measured points have the spread of a calibrated model: the
interval width adapts to how wrong the model has actually been.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from nasctl.errors import PredictorError

#: (w_lin, w_rbf) pairs tried: linear only, linear plus a little RBF, ..., RBF only.
WEIGHTS: tuple[tuple[float, float], ...] = (
    (1.0, 0.0),
    (1.0, 0.03),
    (1.0, 0.1),
    (1.0, 0.3),
    (1.0, 1.0),
    (0.1, 1.0),
    (0.0, 1.0),
)
LS: tuple[float, ...] = (0.5, 1.0, 2.0)  # times the median pairwise distance of xr
NOISE: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 5e-2)  # relative to the kernel's unit variance


def _sqdist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T, 0.0)


@dataclass
class GP:
    """A fitted GP; ``predict`` returns mean and the sd of a new measurement, units of ``y``."""

    xl: np.ndarray
    xr: np.ndarray
    alpha: np.ndarray
    chol: np.ndarray
    w_lin: float
    w_rbf: float
    ls: float
    noise: float
    s2: float
    y_mean: float
    y_scale: float
    nll: float  # negative log marginal likelihood of y (not of the standardized y)
    weights: np.ndarray  # per-point noise multipliers (1 = plain)

    @staticmethod
    def kernel(
        al: np.ndarray,
        ar: np.ndarray,
        bl: np.ndarray,
        br: np.ndarray,
        w: tuple[float, float, float],
    ) -> np.ndarray:
        w_lin, w_rbf, ls = w
        k = np.zeros((len(al), len(bl)))
        if w_lin:
            k += w_lin * (al @ bl.T) / max(al.shape[1], 1)
        if w_rbf:
            k += w_rbf * np.exp(-_sqdist(ar, br) / (2 * ls * ls))
        return k

    @classmethod
    def fit(
        cls,
        xl: np.ndarray,
        xr: np.ndarray,
        y: np.ndarray,
        center: bool = True,
        weights: np.ndarray | None = None,
    ) -> GP:
        """Fit by marginal likelihood over the grid (``center=False``: prior mean 0, for
        residual models). ``weights`` (>= 1 each) multiply each point's noise: a point with
        weight 4 counts about as a quarter of a point (focus the fit on some region)."""
        xl, xr, y = (np.asarray(a, dtype=float) for a in (xl, xr, y))
        w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=float)
        mean = float(np.average(y, weights=1 / w)) if center else 0.0
        scale = float(np.sqrt(np.average((y - mean) ** 2, weights=1 / w))) or 1.0
        yn = (y - mean) / scale
        n = len(yn)
        d2 = _sqdist(xr, xr)
        med = float(np.sqrt(np.median(d2[np.triu_indices(n, 1)]))) if n > 1 else 1.0
        best: GP | None = None
        for w_lin, w_rbf in WEIGHTS:
            for ls in (c * (med or 1.0) for c in (LS if w_rbf else LS[:1])):
                k0 = cls.kernel(xl, xr, xl, xr, (w_lin, w_rbf, ls))
                for noise in NOISE:
                    gp = cls._try(k0, noise, w, yn, (xl, xr, w_lin, w_rbf, ls), mean, scale)
                    if gp is not None and (best is None or gp.nll < best.nll):
                        best = gp
        if best is None:
            raise PredictorError("the latency model could not be fit (singular kernel)")
        return best

    @classmethod
    def _try(cls, k0, noise, w, yn, hyp, mean, scale):  # noqa: ANN001, ANN206 - internal
        n = len(yn)
        try:
            chol = np.linalg.cholesky(k0 + np.diag(noise * w))
        except np.linalg.LinAlgError:
            return None
        alpha = np.linalg.solve(chol.T, np.linalg.solve(chol, yn))
        s2 = max(float(yn @ alpha) / n, 1e-12)
        nll = 0.5 * n * math.log(s2) + float(np.log(np.diag(chol)).sum()) + n * math.log(scale)
        xl, xr, w_lin, w_rbf, ls = hyp
        return cls(xl, xr, alpha, chol, w_lin, w_rbf, ls, noise, s2, mean, scale, nll, w)

    def predict(self, xl: np.ndarray, xr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation (of a new measurement) in the units of ``y``."""
        xl, xr = np.asarray(xl, dtype=float), np.asarray(xr, dtype=float)
        w = (self.w_lin, self.w_rbf, self.ls)
        ks = self.kernel(xl, xr, self.xl, self.xr, w)
        mean = ks @ self.alpha
        v = np.linalg.solve(self.chol, ks.T)
        kss = self.w_lin * (xl * xl).sum(1) / max(xl.shape[1], 1) + self.w_rbf
        var = self.s2 * np.maximum(kss - (v * v).sum(0) + self.noise, 1e-12)
        return self.y_mean + self.y_scale * mean, self.y_scale * np.sqrt(var)

    def loo_scale(self) -> float:
        """>= 1: how much wider the predictive sd must be for the leave-one-out residuals of
        the training points to have the spread of a calibrated model (median-based, so a few
        outliers do not widen every interval)."""
        n = len(self.alpha)
        if n < 8:
            return 1.0
        kinv = np.linalg.solve(self.chol.T, np.linalg.solve(self.chol, np.eye(n)))
        d = np.maximum(np.diag(kinv), 1e-12)
        r = np.abs(self.alpha / d) / np.sqrt(1.0 / d)  # standardized LOO residuals
        near = self.weights <= 2.0  # the points the fit focuses on, when there are enough
        r = r[near] if near.sum() >= 8 else r
        # robust: the median |standardized residual| of a calibrated model is 0.6745
        return max(1.0, float(np.median(r)) / 0.6745)


def fit_best_space(
    xl: np.ndarray,
    xr: np.ndarray,
    y_ms: np.ndarray,
    spaces: tuple[str, ...] = ("ms", "log"),
    weights: np.ndarray | None = None,
) -> tuple[str, GP]:
    """Fit in each of ``spaces`` ("ms", "log") and keep the higher likelihood of ``y_ms``."""
    y_ms = np.asarray(y_ms, dtype=float)
    best: tuple[float, str, GP] | None = None
    for sp in spaces:
        y = y_ms if sp == "ms" else np.log(y_ms)
        gp = GP.fit(xl, xr, y, weights=weights)
        nll = gp.nll + (float(np.log(y_ms).sum()) if sp == "log" else 0.0)
        if best is None or nll < best[0]:
            best = (nll, sp, gp)
    assert best is not None
    return best[1], best[2]
