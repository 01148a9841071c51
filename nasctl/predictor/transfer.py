"""Few-shot transfer: a predictor for a new device from a few of its rows and the other devices.

    pred, report = fit_transfer(target_rows, {"dev-a": rows_a, "dev-b": rows_b}, device_id="new")
    pred.save("pred-new/")  # loads with nasctl.predictor.loading.load_predictor

Each *source* device gets a model of its own (:class:`~nasctl.predictor.gbdt.GBDTModel` on the
graph-level features plus the genotype one-hot, predicting log ms), so the new device's rows may be
architectures no source device measured. The new device's log latency is a weighted mean of two
predictions: (1) a ridge regression on the sources' predicted log latencies of the same
architecture (standardized inputs, an intercept, the ridge weight chosen by exact leave-one-out on
the new device's rows): a device described by how it weighs the others; with ten rows this beats
the other linear heads measured (``bench/bench_transfer_nb201.py --heads``); (2) a latent model
(:mod:`~nasctl.predictor.transfer_latent`): one MLP over the genotype one-hot and a learned
device embedding, trained on all source devices' rows, the new device's embedding fit from its
rows. The ridge head's weight (0.25, 0.5 or 0.75) is the one with the least median absolute
leave-one-out error on the new device's rows. The mean beats either alone on HELP's split and on
the split by hardware kind (docs/benchmarks.md, issue 13).

Intervals (90 %): log half-width = ``q * s`` plus half the two members' disagreement on that
architecture (where the ridge head and the latent model part ways, the interval widens): ``s`` is
the root mean square leave-one-out error of the head on the new device's own rows (how well a
few-shot fit explains this device) and ``q`` the split-conformal quantile of the same ratio,
|error| / ``s``, measured on each *source* device left out in turn and fit from as many of its
rows as the new device has (``LSO_DRAWS`` draws each). Nothing about the new device is read
except the rows handed in.

:func:`informative` picks the architectures to measure first: a greedy D-optimal design on the
sources' standardized predictions (each pick maximizes the ridge head's prediction variance).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nasctl.arch.arrays import GraphArrays
from nasctl.arch.graph import Graph
from nasctl.errors import NasctlError, PredictorError
from nasctl.predictor import artifacts, ensemble
from nasctl.predictor.batch import featurize_batch
from nasctl.predictor.features import featurize_many
from nasctl.predictor.gbdt import GBDTModel
from nasctl.predictor.genotype_onehot import GenotypeEncoder
from nasctl.predictor.inference import CACHE_SIZE, Prediction, gc_paused, require_device
from nasctl.predictor.schema import GRAPH_FEATURES, SCHEMA_VERSION, GraphFeatures, schema_hash
from nasctl.predictor.transfer_head import (
    SCALE_FLOOR,
    fit_head,
    head_predict,
    informative,
    loo_errors,
    loo_residuals,
    lso_scores,
)
from nasctl.predictor.transfer_latent import (
    Latent,
    fit_embedding,
    fit_latent,
    latent_log,
    ridge_weight,
)

__all__ = [
    "Sources",
    "TransferPredictor",
    "fit_head",
    "fit_sources",
    "design",
    "fit_transfer",
    "head_predict",
    "informative",
    "row_features",
    "shared_sources",
]

KIND = "transfer"
MIN_TARGET_ROWS = 3  # intercept + one weight + one row to spare
MIN_SOURCE_ROWS = 20  # rows a source device needs to get a model
SOURCE_ROWS = 3000  # rows per source device its model is fit on (the same architectures)
SOURCE_ROUNDS = 300  # boosting rounds of a source model
ALPHA = 0.1  # intervals target 90 % coverage
PREDICT_CHUNK = 8192
LATENT_BLOB = "latent.pt"  # the latent model's MLP (torch state_dict, loaded weights_only)
Progress = Callable[[str, int, int], None]


# -- rows -> features ------------------------------------------------------------------------------
def _row_key(r: Any) -> str:
    return f"{getattr(r, 'arch_hash', id(r))}|{getattr(r, 'precision', 'fp32') or 'fp32'}"


def row_features(rows: Sequence[Any]) -> list[GraphFeatures]:
    """Features of TrainingRow-like rows: search-space rows through the space's node arrays
    (no graphs built), others through their graph; one precision per call of the batch path."""
    from nasctl.spaces import get_space

    out: list[GraphFeatures | None] = [None] * len(rows)
    groups: dict[tuple[str | None, str], list[int]] = {}
    for i, r in enumerate(rows):
        prec = str(getattr(r, "precision", None) or "fp32")
        sp = r.space if (r.space and r.genotype) else None
        groups.setdefault((sp, prec), []).append(i)
    with gc_paused():
        for (sp, prec), idx in groups.items():
            feats: list[GraphFeatures]
            if sp is not None:
                try:
                    space = get_space(sp)
                except NasctlError:  # an unknown space: build from the rows' graphs
                    space = None
                if space is not None:
                    feats = []
                    for s in range(0, len(idx), PREDICT_CHUNK):
                        part = [str(rows[i].genotype) for i in idx[s : s + PREDICT_CHUNK]]
                        feats.extend(featurize_batch(space.graph_arrays(part), prec).views())
                    for i, f in zip(idx, feats, strict=True):
                        out[i] = f
                    continue
            feats = featurize_many([rows[i].graph for i in idx], prec)
            for i, f in zip(idx, feats, strict=True):
                out[i] = f
    return out  # type: ignore[return-value]


def _ok(rows: Sequence[Any]) -> list[Any]:
    return [r for r in rows if r.latency_ms is not None and float(r.latency_ms) > 0]


def _spaces(rows: Sequence[Any]) -> set[str]:
    return {str(r.space) if r.space else "onnx" for r in rows}


def _subsample(rows: Sequence[Any], n: int, seed: int) -> list[Any]:
    """Up to ``n`` rows, chosen by a seeded hash of the architecture: source devices that
    measured the same architectures keep the same ones (featurized once)."""
    if len(rows) <= n:
        return list(rows)

    def rank(r: Any) -> str:
        return hashlib.sha1(f"{seed}|{_row_key(r)}".encode()).hexdigest()

    return sorted(rows, key=rank)[:n]


# -- the model -------------------------------------------------------------------------------------
class TransferPredictor:
    """A new device's predictor: source-device models, a ridge head on their log predictions,
    the latent model with the new device's embedding (None: the ridge head alone), a calibrated
    log half-width. Answers like :class:`~nasctl.predictor.inference.Predictor` (``predict``,
    ``predict_genotypes``, ``check_device``, ``save``)."""

    def __init__(
        self,
        meta: dict[str, Any],
        sources: list[GBDTModel],
        encoder: GenotypeEncoder,
        latent: Latent | None = None,
    ) -> None:
        self.meta, self.sources, self.encoder, self.latent = meta, sources, encoder, latent
        self._gcache: dict[tuple[str, str, str], Prediction] = {}

    @property
    def device_id(self) -> str:
        return str(self.meta["device_id"])

    # -- inputs ------------------------------------------------------------------------------
    def design(
        self, feats: Sequence[GraphFeatures], spaces: Sequence[str | None], genos: Sequence[Any]
    ) -> np.ndarray:
        """The source models' input (graph features + genotype one-hot) of these graphs."""
        return design(self.encoder, feats, spaces, genos)

    def source_logs(self, X: np.ndarray) -> np.ndarray:
        """(n, sources) predicted log ms of each source device on design rows ``X``."""
        return np.column_stack([m.predict_log(X) for m in self.sources])

    def head_log(self, S: np.ndarray) -> np.ndarray:
        """Log ms on this device from the sources' log predictions ``S`` (the ridge head)."""
        return head_predict(self.meta["head"], S)

    def log_ms(self, X: np.ndarray, S: np.ndarray | None = None) -> np.ndarray:
        """Log ms on this device of design rows ``X`` (``S``: their source predictions, if
        known): the weighted mean of the ridge head and the latent model."""
        return self.log_ms_half(X, S)[0]

    def log_ms_half(
        self, X: np.ndarray, S: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(log ms, 90 % log half-width) of design rows ``X``: the calibrated ``q`` plus half
        the two members' disagreement (where the ridge head and the latent model part ways,
        the interval widens)."""
        ridge = self.head_log(self.source_logs(X) if S is None else S)
        q = float(self.meta["q"])
        if self.latent is None:
            return ridge, np.full(len(ridge), q)
        lat = latent_log(self.latent, self.meta["latent"]["fit"], X)
        w = float(self.meta["latent"].get("w_ridge", 0.5))
        return w * ridge + (1.0 - w) * lat, q + 0.5 * np.abs(ridge - lat)

    def _answer(self, X: np.ndarray) -> list[Prediction]:
        logs, half = self.log_ms_half(X)
        return [
            Prediction(float(np.exp(v)), float(np.exp(v - h)), float(np.exp(v + h)))
            for v, h in zip(logs, half, strict=True)
        ]

    # -- prediction --------------------------------------------------------------------------
    def predict(
        self, graphs: Sequence[Graph], *, device: str | None = None, precision: str | None = None
    ) -> list[Prediction]:
        """Latency (ms) and 90 % interval of each graph."""
        self.check_device(device)
        if not graphs:
            return []
        prec = precision or str(self.meta.get("precision", "fp32"))
        feats = featurize_many(list(graphs), prec)
        X = self.design(
            feats, [g.meta.get("space") for g in graphs], [g.meta.get("genotype") for g in graphs]
        )
        return self._answer(X)

    def predict_genotypes(
        self,
        space: str,
        genotypes: Sequence[str],
        to_graph: Callable[[str], Graph],
        *,
        precision: str | None = None,
        arrays: Callable[[list[str]], GraphArrays] | None = None,
    ) -> list[Prediction]:
        """Like :meth:`Predictor.predict_genotypes`: cached per (``space``, genotype,
        precision); ``arrays`` (the space's genotypes -> node arrays) skips building graphs."""
        prec = precision or str(self.meta.get("precision", "fp32"))
        todo = list(dict.fromkeys(g for g in genotypes if (space, g, prec) not in self._gcache))
        fresh: dict[str, Prediction] = {}
        sp_name = to_graph(todo[0]).meta.get("space") if todo else None
        for s in range(0, len(todo), PREDICT_CHUNK):
            part = todo[s : s + PREDICT_CHUNK]
            with gc_paused():
                if arrays is not None:
                    feats = featurize_batch(arrays(part), prec).views()
                else:
                    feats = featurize_many([to_graph(g) for g in part], prec)
            X = self.design(feats, [sp_name] * len(part), part)
            fresh.update(zip(part, self._answer(X), strict=True))
        if len(self._gcache) + len(fresh) <= CACHE_SIZE:
            self._gcache.update({(space, g, prec): p for g, p in fresh.items()})
        return [fresh.get(g) or self._gcache[(space, g, prec)] for g in genotypes]

    def check_device(self, device: str | None) -> None:
        """Raise unless ``device`` names the device this predictor was transferred to."""
        require_device(self.device_id, device, made="transferred to")

    # -- persistence -------------------------------------------------------------------------
    def save(self, out: str | Path) -> Path:
        out = Path(out)
        meta = {
            **self.meta,
            "source_bases": [m.base.to_dict() for m in self.sources],
            "encoder": self.encoder.to_dict(),
            "libraries": artifacts.library_versions(),
        }
        texts = {f"source-{i}.txt": m.to_string() for i, m in enumerate(self.sources)}
        blobs = {LATENT_BLOB: self.latent.net.state_dict()} if self.latent is not None else {}
        artifacts.write_dir(out, meta, texts, blobs)
        return out

    @classmethod
    def from_dir(
        cls,
        path: Path,
        meta: dict[str, Any],
        texts: dict[str, str],
        blobs: dict[str, Any] | None = None,
    ) -> TransferPredictor:
        """From the parts :func:`artifacts.read_dir` returned (see :mod:`loading`)."""
        if meta.get("schema_version") != SCHEMA_VERSION or meta.get("schema_hash") != schema_hash():
            raise PredictorError(
                f"predictor {path} uses feature schema {meta.get('schema_version')!r}; this "
                f"nasctl computes {SCHEMA_VERSION!r}; retrain it with `nasctl train-predictor`"
            )
        try:
            bases = meta.pop("source_bases")
            sources = [
                GBDTModel.from_string(texts[f"source-{i}.txt"], b) for i, b in enumerate(bases)
            ]
            enc = GenotypeEncoder.from_dict(meta.pop("encoder"))
            if len(meta["head"]["w"]) != len(sources):
                raise ValueError("head and source models disagree in number")
            lat = None
            if meta.get("latent") is not None:
                lat = Latent.from_meta(meta["latent"], (blobs or {})[LATENT_BLOB])
        except (KeyError, RuntimeError, ValueError, TypeError) as e:
            raise PredictorError(f"predictor {path} is inconsistent: {e}; retrain it") from None
        return cls(meta, sources, enc, lat)


def design(
    encoder: GenotypeEncoder,
    feats: Sequence[GraphFeatures],
    spaces: Sequence[str | None],
    genos: Sequence[Any],
) -> np.ndarray:
    """Input of a source model: graph-level features and the genotype one-hot."""
    g = np.stack([f.g for f in feats]).astype(np.float64)
    tok = np.stack(
        [
            encoder.encode(s, None if x is None else str(x))
            for s, x in zip(spaces, genos, strict=True)
        ]
    )
    return np.hstack([g, tok.astype(np.float64)])


@dataclass
class Sources:
    """Source-device models fit for a transfer: ``names`` (device ids), ``models`` (one per
    device), the genotype ``encoder``; ``latent``: the latent model on all of them (None when
    not fit); ``mean``/``std``: per source, of its model's predictions
    on all source rows used (the head standardizes with them); ``own``: per source index, (all
    models' predictions on that source's rows, its log latencies), for interval calibration."""

    names: list[str]
    models: list[GBDTModel]
    encoder: GenotypeEncoder
    mean: np.ndarray
    std: np.ndarray
    own: dict[int, tuple[np.ndarray, np.ndarray]]
    latent: Latent | None = None

    def design(self, feats: Sequence[GraphFeatures], rows_like: Sequence[Any]) -> np.ndarray:
        """Source-model input of rows-like objects (``space``, ``genotype``)."""
        return design(
            self.encoder, feats, [r.space for r in rows_like], [r.genotype for r in rows_like]
        )

    def logs(self, feats: Sequence[GraphFeatures], rows_like: Sequence[Any]) -> np.ndarray:
        """(n, sources) predicted log ms of rows-like objects (``space``, ``genotype``)."""
        return self.logs_of(self.design(feats, rows_like))

    def logs_of(self, X: np.ndarray) -> np.ndarray:
        """(n, sources) predicted log ms of design rows ``X``."""
        return np.column_stack([m.predict_log(X) for m in self.models])


def shared_sources(
    source_rows: Mapping[str, Sequence[Any]], spaces: set[str], device_id: str
) -> dict[str, list[Any]]:
    """Rows of each source device in ``spaces`` (devices with fewer than ``MIN_SOURCE_ROWS``
    such rows left out); raises when none is left."""
    shared = {
        d: [r for r in _ok(rows) if _spaces([r]) & spaces]
        for d, rows in source_rows.items()
        if d != device_id
    }
    shared = {d: rows for d, rows in shared.items() if len(rows) >= MIN_SOURCE_ROWS}
    if not shared:
        raise PredictorError(
            f"no source device has {MIN_SOURCE_ROWS} or more measurements in the search space of "
            f"{device_id!r} ({', '.join(sorted(spaces))}); measure that space on another device, "
            "or name devices that did as sources"
        )
    return shared


def fit_sources(
    shared: dict[str, list[Any]],
    *,
    seed: int = 0,
    progress: Progress | None = None,
    latent: bool = True,
) -> Sources:
    """A model per source device, each on up to ``SOURCE_ROWS`` of its rows (``shared``: device
    id -> rows, from :func:`shared_sources`), and (``latent``) the latent model on the same rows
    of all of them (only the transfer needs it; the informative picks do not)."""
    say = progress or (lambda stage, i, n: None)
    names = sorted(shared)
    subs = {d: _subsample(shared[d], SOURCE_ROWS, seed) for d in names}
    uniq: dict[str, Any] = {}
    for d in names:
        for r in subs[d]:
            uniq.setdefault(_row_key(r), r)
    say("features", 0, len(names) + 1)
    keys = list(uniq)
    feats = row_features([uniq[k] for k in keys])
    pos = {k: i for i, k in enumerate(keys)}
    enc = GenotypeEncoder.fit(
        [r.space for d in names for r in subs[d]], [r.genotype for d in names for r in subs[d]]
    )
    X_all = design(enc, feats, [uniq[k].space for k in keys], [uniq[k].genotype for k in keys])
    models = []
    for i, d in enumerate(names):
        say(f"source {d}", i + 1, len(names) + 1)
        idx = [pos[_row_key(r)] for r in subs[d]]
        y = np.log(np.array([float(r.latency_ms) for r in subs[d]]))
        models.append(GBDTModel.fit(X_all[idx], y, seed=seed, rounds=SOURCE_ROUNDS))
    S_all = np.column_stack([m.predict_log(X_all) for m in models])
    own = {}
    Y = np.full((len(keys), len(names)), np.nan)
    for j, d in enumerate(names):
        idx = [pos[_row_key(r)] for r in subs[d]]
        own[j] = (S_all[idx], np.log(np.array([float(r.latency_ms) for r in subs[d]])))
        Y[idx, j] = own[j][1]
    lat = None
    if latent:
        say("latent model", len(names) + 1, len(names) + 1)
        lat = fit_latent(X_all, len(GRAPH_FEATURES), Y, seed=seed)
    return Sources(names, models, enc, S_all.mean(0), S_all.std(0) + 1e-9, own, lat)


def fit_transfer(
    target_rows: Sequence[Any],
    source_rows: Mapping[str, Sequence[Any]] | None = None,
    *,
    device_id: str,
    seed: int = 0,
    sources: Sources | None = None,
    progress: Progress | None = None,
) -> tuple[TransferPredictor, dict[str, Any]]:
    """Transfer to ``device_id`` from its ``target_rows`` (TrainingRow-like) and the rows of each
    source device (``source_rows``: device id -> rows; or ``sources`` already fit on them by
    :func:`fit_sources`, e.g. for many target devices). Sources that share no search space
    with the target rows are left out; see the module docstring for the model."""
    t0 = time.perf_counter()
    target = _ok(target_rows)
    if len(target) < MIN_TARGET_ROWS:
        raise PredictorError(
            f"device {device_id!r} has {len(target)} measured architectures; transfer needs at "
            f"least {MIN_TARGET_ROWS} (10 recommended): measure them on that device, e.g. with "
            "`nasctl profile` picking informative architectures (pick=informative, num=10)"
        )
    if sources is None:
        shared = shared_sources(source_rows or {}, _spaces(target), device_id)
        sources = fit_sources(shared, seed=seed, progress=progress)
    X_t = sources.design(row_features(target), target)
    S_t = sources.logs_of(X_t)
    y_t = np.log(np.array([float(r.latency_ms) for r in target]))
    head = fit_head(S_t, y_t, sources.mean, sources.std)
    lat_meta = None
    if sources.latent is not None:
        r_loo = loo_residuals(S_t, y_t, sources.mean, sources.std, head["lambda"])
        lat_meta = {
            **sources.latent.meta(),
            "fit": fit_embedding(sources.latent, X_t, y_t),
            "w_ridge": ridge_weight(sources.latent, X_t, y_t, r_loo),
        }
    scores = lso_scores(sources.own, len(target), seed)
    e_loo = loo_errors(S_t, y_t, sources.mean, sources.std, head["lambda"])
    scale = float(np.sqrt(np.mean(e_loo**2))) + SCALE_FLOOR
    if scores.size:
        q_score = ensemble.conformal_quantile(scores, ALPHA)
    else:  # a single source: nothing to leave out; the new device's own errors, widened
        q_score = ensemble.conformal_quantile(e_loo / scale, ALPHA) * 1.5
    q = float(q_score * scale)
    precisions = sorted({str(getattr(r, "precision", None) or "fp32") for r in target})
    meta = {
        "kind": KIND,
        "device_id": device_id,
        "sources": sources.names,
        "head": head,
        "latent": lat_meta,
        "q": q,
        "q_score": float(q_score),
        "loo_scale": scale,
        "n_target": len(target),
        "precision": precisions[0],
        "seed": seed,
        "alpha": ALPHA,
        "schema_version": SCHEMA_VERSION,
        "schema_hash": schema_hash(),
    }
    report = {
        "device_id": device_id,
        "sources": sources.names,
        "n_target": len(target),
        "weights": dict(zip(sources.names, head["w"], strict=True)),
        "interval_log_half_width": q,
        "target_loo_mae_log": float(e_loo.mean()),
        "train_s": round(time.perf_counter() - t0, 2),
    }
    pred = TransferPredictor(meta, sources.models, sources.encoder, sources.latent)
    return pred, report
