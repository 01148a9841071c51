"""ONNX in and out: to_onnx writes valid, runnable models; from_onnx reads what users bring."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from arch_helpers import misc_graph, mixed_graph
from arch_models import Branches, SEBlock, ShapeOps, export
from onnx import TensorProto, helper

from nasctl.arch.costs import graph_costs
from nasctl.arch.graph import GraphBuilder
from nasctl.arch.hashing import graph_hash
from nasctl.arch.onnx_io import from_onnx, save_onnx, to_onnx
from nasctl.errors import GraphError, OnnxReadError


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    s = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]


# -- to_onnx -------------------------------------------------------------------------------------


@pytest.mark.parametrize("opset", [14, 17, 18])
def test_to_onnx_is_valid_and_runs(opset: int) -> None:
    g = mixed_graph()
    model = to_onnx(g, opset=opset)
    onnx.checker.check_model(model, full_check=True)
    y = _run(model, np.random.default_rng(0).standard_normal((1, 3, 32, 32), dtype=np.float32))
    assert y.shape == (1, 10) and np.isfinite(y).all()


def test_to_onnx_names_follow_node_ids() -> None:
    g = mixed_graph()
    model = to_onnx(g)
    names = [n.name for n in model.graph.node]
    ids = {n.id for n in g.nodes}
    assert ids <= set(names)
    assert {"/b2/act2/sigmoid", "/b3/gelu/erf"} <= set(names)  # inner nodes of swish, gelu
    by_name = {n.name: n for n in model.graph.node}
    assert by_name["/b2/act2"].op_type == "Mul" and by_name["/b3/sum3"].op_type == "Sum"
    assert by_name["/b1/act1"].op_type == "Clip" and by_name["/head/fc"].op_type == "Gemm"
    hs = helper.get_attribute_value(by_name["/b2/se/gate"].attribute[0])
    assert abs(hs - 1 / 6) < 1e-7
    avg = {a.name: helper.get_attribute_value(a) for a in by_name["/b3/avg"].attribute}
    assert avg["count_include_pad"] == 0
    inits = {t.name for t in model.graph.initializer}
    assert {"/b2/dw.weight", "/stem/bn.running_var", "/head/fc.bias"} <= inits
    assert [o.name for o in model.graph.output] == g.outputs
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [1, 3, 32, 32]


def test_to_onnx_random_weights_are_seeded_and_deep_nets_stay_finite() -> None:
    b = GraphBuilder("deep", (1, 8, 16, 16))
    x = b.input
    for i in range(40):
        y = b.conv(x, 8, 3, id=f"/c{i}")
        y = b.batchnorm(y, id=f"/bn{i}")
        y = b.act(y, "relu", id=f"/r{i}")
        x = b.add([x, y], id=f"/add{i}")
    g = b.build([x])
    m1, m2, m3 = to_onnx(g, seed=1), to_onnx(g, seed=1), to_onnx(g, seed=2)
    assert m1.SerializeToString() == m2.SerializeToString() != m3.SerializeToString()
    y = _run(m1, np.ones((1, 8, 16, 16), dtype=np.float32))
    assert np.isfinite(y).all() and np.abs(y).max() < 1e4
    # a plain deep chain without BN neither explodes nor sinks into denormals
    b = GraphBuilder("plain", (1, 32, 16, 16))
    x = b.input
    for i in range(60):
        x = b.act(b.conv(x, 32, 3, id=f"/c{i}"), "relu", id=f"/r{i}")
    y = _run(to_onnx(b.build([x])), np.ones((1, 32, 16, 16), dtype=np.float32))
    assert 1e-2 < float(np.sqrt((y**2).mean())) < 1e2


def test_to_onnx_rejects_bad_params_and_other_op() -> None:
    g = mixed_graph()
    with pytest.raises(GraphError, match="params has no tensor"):
        to_onnx(g, params={})
    m = to_onnx(g)
    params = {t.name: onnx.numpy_helper.to_array(t) for t in m.graph.initializer}
    params["/b2/dw.weight"] = params["/b2/dw.weight"][:2]
    with pytest.raises(GraphError, match="/b2/dw.weight"):
        to_onnx(g, params=params)
    with pytest.raises(GraphError, match="opset"):
        to_onnx(g, opset=12)


def test_save_onnx_writes_a_file_from_onnx_reads(tmp_path: Path) -> None:
    p = save_onnx(mixed_graph(), tmp_path / "sub" / "net.onnx", seed=5)
    g = from_onnx(p)
    assert g.meta["source"] == "onnx" and g.meta["model"] == "net.onnx"


# -- round trip ----------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [mixed_graph, misc_graph])
def test_roundtrip_keeps_ops_costs_and_hash(make) -> None:  # noqa: ANN001
    g0 = make()
    g1 = from_onnx(to_onnx(g0))
    assert g1.op_counts() == g0.op_counts()
    assert [n.id for n in g1.nodes] == [n.id for n in g0.nodes]
    assert graph_costs(g1).total == graph_costs(g0).total
    assert graph_hash(g1) == graph_hash(g0)


# -- from_onnx on torch exports ------------------------------------------------------------------


def test_from_onnx_torch_branches_model() -> None:
    g = from_onnx(export(Branches(), (1, 3, 16, 16)))
    counts = g.op_counts()
    assert counts == {
        "conv": 6,
        "relu": 2,
        "add": 1,
        "dwconv": 1,
        "hardswish": 1,
        "globalavgpool": 2,
        "hardsigmoid": 1,
        "mul": 1,
        "avgpool": 1,
        "concat": 1,
        "flatten": 1,
        "linear": 1,
    }
    hw = 16 * 16
    expected_macs = (
        hw * 16 * 3 * 9  # stem
        + hw * 16 * 16 * 9  # residual conv
        + hw * 16 * 9  # depthwise
        + 16 * 4
        + 4 * 16  # SE 1x1 convs on 1x1
        + hw * 8 * 16  # branch 1x1
        + hw * 8 * 16 * 25  # branch 5x5
        + 32 * 10  # linear head
    )
    costs = graph_costs(g)
    assert costs.total["macs"] == expected_macs
    cat = next(n for n in g.nodes if n.op == "concat")
    assert cat.out_shape == (1, 32, 16, 16) and len(cat.inputs) == 3
    pool = next(n for n in g.nodes if n.op == "avgpool")
    assert pool.attrs["count_include_pad"] is False and pool.attrs["pads"] == [1, 1, 1, 1]
    add = next(n for n in g.nodes if n.op == "add")
    assert len(add.inputs) == 2  # residual: both operands are edges
    mul = next(n for n in g.nodes if n.op == "mul")
    assert sorted(s for s in mul.in_shapes) == [(1, 16, 1, 1), (1, 16, 16, 16)]


def test_from_onnx_bn_not_folded_and_dynamic_batch() -> None:
    g = from_onnx(export(SEBlock(8), (2, 8, 8, 8), fold_bn=False, dynamic_batch=True))
    assert g.meta["dynamic_batch"] == ["input"]
    assert g.inputs == {"input": (1, 8, 8, 8)}
    dw = next(n for n in g.nodes if n.op == "dwconv")
    assert dw.attrs["groups"] == 8 and dw.out_shape == (1, 8, 8, 8)


@pytest.mark.parametrize("opset", [13, 18])
def test_from_onnx_opsets_and_shape_arithmetic(opset: int) -> None:
    g = from_onnx(export(Branches(), (1, 3, 16, 16), opset=opset, dynamic_batch=True))
    assert g.op_counts()["hardswish"] == 1  # opset 13: x * HardSigmoid(x), fused back
    assert "other" not in g.op_counts()
    g = from_onnx(export(ShapeOps(), (1, 16, 8, 8), opset=opset, dynamic_batch=True))
    assert g.op_counts() == {
        "split": 1,
        "resize": 1,
        "pad": 1,
        "globalavgpool": 1,
        "mul": 1,
        "reshape": 1,
        "softmax": 1,
    }  # the exporter's Shape/Gather/ConstantOfShape/... sub-graphs were folded away
    pad = next(n for n in g.nodes if n.op == "pad")
    assert pad.attrs["pads"] == [1, 1, 1, 1] and pad.out_shape == (1, 4, 18, 18)
    assert next(n for n in g.nodes if n.op == "reshape").out_shape == (1, 768)
    assert next(n for n in g.nodes if n.op == "resize").attrs["scale"] == 2


# -- from_onnx on what users bring ---------------------------------------------------------------


def _custom_model() -> onnx.ModelProto:
    """Conv -> com.example.Foo (unknown) -> Elu (not in vocabulary) -> Relu, opset 13."""
    w = onnx.numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Foo", ["c"], ["f"], name="", domain="com.example"),
        helper.make_node("Elu", ["f"], ["e"], name=""),
        helper.make_node("Relu", ["e"], ["y"], name="conv"),  # duplicate name
    ]
    g = helper.make_graph(
        nodes,
        "custom",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[w],
        value_info=[helper.make_tensor_value_info("f", TensorProto.FLOAT, [1, 4, 8, 8])],
    )
    opsets = [helper.make_opsetid("", 13), helper.make_opsetid("com.example", 1)]
    return helper.make_model(g, opset_imports=opsets, ir_version=7)


def test_unknown_ops_are_kept_as_other_with_shapes() -> None:
    g = from_onnx(_custom_model())
    assert [n.op for n in g.nodes] == ["conv", "other", "other", "relu"]
    foo, elu = g.nodes[1], g.nodes[2]
    assert foo.attrs == {"onnx_op": "Foo", "domain": "com.example"}
    assert foo.out_shape == (1, 4, 8, 8) and elu.out_shape == (1, 4, 8, 8)
    assert len({n.id for n in g.nodes}) == 4 and g.nodes[3].id == "conv_2"
    assert g.edges() == [(0, 1), (1, 2), (2, 3)]
    assert g.nodes[0].inputs == ["x"]  # the weight initializer is not an edge
    assert graph_costs(g).total["macs"] == 64 * 4 * 27
    with pytest.raises(GraphError, match="Foo"):
        to_onnx(g)


def test_external_data_model_reads(tmp_path: Path) -> None:
    model = to_onnx(mixed_graph())
    path = tmp_path / "ext" / "model.onnx"
    path.parent.mkdir()
    onnx.save_model(
        model,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="model.data",
        size_threshold=0,
    )
    assert (path.parent / "model.data").stat().st_size > path.stat().st_size
    g = from_onnx(path)
    assert g.op_counts() == mixed_graph().op_counts()  # relu6 needs the external clip bounds
    assert graph_hash(g) == graph_hash(mixed_graph())


def test_external_data_model_reads_from_another_cwd(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    model = to_onnx(mixed_graph())
    path = tmp_path / "model.onnx"
    onnx.save_model(
        model, str(path), save_as_external_data=True, location="w.bin", size_threshold=0
    )
    monkeypatch.chdir("/")
    assert from_onnx(str(path)).op_counts()["relu6"] == 1


def test_bad_files_raise_one_clear_line(tmp_path: Path) -> None:
    good = tmp_path / "good.onnx"
    save_onnx(mixed_graph(), good)
    data = good.read_bytes()
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    trunc = tmp_path / "trunc.onnx"
    trunc.write_bytes(data[: len(data) // 2])
    text = tmp_path / "notes.onnx"
    text.write_text("this is not a model\nreally\n")
    cases = {
        tmp_path / "missing.onnx": "not found",
        empty: "empty",
        trunc: "trunc",
        text: "ONNX",
        tmp_path: "not a file",
    }
    for path, what in cases.items():
        with pytest.raises(OnnxReadError) as e:
            from_onnx(path)
        msg = str(e.value)
        assert what in msg and str(path.name) in msg and "\n" not in msg, msg


@pytest.mark.parametrize("cut", [0.1, 0.3, 0.7, 0.9, 0.99])
def test_truncation_anywhere_is_an_onnx_read_error(tmp_path: Path, cut: float) -> None:
    good = tmp_path / "good.onnx"
    save_onnx(misc_graph(), good)
    data = good.read_bytes()
    p = tmp_path / "t.onnx"
    p.write_bytes(data[: int(len(data) * cut)])
    with pytest.raises(OnnxReadError):
        from_onnx(p)


# -- models shipped with the onnx package (its backend test data) --------------------------------

_ONNX_DATA = Path(onnx.__file__).parent / "backend" / "test" / "data"


def test_every_small_model_shipped_with_onnx_reads() -> None:
    files = [f for f in sorted(_ONNX_DATA.rglob("*.onnx")) if "light" not in f.parts]
    if not files:
        pytest.skip(f"no ONNX backend test data at {_ONNX_DATA}")
    for f in files:  # 140 small models, opsets 6-9 (older than we promise): none may crash
        g = from_onnx(f)
        assert g.meta["source"] == "onnx" and graph_costs(g).total["macs"] >= 0
        graph_hash(g)


@pytest.mark.parametrize(
    ("name", "gmacs", "mparams"),
    [("light_resnet50", 4.09, 25.56), ("light_squeezenet", 0.349, 1.235)],
)
def test_real_networks_shipped_with_onnx(name: str, gmacs: float, mparams: float) -> None:
    """Weights in these files are ConstantOfShape nodes: they must count as weights, not ops."""
    path = _ONNX_DATA / "light" / f"{name}.onnx"
    if not path.exists():
        pytest.skip(f"{path} not shipped with this onnx version")
    g = from_onnx(path)
    assert "other" not in g.op_counts()
    t = graph_costs(g).total
    assert abs(t["macs"] / 1e9 - gmacs) < 0.01 * gmacs
    assert abs(t["params"] / 1e6 - mparams) < 0.01 * mparams
