"""Measured memory as a second target, predicting log MB of the model's measured peak memory
(``memory_mb`` of the training rows: the cpu device's ``model_peak_bytes``). A non-negative
least-squares fit of the memory terms (weights by kind, batch norms counted folded as ONNX
Runtime runs them, live activations, all activations: :func:`memory_terms`) is the base, so new
sizes and families extrapolate; LightGBM learns the log residual from the terms
(:func:`features`). The 90 % interval is conformal, applied both ways: calibrated on the
families (search spaces) left out in turn when the rows name at least two, else on a random
15 % (:meth:`MemoryModel.fit`). Saved as LightGBM text plus JSON (no pickle) in
``DIR/memory/``. The analytic bound (weights + every activation written,
:func:`analytic_mb`) is the search's fallback.
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
#: families needed to calibrate the interval on families left out (else split-conformal)
MIN_FAMILIES = 2
#: folds of the rows of no family when the interval is calibrated on families left out
FOLDS = 5


def _weighted_quantile(v: np.ndarray, w: np.ndarray, q: float) -> float:
    """The smallest value whose weighted share of ``v`` (weights ``w``) is at least ``q``."""
    o = np.argsort(v)
    c = np.cumsum(w[o]) / np.sum(w)
    return float(v[o][min(len(v) - 1, int(np.searchsorted(c, q)))])


def families(rows: Sequence[Any]) -> list[str | None]:
    """The family of each training row for :meth:`MemoryModel.fit`'s interval: its search
    space; ``None`` for a single layer measured alone or a model file of no space."""
    return [
        None if getattr(r, "single_layer", False) or not r.space else str(r.space) for r in rows
    ]


def analytic_mb(graph: Any) -> float:
    """Weights plus every activation written, MB (1e6 bytes): the analytic upper bound."""
    from nasctl.arch.costs import graph_costs

    tot = graph_costs(graph).total
    return (float(tot.get("weight_bytes", 0)) + float(tot.get("act_write_bytes", 0))) / 1e6


#: the terms of the physical base (MB): what a runtime holds while it runs a model
TERMS = ("conv_weights", "folded_conv_weights", "linear_weights", "live_peak", "activations")
#: the terms the trees see (log): not ``folded_conv_weights`` (see :func:`features`)
TREE_TERMS = ("conv_weights", "linear_weights", "live_peak", "activations")


def memory_terms(graph: Any) -> dict[str, float]:
    """MB (1e6 bytes, FP32) of what ONNX Runtime holds while it runs the model as it runs it:

    - ``conv_weights``: weights of convolutions, and the few other weights (constants, norms
      that are not folded: under 1 MB in every network measured). ONNX Runtime holds about 2.9
      bytes per byte of them (a chain of 3x3 convs, ``bench/memory_weight_factor.py``: the
      initializer plus its transformed and prepacked copies); a single large conv reads about
      5x (a transient of building the session on top);
    - ``folded_conv_weights``: weights of the convolutions a batch norm is folded into when
      the session is built (ONNX Runtime writes a fused copy and frees the old one, which the
      allocator may keep: one resnet-space network measured 679 MB with its batch norms as
      nodes, 458 MB with them folded before, another 412 vs 397 MB);
    - ``linear_weights``: fully connected layers (Gemm, MatMul with a weight: 2.0 bytes per
      byte, measured the same way);
    - ``live_peak``: the largest set of activations alive at once when the nodes run in order
      (each tensor from its producer to its last consumer: what an arena must hold at least);
    - ``activations``: every activation written.

    A batch norm right after a convolution is counted as ONNX Runtime runs it, folded into
    that convolution: no weights of its own, no activation of its own (its output is the
    conv's). nasctl's spaces write such batch norms as nodes, exporters such as torch's fold
    them already: counted folded, the same network gives the same terms either way."""
    from nasctl.arch.costs import node_costs, numel
    from nasctl.arch.graph import CONV_OPS

    producer = {t: n for n in graph.nodes for t in n.outputs}
    alias: dict[str, str] = {}
    w = {"conv": 0.0, "folded": 0.0, "linear": 0.0}
    act = 0.0
    nodes = []
    for n in graph.nodes:
        src = producer.get(n.inputs[0]) if n.inputs else None
        if n.op == "batchnorm" and src is not None and src.op in CONV_OPS and n.outputs:
            alias[n.outputs[0]] = alias.get(n.inputs[0], n.inputs[0])
            w["folded"] += node_costs(src)["weight_bytes"]
            continue
        c = node_costs(n)
        kind = "linear" if n.op in ("linear", "matmul") else "conv"
        w[kind] += c["weight_bytes"]
        act += c["act_write_bytes"]
        nodes.append(n)
    shapes = graph.tensor_shapes()
    last: dict[str, int] = {}
    for i, n in enumerate(nodes):
        for t in n.inputs:
            last[alias.get(t, t)] = i
    for t in graph.outputs:
        last[alias.get(t, t)] = len(nodes)
    live = {t: 4.0 * numel(shapes.get(t, ())) for t in graph.inputs}
    peak = sum(live.values())
    for i, n in enumerate(nodes):
        for t, shape in zip(n.outputs, n.out_shapes, strict=False):
            live[t] = 4.0 * numel(shape)
        peak = max(peak, sum(live.values()))
        for t in [t for t in live if last.get(t, -1) <= i]:
            live.pop(t)
    vals = (w["conv"], w["folded"], w["linear"], peak, act)
    return {k: v / 1e6 for k, v in zip(TERMS, vals, strict=True)}


def features(graphs: Sequence[Any]) -> np.ndarray:
    """One row per graph: the log of each memory term and of their weights + activations sum
    (the analytic bound as the runtime sees it, batch norms folded). Only these
    family-agnostic quantities: with the graph-level op counts as well, the trees learned the
    residuals of the families they saw and a held-out space did worse than the base alone
    (leave-one-space-out, mbconv held out: 30.4 % MAPE vs 11.9 % with these; docs/benchmarks.md,
    issue 14)."""
    t = np.array([[memory_terms(g)[k] for k in TREE_TERMS] for g in graphs])
    bound = t.sum(axis=1) - t[:, TREE_TERMS.index("live_peak")]
    return np.log1p(np.hstack([bound[:, None], t]))


def term_matrix(graphs: Sequence[Any]) -> np.ndarray:
    """``[1, *TERMS]`` per graph (:func:`memory_terms`)."""
    rows = [[1.0, *(memory_terms(g)[k] for k in TERMS)] for g in graphs]
    return np.array(rows, dtype=np.float64)


class MemoryModel:
    """Predicts a model's peak memory (MB) with a conformal interval.

    The base is physical: a non-negative least-squares fit in MB of ``c0 + a * conv weights +
    b * folded conv weights + c * linear weights + d * live peak + e * activations``
    (:func:`memory_terms`: a runtime holds each kind of weight once or more, prepacked copies
    included, plus an arena at least as large as the live activations), so new sizes and new
    families extrapolate along the terms; LightGBM learns the log residual from
    :func:`features` (the terms and their sum). A model saved with other terms (an older
    nasctl) is refused with a message to train again: its trees read other features."""

    def __init__(
        self, booster: Any, q_log: float, meta: dict[str, Any], base: Sequence[float]
    ) -> None:
        self.booster = booster
        self.q_log = q_log
        self.meta = meta
        self.base = np.asarray(base, dtype=np.float64)

    def _base_log(self, graphs: Sequence[Any], x: np.ndarray | None = None) -> np.ndarray:
        """Log MB of the physical base alone."""
        return np.log(np.maximum(term_matrix(graphs) @ self.base, 1e-3))

    def _raw(self, graphs: Sequence[Any], x: np.ndarray) -> np.ndarray:
        return np.asarray(self._base_log(graphs) + self.booster.predict(x))

    @classmethod
    def _fit_on(
        cls, x: np.ndarray, terms: np.ndarray, mb: np.ndarray, rows: np.ndarray, seed: int
    ) -> MemoryModel:
        """The base (NNLS) and the trees on ``rows``."""
        import lightgbm as lgb
        from scipy.optimize import nnls

        # relative errors count alike for small and large models: rows weighted by 1 / MB
        w = 1.0 / np.maximum(mb[rows], WEIGHT_FLOOR_MB)
        coef, _ = nnls(terms[rows] * w[:, None], mb[rows] * w)
        model = cls(None, 0.0, {}, coef)
        base = np.log(np.maximum(terms @ coef, 1e-3))
        model.booster = lgb.train(
            {**PARAMS, "seed": seed},
            lgb.Dataset(x[rows], np.log(mb[rows]) - base[rows]),
            num_boost_round=ROUNDS,
        )
        return model

    def _raw_x(self, x: np.ndarray, terms: np.ndarray) -> np.ndarray:
        return np.log(np.maximum(terms @ self.base, 1e-3)) + self.booster.predict(x)

    @classmethod
    def fit(
        cls,
        graphs: Sequence[Any],
        memory_mb: Sequence[float],
        *,
        seed: int = 0,
        groups: Sequence[str | None] | None = None,
    ) -> tuple[MemoryModel, dict[str, Any]]:
        """Fit on 85 % of the rows and report on the last 15 % (held out, random).

        The 90 % interval: with ``groups`` (a family per row, e.g. the search space; ``None``
        for rows of no family, such as single layers) naming at least :data:`MIN_FAMILIES`
        families, it is calibrated for families the model has not seen: each family is left
        out in turn (rows of no family: :data:`FOLDS` random folds, kept in training for the
        families), the model refitted on the rest, and the interval is the 90 % quantile of
        the held-out absolute log residuals, each family weighing alike. Without families,
        split-conformal: 70 % train, 15 % calibration (the quantile of its residuals)."""
        graphs = list(graphs)
        mb = np.asarray(memory_mb, dtype=np.float64)
        n = len(mb)
        if n < MIN_ROWS or not np.all(np.isfinite(mb)) or not np.all(mb > 0):
            raise PredictorError(
                f"a memory model needs at least {MIN_ROWS} rows with a measured memory > 0; got {n}"
            )
        if groups is not None and len(groups) != n:
            raise PredictorError(f"{len(groups)} families for {n} rows")
        y = np.log(mb)
        x = features(graphs)
        terms = term_matrix(graphs)
        rng = np.random.default_rng(seed)
        idx = rng.permutation(n)
        cut = int(0.85 * n)
        fit_rows, te = idx[:cut], idx[cut:]
        fams = sorted({str(groups[i]) for i in fit_rows if groups[i] is not None}) if groups else []
        if len(fams) >= MIN_FAMILIES:
            assert groups is not None
            fam = np.array(["" if g is None else str(g) for g in groups], dtype=object)
            fold = rng.integers(0, FOLDS, n)
            res, wts = [], []
            for f in fams:
                out = fit_rows[fam[fit_rows] == f]
                keep = fit_rows[fam[fit_rows] != f]
                m = cls._fit_on(x, terms, mb, keep, seed)
                res.append(np.abs(m._raw_x(x[out], terms[out]) - y[out]))
                wts.append(np.full(len(out), 1.0 / len(out)))
            loose = fit_rows[fam[fit_rows] == ""]
            if len(loose):
                r_l = []
                for k in range(FOLDS):
                    out = loose[fold[loose] == k]
                    if len(out):
                        m = cls._fit_on(x, terms, mb, np.setdiff1d(fit_rows, out), seed)
                        r_l.append(np.abs(m._raw_x(x[out], terms[out]) - y[out]))
                res.append(np.concatenate(r_l))
                wts.append(np.full(len(res[-1]), 1.0 / len(res[-1])))
            q = _weighted_quantile(np.concatenate(res), np.concatenate(wts), COVERAGE)
            model = cls._fit_on(x, terms, mb, fit_rows, seed)
            split: dict[str, Any] = {"train": len(fit_rows), "test": len(te), "seed": seed}
            split["interval"] = f"families left out: {len(fams)}" + (
                f" + {FOLDS} folds of {len(loose)} rows of no family" if len(loose) else ""
            )
        else:
            tr, va = fit_rows[: int(0.7 * n)], fit_rows[int(0.7 * n) :]
            model = cls._fit_on(x, terms, mb, tr, seed)
            res_va = np.abs(model._raw_x(x[va], terms[va]) - y[va])
            q = float(np.quantile(res_va, min(1.0, COVERAGE * (1 + 1 / max(1, len(va))))))
            split = {"train": len(tr), "val": len(va), "test": len(te), "seed": seed}
        pred_te = model._raw_x(x[te], terms[te])
        mape = float(np.mean(np.abs(np.exp(pred_te) - mb[te]) / mb[te]) * 100)
        cover = float(np.mean(np.abs(pred_te - y[te]) <= q))
        metrics = {
            "rows": n,
            "split": split,
            "mape": round(mape, 3),
            "coverage_90": round(cover, 3),
            "interval_factor": round(math.exp(q), 4),
            "base_mb": {
                k: round(float(c), 4) for k, c in zip(("const", *TERMS), model.base, strict=True)
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
        meta["base"] = [float(c) for c in self.base]
        meta["base_terms"] = ["const", *TERMS]
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
            base = [float(v) for v in meta["base"]]
            q_log = float(meta["q_log"])
        except (OSError, ValueError, KeyError, TypeError, lgb.basic.LightGBMError) as e:
            raise PredictorError(f"the memory model in {d} cannot be read: {e}") from None
        if meta.get("base_terms") != ["const", *TERMS]:
            raise PredictorError(
                f"the memory model in {d} was learned on other memory terms (an older nasctl: "
                f"{meta.get('base_terms', 'a line on the bound')}); train the predictor again"
            )
        return cls(booster, q_log, meta, base)
