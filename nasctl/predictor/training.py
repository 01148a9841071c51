"""Training a predictor: split rows, fit the members, the cost base, ensemble weights and the
calibrated 90 % intervals.

    pred, metrics = train(rows, device_id="cpu-ort1.20-fp32-t1")
    pred.save("pred/")

:func:`fit` takes featurized :class:`~nasctl.predictor.inference.Example` s (train and
validation); :func:`train` splits TrainingRow-like rows 70/15/15, fits and evaluates. Rows marked
``single_layer`` (one layer measured alone) train the per-layer model only.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from nasctl.errors import PredictorError
from nasctl.predictor import ensemble, ood, report
from nasctl.predictor.cost_base import AdditiveModel
from nasctl.predictor.features import featurize_many
from nasctl.predictor.gbdt import GBDTModel
from nasctl.predictor.genotype_onehot import GenotypeEncoder
from nasctl.predictor.gnn import GNNModel
from nasctl.predictor.inference import (
    FEATURE_CHUNK,
    MODELS,
    Example,
    Predictor,
    base_log,
    gc_paused,
    members_log,
)
from nasctl.predictor.kernel_model import fit_from_examples
from nasctl.predictor.kernel_units import graph_units, profile_unit_times, unit_rows
from nasctl.predictor.layerwise import LayerwiseModel
from nasctl.predictor.metrics import regression_metrics
from nasctl.predictor.schema import SCHEMA_VERSION, schema_hash

MIN_ROWS = 20
BASE_MARGIN = 0.05  # the additive base is dropped when the plain GBDT is this much better
ALPHA = 0.1  # intervals target 90 % coverage
CV_FOLDS = 4  # folds of the out-of-fold predictions that fit the ensemble weights
CV_MIN_VAL = 150  # with fewer validation rows, out-of-fold predictions of the training rows
CV_MAX_ROWS = 3000  # help fit the ensemble weights (unless there are more training rows)
Progress = Callable[[str, int, int], None]


def fit(
    train: Sequence[Example],
    y_train_ms: np.ndarray,
    val: Sequence[Example],
    y_val_ms: np.ndarray,
    *,
    device_id: str,
    seed: int = 0,
    precision: str = "fp32",
    gnn_steps: int = 200,
    progress: Progress | None = None,
) -> Predictor:
    """Fit members on ``train``, ensemble weights and interval quantiles on ``val``.

    The GBDT and the GNN learn the log-ratio of latency to an additive cost base
    (:mod:`cost_base`, fit on the whole-graph training rows; :attr:`Predictor.base`). With fewer
    than ``CV_MIN_VAL`` validation rows, the ensemble weights are fit on those plus
    ``CV_FOLDS``-fold out-of-fold predictions of the training rows (:func:`cross_fit`)."""
    say = progress or (lambda stage, i, n: None)
    y_tr, y_va = np.log(np.asarray(y_train_ms, float)), np.log(np.asarray(y_val_ms, float))
    enc = GenotypeEncoder.fit([e.space for e in train], [e.genotype for e in train])
    say("layerwise", 0, 4)
    lw = None
    if any(e.layers for e in train):
        lw = LayerwiseModel.fit(
            [e.feats for e in train],
            [e.layers or [] for e in train],
            np.asarray(y_train_ms, float),
            seed=seed,
        )
    meta = {
        "device_id": device_id,
        "schema_version": SCHEMA_VERSION,
        "schema_hash": schema_hash(),
        "n_train": len(train),
        "n_val": len(val),
        "precision": precision,
        "seed": seed,
        "alpha": ALPHA,
    }
    add = fit_additive(train, np.asarray(y_train_ms, float))
    kernels = fit_from_examples(train, np.asarray(y_train_ms, float), seed=seed)
    pred = Predictor(meta, None, None, lw, enc, add, kernels)  # type: ignore[arg-type]
    wi = whole_graph_rows(train)  # single-layer rows train the per-layer model only
    tw, y_w = [train[i] for i in wi], np.asarray(y_train_ms, float)[wi]
    X = pred.design(tw)
    r_tr = y_tr[wi] - base_log(pred, tw)  # the learners predict the log-ratio to the base
    say("gbdt", 1, 4)
    pred.gbdt = GBDTModel.fit(X, r_tr, seed=seed)
    if add is not None:  # keep the base only where it helps on validation data
        plain = GBDTModel.fit(X, y_tr[wi], seed=seed)
        if not base_helps(pred, plain, val, y_va):
            pred.base = None
            pred.gbdt, r_tr = plain, y_tr[wi]
    say("gnn", 2, 4)
    pred.gnn = GNNModel.fit([e.feats for e in tw], X, r_tr, seed=seed, steps=gnn_steps)
    say("calibrate", 3, 4)
    oof = None
    if len(val) < CV_MIN_VAL and len(tw) <= CV_MAX_ROWS:
        oof = cross_fit(tw, y_w, X, seed=seed, gnn_steps=gnn_steps, use_base=pred.base is not None)
    calibrate(pred, val, y_va, oof=oof)
    pred.meta["ood"] = ood.fit_check(list(train), y_tr, list(val), y_va, lw, ALPHA)
    ood.add_kernel_quantile(pred.meta["ood"], list(val), y_va, kernels, ALPHA)
    report.kernel_quantile(pred, val, np.asarray(y_val_ms, float), ALPHA)
    say("done", 4, 4)
    return pred


def whole_graph_rows(train: Sequence[Example]) -> list[int]:
    """Indices of the whole-graph rows of ``train`` (not ``single_layer`` rows), or of all rows
    when fewer than ``MIN_ROWS`` are whole graphs."""
    idx = [i for i, e in enumerate(train) if not e.single_layer]
    return idx if len(idx) >= MIN_ROWS else list(range(len(train)))


def base_helps(
    pred: Predictor, plain: GBDTModel, val: Sequence[Example], y_val_log: np.ndarray
) -> bool:
    """Whether the GBDT on the log-ratio to the additive base (``pred.gbdt``) beats ``plain``
    (the same on log latency) on the whole-graph validation rows: mean absolute log error lower,
    or within ``BASE_MARGIN`` of it. Some devices are far from additive (phones whose cells with a
    cut-off output take 0.01 ms): there the base hurts the ranking and is dropped."""
    vi = [i for i, e in enumerate(val) if not e.single_layer]
    if len(vi) < MIN_ROWS:
        return True
    vw, y = [val[i] for i in vi], np.asarray(y_val_log, float)[vi]
    Xv = pred.design(vw)
    with_base = np.abs(pred.gbdt.predict_log(Xv) + base_log(pred, vw) - y).mean()
    without = np.abs(plain.predict_log(Xv) - y).mean()
    return bool(without >= (1.0 - BASE_MARGIN) * with_base)


def fit_additive(train: Sequence[Example], y_ms: np.ndarray) -> AdditiveModel | None:
    """The additive cost base (:mod:`cost_base`) on the whole-graph rows of ``train``
    (``single_layer`` rows excluded); None with fewer than ``MIN_ROWS`` of them."""
    idx = [i for i, e in enumerate(train) if not e.single_layer]
    if len(idx) < MIN_ROWS:
        return None
    return AdditiveModel.fit([train[i].feats for i in idx], np.asarray(y_ms, float)[idx])


def cross_fit(
    train: Sequence[Example],
    y_ms: np.ndarray,
    X: np.ndarray,
    *,
    seed: int = 0,
    gnn_steps: int = 200,
    folds: int = CV_FOLDS,
    use_base: bool = True,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Out-of-fold log-ms predictions of gbdt and gnn on the whole-graph rows of ``train`` (base,
    GBDT and GNN refit without each fold; ``X`` the design of ``train``), and those rows' log
    latencies: more rows than the validation split to fit the ensemble weights on."""
    idx = np.array([i for i, e in enumerate(train) if not e.single_layer])
    perm = np.random.default_rng(seed + 1).permutation(len(train))
    fold_of = np.empty(len(train), dtype=np.int64)
    fold_of[perm] = np.arange(len(train)) % folds
    y_log = np.log(y_ms)
    out = {m: np.zeros(len(train)) for m in MODELS}
    feats = [e.feats for e in train]
    for k in range(folds):
        tr, te = np.flatnonzero(fold_of != k), np.flatnonzero(fold_of == k)
        add = fit_additive([train[i] for i in tr], y_ms[tr]) if use_base else None
        base = add.predict_log(feats) if add is not None else np.zeros(len(train))
        r = y_log[tr] - base[tr]
        gb = GBDTModel.fit(X[tr], r, seed=seed)
        gn = GNNModel.fit([feats[i] for i in tr], X[tr], r, seed=seed, steps=gnn_steps)
        out["gbdt"][te] = gb.predict_log(X[te]) + base[te]
        out["gnn"][te] = gn.predict_log([feats[i] for i in te], X[te]) + base[te]
    return {m: v[idx] for m, v in out.items()}, y_log[idx]


def calibrate(
    pred: Predictor,
    val: Sequence[Example],
    y_val_log: np.ndarray,
    *,
    oof: tuple[dict[str, np.ndarray], np.ndarray] | None = None,
) -> None:
    """Ensemble weights (from validation rows plus, when given, out-of-fold predictions
    ``oof`` of :func:`cross_fit`) and conformal quantiles (from validation rows)."""
    logs = members_log(pred, val)
    if oof is None:
        pred.meta["weights"] = ensemble.fit_weights(logs, y_val_log)
    else:
        both = {m: np.concatenate([logs[m], oof[0][m]]) for m in MODELS}
        pred.meta["weights"] = ensemble.fit_weights(both, np.concatenate([y_val_log, oof[1]]))
    logs["ensemble"] = ensemble.combine(logs, pred.meta["weights"])
    spread = ensemble.disagreement({m: logs[m] for m in MODELS})
    conf = {}
    for name in (*MODELS, "ensemble"):
        err = np.abs(logs[name] - y_val_log)
        if name == "ensemble":
            sigma0 = float(np.median(spread)) + 1e-3
            q = ensemble.conformal_quantile(err / (sigma0 + spread), ALPHA)
        else:
            sigma0, q = 1.0, ensemble.conformal_quantile(err, ALPHA)
        conf[name] = {"q": q, "sigma0": sigma0, "n_cal": int(err.size)}
    pred.meta["conformal"] = conf


def evaluate(pred: Predictor, ex: Sequence[Example], y_ms: np.ndarray) -> dict[str, Any]:
    """Metrics (:func:`metrics.regression_metrics`) of gnn, gbdt and ensemble on ``ex``."""
    logs = pred.member_logs(ex)
    iv = pred.intervals(logs)
    return {
        name: regression_metrics(y_ms, np.exp(logs[name]), *iv[name])
        for name in (*MODELS, "ensemble")
    }


def split_indices(n: int, seed: int, train_size: int | None = None) -> tuple[list[int], ...]:
    """Random train/validation/test split (70/15/15, at least 5 validation and 5 test rows);
    ``train_size`` caps the training part. Raises when ``n < MIN_ROWS``."""
    if n < MIN_ROWS:
        raise PredictorError(
            f"too few measurements to split into train/validation/test: {n}; need at least "
            f"{MIN_ROWS} measured architectures on this device (measure more with `nasctl profile`)"
        )
    idx = list(range(n))
    random.Random(seed).shuffle(idx)
    n_test = max(5, int(math.ceil(0.15 * n)))
    n_val = max(5, int(math.ceil(0.15 * n)))
    test, val, train = idx[:n_test], idx[n_test : n_test + n_val], idx[n_test + n_val :]
    if train_size is not None:
        if train_size < 10:
            raise PredictorError(f"train_size {train_size} is too small; use at least 10")
        train = train[:train_size]
    return train, val, test


def featurize_rows(rows: Sequence[Any], say: Progress) -> list[Example]:
    """Examples of TrainingRow-like rows, in order, featurized in chunks of one precision
    (per-node raw attributes kept where a row has per-layer times)."""
    with gc_paused():
        return _featurize_chunks(rows, say)


def _featurize_chunks(rows: Sequence[Any], say: Progress) -> list[Example]:
    out: list[Example | None] = [None] * len(rows)
    # single kernels measured alone: every row gets its kernel units (the per-kernel model)
    units = any(getattr(r, "single_layer", False) for r in rows)
    for start in range(0, len(rows), FEATURE_CHUNK):
        idx = range(start, min(start + FEATURE_CHUNK, len(rows)))
        by_prec: dict[str, list[int]] = {}
        for i in idx:
            by_prec.setdefault(str(getattr(rows[i], "precision", None) or "fp32"), []).append(i)
        for prec, part in by_prec.items():
            keep = any(getattr(rows[i], "layers", None) for i in part)
            feats = featurize_many([rows[i].graph for i in part], prec, keep_raw=keep)
            for i, f in zip(part, feats, strict=True):
                r = rows[i]
                layers = list(r.layers) if getattr(r, "layers", None) else None
                single = bool(getattr(r, "single_layer", False))
                urows, utimes = None, None
                if units:
                    gu = graph_units(r.graph)
                    urows = unit_rows(r.graph, gu)
                    if layers and not single:
                        lat = float(getattr(r, "latency_ms", 0) or 0)
                        utimes = profile_unit_times(r.graph, gu, layers, lat, len(urows[1]))
                out[i] = Example(
                    f,
                    getattr(r, "space", None),
                    getattr(r, "genotype", None),
                    layers,
                    single,
                    urows,
                    unit_times=utimes,
                )
        say("features", idx.stop, len(rows))
    return out  # type: ignore[return-value]


def train(
    rows: Sequence[Any],
    device_id: str,
    *,
    seed: int = 0,
    train_size: int | None = None,
    gnn_steps: int = 200,
    progress: Progress | None = None,
) -> tuple[Predictor, dict[str, Any]]:
    """Split ``rows`` (TrainingRow-like: ``graph``, ``latency_ms``, ``space``, ``genotype``,
    ``layers``, ``precision``, ``single_layer``), train, and evaluate on the test part."""
    rows = [r for r in rows if r.latency_ms is not None and float(r.latency_ms) > 0]
    tr, va, te = split_indices(len(rows), seed, train_size)
    say = progress or (lambda stage, i, n: None)
    ex = featurize_rows(rows, say)
    y = np.array([float(r.latency_ms) for r in rows])
    precisions = {getattr(r, "precision", "fp32") for r in rows}
    pred = fit(
        [ex[i] for i in tr],
        y[tr],
        [ex[i] for i in va],
        y[va],
        device_id=device_id,
        seed=seed,
        precision=sorted(precisions)[0],
        gnn_steps=gnn_steps,
        progress=progress,
    )
    test = [ex[i] for i in te]
    whole = [i for i, e in enumerate(test) if not e.single_layer] or list(range(len(test)))
    metrics = evaluate(pred, [test[i] for i in whole], y[te][whole])  # whole graphs
    metrics["parts"] = report.by_part(pred, test, y[te])
    metrics["split"] = {
        "train": len(tr),
        "val": len(va),
        "test": len(te),
        "test_whole_graphs": len(whole),
        "seed": seed,
    }
    metrics["device_id"] = device_id
    metrics["weights"] = pred.meta["weights"]
    return pred, metrics
