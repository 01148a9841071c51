"""Kernel units (the kernels ONNX Runtime runs) and the per-kernel model (issue 16)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from agent_helpers import ort_optimized

from nasctl.arch.graph import Graph, GraphBuilder
from nasctl.predictor.kernel_model import TERM_RULE, KernelModel
from nasctl.predictor.kernel_units import FREE_OPS, TYPES, UNIT_FEATURES, graph_units, unit_rows
from nasctl.spaces import get_space
from nasctl.spaces.kernels import KernelsSpace


def _dense_block() -> Graph:
    """DenseNet-style pre-activation: concat -> BN -> ReLU -> conv (ORT fuses BN-ReLU-conv)."""
    b = GraphBuilder("dense", (1, 16, 14, 14))
    a = b.act(b.batchnorm(b.conv(b.input, 16, 3, id="c0"), id="bn0"), "relu", id="r0")
    x = b.concat([b.input, a], id="cat")
    x = b.conv(b.act(b.batchnorm(x, id="bn1"), "relu", id="r1"), 32, 1, id="c1")
    return b.build([b.global_pool(x, id="gap")])


def _residual() -> Graph:
    """Conv-BN-ReLU, conv-BN, + a strided shortcut conv, add, ReLU (a ResNet block)."""
    b = GraphBuilder("res", (1, 16, 28, 28))
    x = b.act(b.batchnorm(b.conv(b.input, 32, 3, stride=2, id="c1"), id="b1"), "relu", id="r1")
    x = b.batchnorm(b.conv(x, 32, 3, id="c2"), id="b2")
    s = b.batchnorm(b.conv(b.input, 32, 1, stride=2, id="sc"), id="bs")
    return b.build([b.act(b.add([x, s], id="add"), "relu", id="r2")])


def _shuffle_block() -> Graph:
    """ShuffleNetV2 unit: split the channels in halves, 1x1-dw3x3-1x1 on one, concat, shuffle."""
    b = GraphBuilder("shuffle", (1, 48, 28, 28))
    x1, x2 = b.split(b.input, [24, 24], id="split")
    y = b.act(b.conv(x2, 24, 1, id="pw1"), "relu", id="r1")
    y = b.conv(y, 24, 3, groups=24, id="dw")
    y = b.act(b.conv(y, 24, 1, id="pw2"), "relu", id="r2")
    x = b.concat([x1, y], id="cat")
    x = b.reshape(x, (1, 2, 24, 28, 28), id="view")
    x = b.transpose(x, [0, 2, 1, 3, 4], id="shuffle")
    x = b.reshape(x, (1, 48, 28, 28), id="unview")
    return b.build([b.conv(x, 48, 1, id="next")])


def _graphs() -> list[Graph]:
    ks, rng = KernelsSpace(), random.Random(2)
    out = [_dense_block(), _residual(), _shuffle_block()]
    out += [ks.to_graph(g) for g in ("split-i48-h28", "shuffle-i48-g2-h28", "shuffle-i96-g3-h14")]
    out += [ks.to_graph(g) for g in ("se-i96-o24-h28-swish", "conv-i32-o64-k3-s1-h28-hardswish")]
    for name in ("mbconv", "resnet"):
        sp = get_space(name)
        out += [sp.to_graph(sp.sample(rng)) for _ in range(2)]
    return out


@pytest.mark.parametrize("graph", _graphs(), ids=lambda g: g.name[:24])
def test_units_are_made_of_whole_ort_kernels(graph: Graph, tmp_path: Path) -> None:
    """Map ORT's kernels (nodes of its optimized graph) back to graph nodes: no kernel ORT runs
    may span two units (fused Conv+Add+ReLU, BN-ReLU-Conv, Conv+sigmoid stay together)."""
    from nasctl.arch.onnx_io import to_onnx
    from nasctl.profiler.layers import to_graph_ids
    from nasctl.profiler.ort_names import map_kernels

    model = to_onnx(graph)
    mapping = map_kernels(model, ort_optimized(model, tmp_path))
    pos = {n.id: i for i, n in enumerate(graph.nodes)}
    units = graph_units(graph)
    owner = {i: k for k, u in enumerate(units) for i in u.nodes}
    spans = []
    for info in mapping.kernels.values():
        if info.kind == "reformat":
            continue
        nodes = [pos[n] for n in to_graph_ids(list(info.nodes), set(pos)) if n in pos]
        owners = {owner.get(i) for i in nodes if graph.nodes[i].op not in FREE_OPS}
        if len(owners) > 1:
            spans.append([graph.nodes[i].op for i in nodes])
    assert not spans
    assert len(units) <= len([k for k in mapping.kernels.values() if k.kind != "reformat"])


def test_fusions_seen_on_ort_give_the_expected_units() -> None:
    res = graph_units(_residual())
    assert [u.type for u in res] == ["conv", "conv", "conv"]
    assert [u.fused_sum for u in res] == [False, True, False] and res[1].act == "relu"
    dense = graph_units(_dense_block())
    assert [u.type for u in dense] == ["conv", "concat", "conv", "gap"]
    assert len(dense[2].nodes) == 3  # BN-ReLU folded into the conv after them


def test_shuffle_units_are_split_concat_transpose() -> None:
    """ShuffleNet's channel split and shuffle are units of their own kinds (sampled by the
    kernels space), not ``other``; the reshapes around the transpose run no kernel."""
    units = graph_units(_shuffle_block())
    types = ["split", "conv", "dwconv", "conv", "concat", "transpose", "conv"]
    assert [u.type for u in units] == types
    g = _shuffle_block()
    shuffle = units[5]
    assert [g.nodes[i].op for i in shuffle.nodes] == ["transpose"]
    assert not {i for u in units for i in u.nodes} & {7, 9}  # the reshapes: no kernel
    rows, types = unit_rows(g)
    row = dict(zip(UNIT_FEATURES, rows[types.index("transpose")], strict=True))
    assert np.expm1(row["log1p_c_in"]) == pytest.approx(48)
    assert np.expm1(row["log1p_h_in"]) == pytest.approx(28)
    assert np.expm1(row["log1p_groups"]) == pytest.approx(2)
    assert np.expm1(row["log1p_read_bytes"]) == pytest.approx(4 * 48 * 784)
    assert np.expm1(row["log1p_write_bytes"]) == pytest.approx(4 * 48 * 784)
    row = dict(zip(UNIT_FEATURES, rows[types.index("split")], strict=True))
    assert np.expm1(row["log1p_write_bytes"]) == pytest.approx(4 * 48 * 784)  # both halves
    assert row["log1p_weight_bytes"] == 0


def test_slices_of_one_tensor_are_one_split_as_ort_fuses_them(tmp_path: Path) -> None:
    """torch exports ``x.chunk(2, 1)`` as two Slices; ORT runs them as one Split."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from nasctl.arch.onnx_io import from_onnx

    def const(name: str, v: list[int]) -> Any:
        return numpy_helper.from_array(np.array(v, dtype=np.int64), name)

    inits = [const("s0", [0]), const("e0", [24]), const("s1", [24]), const("e1", [48])]
    inits.append(const("ax", [1]))
    nodes = [
        helper.make_node("Slice", ["x", "s0", "e0", "ax"], ["a"], name="sl0"),
        helper.make_node("Slice", ["x", "s1", "e1", "ax"], ["b"], name="sl1"),
        helper.make_node("Add", ["a", "b"], ["y"], name="add"),
    ]
    graph = helper.make_graph(
        nodes,
        "chunk",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 48, 14, 14])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 24, 14, 14])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "chunk.onnx"
    onnx.save(model, path)
    units = graph_units(from_onnx(path))
    assert [u.type for u in units] == ["split", "add"] and len(units[0].nodes) == 2
    ops = [n.op_type for n in ort_optimized(model, tmp_path).graph.node]
    assert ops.count("Split") == 1 and "Slice" not in ops


def test_every_kernels_sample_is_one_unit_of_its_kind() -> None:
    ks, rng = KernelsSpace(), random.Random(0)
    kind_type = {"dconv": "conv", "maxpool": "pool", "avgpool": "pool", "shuffle": "transpose"}
    for g in (ks.sample(rng) for _ in range(300)):
        kind = g.split("-")[0]
        rows, types = unit_rows(ks.to_graph(g))
        assert [t for t in types if t != "reorder"] == [kind_type.get(kind, kind)], g
        assert rows.shape == (len(types), 16) and np.isfinite(rows).all()


def _kernel_data(n: int = 240) -> tuple[np.ndarray, list[str], np.ndarray, list[str]]:
    """Kernel samples with a smooth made-up latency (MACs and bytes at fixed rates)."""
    ks, rng = KernelsSpace(), random.Random(1)
    gens = [ks.sample(rng) for _ in range(n)]
    rows, types = [], []
    for g in gens:
        r, t = unit_rows(ks.to_graph(g))
        main = next(k for k, u in enumerate(t) if u != "reorder")
        rows.append(r[main])
        types.append(t[main])
    x = np.array(rows)
    ms = np.expm1(x[:, 11]) / 2e6 + np.expm1(x[:, 12:15]).sum(1) / 4e6 + 0.003
    return x, types, ms, gens


def test_a_model_of_known_kernels_is_their_sum_plus_the_learned_term() -> None:
    x, types, ms, gens = _kernel_data()
    model = KernelModel.fit(x, types, ms)
    assert model is not None
    alone = model.unit_ms(x, types)
    assert np.median(np.abs(alone / ms - 1)) < 0.1  # trained kernels are known
    # whole graphs made of known kernels: latency 0.8 x sum of kernels + 0.01 ms per kernel + 0.2
    # (120 graphs: with 60, per-kernel and constant terms trade off; per-kernel < 0 on some draws)
    rng = np.random.default_rng(0)
    picks = [
        rng.choice(len(types), size=int(rng.integers(3, 12)), replace=False) for _ in range(120)
    ]
    graphs: list[Any] = [(x[p], [types[i] for i in p]) for p in picks]
    y = np.array([0.8 * ms[p].sum() + 0.01 * len(p) + 0.2 for p in picks])
    model.fit_graph_term(graphs, y)  # the default rule: no term, the plain kernel sum
    assert TERM_RULE == "plain" and model.meta["graph_term"]["per_unit_ms"] == 0.0
    assert set(model.meta["graph_term"]["scale"].values()) == {1.0}
    assert model.predict_ms(graphs[:3]) == pytest.approx(model.sum_ms(graphs[:3]))
    model.fit_graph_term(graphs, y, rule="ridge1")  # the learned term
    term = model.meta["graph_term"]
    assert term["scale"]["conv"] == pytest.approx(0.8, abs=0.05)  # the learned term
    assert 0.0 <= term["per_unit_ms"] <= 0.05 and term["scale"]["other"] == 1.0  # (unseen)
    new = rng.choice(len(types), size=8, replace=False)  # a new model of known kernels
    g = (x[new], [types[i] for i in new])
    scale = np.array([term["scale"][t] for t in g[1]])
    by_hand = (scale * model.unit_ms(*g)).sum() + 8 * term["per_unit_ms"] + term["const_ms"]
    assert "per_io_mb_ms" not in term  # layout conversions are units of their own now
    assert model.predict_ms([g])[0] == pytest.approx(by_hand, rel=1e-9)
    assert model.predict_ms([g])[0] == pytest.approx(0.8 * ms[new].sum() + 0.28, rel=0.15)
    # saved as LightGBM text and loaded back: the same answers
    again = KernelModel.from_texts(model.texts(), model.meta)
    assert np.allclose(again.predict_ms([g]), model.predict_ms([g]))
    with pytest.raises(ValueError, match="format"):  # saved before reorder units: refused
        KernelModel.from_texts(model.texts(), {**model.meta, "format": None})
    assert set(term["scale"]) == set(TYPES)


def test_a_sample_profile_splits_its_latency_between_kernel_and_reorders() -> None:
    """A conv measured alone: ORT ran ReorderInput, the NCHWc conv, a HardSigmoid + Mul (the
    hardswish it fuses inside networks) and ReorderOutput; the kernel is labelled with its own
    share of the measured latency, each reorder with its own, the hardswish pair with none."""
    from types import SimpleNamespace

    from nasctl.predictor.kernel_model import _kernel_labels, kernel_row_index
    from nasctl.records import LayerTiming

    g = KernelsSpace().to_graph("conv-i64-o64-k3-s1-h28-hardswish")
    units = unit_rows(g)
    assert units[1] == ["conv", "reorder", "reorder"]
    layers = [
        LayerTiming("ReorderInput", 0.1, kind="reformat", extra={"op": "ReorderInput"}),
        LayerTiming("/layer_nchwc", 0.6, extra={"op": "Conv"}),
        LayerTiming("HardSigmoid_2", 0.05, extra={"op": "HardSigmoid"}),
        LayerTiming("Mul_3", 0.05, extra={"op": "Mul"}),
        LayerTiming("ReorderOutput", 0.2, kind="reformat", extra={"op": "ReorderOutput"}),
    ]
    ex = [SimpleNamespace(single_layer=True, units=units, layers=layers)]
    assert kernel_row_index(ex) == [0]
    rows, types, labels = _kernel_labels(ex, np.array([2.0]), [0])  # measured 2 ms, profile 1 ms
    assert types == ["conv", "reorder", "reorder"]
    assert labels == pytest.approx([1.2, 0.2, 0.4])
    ex[0].layers = None  # no profile: the kernel takes the whole latency
    _, types, labels = _kernel_labels(ex, np.array([2.0]), [0])
    assert types == ["conv"] and labels == [2.0]


def test_grouped_conv_columns_describe_groups_padding_and_layout() -> None:
    from nasctl.predictor.kernel_model import _roof

    space = KernelsSpace()
    names = (
        "gconv-i64-o64-g4-k3-s1-h14",
        "gconv-i192-o192-g8-k3-s1-h14",
        "gconv-i64-o128-g8-k1-s1-h14",
        "conv-i64-o64-k3-s1-h14",
        "dwconv-i64-k3-s1-h14",
    )
    rows = []
    for name in names:
        urows, types = unit_rows(space.to_graph(name))
        rows.append(urows[next(k for k, t in enumerate(types) if t != "reorder")])
    xr, _ = _roof(np.vstack(rows), 1.0, 1.0)
    out_width, log_pad, blocked = xr[:, -3], xr[:, -2], xr[:, -1]
    assert list(blocked) == [1.0, 0.0, 0.0, 0.0, 0.0]  # 16-ch groups: blocked; 24, 8: NCHW
    np.testing.assert_allclose(np.expm1(out_width[:3]), [16, 24, 16])
    np.testing.assert_allclose(np.exp(log_pad[:3]), [1.0, (32 / 24) ** 2, 2.0])
    assert not out_width[3:].any() and not log_pad[3:].any()  # dense and depthwise: no groups
    xr8, _ = _roof(np.vstack(rows), 1.0, 1.0, block=8)  # AVX2's block: 8/16/24-ch groups blocked
    assert list(xr8[:, -1]) == [1.0, 1.0, 1.0, 0.0, 0.0]
    np.testing.assert_allclose(np.exp(xr8[:3, -2]), [1.0, 1.0, 1.0])


def test_per_graph_term_rules_fit_only_their_parts() -> None:
    from nasctl.predictor.kernel_model import TERM_RULES, fit_term

    rng = np.random.default_rng(3)
    K = np.zeros((60, len(TYPES)))  # noqa: N806 - per-type kernel sums, as fit_term names them
    K[:, TYPES.index("conv")] = rng.uniform(1, 10, 60)
    K[:, TYPES.index("dwconv")] = rng.uniform(0.5, 3, 60)
    n = rng.integers(20, 200, 60).astype(float)
    y = 0.9 * K[:, 0] + 1.2 * K[:, 1] + 0.004 * n + 0.05
    fits = {rule: fit_term(K, n, y, rule) for rule in TERM_RULES}
    assert set(fits["plain"][0]) == {1.0} and fits["plain"][1:] == (0.0, 0.0)
    s, c, a = fits["ridge1"]
    assert s[TYPES.index("other")] == 1.0  # a type absent from every graph keeps scale 1
    assert abs(s[0] - 0.9) < abs(fits["ridge100"][0][0] - 0.9)  # more ridge: nearer the sum
    assert fits["scales"][1:] == (0.0, 0.0) and fits["scales"][0][1] > 1.05
    assert set(fits["overhead"][0]) == {1.0} and fits["overhead"][1] != 0.0
    assert fits["unit-median"][2] == 0.0
    np.testing.assert_allclose(fits["half"][0], 1 + 0.5 * (s - 1))
    assert fits["half"][1:] == pytest.approx((0.5 * c, 0.5 * a))
    with pytest.raises(ValueError, match="unknown per-graph term rule"):
        fit_term(K, n, y, "bogus")


def test_a_model_of_known_kernels_is_the_sum_of_their_in_network_times_plus_the_term() -> None:
    """v5: the in-network correction, learned from whole graphs' per-unit profiled times, is
    shrunk toward ratio 1; a type the graphs never had keeps ratio 1; a whole graph is the sum of
    its units' in-network times plus the per-graph term plus one per-run cost."""
    from nasctl.predictor.kernel_model import FORMAT, INNET_SHRINK

    x, types, ms, _ = _kernel_data()
    model = KernelModel.fit(x, types, ms)
    assert model is not None
    rng = np.random.default_rng(5)
    keep = [i for i, t in enumerate(types) if t in ("conv", "dwconv")]  # the graphs' types
    picks = [rng.choice(keep, size=int(rng.integers(4, 12)), replace=False) for _ in range(150)]
    graphs: list[Any] = [(x[p], [types[i] for i in p]) for p in picks]
    # in a network, depthwise convs take half their time alone, dense convs the same
    half = [np.where(np.array(g[1]) == "dwconv", 0.5, 1.0) for g in graphs]
    times = [h * ms[p] for h, p in zip(half, picks, strict=True)]
    assert model.fit_innet(graphs, times) > 30
    assert model.meta["innet_types"] == ["conv", "dwconv"]
    ratio = model.innet_ratio(x, types)
    tarr = np.array(types)
    want = np.exp(INNET_SHRINK * np.log(0.5))  # the ratio shrunk (in log) toward 1
    assert np.median(ratio[tarr == "dwconv"]) == pytest.approx(want, abs=0.08)
    assert np.median(ratio[tarr == "conv"]) == pytest.approx(1.0, abs=0.08)
    other = [t for t in set(types) if t not in ("conv", "dwconv")]
    assert other and (ratio[np.isin(tarr, other)] == 1.0).all()  # never seen in a graph: 1
    model.meta["run_ms"] = 0.009
    model.fit_graph_term(graphs, np.array([t.sum() for t in times]))  # default: plain
    new = rng.choice(len(types), size=9, replace=False)  # a new model of known kernels
    g = (x[new], [types[i] for i in new])
    by_hand = (model.unit_ms(*g) * model.innet_ratio(*g)).sum() + 0.009
    assert model.predict_ms([g])[0] == pytest.approx(by_hand, rel=1e-9)
    assert model.sum_ms([g])[0] == pytest.approx(by_hand - 0.009, rel=1e-9)
    assert model.alone_ms([g])[0] == pytest.approx(model.unit_ms(*g).sum() + 0.009, rel=1e-9)
    # saved and loaded: the correction travels (kernel_innet.txt); older formats are refused
    texts = model.texts()
    assert "kernel_innet.txt" in texts
    again = KernelModel.from_texts(texts, model.meta)
    assert np.allclose(again.predict_ms([g]), model.predict_ms([g]))
    assert FORMAT == "kernel-units-v6"
    for old in ("kernel-units-v4", "kernel-units-v5"):
        with pytest.raises(ValueError, match=old):
            KernelModel.from_texts(texts, {**model.meta, "format": old})


def test_the_in_network_correction_does_not_extrapolate_beyond_its_fitted_ranges() -> None:
    """v6: a unit inside the per-type ranges of MACs / weight / input / output bytes the
    correction was fitted on gets the fitted ratio; one outside (e.g. an FC far larger than the
    spaces' classifier) keeps ratio 1; the ranges travel with the saved model."""
    import json

    from nasctl.predictor.kernel_model import INNET_CLIP, INNET_RANGE_FEATURES, INNET_SHRINK

    x, types, ms, _ = _kernel_data()
    model = KernelModel.fit(x, types, ms)
    assert model is not None
    tarr = np.array(types)
    w = UNIT_FEATURES.index("log1p_weight_bytes")
    conv = np.flatnonzero(tarr == "conv")
    cut = np.median(x[conv, w])
    small = conv[x[conv, w] <= cut]  # the graphs hold only the smaller half of the convs
    rng = np.random.default_rng(7)
    picks = [rng.choice(small, size=int(rng.integers(4, 10)), replace=False) for _ in range(120)]
    graphs: list[Any] = [(x[p], ["conv"] * len(p)) for p in picks]
    times = [0.5 * model.unit_ms(*g) for g in graphs]  # in a network: half their time alone
    assert model.fit_innet(graphs, times) > 30
    rg = model.meta["innet_ranges"]
    assert set(rg) == {"conv"} and set(rg["conv"]) == set(INNET_RANGE_FEATURES)
    assert rg["conv"]["log1p_weight_bytes"] == [x[small, w].min(), x[small, w].max()]
    ratio = model.innet_ratio(x, types)
    inside = model.innet_in_range(x, types)
    assert inside[small].all() and not inside[tarr != "conv"].any()
    # inside: the booster's ratio, clipped and shrunk; near 0.5 ** shrink
    fitted = np.clip(
        model.boosters["innet"].predict(model._innet_x(x[small], ["conv"] * len(small))),
        -INNET_CLIP,
        INNET_CLIP,
    )
    np.testing.assert_allclose(ratio[small], np.exp(INNET_SHRINK * fitted))
    assert np.median(ratio[small]) == pytest.approx(0.5**INNET_SHRINK, abs=0.05)
    # outside: the larger convs beyond the fitted weight bytes, and a conv made 1000x larger
    big = conv[x[conv, w] > x[small, w].max()]
    assert big.size and (ratio[big] == 1.0).all()
    huge = x[small[:3]].copy()
    huge[:, w] += np.log(1000.0)
    assert (model.innet_ratio(huge, ["conv"] * 3) == 1.0).all()
    macs = UNIT_FEATURES.index("log1p_macs")
    many = x[small[:3]].copy()
    many[:, macs] = rg["conv"]["log1p_macs"][1] + 1.0
    assert (model.innet_ratio(many, ["conv"] * 3) == 1.0).all()
    assert (ratio[tarr != "conv"] == 1.0).all()  # a type never profiled: 1
    # saved (meta as JSON) and loaded: the ranges travel, the answers are the same
    meta = json.loads(json.dumps(model.meta))
    again = KernelModel.from_texts(model.texts(), meta)
    assert again.meta["innet_ranges"] == rg
    np.testing.assert_array_equal(again.innet_ratio(x, types), ratio)
    np.testing.assert_array_equal(again.innet_ratio(huge, ["conv"] * 3), np.ones(3))


def test_run_cost_comes_off_the_samples_labels_and_is_paid_once_per_graph() -> None:
    from types import SimpleNamespace

    from nasctl.predictor.kernel_model import RUN_COST_PERCENTILE, fit_from_examples, run_cost_ms

    x, types, ms, _ = _kernel_data()
    y = ms + 0.009  # every sample also pays a 9 us run cost
    assert run_cost_ms(y) == pytest.approx(np.percentile(y, RUN_COST_PERCENTILE))
    assert 0.009 < run_cost_ms(y) < 0.009 + np.percentile(ms, 5)
    assert run_cost_ms(np.array([])) == 0.0
    ex = [
        SimpleNamespace(single_layer=True, units=(x[i : i + 1], [types[i]]), layers=None)
        for i in range(len(types))
    ]
    model = fit_from_examples(ex, y)
    plain = fit_from_examples(ex, y, run_cost=False, innet=False)
    assert model is not None and plain is not None
    run = model.meta["run_ms"]
    assert run == pytest.approx(run_cost_ms(y)) and plain.meta["run_ms"] == 0.0
    assert "innet" not in model.boosters  # no whole graphs with profiles: no correction
    small = ms < np.percentile(ms, 25)  # labels without the run cost: small kernels far smaller
    alone = model.unit_ms(x, types)
    assert np.median(alone[small] / plain.unit_ms(x, types)[small]) < 0.8
    # a sample measured alone: its units alone plus one run cost, near its measured latency
    one = [(x[i : i + 1], [types[i]]) for i in range(len(types))]
    assert np.median(np.abs(model.alone_ms(one) / y - 1)) < 0.1
    # a graph of 10 kernels pays the run cost once, not 10 times
    g = (x[:10], types[:10])
    assert model.predict_ms([g])[0] == pytest.approx(alone[:10].sum() + run, rel=1e-9)


def test_profile_unit_times_maps_layers_to_units_without_reorders() -> None:
    from nasctl.predictor.kernel_units import profile_unit_times
    from nasctl.records import LayerTiming

    g = _residual()
    units = graph_units(g)
    rows, types = unit_rows(g, units)
    ids = {n.id: i for i, n in enumerate(g.nodes)}
    unit_of = {i: k for k, u in enumerate(units) for i in u.nodes}
    layers = [
        LayerTiming("ReorderInput", 0.5, kind="reformat", extra={"op": "ReorderInput"}),
        LayerTiming("c1_nchwc", 1.0, nodes=["c1", "b1", "r1"], extra={"op": "Conv"}),
        LayerTiming("sc_nchwc", 0.5, nodes=["sc"], extra={"op": "Conv"}),
        LayerTiming("c2_nchwc", 2.0, nodes=["c2", "add", "r2"], extra={"op": "Conv"}),
    ]
    t = profile_unit_times(g, units, layers, latency_ms=8.0, n_rows=len(types))
    assert t is not None and t.shape == (len(types),)
    scale = 8.0 / 4.0  # the profile (4 ms, reorder included) scaled to the measured 8 ms
    assert t[unit_of[ids["c1"]]] == pytest.approx(1.0 * scale)
    assert t[unit_of[ids["sc"]]] == pytest.approx(0.5 * scale)
    assert t[unit_of[ids["c2"]]] == pytest.approx(2.0 * scale)
    assert t.sum() == pytest.approx(3.5 * scale)  # the reorder's time is no unit's
    assert all(t[k] == 0 for k, ty in enumerate(types) if ty == "reorder")
    assert profile_unit_times(g, units, None, 8.0, len(types)) is None
