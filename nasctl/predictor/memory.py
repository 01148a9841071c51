"""Measured memory as a second target: LightGBM on the analytic bound (weights + every
activation written, :func:`nasctl.arch.costs.graph_costs`) and the memory terms, predicting
log MB of the model's measured peak memory (``memory_mb`` of the training rows: the cpu
device's ``model_peak_bytes``). A non-negative least-squares fit of the memory terms (weights by
kind, live activations, all activations: :func:`memory_terms`) is the base, so new sizes and
families extrapolate; the trees learn the residual from the other features. The interval is
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
#: MB below which a row's weight in the base fit stops growing (rows are weighted by 1 / MB so
#: that relative errors count alike; single tiny layers would otherwise dominate the fit)
WEIGHT_FLOOR_MB = 5.0


def analytic_mb(graph: Any) -> float:
    """Weights plus every activation written, MB (1e6 bytes): the analytic upper bound."""
    from nasctl.arch.costs import graph_costs

    tot = graph_costs(graph).total
    return (float(tot.get("weight_bytes", 0)) + float(tot.get("act_write_bytes", 0))) / 1e6


#: the terms of the physical base (MB): what a runtime holds while it runs a model
TERMS = ("conv_weights", "linear_weights", "other_weights", "live_peak", "activations")


def memory_terms(graph: Any) -> dict[str, float]:
    """MB (1e6 bytes, FP32) of: the weights of convolutions, of fully connected layers (Gemm,
    MatMul with a weight; ONNX Runtime prepacks both kinds differently) and of the rest; the
    largest set of activations alive at once when the nodes run in order (each tensor from its
    producer to its last consumer: what an arena must hold at least); every activation written."""
    from nasctl.arch.costs import node_costs, numel
    from nasctl.arch.graph import CONV_OPS

    w = {"conv": 0.0, "linear": 0.0, "other": 0.0}
    act = 0.0
    for n in graph.nodes:
        c = node_costs(n)
        kind = "conv" if n.op in CONV_OPS else "linear" if n.op in ("linear", "matmul") else "other"
        w[kind] += c["weight_bytes"]
        act += c["act_write_bytes"]
    shapes = graph.tensor_shapes()
    last: dict[str, int] = {}
    for i, n in enumerate(graph.nodes):
        for t in n.inputs:
            last[t] = i
    for t in graph.outputs:
        last[t] = len(graph.nodes)
    live = {t: 4.0 * numel(shapes.get(t, ())) for t in graph.inputs}
    peak = sum(live.values())
    for i, n in enumerate(graph.nodes):
        for t, shape in zip(n.outputs, n.out_shapes, strict=False):
            live[t] = 4.0 * numel(shape)
        peak = max(peak, sum(live.values()))
        for t in [t for t in live if last.get(t, -1) <= i]:
            live.pop(t)
    vals = (w["conv"], w["linear"], w["other"], peak, act)
    return {k: v / 1e6 for k, v in zip(TERMS, vals, strict=True)}


def features(graphs: Sequence[Any]) -> np.ndarray:
    """One row per graph: the log analytic bound and the log of each memory term. Only these
    family-agnostic quantities: with the graph-level op counts as well, the trees learned the
    residuals of the families they saw and a held-out space did worse than the base alone
    (leave-one-space-out, mbconv held out: 30.4 % MAPE vs 11.9 % with these; docs/benchmarks.md,
    issue 14)."""
    bound = np.log1p(np.array([analytic_mb(g) for g in graphs]))[:, None]
    terms = np.log1p(np.array([[memory_terms(g)[k] for k in TERMS] for g in graphs]))
    return np.hstack([bound, terms])


def term_matrix(graphs: Sequence[Any]) -> np.ndarray:
    """``[1, conv_weights, linear_weights, other_weights, live_peak, activations]`` per graph."""
    rows = [[1.0, *(memory_terms(g)[k] for k in TERMS)] for g in graphs]
    return np.array(rows, dtype=np.float64)


class MemoryModel:
    """Predicts a model's peak memory (MB) with a conformal interval.

    The base is physical: a non-negative least-squares fit in MB of ``c0 + a * conv weights +
    b * linear weights + c * other weights + d * live peak + e * activations``
    (:func:`memory_terms`: a runtime holds each kind of weight once or more, prepacked copies
    included, plus an arena at least as large as the live activations), so new sizes and new
    families extrapolate along the terms; LightGBM learns the log residual from
    :func:`features` (the analytic bound and the terms). A model saved before the terms existed
    (a line in the log bound as its base) still loads."""

    def __init__(
        self,
        booster: Any,
        q_log: float,
        meta: dict[str, Any],
        line: tuple[float, float] | None = None,
        base: Sequence[float] | None = None,
    ) -> None:
        self.booster = booster
        self.q_log = q_log
        self.meta = meta
        self.line = line  # older models: (slope, intercept) of log MB on log1p(bound)
        self.base = None if base is None else np.asarray(base, dtype=np.float64)

    def _base_log(self, graphs: Sequence[Any], x: np.ndarray) -> np.ndarray:
        if self.base is not None:
            return np.log(np.maximum(term_matrix(graphs) @ self.base, 1e-3))
        assert self.line is not None
        return self.line[0] * x[:, 0] + self.line[1]

    def _raw(self, graphs: Sequence[Any], x: np.ndarray) -> np.ndarray:
        return np.asarray(self._base_log(graphs, x) + self.booster.predict(x))

    @classmethod
    def fit(
        cls, graphs: Sequence[Any], memory_mb: Sequence[float], *, seed: int = 0
    ) -> tuple[MemoryModel, dict[str, Any]]:
        """Train on 70 %, calibrate the interval on 15 %, report on the last 15 %."""
        import lightgbm as lgb
        from scipy.optimize import nnls

        graphs = list(graphs)
        mb = np.asarray(memory_mb, dtype=np.float64)
        n = len(mb)
        if n < MIN_ROWS or not np.all(np.isfinite(mb)) or not np.all(mb > 0):
            raise PredictorError(
                f"a memory model needs at least {MIN_ROWS} rows with a measured memory > 0; got {n}"
            )
        y = np.log(mb)
        x = features(graphs)
        terms = term_matrix(graphs)
        idx = np.random.default_rng(seed).permutation(n)
        a, b = int(0.7 * n), int(0.85 * n)
        tr, va, te = idx[:a], idx[a:b], idx[b:]
        # relative errors count alike for small and large models: rows weighted by 1 / MB
        w = 1.0 / np.maximum(mb[tr], WEIGHT_FLOOR_MB)
        coef, _ = nnls(terms[tr] * w[:, None], mb[tr] * w)
        model = cls(None, 0.0, {}, base=coef)
        base = model._base_log(graphs, x)
        params = {**PARAMS, "seed": seed}
        model.booster = lgb.train(
            params, lgb.Dataset(x[tr], y[tr] - base[tr]), num_boost_round=ROUNDS
        )
        res_va = np.abs(model._raw([graphs[i] for i in va], x[va]) - y[va])
        q = float(np.quantile(res_va, min(1.0, COVERAGE * (1 + 1 / max(1, len(va))))))
        pred_te = model._raw([graphs[i] for i in te], x[te])
        mape = float(np.mean(np.abs(np.exp(pred_te) - mb[te]) / mb[te]) * 100)
        cover = float(np.mean(np.abs(pred_te - y[te]) <= q))
        metrics = {
            "rows": n,
            "split": {"train": len(tr), "val": len(va), "test": len(te), "seed": seed},
            "mape": round(mape, 3),
            "coverage_90": round(cover, 3),
            "interval_factor": round(math.exp(q), 4),
            "base_mb": {
                k: round(float(c), 4) for k, c in zip(("const", *TERMS), coef, strict=True)
            },
        }
        model.q_log, model.meta = q, {"metrics": metrics}
        return model, metrics

    def predict(self, graphs: Sequence[Any]) -> list[tuple[float, float, float]]:
        """(MB, low, high) per graph."""
        graphs = list(graphs)
        p = self._raw(graphs, features(graphs))
        return [(math.exp(v), math.exp(v - self.q_log), math.exp(v + self.q_log)) for v in p]

    def save(self, out: Path) -> Path:
        d = Path(out) / "memory"
        d.mkdir(parents=True, exist_ok=True)
        (d / "memory.txt").write_text(self.booster.model_to_string())
        meta = {
            **self.meta,
            "q_log": self.q_log,
            "target": "log MB (1e6 bytes) model peak",
        }
        if self.base is not None:
            meta["base"] = [float(c) for c in self.base]
            meta["base_terms"] = ["const", *TERMS]
        if self.line is not None:
            meta["line"] = list(self.line)
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
            base = meta.get("base")
            line = None if base is not None else tuple(float(v) for v in meta["line"])
            if base is not None and len(base) != 1 + len(TERMS):
                raise ValueError(f"base has {len(base)} terms, expected {1 + len(TERMS)}")
        except (OSError, ValueError, KeyError, TypeError, lgb.basic.LightGBMError) as e:
            raise PredictorError(f"the memory model in {d} cannot be read: {e}") from None
        return cls(booster, float(meta["q_log"]), meta, line=line, base=base)  # type: ignore[arg-type]
