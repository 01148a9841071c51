"""TensorRT memory (issue 14 point 4): the weights counted from the real layer-information exports
of ../shared/data/tensorrt, the memory lines of TensorRT's logs in the 8.x and 10.x forms, and a
measurement through the trtexec stand-in that records the engine's device memory and weights."""

from __future__ import annotations

import json
from pathlib import Path

import nasctl_agent
import pytest
from agent_fakes import engines, fake_trtexec, jetson_root
from agent_helpers import conv_model, save
from nasctl_agent.backends import trt_common as tc

ENGINES = engines()
needs_data = pytest.mark.skipif(not ENGINES, reason="shared/data/tensorrt not beside the repo")

#: (weights, biases) element counts of the two exported networks: torch ResNet-18 (11.69 M
#: parameters, BN folded) and the TensorFlow ResNet-50 (25.56 M)
COUNTS = {"pytorch": (11_678_912, 5_800), "tensorflow": (25_502_912, 27_560)}


def _expected_bytes(base: Path) -> int:
    w, b = COUNTS[base.parts[-5]]
    kind = base.parent.name
    if kind == "fp32":
        return 4 * (w + b)
    if kind == "fp16":
        return 2 * (w + b)
    return w + 4 * b  # QAT: int8 weights, float biases


@needs_data
@pytest.mark.parametrize("base", ENGINES, ids=lambda b: "/".join(Path(b).parts[-5:-1]))
def test_weights_from_the_real_layer_info(base: Path) -> None:
    info = json.loads(Path(f"{base}.graph.json").read_text())
    assert tc.weights_from_layer_info(info) == _expected_bytes(Path(base))


def test_weights_from_layer_info_without_details() -> None:
    assert tc.weights_from_layer_info({"Layers": ["conv1 + relu1", "fc"]}) is None
    assert (
        tc.weights_from_layer_info({"Layers": [{"Weights": {"Type": "Mystery", "Count": 3}}]})
        is None
    )
    assert tc.weights_from_layer_info([]) is None


LOG_8X = """\
[I] [TRT] Total Host Persistent Memory: 170400
[I] [TRT] Total Device Persistent Memory: 0
[I] [TRT] Total Scratch Memory: 512
[I] [TRT] Total Activation Memory: 3211264
"""
LOG_10X = """\
[I] [TRT] Total Host Persistent Memory: 353104 bytes
[I] [TRT] Total Device Persistent Memory: 6656 bytes
[I] [TRT] Max Scratch Memory: 4096 bytes
[I] [TRT] Total Activation Memory: 8228864 bytes
[I] [TRT] Total Weights Memory: 103529216 bytes
[I] [TRT] [MemUsageStats] Peak memory usage of TRT CPU/GPU memory allocators: CPU 9 MiB, GPU 105 MiB
[I] Engine built in 10.7 sec.
[I] Created execution context with device memory size: 7.84766 MiB
"""


def test_memory_lines_of_both_log_forms() -> None:
    old = tc.memory_from_log(LOG_8X)
    assert old == {
        "host_persistent_bytes": 170400,
        "device_persistent_bytes": 0,
        "scratch_bytes": 512,
        "activation_bytes": 3211264,
    }
    new = tc.memory_from_log(LOG_10X)
    assert new["scratch_bytes"] == 4096 and new["weights_bytes"] == 103529216
    # 7.84766 MiB is the context's device memory as trtexec rounds it: the activations' 8228864
    # bytes (TensorRT's "Total Activation Memory" is that size) to within the printed digits
    assert abs(new["device_memory_bytes"] - 8228864) < 10
    assert new["build_peak_gpu_bytes"] == 105 << 20


def test_engine_memory_model_peak_and_missing() -> None:
    m = tc.engine_memory(LOG_10X, engine_bytes=106_000_000)
    assert m["model_peak_bytes"] == 103529216 + m["device_memory_bytes"]
    assert m["engine_bytes"] == 106_000_000 and "missing" not in m
    # the runtime's own number wins over the log's
    m = tc.engine_memory(LOG_10X, measured={"device_memory_bytes": 8228864})
    assert m["model_peak_bytes"] == 103529216 + 8228864
    # 8.x: no weights line; the layer information's weights and the activations stand in
    info = {
        "Layers": [
            {"Weights": {"Type": "Half", "Count": 1000}, "Bias": {"Type": "Half", "Count": 10}}
        ]
    }
    m = tc.engine_memory(LOG_8X, layer_info=info)
    assert m["layer_info_weights_bytes"] == 2020
    assert m["model_peak_bytes"] == 2020 + 3211264
    # nothing reported: marked missing, never a made-up number
    m = tc.engine_memory("[I] nothing about memory")
    assert "model_peak_bytes" not in m and "weights" in m["missing"]


@needs_data
@pytest.mark.parametrize("version", ["8.5.2", "10.13.0"])
def test_trtexec_measurement_records_device_memory_and_weights(
    version: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    jetson_root(tmp_path, monkeypatch)
    base = next(b for b in ENGINES if "pytorch" in str(b) and Path(b).parent.name == "fp16")
    monkeypatch.setenv("FAKE_TRTEXEC_EXPORT", str(base))
    model = save(conv_model(), tmp_path / "m.onnx")
    req = {
        "device": "xavier",
        "precision": "fp16",
        "timing": {"max_attempts": 1, "warmup_s": 0.2, "repeats": 10, "min_time_s": 1.0},
        "options": {
            "trtexec": str(fake_trtexec(tmp_path, version)),
            "timing_cache_dir": str(tmp_path / "c"),
        },
    }
    r = nasctl_agent.measure(str(model), req)
    assert r.status in ("ok", "noisy"), r.error
    mem = r.memory
    # the replayed real layer information: ResNet-18's weights at FP16
    assert mem["layer_info_weights_bytes"] == _expected_bytes(Path(base))
    assert mem["engine_bytes"] == 4096  # the stand-in's engine file
    if version.startswith("10"):
        assert mem["device_memory_bytes"] == 8 << 20 and mem["weights_bytes"] == 23380000
        assert mem["model_peak_bytes"] == 23380000 + (8 << 20)
    else:  # 8.5 prints neither: the layer information's weights + the activations
        assert "device_memory_bytes" not in mem
        assert mem["model_peak_bytes"] == mem["layer_info_weights_bytes"] + 8388608
