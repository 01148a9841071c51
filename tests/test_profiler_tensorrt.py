"""TensorRT / trtexec: fused-name mapping, report parsers on the real trtexec outputs in
shared/data/tensorrt, version-aware command lines and build plans. TensorRT itself cannot run
here; the one test that builds an engine is marked gpu and skips without tensorrt."""

from __future__ import annotations

import importlib.util
import json
import re
import stat
from pathlib import Path

import pytest
from conftest import SHARED_DATA

from nasctl.errors import DeviceError
from nasctl.profiler.backends.tensorrt import build_plan
from nasctl.profiler.backends.trtexec import parse_trt_version, precision_flags, trtexec_command
from nasctl.profiler.protocol import TimingConfig
from nasctl.profiler.trt_names import map_engine_layers, parse_layer_name
from nasctl.profiler.trt_reports import (
    layer_info,
    profile_entries,
    profile_layers,
    read_json,
    reconcile,
    timing_stats,
)

TRT_DATA = SHARED_DATA / "tensorrt"
ENGINES = sorted(
    p.with_name(p.name[: -len(".profile.json")])
    for p in TRT_DATA.glob("*/resnet/*/*/*.profile.json")
)
needs_data = pytest.mark.skipif(not ENGINES, reason="shared/data/tensorrt not beside the repo")


def _id(p: Path) -> str:
    return "/".join(p.parts[-5:-1])


# -- fused names -------------------------------------------------------------------------------
def test_plus_pwn_and_qdq_names() -> None:
    p = parse_layer_name("Conv_5 + Add_6 + Relu_7")
    assert p.nodes == ["Conv_5", "Add_6", "Relu_7"] and p.kind == "fused"
    p = parse_layer_name("PWN(PWN(/s1/act/Sigmoid, /s1/act/Mul), /s1/add/Add)")
    assert p.nodes == ["/s1/act/Sigmoid", "/s1/act/Mul", "/s1/add/Add"] and p.kind == "fused"
    p = parse_layer_name("/s2/b1/dw + PWN(/s2/b1/act)")
    assert p.nodes == ["/s2/b1/dw", "/s2/b1/act"]
    p = parse_layer_name("conv1.weight + QuantizeLinear_7 + Conv_9")
    assert p.nodes == ["QuantizeLinear_7", "Conv_9"] and p.tensors == ["conv1.weight"]
    p = parse_layer_name("MaxPool_2")
    assert p.nodes == ["MaxPool_2"] and p.kind == "kernel"
    tf = (
        "resnet50/quant_conv2_block1_1_conv/LastValueQuant/QuantizeAndDequantizeV4/"
        "ReadVariableOp:0 + QuantLinearNode__630 + resnet50/quant_conv2_block1_1_conv/Conv2D"
    )
    p = parse_layer_name(tf)
    assert p.nodes == ["QuantLinearNode__630", "resnet50/quant_conv2_block1_1_conv/Conv2D"]
    assert p.tensors[0].endswith("ReadVariableOp:0")


def test_ranges_foreign_reformat_unnamed_and_onnx_layer() -> None:
    order = ["/a", "/b", "/c", "/d"]
    p = parse_layer_name("/a -> /c")
    assert p.nodes == ["/a", "/c"] and p.kind == "range"  # no order: endpoints only
    p = parse_layer_name("/a -> /c", known=order, order=order)
    assert p.nodes == ["/a", "/b", "/c"] and p.kind == "fused"
    p = parse_layer_name("{ForeignNode[/b.../d]}", known=order, order=order)
    assert p.nodes == ["/b", "/c", "/d"] and p.kind == "foreign"
    p = parse_layer_name("{ForeignNode[/b.../d]}")
    assert p.nodes == ["/b", "/d"] and p.kind == "foreign"
    p = parse_layer_name("Reformatting CopyNode for Input Tensor 0 to Conv_35 + Relu_36")
    assert p.kind == "reformat" and p.nodes == ["Conv_35", "Relu_36"]
    assert p.target == "Conv_35 + Relu_36"
    p = parse_layer_name("(Unnamed Layer* 306) [Shuffle]")
    assert p.kind == "unknown" and p.nodes == [] and p.unknown
    p = parse_layer_name("reshape_after_Gemm_48")
    assert p.kind == "generated" and p.nodes == ["Gemm_48"]
    p = parse_layer_name("/s2/b1/dw [ONNX Layer: /s2/b1/dw] + [ONNX Layer: /s2/b1/act]")
    assert p.nodes == ["/s2/b1/dw", "/s2/b1/act"]
    p = parse_layer_name("Conv_0 + Relu_1 + Extra", known={"Conv_0", "Relu_1"})
    assert p.nodes == ["Conv_0", "Relu_1"] and p.unknown == ["Extra"]


def test_generated_layer_on_an_unnamed_part_goes_to_its_fused_layer() -> None:
    fused = "fc.weight + Gemm_257 + (Unnamed Layer* 307) [ElementWise]"
    parsed = map_engine_layers([fused, "copied_squeeze_after_(Unnamed Layer* 307) [ElementWise]"])
    g = parsed["copied_squeeze_after_(Unnamed Layer* 307) [ElementWise]"]
    assert g.nodes == ["Gemm_257"] and g.kind == "generated" and g.target == fused


# -- real trtexec outputs ----------------------------------------------------------------------
@needs_data
def test_there_are_real_engines() -> None:
    assert len(ENGINES) >= 8


@needs_data
@pytest.mark.parametrize("base", ENGINES, ids=_id)
def test_real_reports_parse_and_every_layer_lands_on_nodes(base: Path) -> None:
    times = read_json(f"{base}.timing.json")
    stats = timing_stats(times)
    lat = [t["computeMs"] for t in times]
    assert stats.runs == len(times) > 100
    assert min(lat) <= stats.median_ms <= max(lat) and stats.p90_ms >= stats.median_ms
    profile, info = read_json(f"{base}.profile.json"), read_json(f"{base}.graph.json")
    count, entries = profile_entries(profile)
    assert count >= 1 and entries
    infos = layer_info(info)
    assert infos and all("LayerType" in v for v in infos.values())
    # the graph's node names, as the engine's own layer info names them
    known = {n for p in map_engine_layers(list(infos)).values() for n in p.nodes}
    layers = profile_layers(profile, info, known=known)
    assert len(layers) == len(entries)
    for la in layers:  # every profiled layer's time lands on graph nodes
        assert la.nodes, la.name
        assert not any(n.endswith((".weight", ".bias", ":0")) for n in la.nodes)
    compute = [la for la in layers if la.kind not in ("reformat", "generated")]
    nodes = [n for la in compute for n in la.nodes]
    assert len(nodes) == len(set(nodes))  # a node is one kernel's, never two
    convs = {
        n for n in nodes if re.search(r"(^Conv_\d+$|Conv2D$|^Conv__\d+$|conv1_conv/BiasAdd$)", n)
    }
    if "pytorch" in str(base):
        assert len(convs) == 20  # ResNet-18
        assert all(re.fullmatch(r"[A-Za-z]+_\d+", n) for n in nodes)
    else:
        assert len(convs) == 53  # ResNet-50
    assert any(la.extra.get("TacticName") for la in layers)
    # per-layer sum reconciled with the same engine's whole-graph median
    r = reconcile(layers, stats.median_ms)
    assert 1.0 <= r["ratio"] < 1.5, r


@needs_data
def test_fused_kinds_on_real_profile() -> None:
    base = next(b for b in ENGINES if "pytorch" in str(b) and b.parent.name == "fp32")
    layers = {la.name: la for la in profile_layers(read_json(f"{base}.profile.json"))}
    la = layers["Conv_5 + Add_6 + Relu_7"]
    assert la.nodes == ["Conv_5", "Add_6", "Relu_7"] and la.kind == "fused"
    ref = layers["Reformatting CopyNode for Output Tensor 0 to MaxPool_2"]
    assert ref.kind == "reformat" and ref.nodes == ["MaxPool_2"]


# -- version-aware choices ---------------------------------------------------------------------
def test_version_parsing() -> None:
    assert parse_trt_version("&&&& RUNNING TensorRT.trtexec [TensorRT v8502] # trtexec") == (8, 5)
    assert parse_trt_version("[TensorRT v100300]") == (10, 3)
    assert parse_trt_version("[11/25/2026-10:00:00] [I] TensorRT version: 11.1.0") == (11, 1)
    assert parse_trt_version("no version here") is None


def test_trtexec_command_lines() -> None:
    cfg = TimingConfig(warmup_s=0.2, repeats=50, min_time_s=2.0)
    c85 = " ".join(
        trtexec_command(
            "trtexec",
            (8, 5),
            onnx="m.onnx",
            out_prefix="/t/r",
            precision="fp16",
            cfg=cfg,
            timing_cache="/c/xavier.cache",
            workspace_mb=512,
            save_engine="/t/m.engine",
        )
    )
    assert c85 == (
        "trtexec --onnx=m.onnx --fp16 --memPoolSize=workspace:512 --timingCacheFile=/c/xavier.cache"
        " --saveEngine=/t/m.engine --warmUp=200 --iterations=50 --duration=2 --avgRuns=1"
        " --useSpinWait --useCudaGraph --noDataTransfers --separateProfileRun"
        " --profilingVerbosity=detailed --exportTimes=/t/r.timing.json"
        " --exportLayerInfo=/t/r.graph.json --exportProfile=/t/r.profile.json"
    )
    c10 = trtexec_command(
        "trtexec",
        (10, 3),
        onnx="m.onnx",
        out_prefix="/t/r",
        precision="int8",
        cfg=cfg,
        shapes="input:8x3x224x224",
    )
    assert "--int8" in c10 and "--fp16" in c10 and "--shapes=input:8x3x224x224" in c10
    assert "--useCudaGraph" in c10 and "--separateProfileRun" in c10
    c11 = trtexec_command(
        "trtexec", (11, 0), onnx="m.onnx", out_prefix="/t/r", precision="fp16", cfg=cfg
    )
    assert not {"--fp16", "--int8", "--useSpinWait", "--useCudaGraph", "--stronglyTyped"} & set(c11)
    timing = trtexec_command(
        "trtexec",
        (8, 5),
        onnx=None,
        out_prefix="/t/r1",
        precision="fp16",
        cfg=cfg,
        load_engine="/t/m.engine",
        profile=False,
    )
    assert timing[1] == "--loadEngine=/t/m.engine" and "--fp16" not in timing
    assert not any(a.startswith("--exportProfile") for a in timing)
    assert precision_flags((10, 0), "onnx") == ["--stronglyTyped"]
    assert precision_flags((8, 5), "fp32") == []


def test_build_plan_per_version() -> None:
    p = build_plan((8, 5), "int8")
    assert p.explicit_batch_flag and p.flags == ["INT8", "FP16"] and p.calibrator
    p = build_plan((10, 3), "fp16")
    assert not p.explicit_batch_flag and p.flags == ["FP16"] and not p.calibrator
    assert build_plan((10, 3), "int8").notes  # implicit INT8 deprecated since 10.1
    p = build_plan((11, 0), "fp16")
    assert p.strongly_typed and p.flags == [] and "ONNX" in p.notes[0]
    with pytest.raises(DeviceError):
        build_plan((10, 3), "fp64")


# -- the trtexec backend end to end, with a stand-in trtexec that replays real reports ---------
def _write_fake_trtexec(tmp: Path, base: Path) -> Path:
    """A shell script that prints a TensorRT 8.5 banner and copies one real engine's reports to
    the paths given by --exportTimes/--exportProfile/--exportLayerInfo."""
    script = tmp / "trtexec"
    script.write_text(f"""#!/bin/sh
echo "&&&& RUNNING TensorRT.trtexec [TensorRT v8502] # trtexec $*"
echo "$*" >> "{tmp}/calls.txt"
for a in "$@"; do
  case "$a" in
    --exportTimes=*) cp "{base}.timing.json" "${{a#--exportTimes=}}" ;;
    --exportProfile=*) cp "{base}.profile.json" "${{a#--exportProfile=}}" ;;
    --exportLayerInfo=*) cp "{base}.graph.json" "${{a#--exportLayerInfo=}}" ;;
    --saveEngine=*) echo engine > "${{a#--saveEngine=}}" ;;
  esac
done
echo "&&&& PASSED TensorRT.trtexec [TensorRT v8502]"
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


@needs_data
def test_trtexec_device_end_to_end_with_replayed_reports(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    from nasctl.profiler import MeasurementRequest, get_device

    base = next(b for b in ENGINES if "pytorch" in str(b) and b.parent.name == "fp16")
    trtexec = _write_fake_trtexec(tmp_path, base)
    # an ONNX chain whose node names are the replayed engine's (so the names check out)
    names = [
        n
        for p in map_engine_layers(list(layer_info(read_json(f"{base}.graph.json")))).values()
        for n in p.nodes
    ]
    names = list(dict.fromkeys(names))
    ts = ["x", *names]
    g = helper.make_graph(
        [helper.make_node("Relu", [a], [b], name=b) for a, b in zip(ts, ts[1:], strict=False)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info(ts[-1], TensorProto.FLOAT, [1, 4])],
    )
    onnx.save(helper.make_model(g), tmp_path / "m.onnx")
    dev = get_device("xavier", trtexec=str(trtexec), timing_cache_dir=str(tmp_path / "cache"))
    assert dev.available()[0] and dev.device_id == "xaviernx-trt8.5-fp32"
    m = dev.measure(
        MeasurementRequest(
            arch_hash="h",
            device="xavier",
            precision="fp16",
            onnx_path=str(tmp_path / "m.onnx"),
            options={"max_attempts": 1},
        )
    )
    assert m.status in ("ok", "noisy") and m.device_id == "xaviernx-trt8.5-fp16"
    expected = timing_stats(read_json(f"{base}.timing.json"))
    assert m.median_ms == pytest.approx(expected.median_ms) and m.runs == expected.runs
    assert m.layers and all(la.nodes for la in m.layers)
    assert 1.0 <= m.extra["layers_sum_ratio"] < 1.5
    build = [c for c in (tmp_path / "calls.txt").read_text().splitlines() if "--onnx=" in c][0]
    for flag in (
        "--fp16",
        "--useSpinWait",
        "--useCudaGraph",
        "--noDataTransfers",
        "--separateProfileRun",
        "--profilingVerbosity=detailed",
        f"--timingCacheFile={tmp_path / 'cache' / 'xaviernx-trt8.5-fp16.timing.cache'}",
    ):
        assert flag in build.split(), flag


@pytest.mark.gpu
def test_tensorrt_python_builds_and_times(tmp_path: Path) -> None:
    if importlib.util.find_spec("tensorrt") is None:
        pytest.skip("tensorrt is not installed")
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from nasctl.profiler import MeasurementRequest, get_device

    w = numpy_helper.from_array(np.full((8, 3, 3, 3), 0.1, np.float32), "w")
    g = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], name="/conv", pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c"], ["y"], name="/act"),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 32, 32])],
        [w],
    )
    model = tmp_path / "tiny.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), model)
    dev = get_device("t4", timing_cache_dir=str(tmp_path / "cache"))
    m = dev.measure(
        MeasurementRequest(arch_hash="h", device="t4", precision="fp16", onnx_path=str(model))
    )
    assert m.status in ("ok", "noisy"), m.error
    assert m.median_ms > 0 and m.extra["engine_device_memory_bytes"] >= 0
    assert any({"/conv", "/act"} <= set(la.nodes) for la in m.layers)  # fused conv + relu
    assert list((tmp_path / "cache").glob("*.timing.cache"))


def test_profile_without_layer_info_uses_average_ms() -> None:
    la = profile_layers(
        [
            {"count": 2},
            {
                "name": "Conv_0 + Relu_1",
                "timeMs": 2.0,
                "averageMs": 1.0,
                "medianMs": 0.9,
                "percentage": 100,
            },
        ]
    )
    assert la[0].time_ms == 1.0 and la[0].nodes == ["Conv_0", "Relu_1"]
    assert json.loads(json.dumps([x.__dict__ for x in la]))[0]["extra"]["median_ms"] == 0.9


def test_trt10_metadata_names_win_and_map_to_graph_ids() -> None:
    profile = [
        {"count": 10},
        {"name": "myelin_fused_0", "averageMs": 0.2},
        {"name": "/s1/dw + /s1/act/sigmoid + /s1/act", "averageMs": 0.1},
    ]
    info = {
        "Layers": [
            {
                "Name": "myelin_fused_0",
                "LayerType": "Myelin",
                "Metadata": "[ONNX Layer: /stem/conv]\x1e[ONNX Layer: /stem/bn]",
            },
            {"Name": "/s1/dw + /s1/act/sigmoid + /s1/act", "LayerType": "CaskConvolution"},
        ]
    }
    order = ["/stem/conv", "/stem/bn", "/s1/dw", "/s1/act/sigmoid", "/s1/act"]
    ids = {"/stem/conv", "/stem/bn", "/s1/dw", "/s1/act"}
    a, b = profile_layers(profile, info, order, order, ids)
    assert a.nodes == ["/stem/conv", "/stem/bn"] and a.kind == "fused"
    assert b.nodes == ["/s1/dw", "/s1/act"] and b.extra["LayerType"] == "CaskConvolution"
