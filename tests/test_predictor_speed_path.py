"""The fast prediction path changes no answer: graphs, features and predictions are those of the
plain path (graphs built one by one, every node scanned, models run on the features)."""

from __future__ import annotations

import csv
import hashlib
import random
from math import prod

import numpy as np
import pytest
from conftest import SHARED_DATA
from predictor_helpers import device_ms

from nasctl.arch import arrays
from nasctl.arch.graph import GraphBuilder
from nasctl.arch.hashing import graph_hash
from nasctl.predictor import api, batch, dedupe, features, gnn, layerwise, parallel
from nasctl.predictor.features import N_OPS
from nasctl.spaces import get_space

DATA = SHARED_DATA / "nb201" / "latency_ms.csv"

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


# -- the plain algorithms (before the batch work), the reference of the fast ones ------------------


def _ref_live(n: int, edges: np.ndarray, outs: list[int]) -> np.ndarray:
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import breadth_first_order

    live = np.zeros(n, dtype=bool)
    if not outs or n == 0:
        return live
    rows = np.r_[edges[1], np.full(len(outs), n)]
    cols = np.r_[edges[0], np.asarray(outs)]
    adj = csr_matrix((np.ones(rows.size, dtype=np.int8), (rows, cols)), shape=(n + 1, n + 1))
    order = breadth_first_order(adj, n, directed=True, return_predecessors=False)
    live[order[order < n]] = True
    return live


def _ref_fuse(op: np.ndarray, edges: np.ndarray) -> np.ndarray:
    n = op.size
    if n == 0 or edges.shape[1] == 0:
        return np.arange(n)
    src, dst = edges
    fan_out, fan_in = np.bincount(src, minlength=n), np.bincount(dst, minlength=n)
    unary = np.isin(op, features._UNARY)
    one = (fan_out[src] == 1) & (fan_in[dst] == 1)
    fwd = unary[dst] & one
    bwd = unary[src] & one & ~unary[dst]
    link = np.arange(n)
    link[dst[fwd]] = src[fwd]
    link[src[bwd]] = dst[bwd]
    for _ in range(64):
        nxt = link[link]
        if np.array_equal(nxt, link):
            break
        link = nxt
    first = np.full(n, n)
    np.minimum.at(first, link, np.arange(n))
    return np.unique(first[link], return_inverse=True)[1].reshape(-1)


def _ref_graph_rows(arr, raw, costs, op, live, edges, gid, elem):  # noqa: ANN001, ANN202
    b = len(arr)

    def per_graph(w=None):  # noqa: ANN001, ANN202
        return np.bincount(gid, weights=w, minlength=b).astype(np.float64)

    def per_op(mask=None, w=None):  # noqa: ANN001, ANN202
        key = gid * N_OPS + op
        if mask is not None:
            key, w = key[mask], (w[mask] if w is not None else None)
        return np.bincount(key, weights=w, minlength=b * N_OPS).reshape(b, N_OPS)

    macs, egid, ng = raw[:, 7], gid[edges[0]], features.N_GROUPS
    tot = np.column_stack(
        [per_graph(macs), per_graph(raw[:, 8]), per_graph(costs[:, 1]), per_graph(costs[:, 2])]
        + [per_graph(costs[:, 3]), per_graph(), np.bincount(egid, minlength=b), arr.depth]
        + [per_graph(live.astype(np.float64)), per_graph(macs * live)]
    )
    extra = np.array(
        [
            [float(s[-1]) if len(s) >= 3 else 0.0, float(s[0]), e]
            for s, e in zip(arr.input_shapes, elem, strict=True)
        ]
    )
    og = features._OP_GROUP[op]
    pair = np.bincount(egid * ng * ng + og[edges[0]] * ng + og[edges[1]], minlength=b * ng * ng)
    g = np.hstack(
        [np.log1p(tot), extra, per_op(), per_op(live), np.log1p(per_op(None, macs))]
        + [np.log1p(per_op(None, costs[:, 1:].sum(1))), pair.reshape(b, -1)]
    )
    return g.astype(np.float32)


def _ref_featurize_arrays(arr, precision=None, keep_raw=False):  # noqa: ANN001, ANN202
    """featurize_arrays as it was before the batch work (scipy BFS, np.add.at, lexsort, 2-D
    np.unique over edges, one float64 row per group)."""
    if len(arr) == 0:
        return []
    off, raw, edges = arr.offsets, arr.raw, np.stack([arr.src, arr.dst])
    elem = np.array(
        [features.PRECISION_BYTES.get(precision or p, 4) for p in arr.precisions], float
    )
    gid = np.repeat(np.arange(len(arr)), arr.sizes)
    e = elem[gid]
    costs = np.column_stack([raw[:, 7], raw[:, 9] * e, raw[:, 10] * e, raw[:, 8] * e])
    op = raw[:, 0].astype(np.int64)
    live = _ref_live(raw.shape[0], edges, [int(j) for j in arr.outs])
    grp = _ref_fuse(op, edges)
    k = int(grp.max()) + 1 if grp.size else 0
    x = features.group_rows(raw, costs, op, grp, k)
    x[:, N_OPS + 10] = np.bincount(grp, weights=live, minlength=k) > 0
    gs, gd = grp[edges[0]], grp[edges[1]]
    keep = gs != gd
    gedges = np.zeros((2, 0), np.int64)
    if keep.any():
        gedges = np.unique(np.stack([gs[keep], gd[keep]]), axis=1)
    x[:, N_OPS + 11] = np.log1p(np.bincount(gedges[1], minlength=k))
    x[:, N_OPS + 12] = np.log1p(np.bincount(gedges[0], minlength=k))
    x = x.astype(np.float32)
    g = _ref_graph_rows(arr, raw, costs, op, live, edges, gid, elem)
    g_off = np.r_[grp[off[:-1]], x.shape[0]]
    e_off = np.searchsorted(gedges[0], g_off)
    out = []
    for i in range(len(arr)):
        a, b, ga, gb = int(off[i]), int(off[i + 1]), int(g_off[i]), int(g_off[i + 1])
        out.append(
            features.GraphFeatures(
                x=x[ga:gb],
                edges=gedges[:, int(e_off[i]) : int(e_off[i + 1])] - ga,
                g=g[i],
                group=grp[a:b] - ga,
                costs=costs[a:b],
                op=op[a:b],
                node_ids=arr.node_ids[i] if arr.node_ids is not None else [],
                raw=raw[a:b] if keep_raw else None,
            )
        )
    return out


def _ref_factorize(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    _, first, codes = np.unique(keys, return_index=True, return_inverse=True)
    return codes.reshape(-1), first


def _ref_unique_counts(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.unique(keys, return_counts=True)


def _plain(monkeypatch: pytest.MonkeyPatch) -> None:
    """Switch scan, featurization and quotient to the plain algorithms."""
    monkeypatch.setattr(arrays, "_scan", _plain_scan)
    monkeypatch.setattr(features, "featurize_arrays", _ref_featurize_arrays)
    monkeypatch.setattr(gnn, "_factorize", _ref_factorize)
    monkeypatch.setattr(gnn, "_unique_counts", _ref_unique_counts)


def assert_same_features(fast: list, ref: list) -> None:  # noqa: ANN001
    assert len(fast) == len(ref)
    for a, b in zip(fast, ref, strict=True):
        for f in ("x", "edges", "g", "group", "costs", "op"):
            u, v = getattr(a, f), getattr(b, f)
            assert u.dtype == v.dtype and u.shape == v.shape and np.array_equal(u, v), f
        assert a.node_ids == b.node_ids
        assert (a.raw is None) == (b.raw is None)
        if a.raw is not None:
            assert np.array_equal(a.raw, b.raw)


def _odd_graphs() -> list:
    """Graphs with what the spaces rarely make: dead branches (a chain feeding no output),
    repeated unary ops in one fused group, a graph with no edges, fp16 meta."""
    b = GraphBuilder("odd", (1, 3, 16, 16))
    x = b.act(b.input, "relu", id="/r0")
    x = b.conv(x, 8, 3, id="/c0")
    x = b.batchnorm(x, id="/bn0")
    x = b.act(x, "relu", id="/r1")
    x = b.act(x, "relu", id="/r2")
    dead = b.conv(x, 8, 1, id="/dead/c")
    dead = b.act(dead, "relu", id="/dead/r")
    y = b.pool(x, "max", 3, id="/p")
    y = b.add([x, y], id="/add")
    g1 = b.build([y])
    b = GraphBuilder("one", (1, 4, 8, 8))
    g2 = b.build([b.act(b.input, "relu", id="/r")], meta={"precision": "fp16"})
    return [g1, g2, g1]


def test_batch_features_equal_plain_features() -> None:
    graphs = _odd_graphs()
    for name, n in (("nb201", 120), ("mbconv", 40), ("resnet", 20), ("fbnet", 20)):
        sp = get_space(name)
        graphs += [sp.to_graph(g) for g in _genotypes(name, n)]
    arr = arrays.graph_arrays(graphs)
    for prec, keep in ((None, False), ("fp16", True)):
        fast = features.featurize_arrays(arr, prec, keep)
        assert_same_features(fast, _ref_featurize_arrays(arr, prec, keep))
    fb = batch.featurize_batch(arr)
    assert fb.xcode is not None  # the distinct-row table was used (and checked exact)
    q, r = gnn.batch_quotient(fb, 2), gnn.build_quotient(fb.views(), 2)
    assert np.array_equal(q.x0, r.x0) and np.array_equal(q.pool, r.pool)
    for u, v in zip(q.levels, r.levels, strict=True):
        assert np.array_equal(u.in_edges, v.in_edges) and np.array_equal(u.out_edges, v.out_edges)


def test_distinct_rows_and_predictions() -> None:
    rng = np.random.default_rng(0)
    X = rng.integers(0, 3, size=(500, 7)).astype(np.float32)
    X[5, 2] = -0.0  # bit-distinct from 0.0: kept apart
    reps, codes = dedupe.distinct_rows(X)
    assert np.array_equal(X[reps][codes], X)
    assert reps.size == np.unique(X.view(np.uint32), axis=0).shape[0]

    class Sum:
        def predict(self, Z: np.ndarray, **kw: object) -> np.ndarray:
            return Z.sum(1) * 1.5

    assert np.array_equal(dedupe.predict_distinct(Sum(), X), X.sum(1) * 1.5)


@pytest.fixture(scope="module")
def predictor() -> api.Predictor:
    """A small predictor trained on public NB201 timings (fpga column)."""
    if not DATA.exists():
        pytest.skip(f"{DATA} not present")
    with open(DATA, newline="") as f:
        rows = [(r["arch"], float(r["fpga"])) for r in csv.DictReader(f) if r["fpga"]]
    rows = random.Random(0).sample(rows, 160)
    sp = get_space("nb201")
    ex = api.examples_from_graphs([sp.to_graph(a) for a, _ in rows])
    for e, (a, _) in zip(ex, rows, strict=True):
        e.space, e.genotype = "nb201", a
    y = np.array([v for _, v in rows])
    return api.fit(ex[:110], y[:110], ex[110:], y[110:], device_id="test-dev", gnn_steps=30)


def _space_arrays(sp):  # noqa: ANN001, ANN202
    """The space's own genotypes -> node arrays, else scanning its graphs."""
    own = getattr(sp, "graph_arrays", None)
    if own is not None:
        return own
    return lambda gs: arrays.graph_arrays([sp.to_graph(g) for g in gs], keep_ids=False)


def _fresh(p: api.Predictor) -> api.Predictor:
    return api.Predictor(p.meta, p.gbdt, p.gnn, p.layerwise, p.encoder)


def _close(fast: list, plain: list) -> None:  # noqa: ANN001
    for attr in ("latency_ms", "low_ms", "high_ms"):
        f = np.array([getattr(p, attr) for p in fast])
        p = np.array([getattr(q, attr) for q in plain])
        assert np.max(np.abs(f - p) / p) < 1e-6, attr


@pytest.mark.slow
@pytest.mark.parametrize(("name", "n"), [("nb201", 600), ("mbconv", 200)])
def test_fast_path_predicts_as_plain_path(
    predictor: api.Predictor, name: str, n: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    sp = get_space(name)
    genos = _genotypes(name, n)
    fast = _fresh(predictor).predict_genotypes(name, genos, sp.to_graph)
    fast_arr = _fresh(predictor).predict_genotypes(
        name, genos, sp.to_graph, arrays=_space_arrays(sp)
    )
    keyed = _fresh(
        predictor
    ).predict_genotypes(  # a cache key that is not the space name
        f"{name}@key", genos[:50], sp.to_graph, arrays=_space_arrays(sp)
    )
    _close(keyed, fast_arr[:50])
    fast_feats = features.featurize_many([sp.to_graph(g) for g in genos[:100]])

    _plain(monkeypatch)
    graphs = [sp.to_graph(g) for g in genos]
    plain_ex = [
        api.Example(f, name, g) for f, g in zip(features.featurize_many(graphs), genos, strict=True)
    ]
    assert_same_features(fast_feats, [e.feats for e in plain_ex[:100]])
    plain = predictor.predict_examples(plain_ex)
    _close(fast, plain)
    _close(fast_arr, plain)


@pytest.mark.slow
def test_layerwise_on_distinct_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    """A predictor with a per-layer model: its layer sums from distinct group rows equal the
    per-group ones, and the fast prediction path answers as the plain one."""
    sp, rng = get_space("nb201"), np.random.default_rng(0)
    genos = _genotypes("nb201", 120)
    ex, y = [], []
    for geno, f in zip(
        genos[:90],
        features.featurize_many([sp.to_graph(g) for g in genos[:90]], keep_raw=True),
        strict=True,
    ):
        layers, total = device_ms(f, rng)
        ex.append(api.Example(f, "nb201", geno, layers))
        y.append(total)
    pred = api.fit(
        ex[:60], np.array(y[:60]), ex[60:], np.array(y[60:]), device_id="s", gnn_steps=10
    )
    assert pred.layerwise is not None
    fb = batch.featurize_batch(arrays.graph_arrays([sp.to_graph(g) for g in genos]))
    views = fb.views()
    direct = pred.layerwise.layer_sum_ms(views)
    assert np.array_equal(dedupe.layer_sum_ms(pred.layerwise, fb), direct)
    assert dedupe.batch_of(views) is fb and dedupe.batch_of(views[1:]) is None
    assert dedupe.batch_of(list(reversed(views))) is None
    meta = pred.layerwise.meta
    xr, _ = layerwise._with_roof(fb.x, meta["peak_macs_per_ms"], meta["bytes_per_ms"])
    booster = pred.layerwise.booster
    assert dedupe.distinct_rows(xr)[0].size < xr.shape[0] / 10  # rows repeat: few distinct
    assert np.array_equal(dedupe.predict_distinct(booster, xr), booster.predict(xr))
    fast = _fresh(pred).predict_genotypes("nb201", genos, sp.to_graph, arrays=_space_arrays(sp))
    _plain(monkeypatch)
    plain_ex = [
        api.Example(f, "nb201", g)
        for f, g in zip(
            features.featurize_many([sp.to_graph(g) for g in genos]), genos, strict=True
        )
    ]
    _close(fast, pred.predict_examples(plain_ex))


@pytest.mark.parametrize(("name", "n"), [("nb201", 500), ("mbconv", 150)])
def test_split_over_threads_predicts_as_one_batch(
    predictor: api.Predictor, name: str, n: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    sp = get_space(name)
    genos = _genotypes(name, n)
    one = _fresh(predictor).predict_genotypes(name, genos, sp.to_graph, arrays=_space_arrays(sp))
    calls: list[tuple[int, int]] = []
    run = parallel.split_run

    def spy(fn, n_items, workers):  # noqa: ANN001, ANN202
        calls.append((n_items, workers))
        return run(fn, n_items, workers)

    monkeypatch.setattr(parallel, "MIN_PER_WORKER", 40)
    monkeypatch.setattr(parallel, "SLICE_SIZE", 23)  # several slices per thread
    monkeypatch.setattr(parallel, "cores", lambda: 3)
    monkeypatch.setattr(parallel, "split_run", spy)
    split = _fresh(predictor).predict_genotypes(name, genos, sp.to_graph, arrays=_space_arrays(sp))
    assert calls == [(len(set(genos)), 3)]
    assert parallel.lib_threads() == 2  # restored after the block
    _close(split, one)


def test_split_run_orders_results_and_raises() -> None:
    assert parallel.slices(10, 3) == [(0, 3), (3, 6), (6, 10)]
    assert parallel.split_run(lambda lo, hi: lambda: list(range(lo, hi)), 10, 3) == [
        [0, 1, 2],
        [3, 4, 5],
        [6, 7, 8, 9],
    ]
    # slices of about slice_size, as many as a multiple of the workers; one worker: in order
    got = parallel.split_run(lambda lo, hi: lambda: (lo, hi), 100, 2, slice_size=24)
    assert got == [(0, 25), (25, 50), (50, 75), (75, 100)]
    got = parallel.split_run(lambda lo, hi: lambda: (lo, hi), 100, 1, slice_size=30)
    assert got == [(0, 33), (33, 66), (66, 100)]

    def bad(lo: int, hi: int):  # noqa: ANN202
        def work() -> int:
            if lo > 0:
                raise ValueError("slice failed")
            return hi

        return work

    with pytest.raises(ValueError, match="slice failed"):
        parallel.split_run(bad, 10, 2)
    assert parallel.lib_threads() == 2


@pytest.mark.slow
@pytest.mark.parametrize("chunk", [7, 1 << 20])
def test_chunked_gnn_forward_is_the_module_forward(
    predictor: api.Predictor, chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    sp = get_space("mbconv")
    genos = _genotypes("mbconv", 40)
    fb = batch.featurize_batch(sp.graph_arrays(genos))
    ex = [api.Example(f, "mbconv", g) for f, g in zip(fb.views(), genos, strict=True)]
    X = predictor.design(ex)
    model = predictor.gnn
    q = gnn.batch_quotient(fb, model.config["layers"])
    xm, xsd, gm, gsd = model._norm()
    with torch.no_grad():
        ref = model.module(
            gnn._to_torch(q, xm, xsd), torch.from_numpy(gnn._standardize(X, gm, gsd))
        )
    monkeypatch.setattr(gnn, "FORWARD_CHUNK", chunk)
    got = model.predict_log(fb.views(), X, q)
    np.testing.assert_allclose(got, ref.double().numpy(), rtol=0, atol=1e-6)
