"""Latency predictor: accuracy against a trivial baseline, intervals, artifacts, bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA

from nasctl.arch.graph import GraphBuilder
from nasctl.errors import PredictorError
from nasctl.predictor import api
from nasctl.predictor.features import (
    GRAPH_FEATURES,
    NODE_FEATURES,
    OPS,
    featurize,
)
from nasctl.predictor.metrics import regression_metrics

DATA = SHARED_DATA / "nb201" / "latency_ms.csv"
COLUMN = "titan_rtx_1"  # PyTorch GPU timings: noisy, the hard case for intervals


@pytest.fixture(scope="module")
def nb201() -> tuple[list[api.Example], np.ndarray]:
    """700 random NB201 cells of one device column, featurized."""
    if not DATA.exists():
        pytest.skip(f"{DATA} not present")
    from nasctl.spaces import get_space

    with open(DATA, newline="") as f:
        rows = list(csv.DictReader(f))
    pick = np.random.default_rng(7).choice(len(rows), 700, replace=False)
    sp = get_space("nb201")
    ex = [
        api.Example(featurize(sp.to_graph(rows[i]["arch"])), "nb201", rows[i]["arch"]) for i in pick
    ]
    return ex, np.array([float(rows[i][COLUMN]) for i in pick])


@pytest.fixture(scope="module")
def trained(nb201: tuple[list[api.Example], np.ndarray]) -> api.Predictor:
    ex, y = nb201
    return api.fit(ex[:250], y[:250], ex[250:400], y[250:400], device_id="test-dev", gnn_steps=60)


def test_beats_mean_predictor(trained: api.Predictor, nb201) -> None:
    ex, y = nb201
    got = api.evaluate(trained, ex[400:], y[400:])
    mean_mape = regression_metrics(y[400:], np.full(300, y[:250].mean()))["mape"]
    for name in ("gnn", "gbdt", "ensemble"):
        assert got[name]["n"] == 300
        assert got[name]["mape"] < 0.3 * mean_mape, (name, got[name], mean_mape)
        assert got[name]["spearman"] > 0.9
    assert got["ensemble"]["mape"] < 6.0


def test_interval_coverage_near_nominal(trained: api.Predictor, nb201) -> None:
    ex, y = nb201
    preds = trained.predict_examples(ex[400:])
    lo = np.array([p.low_ms for p in preds])
    hi = np.array([p.high_ms for p in preds])
    cov = float(np.mean((y[400:] >= lo) & (y[400:] <= hi)))
    assert 0.83 <= cov <= 0.97, cov
    assert all(p.low_ms < p.latency_ms < p.high_ms for p in preds)


def test_save_load_round_trip(trained: api.Predictor, nb201, tmp_path: Path) -> None:
    ex, _ = nb201
    trained.save(tmp_path / "p")
    back = api.Predictor.load(tmp_path / "p")
    a, b = trained.predict_examples(ex[400:450]), back.predict_examples(ex[400:450])
    assert a == b  # exactly the same numbers
    meta = json.loads((tmp_path / "p" / "meta.json").read_text())
    assert meta["device_id"] == "test-dev" and meta["n_train"] == 250
    assert {"lightgbm", "torch", "numpy"} <= set(meta["libraries"])


def test_tampered_or_incomplete_artifact(trained: api.Predictor, tmp_path: Path) -> None:
    d = trained.save(tmp_path / "p")
    text = (d / "gbdt.txt").read_text()
    (d / "gbdt.txt").write_text(text.replace("leaf_value=", "leaf_value=1", 1))
    with pytest.raises(PredictorError, match="SHA-256"):
        api.Predictor.load(d)
    d2 = trained.save(tmp_path / "q")
    (d2 / "gnn.pt").unlink()
    with pytest.raises(PredictorError, match="missing"):
        api.Predictor.load(d2)
    with pytest.raises(PredictorError, match="does not exist"):
        api.Predictor.load(tmp_path / "nope")


def test_other_schema_and_device_refused(trained: api.Predictor, tmp_path: Path) -> None:
    import hashlib

    d = trained.save(tmp_path / "p")
    meta = json.loads((d / "meta.json").read_text())
    meta["schema_version"] = "feat-v0"
    (d / "meta.json").write_text(json.dumps(meta))
    man = json.loads((d / "manifest.json").read_text())  # a consistent, older artifact
    man["files"]["meta.json"] = hashlib.sha256((d / "meta.json").read_bytes()).hexdigest()
    (d / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(PredictorError, match="feature schema"):
        api.Predictor.load(d)
    with pytest.raises(PredictorError, match="trained for device 'test-dev'"):
        trained.predict([], device="cpu-other")


def test_too_few_rows_to_split() -> None:
    with pytest.raises(PredictorError, match="at least 20"):
        api.split_indices(12, seed=0)
    tr, va, te = api.split_indices(100, seed=1)
    assert len(tr) + len(va) + len(te) == 100 and not set(tr) & set(te)


def test_features_of_a_small_graph() -> None:
    b = GraphBuilder("t", (1, 3, 32, 32))
    x = b.act(b.input, "relu", id="/a/relu")
    x = b.conv(x, 16, 3, id="/a/conv")
    x = b.batchnorm(x, id="/a/bn")
    y = b.pool(x, "avg", 3, id="/p")
    x = b.add([x, y], id="/add")
    g = b.build([x])
    f = featurize(g)
    assert f.x.shape == (3, len(NODE_FEATURES))  # relu-conv-bn fused; pool; add
    assert f.g.shape == (len(GRAPH_FEATURES),)
    assert f.group.tolist() == [0, 0, 0, 1, 2]
    assert f.costs[1, 0] == 16 * 32 * 32 * 3 * 9  # conv MACs
    assert f.x[0, OPS.index("conv")] == 1 and f.x[0, OPS.index("relu")] == 1
    assert np.isclose(f.x[0, len(OPS) + 6], np.log1p(16 * 32 * 32 * 3 * 9), rtol=1e-6)  # group MACs


def _synthetic_layers(f, rng: np.random.Generator) -> tuple[list, float]:
    """Per-layer times of a made-up device (roofline plus launch cost), one layer per fused
    group, and the whole-graph time (layers plus a fixed overhead), in ms."""
    from nasctl.records import LayerTiming

    layers, total = [], 0.05
    for k in range(f.x.shape[0]):
        members = np.flatnonzero(f.group == k)
        macs, nbytes = f.costs[members, 0].sum(), f.costs[members, 1:].sum()
        t = max(macs / 2e6, nbytes / 4e6) + 0.004
        t *= float(rng.uniform(0.97, 1.03))
        layers.append(LayerTiming(name=f"l{k}", time_ms=t, nodes=[f.node_ids[i] for i in members]))
        total += t
    return layers, total


@pytest.mark.slow
def test_layerwise_model_on_per_layer_rows(nb201, tmp_path: Path) -> None:
    ex, _ = nb201
    rng = np.random.default_rng(0)
    rows, y = [], []
    for e in ex[:160]:
        f = featurize(_graph_of(e.genotype), keep_raw=True)
        layers, total = _synthetic_layers(f, rng)
        rows.append(api.Example(f, "nb201", e.genotype, layers))
        y.append(total)
    y = np.array(y)
    pred = api.fit(rows[:80], y[:80], rows[80:110], y[80:110], device_id="synth", gnn_steps=20)
    assert pred.layerwise is not None
    est = pred.layerwise.predict_ms([r.feats for r in rows[110:]])
    assert regression_metrics(y[110:], est)["mape"] < 5.0
    assert pred.layerwise.meta["overhead_ms"] > 0.0
    pred.save(tmp_path / "p")
    back = api.Predictor.load(tmp_path / "p")
    assert back.predict_examples(rows[110:]) == pred.predict_examples(rows[110:])


def _graph_of(genotype: str):  # noqa: ANN202
    from nasctl.spaces import get_space

    return get_space("nb201").to_graph(genotype)


def test_genotype_answers_are_cached(trained: api.Predictor, nb201) -> None:
    ex, _ = nb201
    calls: list[str] = []

    def to_graph(g: str):  # noqa: ANN202
        calls.append(g)
        return _graph_of(g)

    genos = [e.genotype for e in ex[400:420]]
    first = trained.predict_genotypes("nb201", genos + genos[:5], to_graph)
    assert len(calls) == 20 and first[20:] == first[:5]
    again = trained.predict_genotypes("nb201", genos, to_graph)
    assert len(calls) == 20 and again == first[:20]  # no graph built the second time
    direct = trained.predict_examples(ex[400:420])
    assert np.allclose([p.latency_ms for p in direct], [p.latency_ms for p in again], rtol=1e-5)


def test_layer_reports_sharing_nodes_are_one_layer() -> None:
    """ONNX Runtime reports an NCHWc convolution as three kernels (reorder in, conv, reorder
    out), all under the conv's name: the layer's time is their sum, not the last report's."""
    from types import SimpleNamespace

    from nasctl.predictor.features import featurize_many
    from nasctl.predictor.layerwise import layer_table
    from nasctl.spaces import get_space

    g = get_space("kernels").to_graph("conv-i16-o104-k7-s2-h160-relu")
    conv = next(n.id for n in g.nodes if n.op == "conv")
    act = next(n.id for n in g.nodes if n.op == "relu")
    f = featurize_many([g], keep_raw=True)[0]

    def rep(nodes: list[str], ms: float) -> SimpleNamespace:
        return SimpleNamespace(nodes=nodes, time_ms=ms)

    reports = [rep([conv], 0.2), rep([conv], 13.6), rep([conv, act], 0.4), rep(["?"], 9.0)]
    x, t = layer_table([f], [reports])
    assert t.tolist() == pytest.approx([14.2])  # one layer: conv (+ its fused relu)
    assert x.shape[0] == 1 and x[0].sum() > 0
    # disjoint reports stay separate layers
    x, t = layer_table([f], [[rep([act], 0.1), rep([conv], 5.0)]])
    assert sorted(t.tolist()) == pytest.approx([0.1, 5.0])
