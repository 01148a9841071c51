"""A trained predictor: load, predict latency (ms) with a 90 % interval, save.

    Predictor.load("pred/").predict([graph])  # -> [Prediction(latency_ms, low_ms, high_ms)]

Members: a GNN (:mod:`gnn`) and a gradient-boosted model (:mod:`gbdt`) on graph features
(:mod:`features`) plus, for spaces with a fixed genotype layout, a genotype one-hot block
(:mod:`genotype_onehot`); with per-layer rows, a per-layer model (:mod:`layerwise`) whose
estimate is an input of both; both predict the log-ratio of latency to an additive cost base
(:mod:`cost_base`, :attr:`Predictor.base`). The ensemble combines them with weights and interval
quantiles fit at training (:mod:`training`, :mod:`ensemble`). Answers are cached per graph and per
genotype; big batches run on threads (:mod:`parallel`) over a reused heap (:mod:`malloc_tuning`).
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from nasctl.arch.arrays import GraphArrays, graph_arrays
from nasctl.arch.graph import Graph
from nasctl.errors import PredictorError
from nasctl.predictor import artifacts, ensemble, ood, parallel
from nasctl.predictor.batch import FeatureBatch, featurize_batch
from nasctl.predictor.cost_base import AdditiveModel
from nasctl.predictor.features import featurize_many
from nasctl.predictor.gbdt import GBDTModel
from nasctl.predictor.genotype_onehot import GenotypeEncoder
from nasctl.predictor.gnn import GNNModel, batch_quotient
from nasctl.predictor.kernel_model import KernelModel
from nasctl.predictor.kernel_units import unit_rows
from nasctl.predictor.layerwise import LayerwiseModel
from nasctl.predictor.malloc_tuning import reused_heap
from nasctl.predictor.schema import SCHEMA_VERSION, GraphFeatures, schema_hash

MODELS = ("gnn", "gbdt")
FEATURE_CHUNK = 512  # graphs built (and scanned into node arrays) at a time
PREDICT_CHUNK = 16_384  # genotypes featurized and predicted per batch (bounds memory)
CACHE_SIZE = 1_000_000  # cached answers per loaded predictor
T = TypeVar("T")


@dataclass
class Prediction:
    """Predicted latency and its interval, in milliseconds."""

    latency_ms: float
    low_ms: float
    high_ms: float


@dataclass
class Example:
    """A measured (or queried) graph, featurized: what the models consume. ``single_layer``:
    the row is one layer measured alone (it trains the per-layer model, not the whole-graph
    members; the store marks such rows)."""

    feats: GraphFeatures
    space: str | None = None
    genotype: str | None = None
    layers: list[Any] | None = None
    single_layer: bool = False
    units: tuple[np.ndarray, list[str]] | None = None  # kernel_units.unit_rows of the graph
    graph: Graph | None = None  # kept where the caller passed graphs (units on demand)
    #: a measured whole graph's in-network time per unit (ms, aligned with ``units``; from its
    #: per-layer profile, :func:`kernel_units.profile_unit_times`): trains the kernel model's
    #: in-network correction
    unit_times: np.ndarray | None = None

    def kernel_units(self) -> tuple[np.ndarray, list[str]] | None:
        """The graph's kernel units (:func:`kernel_units.unit_rows`), computed once on demand;
        None without a graph."""
        if self.units is None and self.graph is not None:
            self.units = unit_rows(self.graph)
        return self.units


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


def names_device(device_id: str, device: str | None) -> bool:
    """Whether ``device`` (a dataset id, or a name such as ``cpu`` or ``replay:nb201/x`` that the
    id starts with) names the device ``device_id``; None names any."""
    if device is None:
        return True
    key = device.replace(":", "-").replace("/", "-")
    return device == device_id or device_id.startswith(key + "-")


def require_device(device_id: str, device: str | None, *, made: str = "trained for") -> None:
    """Raise unless ``device`` names ``device_id`` (:func:`names_device`); ``made`` says how the
    predictor came to that device (``trained for``, ``transferred to``)."""
    if not names_device(device_id, device):
        raise PredictorError(
            f"this predictor was {made} device {device_id!r}, not {device!r}; "
            f"a predictor {made} {device!r} is needed"
        )


class Predictor:
    """A trained latency predictor for one device.

    ``base``: the additive cost base (:mod:`cost_base`) whose log the GBDT and the GNN add to
    their log-ratio answers; None when training found it did not help (then they answer the log
    latency itself)."""

    def __init__(
        self,
        meta: dict[str, Any],
        gbdt: GBDTModel,
        gnn: GNNModel,
        layerwise: LayerwiseModel | None,
        encoder: GenotypeEncoder,
        base: AdditiveModel | None = None,
        kernels: KernelModel | None = None,
    ) -> None:
        self.meta, self.gbdt, self.gnn = meta, gbdt, gnn
        self.kernels = kernels
        self.layerwise, self.encoder, self.base = layerwise, encoder, base
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
        ood.toward_roofline(out, list(ex), self.meta.get("ood"), self.layerwise, self.kernels)
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
        if make is _same and self.kernels is not None:  # caller's graphs: units if outside
            for e, g in zip(ex, items, strict=True):
                e.graph = g
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
        require_device(self.device_id, device)

    # -- persistence -------------------------------------------------------------------------
    def save(self, out: str | Path) -> Path:
        out = Path(out)
        meta = {
            **self.meta,
            "additive": self.base.to_dict() if self.base is not None else None,
            "gbdt_base": self.gbdt.base.to_dict(),
            "gnn": self.gnn.config,
            "encoder": self.encoder.to_dict(),
            "layerwise": self.layerwise.meta if self.layerwise else None,
            "libraries": artifacts.library_versions(),
        }
        texts = {"gbdt.txt": self.gbdt.to_string()}
        if self.layerwise is not None:
            texts["layerwise.txt"] = self.layerwise.to_string()
        if self.kernels is not None:
            meta["kernels"] = self.kernels.meta
            texts.update(self.kernels.texts())
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
            add = meta.pop("additive", None)
            base = AdditiveModel.from_dict(add) if add else None
            km = meta.pop("kernels", None)
            kernels = KernelModel.from_texts(texts, km) if km else None
        except (KeyError, RuntimeError, ValueError, TypeError) as e:
            raise PredictorError(f"predictor {path} is inconsistent: {e}; retrain it") from None
        return cls(meta, gbdt, gnn, lw, enc, base, kernels)


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


def base_log(pred: Predictor, ex: Sequence[Example]) -> np.ndarray:
    """Log ms of the additive base of ``ex`` (zeros for a predictor without one): the GBDT and
    the GNN predict the log-ratio of latency to it."""
    if pred.base is None:
        return np.zeros(len(ex))
    return pred.base.predict_log([e.feats for e in ex])
