"""Measured memory as a second target: LightGBM on the graph-level features plus the analytic
bound (weights + every activation written, :func:`nasctl.arch.costs.graph_costs`), predicting
log MB of the model's measured peak memory (``memory_mb`` of the training rows: the cpu
device's ``model_peak_bytes``). A line in log bound (least squares) is the base, so new sizes
extrapolate; the trees learn the residual from the other features. The interval is
split-conformal: the 90 % quantile of the absolute log residuals on the validation rows,
applied both ways. Saved as LightGBM text plus JSON (no
pickle) in ``DIR/memory/``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nasctl.errors import PredictorError

#: Fewest rows with a measured memory for a memory model.
MIN_ROWS = 20
PARAMS: dict[str, Any] = {
    "objective": "regression",
    "learning_rate": 0.05,
    "num_leaves": 7,
    "min_data_in_leaf": 3,
    "lambda_l2": 1.0,
    "verbose": -1,
    "num_threads": 1,
}
ROUNDS = 100
COVERAGE = 0.9


def analytic_mb(graph: Any) -> float:
    """Weights plus every activation written, MB (1e6 bytes): the analytic upper bound."""
    from nasctl.arch.costs import graph_costs

    tot = graph_costs(graph).total
    return (float(tot.get("weight_bytes", 0)) + float(tot.get("act_write_bytes", 0))) / 1e6


def features(graphs: Sequence[Any]) -> np.ndarray:
    """One row per graph: log analytic bound, then the predictor's graph-level features."""
    from nasctl.predictor.features import featurize_many

    feats = featurize_many(list(graphs))
    bound = np.log1p(np.array([analytic_mb(g) for g in graphs]))[:, None]
    return np.hstack([bound, np.stack([f.g for f in feats]).astype(np.float64)])


class MemoryModel:
    """Predicts a model's peak memory (MB) with a conformal interval."""

    def __init__(
        self, booster: Any, q_log: float, meta: dict[str, Any], line: tuple[float, float]
    ) -> None:
        self.booster = booster
        self.q_log = q_log
        self.meta = meta
        self.line = line  # (slope, intercept) of log MB on log1p(bound)

    def _raw(self, x: np.ndarray) -> np.ndarray:
        base = self.line[0] * x[:, 0] + self.line[1]
        return np.asarray(base + self.booster.predict(x))

    @classmethod
    def fit(
        cls, graphs: Sequence[Any], memory_mb: Sequence[float], *, seed: int = 0
    ) -> tuple[MemoryModel, dict[str, Any]]:
        """Train on 70 %, calibrate the interval on 15 %, report on the last 15 %."""
        import lightgbm as lgb

        y = np.log(np.asarray(memory_mb, dtype=np.float64))
        n = len(y)
        if n < MIN_ROWS or not np.all(np.isfinite(y)):
            raise PredictorError(
                f"a memory model needs at least {MIN_ROWS} rows with a measured memory > 0; got {n}"
            )
        x = features(graphs)
        idx = np.random.default_rng(seed).permutation(n)
        a, b = int(0.7 * n), int(0.85 * n)
        tr, va, te = idx[:a], idx[a:b], idx[b:]
        slope, icpt = (float(v) for v in np.polyfit(x[tr, 0], y[tr], 1))
        base = slope * x[:, 0] + icpt
        params = {**PARAMS, "seed": seed}
        booster = lgb.train(params, lgb.Dataset(x[tr], y[tr] - base[tr]), num_boost_round=ROUNDS)
        model = cls(booster, 0.0, {}, (slope, icpt))
        res_va = np.abs(model._raw(x[va]) - y[va])
        q = float(np.quantile(res_va, min(1.0, COVERAGE * (1 + 1 / max(1, len(va))))))
        pred_te = model._raw(x[te])
        mape = float(np.mean(np.abs(np.exp(pred_te) - np.exp(y[te])) / np.exp(y[te])) * 100)
        cover = float(np.mean(np.abs(pred_te - y[te]) <= q))
        metrics = {
            "rows": n,
            "split": {"train": len(tr), "val": len(va), "test": len(te), "seed": seed},
            "mape": round(mape, 3),
            "coverage_90": round(cover, 3),
            "interval_factor": round(math.exp(q), 4),
        }
        model.q_log, model.meta = q, {"metrics": metrics}
        return model, metrics

    def predict(self, graphs: Sequence[Any]) -> list[tuple[float, float, float]]:
        """(MB, low, high) per graph."""
        p = self._raw(features(graphs))
        return [(math.exp(v), math.exp(v - self.q_log), math.exp(v + self.q_log)) for v in p]

    def save(self, out: Path) -> Path:
        d = Path(out) / "memory"
        d.mkdir(parents=True, exist_ok=True)
        (d / "memory.txt").write_text(self.booster.model_to_string())
        meta = {
            **self.meta,
            "q_log": self.q_log,
            "line": list(self.line),
            "target": "log MB (1e6 bytes) model peak",
        }
        (d / "memory.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
        return d

    @classmethod
    def load(cls, out: Path) -> MemoryModel:
        import lightgbm as lgb

        d = Path(out) / "memory"
        if not (d / "memory.txt").is_file():
            raise PredictorError(
                f"{out} has no memory model (train-predictor learns one when the store has "
                f">= {MIN_ROWS} measurements with memory)"
            )
        try:
            meta = json.loads((d / "memory.json").read_text())
            booster = lgb.Booster(model_str=(d / "memory.txt").read_text())
            slope, icpt = meta["line"]
        except (OSError, ValueError, KeyError, lgb.basic.LightGBMError) as e:
            raise PredictorError(f"the memory model in {d} cannot be read: {e}") from None
        return cls(booster, float(meta["q_log"]), meta, (float(slope), float(icpt)))
