"""Latency models the search loop asks: a small protocol, a surrogate that learns from the loop's
own device measurements, and an adapter that recalibrates a trained ``nasctl`` predictor.

Protocol (:class:`LatencyModel`): ``predict(genotypes) -> (mean_ms, low_ms, high_ms)`` arrays, the
interval central at ``confidence``; ``update(measured)`` refits on ``{genotype: median_ms}`` (all
measurements so far, not only the new ones) and is cheap enough to call after every measurement.

:class:`SurrogateLatencyModel` is a Gaussian process (scikit-learn, RBF + white noise) in log
latency over genotype features: the one-hot of a categorical space (nb201: 6 edges x 5 ops) or the
predictor's graph-level feature vector (standardized) for structured spaces. With a ``prior`` (a
trained predictor via :class:`PredictorPrior`) it models the log residual of the prior, so the
device measurements recalibrate the predictor locally and its interval shrinks where measured.
A Gaussian process is used rather than gradient boosting because the loop refits on 10 to a few
hundred points, where boosting has too little data per leaf and gives no per-candidate spread.
The GP is a few lines of numpy (:class:`GP`): kernel ``s2 * (RBF(l) + b * linear) + noise``,
hyperparameters by maximum marginal likelihood over a small grid (deterministic, a few ms for
50 points; scikit-learn's optimizer took ~0.5 s a fit here and its import several seconds).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from nasctl.errors import PredictorError, SearchError
from nasctl.search.spaces.base import SearchSpace
from nasctl.search.strategies.encoding import categorical_encoding

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass
class GP:
    """Exact Gaussian-process regression with kernel ``s2 * (RBF(ls) + beta * x.x'/d) + noise``.

    ``fit`` standardizes ``y`` (centred unless ``center=False``, for residual models whose prior
    mean is 0) and picks (ls, beta, noise) on a grid by marginal likelihood, ``s2`` in closed form.
    """

    x: np.ndarray
    alpha: np.ndarray
    chol: np.ndarray
    ls: float
    beta: float
    noise: float
    s2: float
    y_mean: float
    y_scale: float

    LS = (0.25, 0.5, 1.0, 2.0, 4.0)  # times the median pairwise distance
    BETA = (0.0, 0.1, 1.0)
    NOISE = (1e-4, 1e-3, 1e-2, 5e-2)  # relative to the kernel's unit variance

    @staticmethod
    def _k(a: np.ndarray, b: np.ndarray, ls: float, beta: float) -> np.ndarray:
        d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
        k = np.exp(-np.maximum(d2, 0.0) / (2 * ls * ls))
        if beta:
            k = k + beta * (a @ b.T) / a.shape[1]
        return k

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, center: bool = True) -> GP:
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        mean = float(y.mean()) if center else 0.0
        scale = float(np.sqrt(np.mean((y - mean) ** 2))) or 1.0
        yn = (y - mean) / scale
        n = len(yn)
        d2 = (x * x).sum(1)[:, None] + (x * x).sum(1)[None, :] - 2 * x @ x.T
        med = float(np.sqrt(np.median(d2[np.triu_indices(n, 1)]))) if n > 1 else 1.0
        best: tuple[float, GP] | None = None
        for ls in (c * (med or 1.0) for c in cls.LS):
            for beta in cls.BETA:
                k0 = cls._k(x, x, ls, beta)
                for noise in cls.NOISE:
                    try:
                        chol = np.linalg.cholesky(k0 + noise * np.eye(n))
                    except np.linalg.LinAlgError:
                        continue
                    alpha = np.linalg.solve(chol.T, np.linalg.solve(chol, yn))
                    s2 = max(float(yn @ alpha) / n, 1e-12)
                    nll = 0.5 * n * math.log(s2) + float(np.log(np.diag(chol)).sum())
                    if best is None or nll < best[0]:
                        best = (nll, cls(x, alpha, chol, ls, beta, noise, s2, mean, scale))
        if best is None:
            raise PredictorError("the latency model could not be fit (singular kernel)")
        return best[1]

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation (of a new measurement) in the units of ``y``."""
        ks = self._k(np.asarray(x, dtype=float), self.x, self.ls, self.beta)
        mean = ks @ self.alpha
        v = np.linalg.solve(self.chol, ks.T)
        kss = 1.0 + self.beta * (np.asarray(x, dtype=float) ** 2).sum(1) / self.x.shape[1]
        var = self.s2 * np.maximum(kss - (v * v).sum(0) + self.noise, 1e-12)
        return self.y_mean + self.y_scale * mean, self.y_scale * np.sqrt(var)


class LatencyModel(Protocol):
    """What the search loop needs from a latency predictor."""

    confidence: float

    def predict(self, genotypes: Sequence[str]) -> Arrays:
        """(mean_ms, low_ms, high_ms), each shape ``(len(genotypes),)``."""
        ...

    def update(self, measured: dict[str, float]) -> None:
        """Refit/recalibrate on every measurement so far: genotype -> median latency (ms)."""
        ...


def z_of(confidence: float) -> float:
    """Two-sided normal quantile: the half-width in sigmas of a central ``confidence`` interval."""
    from statistics import NormalDist

    return float(NormalDist().inv_cdf(0.5 + confidence / 2.0))


class Featurizer:
    """Genotype -> feature row, cached. One-hot for categorical spaces, else the predictor's
    graph-level features (``nasctl.predictor.features``), standardized by the caller."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        self.encoding = categorical_encoding(space)
        self._cache: dict[str, np.ndarray] = {}

    @property
    def categorical(self) -> bool:
        return self.encoding is not None

    def __call__(self, genotypes: Sequence[str]) -> np.ndarray:
        missing = [g for g in dict.fromkeys(genotypes) if g not in self._cache]
        if missing:
            rows = self._compute(missing)
            self._cache.update(zip(missing, rows, strict=False))
        return np.stack([self._cache[g] for g in genotypes]) if genotypes else np.zeros((0, 1))

    def _compute(self, genotypes: list[str]) -> np.ndarray:
        if self.encoding is not None:
            return self.encoding.one_hot(genotypes)
        from nasctl.predictor.features import featurize

        return np.stack([featurize(self.space.to_graph(g)).g for g in genotypes]).astype(float)


class PredictorPrior:
    """A trained predictor (``nasctl.predictor.api.Predictor``) as a cached prior: log mean and
    log sigma per genotype, sigma read from the predictor's calibrated 90% interval."""

    PREDICTOR_CONFIDENCE = 0.9

    def __init__(
        self, predictor_dir: str, space: SearchSpace, device_id: str | None = None
    ) -> None:
        try:
            from nasctl.predictor.api import Predictor
        except ImportError as e:
            raise SearchError(f"the trained predictor API is not available: {e}") from e
        self.predictor = Predictor.load(predictor_dir)
        if device_id is not None:
            self.predictor.check_device(device_id)
        self.space = space
        self.z = z_of(self.PREDICTOR_CONFIDENCE)
        self._cache: dict[str, tuple[float, float]] = {}
        self.queries = 0

    def __call__(self, genotypes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        missing = [g for g in dict.fromkeys(genotypes) if g not in self._cache]
        if missing:
            preds = self.predictor.predict([self.space.to_graph(g) for g in missing])
            self.queries += len(missing)
            for g, p in zip(missing, preds, strict=False):
                lo, hi = max(p.low_ms, 1e-6), max(p.high_ms, 1e-6)
                sigma = max((math.log(hi) - math.log(lo)) / (2 * self.z), 0.01)
                self._cache[g] = (math.log(max(p.latency_ms, 1e-6)), sigma)
        mu = np.array([self._cache[g][0] for g in genotypes])
        sd = np.array([self._cache[g][1] for g in genotypes])
        return mu, sd


PriorFn = Callable[[Sequence[str]], tuple[np.ndarray, np.ndarray]]


class SurrogateLatencyModel:
    """Gaussian-process latency model in log space, refit on every update.

    Args:
        space: the search space (for features).
        confidence: central coverage of ``[low_ms, high_ms]``.
        prior: optional ``genotypes -> (log mean, log sigma)``; the GP then models residuals.
        min_points: measurements needed before predicting without a prior.
        min_sigma: floor of the log-space standard deviation (0.02 = about 2%: run-to-run noise).
    """

    def __init__(
        self,
        space: SearchSpace,
        confidence: float = 0.9,
        *,
        prior: PriorFn | None = None,
        min_points: int = 3,
        min_sigma: float = 0.02,
        seed: int = 0,
    ) -> None:
        self.features = Featurizer(space)
        self.confidence = confidence
        self.z = z_of(confidence)
        self.prior = prior
        self.min_points = min_points
        self.min_sigma = min_sigma
        self.seed = seed
        self._gp: GP | None = None
        self._offset = 0.0
        self._scale: tuple[np.ndarray, np.ndarray] | None = None
        self.n_train = 0
        self.queries = 0

    def _x(self, genotypes: Sequence[str]) -> np.ndarray:
        x = self.features(genotypes)
        if self._scale is not None:
            x = (x - self._scale[0]) / self._scale[1]
        return x

    def update(self, measured: dict[str, float]) -> None:
        pairs = [(g, v) for g, v in sorted(measured.items()) if v is not None and v > 0]
        self.n_train = len(pairs)
        if not pairs:
            self._gp = None
            return
        gens = [g for g, _ in pairs]
        y = np.log(np.array([v for _, v in pairs]))
        if self.prior is not None:
            y = y - self.prior(gens)[0]
        if not self.features.categorical:
            raw = self.features(gens)
            sd = raw.std(axis=0)
            self._scale = (raw.mean(axis=0), np.where(sd > 1e-9, sd, 1.0))
        if len(pairs) < self.min_points:
            self._gp, self._offset = None, float(np.mean(y))
            return
        self._gp = self._fit(self._x(gens), y)

    def _fit(self, x: np.ndarray, y: np.ndarray) -> GP:
        return GP.fit(x, y, center=self.prior is None)

    def predict(self, genotypes: Sequence[str]) -> Arrays:
        genotypes = list(genotypes)
        self.queries += len(genotypes)
        n = len(genotypes)
        if n == 0:
            e = np.zeros(0)
            return e, e, e
        if self.prior is not None:
            mu, sd = self.prior(genotypes)
        elif self._gp is None:
            raise PredictorError(
                f"the latency model has {self.n_train} measurements; it needs at least "
                f"{self.min_points} (or a trained predictor, --predictor DIR)"
            )
        else:
            mu, sd = np.zeros(n), np.zeros(n)
        if self._gp is not None:
            gm, gs = self._gp.predict(self._x(genotypes))
            mu = mu + gm
            sd = gs if self.prior is None else np.minimum(np.sqrt(sd**2 + gs**2), sd + gs)
        else:
            mu = mu + self._offset
        sd = np.maximum(sd, self.min_sigma)
        return np.exp(mu), np.exp(mu - self.z * sd), np.exp(mu + self.z * sd)

    def log_sigma(self, low_ms: np.ndarray, high_ms: np.ndarray) -> np.ndarray:
        """Log-space standard deviation recovered from an interval of this model."""
        return (np.log(high_ms) - np.log(low_ms)) / (2 * self.z)
