"""Latency models the search loop asks: a small protocol, a surrogate that learns from the loop's
own device measurements, and an adapter that recalibrates a trained ``nasctl`` predictor.

Protocol (:class:`LatencyModel`): ``predict(genotypes) -> (mean_ms, low_ms, high_ms)`` arrays, the
interval central at ``confidence``; ``update(measured)`` refits on ``{genotype: median_ms}`` (all
measurements so far, not only the new ones) and is cheap enough to call after every measurement.

:class:`SurrogateLatencyModel` is a Gaussian process (:mod:`.gp`, a few lines of numpy) with a
Bayesian-linear part on op counts and an RBF part on the one-hot genotype (categorical spaces such
as nb201), or on the predictor's graph-level features (structured spaces); it is fit in ms or in
log ms, whichever the measurements make more likely (NB201 on a Xeon or a GPU: latency is a sum of
per-op costs, the ms fit is within 2-4% from 20-40 measurements where the former one-hot GP in
log space was 7-11% off), focused on measurements near the latency budget, and its interval widened
by its leave-one-out errors. With a ``prior`` (a trained predictor via :class:`PredictorPrior`, or
the loop's own, :mod:`.selftrained`) it models the log residual of the prior, so the device
measurements recalibrate the predictor locally and its interval shrinks where measured.
A Gaussian process is used rather than gradient boosting because the loop refits on 10 to a few
hundred points, where boosting has too little data per leaf and gives no per-candidate spread;
hyperparameters by maximum marginal likelihood over a small grid (deterministic, milliseconds).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from nasctl.errors import PredictorError, SearchError
from nasctl.search.latency.gp import GP, fit_best_space
from nasctl.search.strategies.encoding import categorical_encoding
from nasctl.spaces.base import SearchSpace

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray]


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
    """Genotype -> (linear block, RBF block) feature rows, cached (see :mod:`.gp`).

    Categorical spaces: the RBF block is the one-hot genotype; the linear block counts how many
    positions hold each value (positions sharing a choice list pooled), plus the space's own
    structure counts (``SearchSpace.structure_counts``; NB201: the same counts over *live* edges,
    additions, zero maps built and nodes without inputs per cell, whether the output is cut
    off). Other spaces: the predictor's graph-level feature vector for both blocks. Blocks are
    standardized by the model (:meth:`SurrogateLatencyModel.update`)."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        self.encoding = categorical_encoding(space)
        self._cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    @property
    def categorical(self) -> bool:
        return self.encoding is not None

    def __call__(self, genotypes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        missing = [g for g in dict.fromkeys(genotypes) if g not in self._cache]
        if missing:
            xl, xr = self._compute(missing)
            self._cache.update(zip(missing, zip(xl, xr, strict=True), strict=False))
        if not genotypes:
            return np.zeros((0, 1)), np.zeros((0, 1))
        rows = [self._cache[g] for g in genotypes]
        return np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows])

    def _compute(self, genotypes: list[str]) -> tuple[np.ndarray, np.ndarray]:
        enc = self.encoding
        if enc is not None:
            onehot = enc.one_hot(genotypes).astype(float)
            return np.stack([self._counts(g, enc.values(g)) for g in genotypes]), onehot
        from nasctl.predictor.features import featurize

        x = np.stack([featurize(self.space.to_graph(g)).g for g in genotypes]).astype(float)
        return x, x

    def _counts(self, genotype: str, values: tuple[str, ...]) -> np.ndarray:
        assert self.encoding is not None
        vocab = sorted({v for c in self.encoding.choices for v in c})
        counts = np.zeros(len(vocab))
        for v in values:
            counts[vocab.index(v)] += 1
        extra = self.space.structure_counts(genotype)
        if extra is None:
            return counts
        return np.concatenate([counts, np.asarray(extra, dtype=float)])


class PredictorPrior:
    """A trained predictor (``nasctl.predictor.inference.Predictor``, loaded from
    ``predictor_dir`` or given as ``predictor``) as a cached prior: log mean and log sigma per
    genotype, sigma read from the predictor's calibrated 90% interval."""

    PREDICTOR_CONFIDENCE = 0.9

    def __init__(
        self,
        predictor_dir: str | None,
        space: SearchSpace,
        device_id: str | None = None,
        *,
        predictor: object | None = None,
    ) -> None:
        try:
            from nasctl.predictor.loading import load_predictor
        except ImportError as e:
            raise SearchError(f"the trained predictor API is not available: {e}") from e
        self.predictor = predictor if predictor is not None else load_predictor(predictor_dir)
        if device_id is not None:
            self.predictor.check_device(device_id)
        self.space = space
        self.z = z_of(self.PREDICTOR_CONFIDENCE)
        self._cache: dict[str, tuple[float, float]] = {}
        self.queries = 0

    def __call__(self, genotypes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        missing = [g for g in dict.fromkeys(genotypes) if g not in self._cache]
        if missing:
            # The space builds node arrays for many genotypes at once (no graphs); the key
            # names this space instance, whose configuration fixes the graphs.
            key = f"{self.space.name}@{id(self.space)}"
            sp = self.space
            preds = self.predictor.predict_genotypes(
                key, missing, sp.to_graph, arrays=sp.graph_arrays
            )
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
    """Gaussian-process latency model (:mod:`.gp`), refit on every update.

    Without a prior the GP is fit both in ms and in log ms and the better fit (likelihood) is
    kept; its standard deviation is widened by the leave-one-out factor
    (:meth:`GP.loo_scale`) so the interval covers the residuals actually observed. The interval
    returned is log-symmetric (``mean * exp(+-z * sigma)``, ``sigma`` = sd / mean for the ms fit)
    as the acquisition reads it.

    Args:
        space: the search space (for features).
        confidence: central coverage of ``[low_ms, high_ms]``.
        prior: optional ``genotypes -> (log mean, log sigma)``; the GP then models the log
            residual of the prior, so device measurements recalibrate the predictor locally.
        min_points: measurements needed before predicting without a prior.
        min_sigma: floor of the log-space standard deviation (0.02 = about 2%: run-to-run noise).
        spaces: target spaces tried ("ms", "log").
        loo: widen the sd by the leave-one-out factor.
        focus_ms: the latency budget, if any: the fit focuses on measurements near it (each
            point's noise times ``1 + (log(y / focus_ms) / focus_width) ** 2``), since only
            there does the model decide anything; latencies are not additive alike everywhere
            (on the phone column, a model fit on the whole space is 20% off near a p25 budget,
            one fit near it 6%).
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
        spaces: tuple[str, ...] = ("ms", "log"),
        loo: bool = True,
        focus_ms: float | None = None,
        focus_width: float = 0.3,
    ) -> None:
        self.features = Featurizer(space)
        self.confidence = confidence
        self.z = z_of(confidence)
        self.prior = prior
        self.min_points = min_points
        self.min_sigma = min_sigma
        self.seed = seed
        self.spaces = spaces
        self.loo = loo
        self.focus_ms = focus_ms
        self.focus_width = focus_width
        self._gp: GP | None = None
        self._target = "log"
        self._inflate = 1.0
        self._offset = 0.0
        self._scale: tuple[np.ndarray, ...] | None = None
        self.n_train = 0
        self.queries = 0

    def _x(self, genotypes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        xl, xr = self.features(genotypes)
        if self._scale is not None:
            ml, sl, mr, sr = self._scale
            xl = np.c_[(xl - ml) / sl, np.ones(len(xl))]
            if not self.features.categorical:
                xr = (xr - mr) / sr
        return xl, xr

    def update(self, measured: dict[str, float]) -> None:
        pairs = [(g, v) for g, v in sorted(measured.items()) if v is not None and v > 0]
        self.n_train = len(pairs)
        if not pairs:
            self._gp = None
            return
        gens = [g for g, _ in pairs]
        y_ms = np.array([v for _, v in pairs])
        xl, xr = self.features(gens)
        self._scale = (*_standardizer(xl), *_standardizer(xr))
        if len(pairs) < self.min_points:
            y = np.log(y_ms) - (self.prior(gens)[0] if self.prior is not None else 0.0)
            self._gp, self._offset, self._target = None, float(np.mean(y)), "log"
            return
        xl, xr = self._x(gens)
        w = None
        if self.focus_ms is not None:  # points far from the budget count less
            w = 1.0 + (np.log(y_ms / self.focus_ms) / self.focus_width) ** 2
        if self.prior is not None:
            y = np.log(y_ms) - self.prior(gens)[0]
            self._gp, self._target = GP.fit(xl, xr, y, center=False, weights=w), "log"
        else:
            self._target, self._gp = fit_best_space(xl, xr, y_ms, self.spaces, weights=w)
        self._inflate = self._gp.loo_scale() if self.loo else 1.0

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
                f"{self.min_points} (or a trained predictor, predictor_dir=DIR)"
            )
        else:
            mu, sd = np.zeros(n), np.zeros(n)
        if self._gp is not None:
            gm, gs = self._gp.predict(*self._x(genotypes))
            gs = gs * self._inflate
            if self._target == "ms":  # to log space: sigma = sd / mean (delta method)
                gm = np.maximum(gm, 1e-3 * float(np.max(np.abs(gm))) + 1e-9)
                gm, gs = np.log(gm), gs / gm
            mu = mu + gm
            sd = gs if self.prior is None else np.minimum(np.sqrt(sd**2 + gs**2), sd + gs)
        else:
            mu = mu + self._offset
        sd = np.clip(sd, self.min_sigma, 3.0 / self.z)  # at most a factor of 20 either way
        return np.exp(mu), np.exp(mu - self.z * sd), np.exp(mu + self.z * sd)

    def log_sigma(self, low_ms: np.ndarray, high_ms: np.ndarray) -> np.ndarray:
        """Log-space standard deviation recovered from an interval of this model."""
        return (np.log(high_ms) - np.log(low_ms)) / (2 * self.z)


def _standardizer(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sd = x.std(axis=0)
    return x.mean(axis=0), np.where(sd > 1e-9, sd, 1.0)
