"""Gradient-boosted trees (LightGBM) on graph-level features, predicting log latency (log ms).

Latency is close to additive in what a graph contains, which trees approximate poorly from a few
hundred rows; so the booster starts from a ridge regression on the standardized features (its
``init_score``) and learns the residual. Both parts are saved as text/JSON (no pickle).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nasctl.predictor.parallel import lib_threads

DEFAULT_PARAMS: dict[str, Any] = {
    # Huber on log ms: squared below a 5 % error, linear above (robust to noisy timings).
    "objective": "huber",
    "alpha": 0.05,
    "learning_rate": 0.03,
    "num_leaves": 15,
    "min_data_in_leaf": 5,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "max_bin": 63,
    "verbose": -1,
    "num_threads": 1,  # a few thousand rows: threads cost more than they give
}
MAX_ROUNDS = 500
CV_FOLDS = 4  # folds that choose the number of boosting rounds
CV_MAX_ROWS = 3000  # above this many rows, MAX_ROUNDS without cross-validation
PATIENCE = 50
CLIP = 8.0  # standardized inputs are clipped to +-CLIP (graphs unlike the training set)
RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-3, 3, 13))


class LinearBase:
    """Ridge regression on standardized, clipped features (NaN -> column mean)."""

    def __init__(self, mean: np.ndarray, std: np.ndarray, coef: np.ndarray, intercept: float):
        self.mean, self.std, self.coef, self.intercept = mean, std, coef, float(intercept)

    @classmethod
    def fit(cls, X: np.ndarray, y: np.ndarray) -> LinearBase:
        from sklearn.linear_model import RidgeCV

        mean = np.nan_to_num(np.nanmean(X, axis=0)) if X.size else np.zeros(X.shape[1])
        std = np.nan_to_num(np.nanstd(X, axis=0))
        std = np.where(std < 1e-2, 1.0, std)  # near-constant columns: no blow-up off-sample
        Z = np.clip(np.nan_to_num((X - mean) / std), -CLIP, CLIP)
        r = RidgeCV(alphas=RIDGE_ALPHAS).fit(Z, y)
        return cls(mean, std, np.asarray(r.coef_), float(r.intercept_))

    def predict(self, X: np.ndarray) -> np.ndarray:
        Z = np.clip(np.nan_to_num((X - self.mean) / self.std), -CLIP, CLIP)
        return Z @ self.coef + self.intercept

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "coef": self.coef.tolist(),
            "intercept": self.intercept,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LinearBase:
        return cls(
            np.asarray(d["mean"]), np.asarray(d["std"]), np.asarray(d["coef"]), d["intercept"]
        )


def cv_rounds(params: dict[str, Any], ds: Any, seed: int) -> int:
    """Boosting rounds by ``CV_FOLDS``-fold cross-validation of the residual over the ridge base
    (early stopping after ``PATIENCE`` rounds without gain). On a few hundred noisy rows this
    is often a handful: trees on top of the base would fit the timing noise."""
    import lightgbm as lgb

    res = lgb.cv(
        {**params, "metric": "l2"},
        ds,
        num_boost_round=MAX_ROUNDS,
        nfold=CV_FOLDS,
        stratified=False,
        seed=seed,
        callbacks=[lgb.early_stopping(PATIENCE, verbose=False)],
    )
    return len(next(iter(res.values())))


class GBDTModel:
    """Ridge base + LightGBM residual, on a feature matrix (rows = graphs)."""

    def __init__(self, booster: Any, base: LinearBase) -> None:
        self.booster = booster
        self.base = base

    @classmethod
    def fit(
        cls,
        X: np.ndarray,
        y_log: np.ndarray,
        *,
        seed: int = 0,
        rounds: int | None = None,
        params: dict[str, Any] | None = None,
    ) -> GBDTModel:
        """Fit on ``X`` (n, f) and targets ``y_log`` (natural log of ms, or a log-ratio).
        ``rounds`` None: up to ``MAX_ROUNDS``, chosen by :func:`cv_rounds` when there are at
        most ``CV_MAX_ROWS`` rows."""
        import lightgbm as lgb

        base = LinearBase.fit(X, y_log)
        p = {**DEFAULT_PARAMS, **(params or {}), "seed": seed}
        p["min_data_in_leaf"] = min(p["min_data_in_leaf"], max(1, len(y_log) // 4))
        ds = lgb.Dataset(
            X,
            label=y_log,
            init_score=base.predict(X),
            params={"max_bin": p["max_bin"], "verbose": -1},
        )
        if rounds is None:
            rounds = cv_rounds(p, ds, seed) if len(y_log) <= CV_MAX_ROWS else MAX_ROUNDS
        return cls(lgb.train(p, ds, num_boost_round=max(1, rounds)), base)

    def predict_log(self, X: np.ndarray) -> np.ndarray:
        """Predicted log latency (log ms), shape (n,)."""
        raw = self.booster.predict(X, num_threads=lib_threads())
        return np.asarray(raw, dtype=np.float64) + self.base.predict(X)

    def to_string(self) -> str:
        """LightGBM text model."""
        return str(self.booster.model_to_string())

    @classmethod
    def from_string(cls, text: str, base: dict[str, Any]) -> GBDTModel:
        import lightgbm as lgb

        return cls(lgb.Booster(model_str=text), LinearBase.from_dict(base))
