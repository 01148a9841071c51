"""The predictor: train on measured graphs, save/load, predict latency (ms) with an interval.

    pred, metrics = train(rows, device_id="cpu-ort1.20-fp32-t1")
    pred.save("pred/")
    Predictor.load("pred/").predict([graph])  # -> [Prediction(latency_ms, low_ms, high_ms)]

Members: a GNN (:mod:`gnn`) and a gradient-boosted model (:mod:`gbdt`) on graph features
(:mod:`features`) plus, for spaces with a fixed genotype layout, a genotype one-hot block
(:mod:`tokens`); with per-layer rows, a per-layer model (:mod:`layerwise`) whose estimate is an
input of both; both predict the log-ratio of latency to an additive cost model (:mod:`additive`).
The ensemble and the 90 % intervals are fit on validation rows (:mod:`ensemble`).
"""

from __future__ import annotations

import contextlib
import gc
import math
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from nasctl.arch.arrays import GraphArrays, graph_arrays
from nasctl.arch.graph import Graph
from nasctl.errors import PredictorError
from nasctl.predictor import artifacts, ensemble, ood, parallel
from nasctl.predictor.additive import AdditiveModel
from nasctl.predictor.batch import FeatureBatch, featurize_batch
from nasctl.predictor.features import SCHEMA_VERSION, GraphFeatures, featurize_many, schema_hash
from nasctl.predictor.gbdt import GBDTModel
from nasctl.predictor.gnn import GNNModel, batch_quotient
from nasctl.predictor.heap import reused_heap
from nasctl.predictor.layerwise import LayerwiseModel
from nasctl.predictor.metrics import regression_metrics
from nasctl.predictor.tokens import GenotypeEncoder

MIN_ROWS = 20
BASE_MARGIN = 0.05  # the additive base is dropped when the plain GBDT is this much better
ALPHA = 0.1  # intervals target 90 % coverage
MODELS = ("gnn", "gbdt")
CV_FOLDS = 4  # folds of the out-of-fold predictions that fit the ensemble weights
CV_MIN_VAL = 150  # with fewer validation rows, out-of-fold predictions of the training rows
CV_MAX_ROWS = 3000  # help fit the ensemble weights (unless there are more training rows)
FEATURE_CHUNK = 512  # graphs built (and scanned into node arrays) at a time
PREDICT_CHUNK = 16_384  # genotypes featurized and predicted per batch (bounds memory)
CACHE_SIZE = 1_000_000  # cached answers per loaded predictor
Progress = Callable[[str, int, int], None]
T = TypeVar("T")


@dataclass
class Prediction:
    """Predicted latency and its interval, in milliseconds."""

    latency_ms: float
    low_ms: float
    high_ms: float


@dataclass
class Example:
    """A measured (or queried) graph, featurized: what the models consume."""

    feats: GraphFeatures
    space: str | None = None
    genotype: str | None = None
    layers: list[Any] | None = None


def examples_from_graphs(
    graphs: Sequence[Graph], precision: str | None = None, keep_raw: bool = False
) -> list[Example]:
    feats = featurize_many(list(graphs), precision, keep_raw)
    return [
        Example(f, g.meta.get("space"), g.meta.get("genotype"))
        for f, g in zip(feats, graphs, strict=True)
    ]


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector. Building thousands of graphs allocates millions of
    small containers; the collections they trigger (each traversing every live graph) cost more
    than building them. Graphs and features hold no reference cycles; collection resumes after."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _examples_of(
    items: Sequence[T], make: Callable[[T], Graph], precision: str
) -> tuple[list[Example], list[tuple[str, ...] | None], FeatureBatch | None]:
    """Examples (and graph cache keys) of ``make(item)`` for each item, featurized as one
    :class:`~nasctl.predictor.batch.FeatureBatch` (also returned; None when ``items`` is
    empty). Graphs are built and scanned into node arrays ``FEATURE_CHUNK`` at a time, so that
    only one chunk of graphs is alive at once."""
    parts: list[GraphArrays] = []
    keys: list[tuple[str, ...] | None] = []
    meta: list[tuple[Any, Any]] = []
    with gc_paused():
        for start in range(0, len(items), FEATURE_CHUNK):
            graphs = [make(it) for it in items[start : start + FEATURE_CHUNK]]
            parts.append(graph_arrays(graphs, keep_ids=False))
            keys.extend(_cache_key(g, precision) for g in graphs)
            meta.extend((g.meta.get("space"), g.meta.get("genotype")) for g in graphs)
        if not parts:
            return [], [], None
        batch = featurize_batch(GraphArrays.concat(parts), precision)
        ex = [Example(f, sp, geno) for f, (sp, geno) in zip(batch.views(), meta, strict=True)]
    return ex, keys, batch


def _same(g: Graph) -> Graph:
    return g


def _cache_key(g: Graph, precision: str) -> tuple[str, ...] | None:
    """(space, genotype, precision, input shape) for search-space graphs, else None."""
    space, geno = g.meta.get("space"), g.meta.get("genotype")
    if not (space and geno):
        return None
    shape = "x".join(str(d) for s in g.inputs.values() for d in s)
    return (str(space), str(geno), precision, shape)


class Predictor:
    """A trained latency predictor for one device."""

    def __init__(
        self,
        meta: dict[str, Any],
        gbdt: GBDTModel,
        gnn: GNNModel,
        layerwise: LayerwiseModel | None,
        encoder: GenotypeEncoder,
    ) -> None:
        self.meta, self.gbdt, self.gnn = meta, gbdt, gnn
        self.layerwise, self.encoder = layerwise, encoder
        self._cache: dict[tuple[str, ...], Prediction] = {}  # by graph
        self._gcache: dict[tuple[str, str, str], Prediction] = {}  # by genotype

    @property
    def device_id(self) -> str:
        return str(self.meta["device_id"])

    # -- inputs ------------------------------------------------------------------------------
    def design(self, ex: Sequence[Example]) -> np.ndarray:
        """Graph-level input matrix: graph features, genotype block, log layerwise estimate."""
        feats = [e.feats for e in ex]
        g = np.stack([f.g for f in feats]).astype(np.float64)
        tok = np.stack([self.encoder.encode(e.space, e.genotype) for e in ex]).astype(np.float64)
        cols = [g, tok]
        if self.layerwise is not None:
            cols.append(np.log(np.maximum(self.layerwise.predict_ms(feats), 1e-6))[:, None])
        return np.hstack(cols)

    def member_logs(self, ex: Sequence[Example], quotient: Any = None) -> dict[str, np.ndarray]:
        """Log-ms predictions of each member and of the ensemble (``quotient``: see
        :meth:`GNNModel.predict_log`)."""
        out = members_log(self, ex, quotient)
        out["ensemble"] = ensemble.combine(out, self.meta["weights"])
        ood.toward_roofline(out, list(ex), self.meta.get("ood"), self.layerwise)
        return out

    def intervals(self, logs: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """(low_ms, high_ms) per model from the calibrated quantiles."""
        q = self.meta["conformal"]
        spread = ensemble.disagreement({m: logs[m] for m in MODELS})
        out = {}
        for name in (*MODELS, "ensemble"):
            half = q[name]["q"] * (q[name]["sigma0"] + (spread if name == "ensemble" else 0.0))
            if name == "ensemble":
                half = ood.interval_half(half, logs, self.meta.get("ood"))
            out[name] = (np.exp(logs[name] - half), np.exp(logs[name] + half))
        return out

    # -- prediction --------------------------------------------------------------------------
    def predict(
        self, graphs: Sequence[Graph], *, device: str | None = None, precision: str | None = None
    ) -> list[Prediction]:
        """Ensemble latency (ms) and 90 % interval for each graph. Answers for search-space
        graphs are cached per (space, genotype, precision): asking again costs a lookup."""
        self.check_device(device)
        prec = precision or str(self.meta.get("precision", "fp32"))
        keys = [_cache_key(g, prec) for g in graphs]
        todo = [i for i, k in enumerate(keys) if k is None or k not in self._cache]
        with reused_heap():
            fresh = self._predict_part([graphs[i] for i in todo], _same, None, prec)[0]
        out: list[Prediction | None] = [None] * len(graphs)
        for i, p in zip(todo, fresh, strict=True):
            out[i] = p
            k = keys[i]
            if k is not None and len(self._cache) < CACHE_SIZE:
                self._cache[k] = p
        return [p if p is not None else self._cache[keys[i]] for i, p in enumerate(out)]  # type: ignore[index]

    def predict_genotypes(
        self,
        space: str,
        genotypes: Sequence[str],
        to_graph: Callable[[str], Graph],
        *,
        precision: str | None = None,
        arrays: Callable[[list[str]], GraphArrays] | None = None,
    ) -> list[Prediction]:
        """Like :meth:`predict` for genotypes of a search space (``to_graph``: the space's
        genotype -> graph; ``arrays``: optionally the space's genotypes -> node arrays, e.g.
        ``SearchSpace.graph_arrays``, used instead of building graphs). Answers are cached per
        (``space``, genotype, precision), so a genotype asked again costs a lookup; ``space``
        must name the space *and* its configuration (e.g. ``"nb201"`` vs ``"nb201@64px"``)."""
        prec = precision or str(self.meta.get("precision", "fp32"))
        todo = list(dict.fromkeys(g for g in genotypes if (space, g, prec) not in self._gcache))
        fresh: dict[str, Prediction] = {}
        for start in range(0, len(todo), PREDICT_CHUNK):
            part = todo[start : start + PREDICT_CHUNK]
            with reused_heap():
                preds, keys = self._predict_part(part, to_graph, arrays, prec)
            for k, p in zip(keys, preds, strict=False):  # no graph keys on the arrays path
                if k is not None and len(self._cache) < CACHE_SIZE:
                    self._cache[k] = p
            fresh.update(zip(part, preds, strict=True))
        if len(self._gcache) + len(fresh) <= CACHE_SIZE:
            self._gcache.update({(space, g, prec): p for g, p in fresh.items()})
        return [fresh.get(g) or self._gcache[(space, g, prec)] for g in genotypes]

    def _predict_part(
        self,
        items: Sequence[Any],
        make: Callable[[Any], Graph],
        arrays: Callable[[list[str]], GraphArrays] | None,
        prec: str,
    ) -> tuple[list[Prediction], list[tuple[str, ...] | None]]:
        """Predictions (and graph cache keys) of ``items``: genotypes through ``arrays`` when
        given (no graph keys then), else graphs ``make(item)``; all featurized as one batch."""
        if arrays is not None:
            # the examples' space is what the graphs' meta says (as on the graph path), not
            # the caller's cache key: one graph tells
            space = make(items[0]).meta.get("space") if items else None

            def prepare(lo: int, hi: int) -> Callable[[], list[Prediction]]:
                part = arrays(list(items[lo:hi]))  # in this thread: space caches are not shared

                def run() -> list[Prediction]:
                    batch = featurize_batch(part, prec)
                    views = batch.views()
                    ex = [Example(f, space, g) for f, g in zip(views, items[lo:hi], strict=True)]
                    return self.predict_examples(ex, batch=batch)

                return run

            with gc_paused():
                n = len(items)
                parts = parallel.split_run(prepare, n, parallel.workers_for(n))
            return [p for part in parts for p in part], []
        ex, keys, fb = _examples_of(items, make, prec)
        return self.predict_examples(ex, batch=fb), keys

    def predict_examples(
        self, ex: Sequence[Example], *, batch: FeatureBatch | None = None
    ) -> list[Prediction]:
        """Ensemble latency (ms) and interval of featurized examples; ``batch``: the
        :class:`~nasctl.predictor.batch.FeatureBatch` whose views ``ex`` hold, in order (the GNN
        then works on its arrays directly)."""
        if not ex:
            return []
        quotient = None
        if batch is not None:
            quotient = batch_quotient(batch, int(self.gnn.config["layers"]))
        logs = self.member_logs(ex, quotient)
        lo, hi = self.intervals(logs)["ensemble"]
        mid = np.exp(logs["ensemble"])
        return [
            Prediction(float(m), float(a), float(b)) for m, a, b in zip(mid, lo, hi, strict=True)
        ]

    def check_device(self, device: str | None) -> None:
        """Raise unless ``device`` (a dataset id, or a name such as ``cpu`` that the id starts
        with) is the device this predictor was trained for; None checks nothing."""
        if device is None:
            return
        key = device.replace(":", "-").replace("/", "-")
        if device == self.device_id or self.device_id.startswith(key + "-"):
            return
        raise PredictorError(
            f"this predictor was trained for device {self.device_id!r}, not {device!r}; "
            "train one for that device with `nasctl train-predictor`"
        )

    # -- persistence -------------------------------------------------------------------------
    def save(self, out: str | Path) -> Path:
        out = Path(out)
        meta = {
            **self.meta,
            "gbdt_base": self.gbdt.base.to_dict(),
            "gnn": self.gnn.config,
            "encoder": self.encoder.to_dict(),
            "layerwise": self.layerwise.meta if self.layerwise else None,
            "libraries": artifacts.library_versions(),
        }
        texts = {"gbdt.txt": self.gbdt.to_string()}
        if self.layerwise is not None:
            texts["layerwise.txt"] = self.layerwise.to_string()
        artifacts.write_dir(out, meta, texts, {"gnn.pt": self.gnn.state_dict()})
        return out

    @classmethod
    def load(cls, path: str | Path) -> Predictor:
        meta, texts, blobs = artifacts.read_dir(Path(path))
        if meta.get("schema_version") != SCHEMA_VERSION or meta.get("schema_hash") != schema_hash():
            raise PredictorError(
                f"predictor {path} uses feature schema {meta.get('schema_version')!r} "
                f"({meta.get('schema_hash')}); this nasctl computes {SCHEMA_VERSION!r} "
                f"({schema_hash()}); retrain it with `nasctl train-predictor`"
            )
        try:
            gbdt = GBDTModel.from_string(texts["gbdt.txt"], meta.pop("gbdt_base"))
            gnn = GNNModel(meta.pop("gnn"), blobs["gnn.pt"])
            lw_meta = meta.pop("layerwise")
            lw = LayerwiseModel.from_string(texts["layerwise.txt"], lw_meta) if lw_meta else None
            enc = GenotypeEncoder.from_dict(meta.pop("encoder"))
        except (KeyError, RuntimeError, ValueError, TypeError) as e:
            raise PredictorError(f"predictor {path} is inconsistent: {e}; retrain it") from None
        return cls(meta, gbdt, gnn, lw, enc)


# ------------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------------


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

    The GBDT and the GNN learn the log-ratio of latency to an additive cost model
    (:mod:`additive`, fit on the whole-graph training rows). With fewer than ``CV_MIN_VAL``
    validation rows, the ensemble weights are fit on those plus ``CV_FOLDS``-fold out-of-fold
    predictions of the training rows (:func:`cross_fit`)."""
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
    pred = Predictor(meta, None, None, lw, enc)  # type: ignore[arg-type]
    add = fit_additive(train, np.asarray(y_train_ms, float))
    meta["additive"] = add.to_dict() if add is not None else None
    wi = whole_graph_rows(train)  # single-layer rows train the per-layer model only
    tw, y_w = [train[i] for i in wi], np.asarray(y_train_ms, float)[wi]
    X = pred.design(tw)
    r_tr = y_tr[wi] - base_log(pred, tw)  # the learners predict the log-ratio to the base
    say("gbdt", 1, 4)
    pred.gbdt = GBDTModel.fit(X, r_tr, seed=seed)
    if add is not None:  # keep the base only where it helps on validation data
        plain = GBDTModel.fit(X, y_tr[wi], seed=seed)
        if not base_helps(pred, plain, val, y_va):
            meta["additive"] = None
            pred.__dict__.pop("_additive", None)
            pred.gbdt, r_tr = plain, y_tr[wi]
    say("gnn", 2, 4)
    pred.gnn = GNNModel.fit([e.feats for e in tw], X, r_tr, seed=seed, steps=gnn_steps)
    say("calibrate", 3, 4)
    oof = None
    if len(val) < CV_MIN_VAL and len(tw) <= CV_MAX_ROWS:
        oof = cross_fit(tw, y_w, X, seed=seed, gnn_steps=gnn_steps, use_base=bool(meta["additive"]))
    calibrate(pred, val, y_va, oof=oof)
    pred.meta["ood"] = ood.fit_check(list(train), y_tr, list(val), y_va, lw, ALPHA)
    say("done", 4, 4)
    return pred


def whole_graph_rows(train: Sequence[Example]) -> list[int]:
    """Indices of the whole-graph rows of ``train`` (not single-layer ``kernels`` rows), or of
    all rows when fewer than ``MIN_ROWS`` are whole graphs."""
    idx = [i for i, e in enumerate(train) if e.space != ood.SINGLE_LAYER_SPACE]
    return idx if len(idx) >= MIN_ROWS else list(range(len(train)))


def base_helps(
    pred: Predictor, plain: GBDTModel, val: Sequence[Example], y_val_log: np.ndarray
) -> bool:
    """Whether the GBDT on the log-ratio to the additive base (``pred.gbdt``) beats ``plain``
    (the same on log latency) on the whole-graph validation rows: mean absolute log error lower,
    or within ``BASE_MARGIN`` of it. Some devices are far from additive (phones whose cells with a
    cut-off output take 0.01 ms): there the base hurts the ranking and is dropped."""
    vi = [i for i, e in enumerate(val) if e.space != ood.SINGLE_LAYER_SPACE]
    if len(vi) < MIN_ROWS:
        return True
    vw, y = [val[i] for i in vi], np.asarray(y_val_log, float)[vi]
    Xv = pred.design(vw)
    with_base = np.abs(pred.gbdt.predict_log(Xv) + base_log(pred, vw) - y).mean()
    without = np.abs(plain.predict_log(Xv) - y).mean()
    return bool(without >= (1.0 - BASE_MARGIN) * with_base)


def fit_additive(train: Sequence[Example], y_ms: np.ndarray) -> AdditiveModel | None:
    """The additive cost model (:mod:`additive`) on the whole-graph rows of ``train``
    (single-layer ``kernels`` rows excluded); None with fewer than ``MIN_ROWS`` of them."""
    idx = [i for i, e in enumerate(train) if e.space != ood.SINGLE_LAYER_SPACE]
    if len(idx) < MIN_ROWS:
        return None
    return AdditiveModel.fit([train[i].feats for i in idx], np.asarray(y_ms, float)[idx])


def base_log(pred: Predictor, ex: Sequence[Example]) -> np.ndarray:
    """Log ms of the additive base of ``ex`` (zeros for a predictor without one): the GBDT and
    the GNN predict the log-ratio of latency to it."""
    d = pred.meta.get("additive")
    if not d:
        return np.zeros(len(ex))
    model = pred.__dict__.get("_additive")
    if model is None:
        try:
            model = pred.__dict__["_additive"] = AdditiveModel.from_dict(d)
        except (KeyError, TypeError, ValueError) as e:
            raise PredictorError(
                f"predictor's additive model is inconsistent: {e}; retrain it"
            ) from None
    return model.predict_log([e.feats for e in ex])


def members_log(
    pred: Predictor, ex: Sequence[Example], quotient: Any = None
) -> dict[str, np.ndarray]:
    """Log-ms predictions of the members (gbdt, gnn) of ``ex``, base included."""
    X = pred.design(ex)
    base = base_log(pred, ex)
    return {
        "gbdt": pred.gbdt.predict_log(X) + base,
        "gnn": pred.gnn.predict_log([e.feats for e in ex], X, quotient) + base,
    }


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
    idx = np.array([i for i, e in enumerate(train) if e.space != ood.SINGLE_LAYER_SPACE])
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
                out[i] = Example(f, getattr(r, "space", None), getattr(r, "genotype", None), layers)
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
    ``layers``, ``precision``), train, and evaluate on the test part."""
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
    metrics = evaluate(pred, [ex[i] for i in te], y[te])
    metrics["split"] = {"train": len(tr), "val": len(va), "test": len(te), "seed": seed}
    metrics["device_id"] = device_id
    metrics["weights"] = pred.meta["weights"]
    return pred, metrics
