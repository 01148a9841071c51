"""Per-layer latency model: LightGBM on per-layer rows, relative to a roofline estimate.

A device that reports per-layer times (``TrainingRow.layers``: each a time and the graph nodes it
covers) gives one training row per layer: the layer's features (:func:`schema.group_rows`: op
counts, shape of its heaviest node, MACs and bytes) and the target ``log(time_ms / roofline_ms)``
with ``roofline_ms = max(MACs / peak, bytes / bandwidth)``. Peak (MACs per ms) and bandwidth
(bytes per ms) are measured from the same data (95th percentile of achieved rates), so a model
trained on small layers extrapolates in units of the device's own limits.

A graph's estimate is the sum over its fused groups (``fusion.fuse_groups``) plus a learned
per-model overhead ``a + b * groups`` (launch and framework cost), fit by least squares on the
whole-graph latencies. Its log is a feature of the whole-graph models.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nasctl.predictor.batch import FeatureBatch, batch_of
from nasctl.predictor.distinct_rows import distinct_rows, predict_distinct
from nasctl.predictor.parallel import lib_threads
from nasctl.predictor.schema import N_OPS, GraphFeatures, group_rows

LAYER_PARAMS: dict[str, Any] = {
    "objective": "regression",
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_data_in_leaf": 5,
    "max_bin": 63,
    "lambda_l2": 1.0,
    "verbose": -1,
    "num_threads": 1,
}
MIN_LAYER_ROWS = 30


def _with_roof(x: np.ndarray, peak: float, bw: float) -> tuple[np.ndarray, np.ndarray]:
    """Append log roofline terms to group rows; return (features, roofline ms)."""
    macs = np.expm1(x[:, N_OPS + 6])
    nbytes = np.expm1(x[:, N_OPS + 7]) + np.expm1(x[:, N_OPS + 8]) + np.expm1(x[:, N_OPS + 9])
    roof = np.maximum(macs / peak, nbytes / bw) + 1e-6
    extra = np.column_stack([np.log(macs / peak + 1e-9), np.log(nbytes / bw + 1e-9), np.log(roof)])
    return np.hstack([x, extra]), roof


def _merged_layers(n: int, pos: dict[str, int], lts: list[Any]) -> tuple[np.ndarray, list[float]]:
    """(group per node, -1 outside any; time per group) of reported layers. Reports that share a
    node are one group with their times summed: an engine may report several kernels for one
    node (ONNX Runtime's NCHWc layout runs a convolution as reorder-in, conv, reorder-out, each
    reported under the conv's name), and a node's time is all of them."""
    parent: list[int] = []  # union-find over the reports

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner = np.full(n, -1)  # a report covering each node
    times: list[float] = []
    for lt in lts:
        idx = [pos[nd] for nd in lt.nodes if nd in pos]
        if not idx or lt.time_ms <= 0:
            continue
        me = len(times)
        parent.append(me)
        times.append(float(lt.time_ms))
        for other in {root(int(o)) for o in owner[idx] if o >= 0}:
            parent[other] = me
        owner[idx] = me
    if not times:
        return owner, []
    roots = np.array([root(i) for i in range(len(times))])
    ids, group_of_report = np.unique(roots, return_inverse=True)
    total = np.bincount(group_of_report, weights=np.asarray(times), minlength=ids.size)
    grp = np.where(owner >= 0, group_of_report[np.maximum(owner, 0)], -1)
    return grp, total.tolist()


def layer_table(
    feats: list[GraphFeatures], layers: list[list[Any]]
) -> tuple[np.ndarray, np.ndarray]:
    """Group rows and times (ms) of every reported layer that maps to known graph nodes
    (reports sharing nodes merged, :func:`_merged_layers`)."""
    xs, ts = [], []
    for f, lts in zip(feats, layers, strict=True):
        if not lts or f.raw is None:
            continue
        pos = {nid: i for i, nid in enumerate(f.node_ids)}
        grp, times = _merged_layers(len(f.node_ids), pos, lts)
        if times:
            xs.append(group_rows(f.raw, f.costs, f.op, grp, len(times)))
            ts.extend(times)
    if not xs:
        return np.zeros((0, 1)), np.zeros(0)
    return np.vstack(xs), np.asarray(ts)


class LayerwiseModel:
    """Per-layer LightGBM plus roofline constants and the per-model overhead."""

    def __init__(self, booster: Any, meta: dict[str, float]) -> None:
        self.booster = booster
        self.meta = dict(meta)

    @classmethod
    def fit(
        cls,
        feats: list[GraphFeatures],
        layers: list[list[Any]],
        totals_ms: np.ndarray,
        seed: int = 0,
    ) -> LayerwiseModel | None:
        """Fit on the layer rows of ``feats``; None when fewer than MIN_LAYER_ROWS layers."""
        import lightgbm as lgb

        x, t = layer_table(feats, layers)
        if t.size < MIN_LAYER_ROWS:
            return None
        macs = np.expm1(x[:, N_OPS + 6])
        nbytes = np.expm1(x[:, N_OPS + 7 : N_OPS + 10]).sum(1)
        peak = float(np.quantile(macs[macs > 0] / t[macs > 0], 0.95)) if (macs > 0).any() else 1.0
        bw = float(np.quantile(nbytes[nbytes > 0] / t[nbytes > 0], 0.95))
        xr, roof = _with_roof(x, max(peak, 1e-9), max(bw, 1e-9))
        params = {**LAYER_PARAMS, "seed": seed}
        booster = lgb.train(params, lgb.Dataset(xr, np.log(t / roof)), num_boost_round=300)
        model = cls(
            booster,
            {
                "peak_macs_per_ms": peak,
                "bytes_per_ms": bw,
                "overhead_ms": 0.0,
                "overhead_ms_per_group": 0.0,
            },
        )
        sums = model.layer_sum_ms(feats)
        fb = batch_of(feats)
        if fb is not None:  # count groups without gathering every row
            groups = np.diff(fb.group_off).astype(np.float64)
        else:
            groups = np.array([f.x.shape[0] for f in feats], dtype=np.float64)
        a, b = np.linalg.lstsq(
            np.column_stack([np.ones_like(groups), groups]),
            np.asarray(totals_ms) - sums,
            rcond=None,
        )[0]
        model.meta["overhead_ms"] = float(max(a, 0.0))
        model.meta["overhead_ms_per_group"] = float(max(b, 0.0))
        return model

    def row_ms(self, x: np.ndarray, *, repeats: bool = False) -> np.ndarray:
        """Predicted time (ms) of each group row of ``x``: roofline x exp(model); ``repeats``:
        ``x`` may repeat rows (the model then runs once per distinct row)."""
        xr, roof = _with_roof(x, self.meta["peak_macs_per_ms"], self.meta["bytes_per_ms"])
        if repeats:
            return roof * np.exp(predict_distinct(self.booster, xr, num_threads=lib_threads()))
        return roof * np.exp(self.booster.predict(xr, num_threads=lib_threads()))

    def layer_sum_ms(self, feats: list[GraphFeatures]) -> np.ndarray:
        """Sum of predicted group times per graph (ms), without overhead."""
        if not feats:
            return np.zeros(0)
        fb = batch_of(feats)
        if fb is not None:  # views of one FeatureBatch: once per distinct group row
            return layer_sum_ms(self, fb)
        x = np.vstack([f.x for f in feats])
        per = self.row_ms(x, repeats=True)
        seg = np.repeat(np.arange(len(feats)), [f.x.shape[0] for f in feats])
        return np.bincount(seg, weights=per, minlength=len(feats))

    def roofline_ms(self, feats: list[GraphFeatures]) -> np.ndarray:
        """Per graph, the sum over nodes of ``max(MACs / peak, bytes / bandwidth)`` (ms) with the
        device's fitted peak and bandwidth: no learning, so it extrapolates to any family."""
        peak, bw = self.meta["peak_macs_per_ms"], self.meta["bytes_per_ms"]
        return np.array(
            [
                float(np.maximum(f.costs[:, 0] / peak, f.costs[:, 1:4].sum(1) / bw).sum())
                for f in feats
            ]
        )

    def predict_ms(self, feats: list[GraphFeatures]) -> np.ndarray:
        """Whole-graph estimate (ms): layer sum plus the learned overhead."""
        fb = batch_of(feats)
        if fb is not None:  # count groups without gathering every row
            groups = np.diff(fb.group_off).astype(np.float64)
        else:
            groups = np.array([f.x.shape[0] for f in feats], dtype=np.float64)
        return (
            self.layer_sum_ms(feats)
            + self.meta["overhead_ms"]
            + self.meta["overhead_ms_per_group"] * groups
        )

    def to_string(self) -> str:
        return str(self.booster.model_to_string())

    @classmethod
    def from_string(cls, text: str, meta: dict[str, float]) -> LayerwiseModel:
        import lightgbm as lgb

        return cls(lgb.Booster(model_str=text), meta)


def layer_sum_ms(model: Any, batch: FeatureBatch) -> np.ndarray:
    """:meth:`LayerwiseModel.layer_sum_ms` of the graphs of ``batch`` (same values), with the
    per-layer model run once per distinct group row."""
    if len(batch) == 0:
        return np.zeros(0)
    if batch.xcode is None or batch.xrep is None:
        reps, codes = distinct_rows(batch.xtab)
        tab = batch.xtab[reps]
    else:
        tab, codes = batch.xtab, batch.xcode
    per = model.row_ms(tab)
    return np.bincount(batch.group_graph, weights=per[codes], minlength=len(batch))
