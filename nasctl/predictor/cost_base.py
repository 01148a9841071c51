"""Additive cost model: latency (ms) as a non-negative sum of per-kernel costs, fit on whole graphs.

An engine runs a graph as a sequence of fused kernels, so its latency is close to a sum over the
fused groups of :class:`~nasctl.predictor.schema.GraphFeatures` (``x`` rows). Each group gets a
*bucket* (its main op, kernel area, stride, and whether it reaches an output: a depthwise 5x5
stride-2 conv is one bucket; dead code, which some engines skip, another) and costs
``a_b * MACs + c_b * bytes + d_b`` ms; each op type contributes ``e_op`` per occurrence and
``h_op`` per byte it moves (activations, adds, ... are memory-bound), and the graph a fixed ``f``
(framework overhead). All coefficients are >= 0, fit by
non-negative least squares on the *relative* error of whole-graph latencies (every row counts
alike whatever its size), with a small ridge term. Unlike a per-layer model, it needs only total
latencies, and unlike trees it is additive, so it interpolates between graph sizes. It is the base
(offset) of the whole-graph learners, which predict the log-ratio to it.

A bucket never seen in training borrows the coefficients of the nearest seen bucket of the same op
(else of a related op: grouped conv -> conv, ...), so every kernel costs something.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nasctl.arch.graph import OPS
from nasctl.predictor.batch import batch_of
from nasctl.predictor.schema import GRAPH_FEATURES, N_OPS, NODE_FEATURES, GraphFeatures

_COL = {n: i for i, n in enumerate(NODE_FEATURES)}
_HEAVY = ("conv", "dwconv", "gconv", "linear", "matmul")
_MID = ("add", "mul", "concat", "maxpool", "avgpool", "globalavgpool", "globalmaxpool")
#: Priority of an op as the "main" op of its group (the compute node over its fused epilogue).
PRIORITY = np.array([3.0 if o in _HEAVY else 2.0 if o in _MID else 1.0 for o in OPS])
#: Related op whose buckets stand in for an op never seen in training.
FALLBACK = {
    "gconv": "conv",
    "dwconv": "gconv",
    "matmul": "linear",
    "linear": "matmul",
    "avgpool": "maxpool",
    "maxpool": "avgpool",
    "globalmaxpool": "globalavgpool",
    "globalavgpool": "globalmaxpool",
}
_COSTS = ("log1p_macs", "log1p_read_bytes", "log1p_write_bytes", "log1p_weight_bytes")
_COUNTS = np.array([GRAPH_FEATURES.index(f"count_{o}") for o in OPS])  # op counts of a graph
_BYTES = np.array([GRAPH_FEATURES.index(f"log1p_bytes_{o}") for o in OPS])  # bytes per op type
RIDGE = 1e-3  # ridge weight on the column-scaled coefficients
SCALE = 1e-6  # MACs and bytes in millions


def row_table(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per group row of ``x`` (NODE_FEATURES columns): (bucket code, MACs, bytes), MACs and
    bytes in millions."""
    main = np.argmax(x[:, :N_OPS] * PRIORITY.astype(x.dtype), axis=1)
    area = np.rint(np.expm1(x[:, _COL["log1p_kernel_area"]].astype(np.float64))).astype(np.int64)
    stride = np.rint(np.expm1(x[:, _COL["log1p_stride"]].astype(np.float64))).astype(np.int64)
    live = x[:, _COL["live"]] > 0
    code = ((main * 10_000 + np.clip(area, 0, 999)) * 100 + np.clip(stride, 0, 99)) * 2 + live
    cost = np.expm1(x[:, [_COL[c] for c in _COSTS]].astype(np.float64)) * SCALE
    return code, cost[:, 0], cost[:, 1:].sum(1)


def group_table(feats: list[GraphFeatures]) -> tuple[np.ndarray, ...]:
    """For all groups of ``feats``: (graph index, bucket code, MACs, bytes)."""
    x = np.concatenate([f.x for f in feats]) if feats else np.zeros((0, len(NODE_FEATURES)))
    seg = np.repeat(np.arange(len(feats)), [f.x.shape[0] for f in feats])
    return (seg, *row_table(x))


def _decode(code: np.ndarray) -> tuple[np.ndarray, ...]:
    """(op, kernel area, stride, live) of bucket codes."""
    c = code // 2
    return c // 1_000_000, (c // 100) % 10_000, c % 100, code % 2


class AdditiveModel:
    """Non-negative additive cost model over bucketed fused groups (see module docstring)."""

    def __init__(self, codes: np.ndarray, coef: np.ndarray) -> None:
        self.codes = np.asarray(codes, dtype=np.int64)  # sorted bucket codes seen in training
        self.coef = np.asarray(coef, dtype=np.float64)  # [f, a_b, c_b, d_b, e_op, h_op]

    # -- design ------------------------------------------------------------------------------
    def _bucket_of(self, code: np.ndarray) -> np.ndarray:
        """Index into ``self.codes`` of each group's bucket (nearest seen bucket when unseen;
        -1 when neither the op nor its fallback was seen)."""
        pos = np.clip(np.searchsorted(self.codes, code), 0, len(self.codes) - 1)
        out = np.where(self.codes[pos] == code, pos, -1)
        miss = np.flatnonzero(out < 0)
        if miss.size:  # each distinct unseen code looked up once
            unseen, inv = np.unique(code[miss], return_inverse=True)
            out[miss] = np.array([self._nearest(int(c)) for c in unseen], dtype=out.dtype)[inv]
        return out

    def _nearest(self, code: int) -> int:
        op, area, stride, live = (int(v[0]) for v in _decode(np.array([code])))
        s_op, s_area, s_stride, s_live = _decode(self.codes)
        for cand in (op, OPS.index(FALLBACK[OPS[op]]) if OPS[op] in FALLBACK else -1):
            m = np.flatnonzero(s_op == cand)
            if m.size:
                d = np.abs(np.log1p(s_area[m]) - np.log1p(area)) + 0.5 * (s_stride[m] != stride)
                d = d + 2.0 * (s_live[m] != live)
                return int(m[np.argmin(d)])
        return -1

    def design(self, feats: list[GraphFeatures]) -> np.ndarray:
        """(graphs, 1 + 3 * buckets + 2 * N_OPS) matrix: 1, per bucket summed MACs, bytes and
        group count, per op its count and bytes moved (MACs and bytes in millions)."""
        if not feats:
            return np.zeros((0, 1 + 3 * len(self.codes) + 2 * N_OPS))
        fb = batch_of(feats)
        if fb is not None:  # views of one FeatureBatch: each distinct group row decoded once
            return self.design_rows(fb.xtab, fb.xcode, fb.group_graph, fb.g)
        x = np.concatenate([f.x for f in feats])
        seg = np.repeat(np.arange(len(feats)), [f.x.shape[0] for f in feats])
        return self.design_rows(x, None, seg, np.stack([f.g for f in feats]))

    def design_rows(
        self, xtab: np.ndarray, row: np.ndarray | None, seg: np.ndarray, g: np.ndarray
    ) -> np.ndarray:
        """:meth:`design` from batch arrays: ``xtab`` distinct group rows, ``row`` (K,) the row
        of each group (None: one row per group), ``seg`` (K,) the graph of each group, ``g``
        (graphs, GRAPH_FEATURES) graph vectors. Each distinct row is decoded once."""
        code, macs, nbytes = row_table(xtab)
        k, n = len(self.codes), g.shape[0]
        width = 1 + 3 * k + 2 * N_OPS
        b = self._bucket_of(code) if k else np.full(code.size, -1)
        if row is not None:
            b, macs, nbytes = b[row], macs[row], nbytes[row]
        ok = b >= 0
        s, bk = np.asarray(seg)[ok], b[ok]
        idx = np.concatenate(
            [s * width + 1 + bk, s * width + 1 + k + bk, s * width + 1 + 2 * k + bk]
        )
        w = np.concatenate([macs[ok], nbytes[ok], np.ones(bk.size)])
        A = np.bincount(idx, weights=w, minlength=n * width).reshape(n, width)
        A[:, 0] = 1.0
        g = np.asarray(g, dtype=np.float64)
        A[:, 1 + 3 * k : 1 + 3 * k + N_OPS] = g[:, _COUNTS]
        A[:, 1 + 3 * k + N_OPS :] = np.expm1(g[:, _BYTES]) * SCALE
        return A

    # -- fit / predict -----------------------------------------------------------------------
    @classmethod
    def fit(
        cls, feats: list[GraphFeatures], y_ms: np.ndarray, ridge: float = RIDGE
    ) -> AdditiveModel:
        """Fit on graphs ``feats`` with latencies ``y_ms`` (ms, > 0)."""
        from scipy.optimize import nnls

        _, code, *_ = group_table(feats)
        model = cls(np.unique(code), np.zeros(0))
        A = model.design(feats)
        y = np.asarray(y_ms, dtype=np.float64)
        rel = A / y[:, None]
        scale = np.maximum(np.abs(rel).max(0), 1e-12)
        Z = rel / scale
        lhs = np.vstack([Z, np.sqrt(ridge) * np.eye(Z.shape[1])])
        rhs = np.concatenate([np.ones(len(y)), np.zeros(Z.shape[1])])
        coef, _ = nnls(lhs, rhs, maxiter=50 * Z.shape[1])
        model.coef = coef / scale
        return model

    def predict_ms(self, feats: list[GraphFeatures]) -> np.ndarray:
        """Latency estimate (ms) per graph, floored at 1e-6 ms."""
        if not feats:
            return np.zeros(0)
        return np.maximum(self.design(feats) @ self.coef, 1e-6)

    def predict_log(self, feats: list[GraphFeatures]) -> np.ndarray:
        """Natural log of :meth:`predict_ms`."""
        return np.log(self.predict_ms(feats))

    def to_dict(self) -> dict[str, Any]:
        return {"codes": self.codes.tolist(), "coef": self.coef.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AdditiveModel:
        codes, coef = np.asarray(d["codes"], dtype=np.int64), np.asarray(d["coef"], np.float64)
        if coef.size != 1 + 3 * codes.size + 2 * N_OPS:
            raise ValueError(
                f"additive model has {coef.size} coefficients for {codes.size} buckets"
            )
        return cls(codes, coef)
