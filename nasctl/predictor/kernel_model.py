"""Per-kernel latency model (issue 16, nn-Meter style): one LightGBM regressor per kernel type on
the kernels' configurations, summed over a graph's kernels, plus a learned per-graph term.

Training rows are the single kernels ``nasctl profile --kernels`` measures. A sample is one unit
of :mod:`kernel_units` plus the layout conversions (``reorder`` units, :mod:`kernel_layout`) ORT
runs around it when it is measured alone; its per-layer profile splits the measured latency
between them (:func:`_kernel_labels`), so the kernel is labelled with its own time and each
reorder with its own, and a network is predicted with the reorders it really has. Each
regressor predicts ``log(time / roofline)`` (roofline ``max(MACs / peak, bytes / bandwidth)``,
peak and bandwidth the 95th percentile of the achieved rates over the kernel rows), so it
extrapolates in units of the device's limits. A type with fewer than :data:`MIN_TYPE_ROWS` rows
is answered by a model over all kernel rows (type as a feature); a type never sampled
(``other``: transpose, split, ...) by the roofline times the median ratio of all kernels.

Two corrections turn a sample's time alone into the kernel's time inside a network (issue 16's
fourth version, ``kernel-units-v5``; v6 bounds the second):

* **Per-run cost.** A sample is one kernel timed as a whole ONNX Runtime run, so its latency
  includes the cost of one run (session dispatch, input/output binding: ~9 us here), which a
  kernel inside a network does not pay once per kernel. It is estimated from the data as the
  :data:`RUN_COST_PERCENTILE` th percentile of the single-kernel samples' latencies (the
  smallest kernels are almost only that cost), taken off every sample's label before the
  profile split (floored at 0.1 us) and added once per graph (``run_ms``).
* **In-network ratio.** The whole-graph rows ``nasctl profile`` stores carry ORT's per-layer
  profile; mapped to the graph's units (:func:`kernel_units.profile_unit_times`) they give each
  unit's in-network time. A LightGBM on the unit features (plus the type code) learns
  ``log(in-network time / predicted time alone)`` over all profiled units of the space graphs
  (reorders excluded: their entries cannot be told apart); at prediction the log ratio is
  clipped to +-:data:`INNET_CLIP` and shrunk by :data:`INNET_SHRINK` (half way back to ratio 1
  in log: the spaces cover few unit configurations, so the full correction overfits them: it
  made the tuning set's worst error larger), and a unit type
  absent from the profiled units keeps ratio 1. It captures e.g. depthwise convolutions that run
  faster in a network than alone and large layers whose weights are cold in a network.
  **It does not extrapolate** (v6): a tree model answers flat outside its training range, so a
  unit whose MACs, weight, input or output bytes (:data:`INNET_RANGE_FEATURES`) lie outside the
  [min, max] its type had among the fitted units (saved as ``innet_ranges``) keeps ratio 1: the
  profiles say nothing about it (e.g. the spaces' only fully connected layer is a ~1000-way
  classifier of a few MB; AlexNet's 151 MB FC is not that layer). Ratio 1 rather than a
  correction fading with the distance: a fade width would be one more constant, with no data
  outside the range to choose it on.

The per-graph term, fitted on whole-graph rows (search-space architectures, never the evaluated
models): ``latency = sum_t s_t * K_t + c * units + a`` with ``K_t`` the predicted time of the
graph's kernels of type ``t``: what a kernel costs inside a network rather than alone (cache
effects, the per-run cost). :data:`TERM_RULES` are the ways to fit it (least squares on relative
errors with a ridge toward ``s_t = 1``, ``c = a = 0``, or parts of it); a type absent from the
whole-graph rows keeps ``s_t = 1``. The default rule, :data:`TERM_RULE`, is ``plain``: no term,
the kernel sum (why: at :data:`TERM_RULE`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nasctl.predictor.kernel_layout import DEFAULT_BLOCK, host_block
from nasctl.predictor.kernel_units import TYPES, UNIT_FEATURES, _act_code

PARAMS: dict[str, Any] = {
    "objective": "regression",
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_data_in_leaf": 5,
    "max_bin": 63,
    "lambda_l2": 1.0,
    "verbose": -1,
    "num_threads": 1,
}
ROUNDS = 300
MIN_TYPE_ROWS = 150  # kernel rows of a type for its own regressor (fewer: the shared one)
MIN_ROWS = 30  # kernel rows in all for a kernel model
RIDGE = 1.0
#: the per-run cost: this percentile of the single-kernel samples' latencies (module docstring)
RUN_COST_PERCENTILE = 1.0
#: the in-network correction's log ratio is clipped to +-INNET_CLIP and multiplied by this (shrunk
#: half way back to ratio 1); chosen among 0.5 / 0.75 / 1 (and the correction off) on the spaces'
#: 5-fold CV and the tuning set, never on an aside set (bench/bench_kernel_default.py, rule in
#: docs/benchmarks.md: among arms within 2 points of the best CV MAPE, the smallest tuning worst
#: error). On data measured on a quiet machine (1600 kernels, 2026-12-03): 0.5 CV 6.9 %, tuning
#: worst +10.4 %; 0.75 CV 5.5 %, +14.4 %. (0.75 was chosen before on data measured under load.)
INNET_SHRINK = 0.5
INNET_CLIP = 1.0
INNET_ROUNDS = 200
INNET_MIN_LEAF = 20
#: the unit features whose per-type [min, max] over the fitted units bounds where the in-network
#: correction applies (outside: ratio 1, module docstring)
INNET_RANGE_FEATURES = (
    "log1p_macs", "log1p_weight_bytes", "log1p_read_bytes", "log1p_write_bytes",
)  # fmt: skip
_RANGE_COLS = [UNIT_FEATURES.index(k) for k in INNET_RANGE_FEATURES]
#: the kernel rows' layout (reorder units, the channel-padding feature, the grouped-conv columns
#: of :func:`_group_columns`, v4: the split/transpose types and the host's NCHWc block in
#: ``nchwc_block``; v5: labels net of the per-run cost ``run_ms`` and the in-network
#: correction ``kernel_innet.txt``; v6: the correction's per-type feature ranges ``innet_ranges``,
#: outside which it does not apply); a model saved with another is refused on load (its boosters
#: would read the wrong columns or its answers mean another thing)
FORMAT = "kernel-units-v6"
_MACS = UNIT_FEATURES.index("log1p_macs")
_BYTES = [UNIT_FEATURES.index(k) for k in ("log1p_read_bytes", "log1p_write_bytes")]
_WBYTES = UNIT_FEATURES.index("log1p_weight_bytes")
_ACT = UNIT_FEATURES.index("act")
_CIN, _COUT = UNIT_FEATURES.index("log1p_c_in"), UNIT_FEATURES.index("log1p_c_out")
_GROUPS = UNIT_FEATURES.index("log1p_groups")
_KERNEL = UNIT_FEATURES.index("kernel")  # a reorder's direction (kernel_units.reorder_rows)


def _roof(
    x: np.ndarray, peak: float, bw: float, block: int = DEFAULT_BLOCK
) -> tuple[np.ndarray, np.ndarray]:
    B = max(int(block), 1)  # noqa: N806 - the NCHWc block (1: no padding)
    macs = np.expm1(x[:, _MACS])
    nbytes = np.expm1(x[:, _BYTES]).sum(1) + np.expm1(x[:, _WBYTES])
    roof = np.maximum(macs / peak, nbytes / bw) + 1e-6
    # blocked kernels compute on channels padded to the NCHWc block (kernel_layout)
    cin, cout = np.expm1(x[:, _CIN]), np.expm1(x[:, _COUT])
    pad = (np.ceil(cin / B) * B / np.maximum(cin, 1)) * (
        np.ceil(cout / B) * B / np.maximum(cout, 1)
    )
    extra = np.column_stack(
        [np.log(macs / peak + 1e-9), np.log(nbytes / bw + 1e-9), np.log(roof), np.log(pad)]
    )
    return np.hstack([x, extra, _group_columns(cin, cout, x[:, _GROUPS], B)]), roof


def _group_columns(
    cin: np.ndarray, cout: np.ndarray, log1p_g: np.ndarray, block: int = DEFAULT_BLOCK
) -> np.ndarray:
    """A grouped conv's cost beyond its MACs (zeros / ones for other kernels): output channels
    per group, the padding of each group's input and output widths to the NCHWc block and
    whether ORT runs it blocked (both widths block multiples, :mod:`kernel_layout`; else NCHW,
    one small GEMM per group)."""
    cin, cout = np.maximum(np.round(cin), 1), np.maximum(np.round(cout), 1)
    g = np.maximum(np.round(np.expm1(log1p_g)), 1)
    grouped = (g > 1) & (g < cin)
    gin, gout = cin / g, cout / g
    B = max(int(block), 1)  # noqa: N806
    gpad = (np.ceil(gin / B) * B / gin) * (np.ceil(gout / B) * B / gout)
    blocked = grouped & (block > 0) & (gin % B == 0) & (gout % B == 0)
    return np.column_stack(
        [
            np.where(grouped, np.log1p(gout), 0.0),
            np.where(grouped, np.log(gpad), 0.0),
            blocked.astype(np.float64),
        ]
    )


#: ways to fit the per-graph term on whole-graph rows (issue 16; compared without the aside set
#: by bench/bench_graph_term.py): ``plain``: none (the kernel sum); ``ridge<L>``: scales per
#: type, per-kernel overhead and constant by least squares on relative errors, ridge ``L`` toward
#: (1, 0, 0); ``scales``: scales alone (ridge 1); ``overhead``: per-kernel overhead and constant
#: alone (ridge 1); ``unit-median``: the median over graphs of (measured - kernel sum) / kernels
#: as the per-kernel overhead, nothing else; ``half``: ``ridge1`` shrunk halfway to the plain sum.
#: Types absent from every whole-graph row keep scale 1 under every rule.
TERM_RULES: tuple[str, ...] = (
    "plain", "ridge1", "ridge10", "ridge100", "scales", "overhead", "unit-median", "half",
)  # fmt: skip
#: the default, ``plain``: chosen by bench/bench_graph_term.py on 5-fold CV over the spaces'
#: whole graphs and a tuning set of other families (GhostNet, RepVGG, Inception-v3), never on the
#: aside set: a fitted term made the tuning set's worst error larger (GhostNet +18 -> +25 %: the
#: spaces ask for a per-kernel overhead a network of many small kernels does not pay) and the CV
#: error no smaller than 2 points (docs/benchmarks.md, issue 16)
TERM_RULE = "plain"


def fit_term(  # noqa: N803 - K: the per-type kernel sums, as in the docstring
    K: np.ndarray, n: np.ndarray, y: np.ndarray, rule: str
) -> tuple[np.ndarray, float, float]:
    """(scale per type, per-kernel ms, constant ms) of rule ``rule`` (:data:`TERM_RULES`) from
    per-type kernel sums ``K`` (graphs x types), kernel counts ``n`` and latencies ``y``."""
    if rule not in TERM_RULES:
        raise ValueError(f"unknown per-graph term rule {rule!r}; expected one of {TERM_RULES}")
    ones = np.ones(K.shape[1])
    if rule == "plain" or y.size < 5:
        return ones, 0.0, 0.0
    if rule == "unit-median":
        return ones, float(np.median((y - K.sum(1)) / np.maximum(n, 1))), 0.0
    ridge = {"ridge10": 10.0, "ridge100": 100.0}.get(rule, RIDGE)
    X = np.column_stack([K, n, np.ones_like(n)]) / y[:, None]  # noqa: N806
    prior = np.r_[ones, 0.0, 0.0]
    present = np.r_[K.any(0), True, True]
    if rule == "scales":
        present[-2:] = False
    elif rule == "overhead":
        present[:-2] = False
    A = X[:, present]  # noqa: N806
    target = np.ones_like(y) - X[:, ~present] @ prior[~present]
    lam = ridge * np.eye(A.shape[1])
    theta = prior.copy()
    theta[present] = np.linalg.solve(A.T @ A + lam, A.T @ target + lam @ prior[present])
    if rule == "half":
        theta = prior + 0.5 * (theta - prior)
    return theta[:-2], float(theta[-2]), float(theta[-1])


class KernelModel:
    """Per-type boosters (``"all"``: over every type), roofline constants, per-graph term."""

    def __init__(self, boosters: dict[str, Any], meta: dict[str, Any]) -> None:
        self.boosters, self.meta = boosters, dict(meta)

    @classmethod
    def fit(
        cls, rows: np.ndarray, types: list[str], ms: np.ndarray, seed: int = 0
    ) -> KernelModel | None:
        """Fit on kernel rows (``rows``: :data:`UNIT_FEATURES` rows, ``types``, measured ms);
        None with fewer than :data:`MIN_ROWS`."""
        import lightgbm as lgb

        ms = np.asarray(ms, float)
        if ms.size < MIN_ROWS:
            return None
        macs = np.expm1(rows[:, _MACS])
        nbytes = np.expm1(rows[:, _BYTES]).sum(1) + np.expm1(rows[:, _WBYTES])
        peak = float(np.quantile(macs[macs > 0] / ms[macs > 0], 0.95)) if (macs > 0).any() else 1.0
        bw = float(np.quantile(nbytes / ms, 0.95))
        block = host_block()
        xr, roof = _roof(rows, max(peak, 1e-9), max(bw, 1e-9), block)
        y = np.log(ms / roof)
        code = np.array([TYPES.index(t) for t in types], dtype=np.float64)
        params = {**PARAMS, "seed": seed}
        boosters = {"all": lgb.train(params, lgb.Dataset(np.column_stack([xr, code]), y), ROUNDS)}
        counts = {t: int(sum(1 for u in types if u == t)) for t in TYPES}
        for t, n in counts.items():
            if n >= MIN_TYPE_ROWS:
                m = code == TYPES.index(t)
                boosters[t] = lgb.train(params, lgb.Dataset(xr[m], y[m]), ROUNDS)
        meta = {
            "format": FORMAT,
            "nchwc_block": block,
            "peak_macs_per_ms": peak,
            "bytes_per_ms": bw,
            "median_log_ratio": float(np.median(y)),
            "rows_per_type": counts,
            "graph_term": {"scale": {t: 1.0 for t in TYPES}, "per_unit_ms": 0.0, "const_ms": 0.0},
            "run_ms": 0.0,
            "innet_types": [],
            "innet_ranges": {},
            "innet_shrink": INNET_SHRINK,
            "innet_clip": INNET_CLIP,
        }
        return cls(boosters, meta)

    def _innet_x(self, rows: np.ndarray, types: list[str]) -> np.ndarray:
        xr, _ = _roof(rows, self.meta["peak_macs_per_ms"], self.meta["bytes_per_ms"], self.block)
        code = np.array([TYPES.index(t) for t in types], dtype=np.float64)
        return np.column_stack([xr, code])

    def fit_innet(
        self, graphs: list[tuple[np.ndarray, list[str]]], times: list[np.ndarray], seed: int = 0
    ) -> int:
        """Fit the in-network correction (module docstring) on whole graphs' units and their
        profiled in-network times (:func:`kernel_units.profile_unit_times`); returns the number
        of units it was fit on (0: too few, no correction)."""
        import lightgbm as lgb

        xs, ys, ts, raw = [], [], [], []
        for (rows, types), t in zip(graphs, times, strict=True):
            alone = self.unit_ms(rows, types)
            m = (t > 0) & (alone > 0) & (np.asarray(types) != "reorder")
            if m.any():
                sel = [ty for ty, k in zip(types, m, strict=True) if k]
                xs.append(self._innet_x(rows[m], sel))
                raw.append(rows[m][:, _RANGE_COLS])
                ys.append(np.log(t[m] / alone[m]))
                ts += sel
        n = int(sum(len(v) for v in ys))
        if n < MIN_ROWS:
            return 0
        params = {**PARAMS, "seed": seed, "min_data_in_leaf": INNET_MIN_LEAF}
        data = lgb.Dataset(np.vstack(xs), np.concatenate(ys))
        self.boosters["innet"] = lgb.train(params, data, INNET_ROUNDS)
        self.meta["innet_types"] = sorted(set(ts))
        self.meta["innet_units"] = n
        feats, tarr = np.vstack(raw), np.asarray(ts)
        self.meta["innet_ranges"] = {
            ty: {
                k: [float(feats[tarr == ty, j].min()), float(feats[tarr == ty, j].max())]
                for j, k in enumerate(INNET_RANGE_FEATURES)
            }
            for ty in self.meta["innet_types"]
        }
        return n

    def innet_in_range(self, rows: np.ndarray, types: list[str]) -> np.ndarray:
        """Per unit, whether its type was among the correction's fitted units and its
        :data:`INNET_RANGE_FEATURES` lie within that type's fitted [min, max]."""
        ranges = self.meta.get("innet_ranges", {})
        out = np.zeros(len(types), dtype=bool)
        tarr = np.asarray(types)
        for t, r in ranges.items():
            m = tarr == t
            if m.any():
                lo, hi = np.array([r[k] for k in INNET_RANGE_FEATURES]).T
                v = rows[m][:, _RANGE_COLS]
                out[m] = ((v >= lo) & (v <= hi)).all(1)
        return out

    def innet_ratio(self, rows: np.ndarray, types: list[str]) -> np.ndarray:
        """Per unit, in-network time / time alone (1 without a correction, for a type the
        correction never saw, or for a unit outside the ranges it was fitted on:
        :meth:`innet_in_range`)."""
        out = np.ones(len(types))
        b = self.boosters.get("innet")
        if b is None or not len(types):
            return out
        known = self.innet_in_range(rows, types)
        if not known.any():
            return out
        clip = float(self.meta.get("innet_clip", INNET_CLIP))
        shrink = float(self.meta.get("innet_shrink", INNET_SHRINK))
        sel = [t for t, k in zip(types, known, strict=True) if k]
        r = np.clip(b.predict(self._innet_x(rows[known], sel), num_threads=1), -clip, clip)
        out[known] = np.exp(shrink * r)
        return out

    def innet_ms(self, rows: np.ndarray, types: list[str]) -> np.ndarray:
        """Predicted time (ms) of each unit inside a network: alone times the in-network
        ratio."""
        return self.unit_ms(rows, types) * self.innet_ratio(rows, types)

    def alone_ms(self, graphs: list[tuple[np.ndarray, list[str]]]) -> np.ndarray:
        """Each graph's units measured alone as one run (a sampled kernel): their times alone
        plus one per-run cost."""
        run = float(self.meta.get("run_ms", 0.0))
        return np.array([self.unit_ms(r, t).sum() + run for r, t in graphs])

    @property
    def block(self) -> int:
        """The NCHWc block of the host the model was fit on (its padding features)."""
        return int(self.meta.get("nchwc_block", DEFAULT_BLOCK))

    def unit_ms(self, rows: np.ndarray, types: list[str]) -> np.ndarray:
        """Predicted time (ms) of each kernel row alone."""
        out = np.zeros(len(types))
        if not len(types):
            return out
        xr, roof = _roof(rows, self.meta["peak_macs_per_ms"], self.meta["bytes_per_ms"], self.block)
        tarr = np.asarray(types)
        counts = self.meta["rows_per_type"]
        for t in set(types):
            m = tarr == t
            if t in self.boosters and t != "innet":
                logr = self.boosters[t].predict(xr[m], num_threads=1)
            elif counts.get(t, 0) > 0:
                x = np.column_stack([xr[m], np.full(int(m.sum()), float(TYPES.index(t)))])
                logr = self.boosters["all"].predict(x, num_threads=1)
            elif t == "reorder":  # no profiled reorders: the samples' totals carry them
                continue
            else:
                logr = np.full(int(m.sum()), self.meta["median_log_ratio"])
            out[m] = roof[m] * np.exp(logr)
        return out

    def type_sums(self, graphs: list[tuple[np.ndarray, list[str]]]) -> np.ndarray:
        """(graphs, len(TYPES)) predicted in-network kernel time per type (ms) of each graph's
        units (:meth:`innet_ms`)."""
        out = np.zeros((len(graphs), len(TYPES)))
        for i, (rows, types) in enumerate(graphs):
            per = self.innet_ms(rows, types)
            for t, v in zip(types, per, strict=True):
                out[i, TYPES.index(t)] += v
        return out

    def fit_graph_term(
        self, graphs: list[tuple[np.ndarray, list[str]]], ms: np.ndarray, rule: str | None = None
    ) -> None:
        """Fit the per-graph term (module docstring) on whole graphs' units and latencies with
        one of :data:`TERM_RULES` (default :data:`TERM_RULE`)."""
        y = np.asarray(ms, float)
        rule = TERM_RULE if rule is None else rule
        K = self.type_sums(graphs)  # noqa: N806
        n = np.array([len(t) for _, t in graphs], dtype=np.float64)
        scale, per_unit, const = fit_term(K, n, y, rule)
        self.meta["graph_term"] = {
            "scale": {t: float(scale[i]) for i, t in enumerate(TYPES)},
            "per_unit_ms": float(per_unit),
            "const_ms": float(const),
            "rule": rule,
        }

    def sum_ms(self, graphs: list[tuple[np.ndarray, list[str]]]) -> np.ndarray:
        """Plain sum of each graph's predicted in-network kernel times (ms), no per-run cost,
        no per-graph term."""
        return self.type_sums(graphs).sum(1)

    def predict_ms(self, graphs: list[tuple[np.ndarray, list[str]]]) -> np.ndarray:
        """Whole-graph estimate (ms): in-network kernel sums with the learned per-graph term and
        one per-run cost (the term floored at half the plain sum, so it cannot turn an answer
        negative)."""
        K = self.type_sums(graphs)
        term = self.meta["graph_term"]
        s = np.array([term["scale"].get(t, 1.0) for t in TYPES])
        n = np.array([len(t) for _, t in graphs], dtype=np.float64)
        io = term.get("per_io_mb_ms", 0.0)  # models saved before the reorder units had one
        io = io * io_megabytes(graphs) if io else 0.0
        ms = K @ s + term["per_unit_ms"] * n + io + term["const_ms"]
        return np.maximum(ms, 0.5 * K.sum(1)) + float(self.meta.get("run_ms", 0.0))

    def texts(self) -> dict[str, str]:
        """LightGBM text models by file name (for :func:`artifacts.write_dir`)."""
        return {f"kernel_{t}.txt": str(b.model_to_string()) for t, b in self.boosters.items()}

    @classmethod
    def from_texts(cls, texts: dict[str, str], meta: dict[str, Any]) -> KernelModel:
        import lightgbm as lgb

        if meta.get("format") != FORMAT:
            raise ValueError(
                f"kernel model of format {meta.get('format')!r}, this nasctl reads {FORMAT!r}"
            )
        boosters = {
            name[len("kernel_") : -len(".txt")]: lgb.Booster(model_str=text)
            for name, text in texts.items()
            if name.startswith("kernel_") and name.endswith(".txt")
        }
        if "all" not in boosters:
            raise ValueError("kernel model without kernel_all.txt")
        return cls(boosters, meta)


def io_megabytes(graphs: list[tuple[np.ndarray, list[str]]]) -> np.ndarray:
    """Per graph, activation MB read and written by its convolution units: the stand-in for
    layout conversions of models saved before ``reorder`` units existed (``per_io_mb_ms``)."""
    conv = {"conv", "dwconv", "gconv"}
    out = np.zeros(len(graphs))
    for i, (rows, types) in enumerate(graphs):
        m = np.array([t in conv for t in types], dtype=bool)
        if m.any():
            out[i] = np.expm1(rows[m][:, _BYTES]).sum() / 1e6
    return out


_CONVS = frozenset({"conv", "dwconv", "gconv"})
_LAYOUT_OPS = frozenset({"ReorderInput", "ReorderOutput"})
_HARDSWISH = float(_act_code("hardswish"))


def kernel_row_index(ex: Any) -> list[int]:
    """Examples that are one kernel measured alone: a single-layer row whose units are one
    kernel (plus the layout conversions ORT ran around it)."""
    return [
        i
        for i, e in enumerate(ex)
        if e.single_layer and e.units and sum(t != "reorder" for t in e.units[1]) == 1
    ]


def _profile_split(e: Any, total_ms: float) -> tuple[float, list[float], list[float]] | None:
    """A single-kernel sample's latency split by its per-layer profile: (the kernel's own
    share, the ReorderInput times, the ReorderOutput times), each scaled so that the profile
    sums to the measured latency; None without a profile. A hardswish after a blocked (NCHWc)
    convolution runs as its own HardSigmoid + Mul kernels when the convolution's output is the
    model's output (as in a sample) but is fused into the convolution inside a network: those
    two kernels are left out of the kernel's share."""
    layers = [la for la in (e.layers or []) if float(getattr(la, "time_ms", 0.0)) > 0]
    total = sum(float(la.time_ms) for la in layers)
    if not layers or total <= 0:
        return None
    ops = [str((getattr(la, "extra", None) or {}).get("op", "")) for la in layers]
    rows, types = e.units
    main = next(k for k, t in enumerate(types) if t != "reorder")
    blocked = any(str(la.name).endswith("_nchwc") for la in layers)
    drop_hs = types[main] in _CONVS and rows[main, _ACT] == _HARDSWISH and blocked
    scale = total_ms / total
    core, r_in, r_out = 0.0, [], []
    for la, op in zip(layers, ops, strict=True):
        t = float(la.time_ms) * scale
        if op == "ReorderInput":
            r_in.append(t)
        elif op == "ReorderOutput":
            r_out.append(t)
        elif not (drop_hs and op in ("HardSigmoid", "Mul")):
            core += t
    return core, r_in, r_out


def _kernel_labels(
    ex: Any, y: np.ndarray, idx: list[int]
) -> tuple[list[np.ndarray], list[str], list[float]]:
    """Training rows, types and labels (ms) from single-kernel samples: each sample's kernel
    with its own share of the latency and each of its reorders with its profiled time (where
    the profile's reorders match the ones :mod:`kernel_layout` expects); without a profile the
    kernel takes the whole latency and its reorders are not labelled."""
    rows: list[np.ndarray] = []
    types: list[str] = []
    labels: list[float] = []
    for i in idx:
        urows, utypes = ex[i].units
        main = next(k for k, t in enumerate(utypes) if t != "reorder")
        split = _profile_split(ex[i], float(y[i]))
        if split is None:
            rows.append(urows[main])
            types.append(utypes[main])
            labels.append(float(y[i]))
            continue
        core, r_in, r_out = split
        rows.append(urows[main])
        types.append(utypes[main])
        labels.append(max(core, 1e-6))
        want_in = [k for k, t in enumerate(utypes) if t == "reorder" and urows[k, _KERNEL] == 1]
        want_out = [k for k, t in enumerate(utypes) if t == "reorder" and urows[k, _KERNEL] == 2]
        for want, got in ((want_in, r_in), (want_out, r_out)):
            if len(want) == len(got):
                for k, t in zip(want, got, strict=True):
                    if t > 0:
                        rows.append(urows[k])
                        types.append("reorder")
                        labels.append(t)
    return rows, types, labels


def run_cost_ms(kernel_ms: np.ndarray) -> float:
    """The per-run cost (ms) estimated from single-kernel samples' latencies: their
    :data:`RUN_COST_PERCENTILE` th percentile (0 without samples)."""
    k = np.asarray(kernel_ms, float)
    k = k[np.isfinite(k) & (k > 0)]
    return float(np.percentile(k, RUN_COST_PERCENTILE)) if k.size else 0.0


def fit_from_examples(
    train: Any, y_ms: np.ndarray, seed: int = 0, run_cost: bool = True, innet: bool = True
) -> KernelModel | None:
    """The kernel model of training examples (``.units``, ``.single_layer``, ``.layers``,
    ``.unit_times``): regressors on the single-kernel samples (:func:`_kernel_labels`; with
    ``run_cost`` their labels net of the per-run cost, :func:`run_cost_ms`), the in-network
    correction on the whole-graph rows' per-unit profiled times (``innet``), the per-graph term
    on the whole-graph rows; None without enough kernel rows."""
    y = np.asarray(y_ms, float)
    k = kernel_row_index(train)
    if len(k) < MIN_ROWS:
        return None
    run = run_cost_ms(y[k]) if run_cost else 0.0
    y_lab = y.copy()
    y_lab[k] = np.maximum(y[k] - run, 1e-4)
    rows, types, labels = _kernel_labels(train, y_lab, k)
    model = KernelModel.fit(np.vstack(rows), types, np.asarray(labels), seed=seed)
    if model is not None:
        model.meta["run_ms"] = run
        w = [i for i, e in enumerate(train) if not e.single_layer and e.units is not None]
        if innet:
            p = [i for i in w if getattr(train[i], "unit_times", None) is not None]
            model.fit_innet([train[i].units for i in p], [train[i].unit_times for i in p], seed)
        # the term is fit on what the graphs leave after their per-run cost
        model.fit_graph_term([train[i].units for i in w], np.maximum(y[w] - run, 1e-4))
        model.meta["n_kernel_rows"], model.meta["n_graph_rows"] = len(k), len(w)
    return model
