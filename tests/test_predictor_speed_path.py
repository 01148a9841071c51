"""The fast prediction path changes no answer: graphs, features and predictions are those of the
plain path (graphs built one by one, every node scanned, models run on the features)."""

from __future__ import annotations

import csv
import hashlib
import random
from math import prod
from pathlib import Path

import numpy as np
import pytest

from nasctl.arch import arrays
from nasctl.arch.hashing import graph_hash
from nasctl.predictor import api, features
from nasctl.search.spaces import get_space

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "nb201" / "latency_ms.csv"

#: sha256 (first 32 hex) over graph_hash + to_json of the graphs of :func:`_genotypes`, from the
#: graph builder and spaces of commit b4a33f7 (before the speed work): graphs must not change.
GOLDEN_GRAPHS = {
    "nb201": "5f72ad4ec740c76f92128bc9ed37d1d5",
    "mbconv": "24ad6762cf2a89e8614bcbf113dc7f91",
}


def _genotypes(name: str, n: int) -> list[str]:
    sp, rng = get_space(name), random.Random(11)
    if name == "nb201":
        return [sp.arch_at(rng.randrange(sp.size())) for _ in range(n)]
    return [sp.sample(rng) for _ in range(n)]


@pytest.mark.parametrize(("name", "n"), [("nb201", 300), ("mbconv", 100)])
def test_graphs_unchanged(name: str, n: int) -> None:
    sp = get_space(name)
    h = hashlib.sha256()
    for g in _genotypes(name, n):
        gr = sp.to_graph(g)
        h.update(graph_hash(gr).encode())
        h.update(gr.to_json().encode())
    assert h.hexdigest()[:32] == GOLDEN_GRAPHS[name]


def _plain_scan(graph, memo=None):  # noqa: ANN001, ANN202, ARG001
    """The per-node scan without any caching (the reference for :func:`features._scan`)."""
    rows, producer, src, dst = [], {}, [], []
    depth = [0] * len(graph.nodes)
    for i, node in enumerate(graph.nodes):
        d, read = 0, 0
        for t, s in zip(node.inputs, node.in_shapes, strict=False):
            read += prod(s)
            j = producer.get(t)
            if j is not None:
                src.append(j)
                dst.append(i)
                d = max(d, depth[j])
        depth[i] = d + 1
        outs_el = sum(prod(s) for s in node.out_shapes)
        rows.append((*features._node_raw(node), read, outs_el))
        for t in node.outputs:
            producer[t] = i
    outs = [producer[t] for t in graph.outputs if t in producer]
    raw = np.array(rows, dtype=np.float64).reshape(len(rows), 11)
    return raw, src, dst, outs, max(depth, default=0)


@pytest.fixture(scope="module")
def predictor() -> api.Predictor:
    """A small predictor trained on public NB201 timings (fpga column)."""
    if not DATA.exists():
        pytest.skip(f"{DATA} not present")
    with open(DATA, newline="") as f:
        rows = [(r["arch"], float(r["fpga"])) for r in csv.DictReader(f) if r["fpga"]]
    rows = random.Random(0).sample(rows, 300)
    sp = get_space("nb201")
    ex = api.examples_from_graphs([sp.to_graph(a) for a, _ in rows])
    for e, (a, _) in zip(ex, rows, strict=True):
        e.space, e.genotype = "nb201", a
    y = np.array([v for _, v in rows])
    return api.fit(ex[:200], y[:200], ex[200:], y[200:], device_id="test-dev", gnn_steps=30)


@pytest.mark.parametrize(("name", "n"), [("nb201", 1000), ("mbconv", 300)])
def test_fast_path_predicts_as_plain_path(
    predictor: api.Predictor, name: str, n: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    sp = get_space(name)
    genos = _genotypes(name, n)
    fast_pred = api.Predictor(
        predictor.meta, predictor.gbdt, predictor.gnn, predictor.layerwise, predictor.encoder
    )
    fast = fast_pred.predict_genotypes(name, genos, sp.to_graph)
    fast_feats = features.featurize_many([sp.to_graph(g) for g in genos[:100]])

    monkeypatch.setattr(arrays, "_scan", _plain_scan)
    graphs = [sp.to_graph(g) for g in genos]
    plain_ex = [
        api.Example(f, name, g) for f, g in zip(features.featurize_many(graphs), genos, strict=True)
    ]
    for a, b in zip(fast_feats, plain_ex[:100], strict=True):
        assert np.array_equal(a.x, b.feats.x) and np.array_equal(a.g, b.feats.g)
        assert np.array_equal(a.edges, b.feats.edges)
    plain = predictor.predict_examples(plain_ex)
    for attr in ("latency_ms", "low_ms", "high_ms"):
        f = np.array([getattr(p, attr) for p in fast])
        p = np.array([getattr(q, attr) for q in plain])
        assert np.max(np.abs(f - p) / p) < 1e-6, attr
