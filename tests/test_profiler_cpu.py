"""The cpu device (real ONNX Runtime timing), the registry and bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from agent_helpers import ort_optimized
from onnx import TensorProto, helper, numpy_helper

from nasctl.errors import DeviceError
from nasctl.profiler import Measurement, MeasurementRequest, get_device, list_devices

FAST = {
    "warmup": 2,
    "repeats": 5,
    "min_time_s": 0.0,
    "max_attempts": 1,
    "per_layer_runs": 2,
    "per_layer_warmup": 1,
}


def _w(name: str, shape: tuple[int, ...], rng: np.random.Generator) -> onnx.TensorProto:
    return numpy_helper.from_array((rng.standard_normal(shape) * 0.1).astype(np.float32), name)


def tiny_model(path: Path) -> Path:
    """conv -> relu -> dwconv -> relu -> conv, + residual add, gap, gemm (16x16 input)."""
    rng = np.random.default_rng(0)
    inits = [
        _w("c1.w", (8, 3, 3, 3), rng),
        _w("dw.w", (8, 1, 3, 3), rng),
        _w("c2.w", (8, 8, 1, 1), rng),
        _w("fc.w", (4, 8), rng),
        _w("fc.b", (4,), rng),
    ]
    n = helper.make_node
    nodes = [
        n("Conv", ["x", "c1.w"], ["c1"], name="c1", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        n("Relu", ["c1"], ["r1"], name="r1"),
        n(
            "Conv",
            ["r1", "dw.w"],
            ["dw"],
            name="dw",
            kernel_shape=[3, 3],
            pads=[1, 1, 1, 1],
            group=8,
        ),
        n("Relu", ["dw"], ["r2"], name="r2"),
        n("Conv", ["r2", "c2.w"], ["c2"], name="c2", kernel_shape=[1, 1]),
        n("Add", ["r1", "c2"], ["add"], name="add"),
        n("GlobalAveragePool", ["add"], ["gap"], name="gap"),
        n("Flatten", ["gap"], ["flat"], name="flat"),
        n("Gemm", ["flat", "fc.w", "fc.b"], ["y"], name="fc", transB=1),
    ]
    g = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        inits,
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("m") / "tiny.onnx")


def _req(**kw: object) -> MeasurementRequest:
    base = {"arch_hash": "abc", "device": "cpu", "options": dict(FAST)}
    base.update(kw)
    return MeasurementRequest(**base)  # type: ignore[arg-type]


def test_cpu_device_id_and_registry() -> None:
    dev = get_device("cpu")
    assert re.fullmatch(r"cpu-ort\d+\.\d+-fp32-t1", dev.device_id)
    assert get_device("cpu", threads=2).device_id.endswith("-t2")
    assert {"cpu", "t4", "xavier", "cuda"} <= set(list_devices())
    assert dev.available()[0]


def test_cpu_measures_onnx_file_with_layers(tiny: Path) -> None:
    m = get_device("cpu").measure(_req(onnx_path=str(tiny), model="tiny.onnx"))
    assert m.status in ("ok", "noisy"), m.error
    assert m.median_ms is not None and 0 < m.median_ms < 50
    assert m.p90_ms >= m.median_ms and m.runs >= 5 and m.warmup >= 1
    assert m.fingerprint["libs"]["onnxruntime"] and m.fingerprint["threads"] == 1
    # per-layer: every ONNX node lands on some kernel; ORT fuses Conv+Relu
    covered = {n for la in m.layers for n in la.nodes}
    assert {"c1", "r1", "dw", "r2", "c2", "add", "gap", "flat", "fc"} <= covered
    fused = [la for la in m.layers if la.kind == "fused"]
    assert any({"c1", "r1"} <= set(la.nodes) for la in fused)
    assert all(la.kind != "fused-unknown" for la in m.layers)
    assert m.extra["layers_sum_ms"] == pytest.approx(sum(la.time_ms for la in m.layers))
    assert m.extra["layers_sum_ratio"] > 0
    t = m.extra["timing_s"]
    assert t["total"] >= t["timed"] > 0 and t["session_create"] > 0
    # a plain record: JSON round trip
    again = Measurement.from_dict(json.loads(json.dumps(m.to_dict())))
    assert again == m


def test_cpu_measures_graph_json_and_maps_to_graph_ids() -> None:
    from nasctl.arch.graph import GraphBuilder

    b = GraphBuilder("g", (1, 3, 32, 32))
    x = b.conv(b.input, 8, 3, stride=2, id="/stem/conv")
    x = b.batchnorm(x, id="/stem/bn")
    x = b.act(x, "swish", id="/stem/act")  # two ONNX nodes: "/stem/act/sigmoid", "/stem/act"
    y = b.conv(x, 8, 3, groups=8, id="/b/dw")
    y = b.act(y, "relu6", id="/b/act")
    x = b.add([x, y], id="/b/add")
    x = b.global_pool(x, id="/gap")
    g = b.build([b.flatten(x, id="/flat")])
    m = get_device("cpu").measure(_req(graph_json=g.to_json()))
    assert m.status in ("ok", "noisy"), m.error
    ids = {n.id for n in g.nodes}
    covered = {n for la in m.layers for n in la.nodes}
    assert covered <= ids  # inner ONNX nodes are mapped back to their graph node
    assert ids - covered <= {"/flat"} or covered == ids


def test_per_layer_off(tiny: Path) -> None:
    m = get_device("cpu").measure(_req(onnx_path=str(tiny), per_layer=False))
    assert m.layers == [] and "layers_sum_ms" not in m.extra


def test_failing_models_are_failed_records(tmp_path: Path) -> None:
    dev = get_device("cpu")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not a protobuf at all" * 10)
    m = dev.measure(_req(onnx_path=str(junk)))
    assert m.status == "failed" and "ONNX Runtime cannot load" in m.error
    assert m.median_ms is None and m.device_id == dev.device_id
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    assert "empty" in dev.measure(_req(onnx_path=str(empty))).error
    missing = dev.measure(_req(onnx_path=str(tmp_path / "nope.onnx")))
    assert missing.status == "failed" and "cannot read" in missing.error
    # valid ONNX that ORT cannot run: channel mismatch between input and weight
    w = numpy_helper.from_array(np.zeros((4, 5, 3, 3), np.float32), "w")
    g = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="c")],
        "bad",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [w],
    )
    bad = tmp_path / "bad.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), bad)
    m = dev.measure(_req(onnx_path=str(bad)))
    assert m.status == "failed" and m.error


def test_bad_requests_raise_device_errors(tiny: Path) -> None:
    dev = get_device("cpu")
    with pytest.raises(DeviceError, match="fp32"):
        dev.measure(_req(onnx_path=str(tiny), precision="fp16"))
    with pytest.raises(DeviceError, match="neither graph_json nor onnx_path"):
        dev.measure(_req())
    with pytest.raises(DeviceError, match="known devices: .*cpu"):
        get_device("tpu")
    with pytest.raises(DeviceError, match="threads"):
        dev.measure(_req(onnx_path=str(tiny), options={"threads": 0}))


def test_tensorrt_devices_refuse_other_hardware_and_say_how_to_measure_there(tiny: Path) -> None:
    from nasctl_agent import hardware

    if hardware.jetson_model() or hardware.gpu_name():
        pytest.skip("this machine has NVIDIA hardware")
    for name in ("t4", "xavier", "jetson", "cuda-trt"):
        dev = get_device(name)
        ok, reason = dev.available()
        assert not ok and "nasctl-agent measure" in reason and "--fleet" in reason
        with pytest.raises(DeviceError, match="not usable here"):
            dev.measure(_req(device=name, onnx_path=str(tiny)))


@pytest.mark.parametrize("space", ["mbconv", "fbnet", "nb201"])
def test_ort_kernels_map_back_onto_every_graph_node(space: str, tmp_path: Path) -> None:
    """ORT folds BN, fuses activations/adds into NCHWc convs, merges duplicate ReLUs (NB201):
    every graph node must land on exactly one kernel, none of them guessed."""
    import random

    from nasctl.arch.onnx_io import to_onnx
    from nasctl.profiler.layers import to_graph_ids
    from nasctl.profiler.ort_names import map_kernels
    from nasctl.spaces import get_space, list_spaces

    if space not in list_spaces():
        pytest.skip(f"space {space} not registered")
    sp = get_space(space)
    rng = random.Random(3)
    for _ in range(3):
        g = sp.to_graph(sp.sample(rng))
        model = to_onnx(g)
        mapping = map_kernels(model, ort_optimized(model, tmp_path))
        ids = {n.id for n in g.nodes}
        owned: list[str] = []
        for info in mapping.kernels.values():
            assert info.kind != "fused-unknown", info
            if info.kind != "reformat":
                owned += to_graph_ids(info.nodes, ids)
        assert not mapping.unassigned
        assert ids == set(owned) | set(to_graph_ids(mapping.eliminated, ids))
        fused = [i for i in mapping.kernels.values() if i.kind == "fused"]
        assert fused  # BN folding alone guarantees fused kernels in these spaces


def test_ort_merged_duplicates_and_unexplained_regions(tmp_path: Path) -> None:
    from nasctl.profiler.ort_names import map_kernels

    n = helper.make_node
    nodes = [
        n("Relu", ["x"], ["a"], name="relu_a"),
        n("Relu", ["x"], ["b"], name="relu_b"),  # same op on the same input: ORT merges it
        n("Add", ["a", "b"], ["y"], name="add"),
    ]
    vi = helper.make_tensor_value_info
    g = helper.make_graph(
        nodes, "dup", [vi("x", TensorProto.FLOAT, [1, 4])], [vi("y", TensorProto.FLOAT, [1, 4])]
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    mapping = map_kernels(model, ort_optimized(model, tmp_path))
    owner = {x: k for k, i in mapping.kernels.items() for x in i.nodes}
    assert owner["relu_b"] == owner["relu_a"] and owner["add"] != owner["relu_a"]
    # a region the kernel's op cannot explain is flagged, not guessed
    opt = helper.make_model(
        helper.make_graph(
            [n("Add", ["x", "x"], ["y"], name="add")],
            "o",
            [vi("x", TensorProto.FLOAT, [1, 4])],
            [vi("y", TensorProto.FLOAT, [1, 4])],
        )
    )
    info = map_kernels(model, opt).kernels["add"]
    assert info.kind == "fused-unknown" and info.extra["unexpected"] == ["Relu"]


def test_thread_clock_option(tiny: Path) -> None:
    dev = get_device("cpu", clock="thread")
    assert dev.device_id.endswith("-t1-cputime")
    m = dev.measure(_req(onnx_path=str(tiny)))
    assert m.status in ("ok", "noisy") and m.median_ms > 0 and m.extra["clock"] == "thread"
    assert m.device_id == dev.device_id
    with pytest.raises(DeviceError, match="threads=1"):
        _ = get_device("cpu", clock="thread", threads=2).device_id
    with pytest.raises(DeviceError, match="clock"):
        _ = get_device("cpu", clock="sundial").device_id


def test_batch_is_honoured_or_refused(tiny: Path, tmp_path: Path) -> None:
    dev = get_device("cpu")
    m = dev.measure(_req(onnx_path=str(tiny), batch=4))  # tiny has a fixed batch of 1
    assert m.status == "failed" and "fixed batch of 1" in m.error and m.batch == 4
    # a dynamic batch dimension takes the request's batch
    n = helper.make_node
    vi = helper.make_tensor_value_info
    g = helper.make_graph(
        [n("Relu", ["x"], ["y"], name="r")],
        "dyn",
        [vi("x", TensorProto.FLOAT, ["N", 8])],
        [vi("y", TensorProto.FLOAT, ["N", 8])],
    )
    path = tmp_path / "dyn.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), path)
    req = _req(onnx_path=str(path), batch=3)
    assert MeasurementRequest.from_dict(json.loads(json.dumps(req.to_dict()))) == req
    m = dev.measure(req)
    assert m.status in ("ok", "noisy") and m.batch == 3 and m.layers[0].nodes == ["r"]


def test_broken_graph_json_is_a_failed_record() -> None:
    m = get_device("cpu").measure(_req(graph_json='{"nodes": [{"id": 1}]}'))
    assert m.status == "failed" and "not a graph" in m.error


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter is legacy
def test_pytorch_export_layers_map_onto_its_nodes(tmp_path: Path) -> None:
    """A user's ONNX (PyTorch exporter names: /3/c1/Conv, tensors /3/c1/Conv_output_0)."""
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self, c: int) -> None:
            super().__init__()
            self.c1, self.c2 = nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, c, 3, padding=1)
            self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, c, 1), nn.Sigmoid())

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.c2(torch.relu(self.c1(x)))
            return torch.relu(x + y * self.se(y))

    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, 2, 1),
        nn.BatchNorm2d(16),
        nn.Hardswish(),
        Block(16),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 4),
    )
    path = tmp_path / "net.onnx"
    torch.onnx.export(
        net.eval(), torch.randn(1, 3, 32, 32), str(path), dynamo=False, opset_version=17
    )
    m = get_device("cpu").measure(_req(onnx_path=str(path)))
    assert m.status in ("ok", "noisy"), m.error
    names = {n.name for n in onnx.load(path).graph.node}
    covered = {n for la in m.layers for n in la.nodes}
    assert covered <= names and "layers_unassigned_nodes" not in m.extra
    assert {n for n in names if not n.startswith("Identity")} <= covered
    assert any(la.kind == "fused" and "/2/HardSwish" in la.nodes for la in m.layers)
