"""The agent's TensorRT Python API backend against fake ``tensorrt`` and ``cuda-python``
modules that record what the backend asks of them (TensorRT cannot be installed here; nothing
of this ran on real TensorRT). Checks the fixes of issue 11 point 3 on this path: one
optimization profile for dynamic inputs, strongly typed networks, INT8 calibration from the
user's .npy data with a reused cache and freed device buffers, the timing cache checked and
written atomically, and trtexec's timing method (CUDA graph launch, spin wait)."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from agent_helpers import conv_model, save
from nasctl_agent import RequestError
from nasctl_agent.backends import tensorrt_api as api
from nasctl_agent.backends import trt_common as tc
from nasctl_agent.model import open_model


class Calls(list):
    def names(self) -> list[str]:
        return [c[0] for c in self]


def fake_modules(
    version: str = "8.5.2", *, cache_ok: bool = True, capture_ok: bool = True
) -> tuple[Any, Any, Calls]:
    calls = Calls()
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version

    class Logger:
        WARNING = 2

        def __init__(self, *a: Any) -> None:
            pass

    class ILogger:
        def __init__(self) -> None:
            pass

    class Base:
        def __init__(self) -> None:
            pass

    trt.Logger, trt.ILogger = Logger, ILogger
    trt.IInt8EntropyCalibrator2 = trt.IProfiler = Base
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(EXPLICIT_BATCH=0, STRONGLY_TYPED=1)
    trt.BuilderFlag = types.SimpleNamespace(FP16="FP16", INT8="INT8", GPU_FALLBACK="GPU_FALLBACK")
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
    trt.ProfilingVerbosity = types.SimpleNamespace(DETAILED="DETAILED")
    trt.DeviceType = types.SimpleNamespace(DLA="DLA", GPU="GPU")
    trt.TensorIOMode = types.SimpleNamespace(INPUT="IN", OUTPUT="OUT")
    trt.LayerInformationFormat = types.SimpleNamespace(JSON="JSON")
    trt.nptype = lambda dt: np.float32

    class Cache:
        def __init__(self, blob: bytes) -> None:
            self.blob = blob

        def serialize(self) -> bytes:
            return self.blob + b"+new"

    class Profile:
        def set_shape(self, name: str, lo: tuple, opt: tuple, hi: tuple) -> None:
            calls.append(("profile.set_shape", name, lo, opt, hi))

    class Config:
        def __init__(self) -> None:
            self.cache: Any = None

        def set_memory_pool_limit(self, pool: str, size: int) -> None:
            calls.append(("workspace", size))

        def set_flag(self, flag: str) -> None:
            calls.append(("flag", flag))

        def add_optimization_profile(self, p: Profile) -> None:
            calls.append(("add_optimization_profile",))

        def set_calibration_profile(self, p: Profile) -> None:
            calls.append(("set_calibration_profile",))

        def create_timing_cache(self, blob: bytes) -> Cache:
            calls.append(("create_timing_cache", blob))
            return Cache(blob)

        def set_timing_cache(self, cache: Cache, ignore_mismatch: bool) -> bool:
            assert ignore_mismatch is False
            ok = cache_ok or cache.blob == b""
            if ok:
                self.cache = cache
            return ok

        def get_timing_cache(self) -> Cache:
            return self.cache

        def __setattr__(self, name: str, value: Any) -> None:
            if name in ("int8_calibrator", "default_device_type", "DLA_core"):
                calls.append((name, value))
            object.__setattr__(self, name, value)

    class Builder:
        def __init__(self, logger: Any) -> None:
            self.logger = logger

        def create_network(self, flags: int) -> Any:
            calls.append(("create_network", flags))
            return types.SimpleNamespace()

        def create_builder_config(self) -> Config:
            return Config()

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: Any, config: Config) -> Any:
            calls.append(("build",))
            cal = getattr(config, "int8_calibrator", None)
            if cal is not None:
                cached = cal.read_calibration_cache()
                if cached is None:
                    while cal.get_batch(["x"]) is not None:
                        calls.append(("calibrated_batch",))
                    cal.write_calibration_cache(b"calibration-table")
            self.logger.log(1, "---------- Layers Running on DLA ----------")
            self.logger.log(1, "[DlaLayer] {ForeignNode[/conv.../act]}")
            self.logger.log(1, "---------- Layers Running on GPU ----------")
            self.logger.log(1, "[GpuLayer] POOLING: /gap")
            self.logger.log(1, "Total Activation Memory: 4096")
            return b"serialized-engine"

    class OnnxParser:
        def __init__(self, network: Any, logger: Any) -> None:
            self.num_errors = 0

        def parse_from_file(self, path: str) -> bool:
            calls.append(("parse_from_file", path))
            return True

    class Context:
        profiler = None

        def set_input_shape(self, name: str, shape: list) -> None:
            calls.append(("set_input_shape", name, list(shape)))

        def get_tensor_shape(self, name: str) -> list:
            return [2, 3, 16, 16] if name == "x" else [2, 10]

        def set_tensor_address(self, name: str, ptr: int) -> None:
            pass

        def execute_async_v3(self, stream: int) -> bool:
            calls.append(("execute_async_v3",))
            return True

    class Engine:
        num_io_tensors = 2
        device_memory_size = 4096

        def get_tensor_name(self, i: int) -> str:
            return ["x", "y"][i]

        def get_tensor_mode(self, name: str) -> str:
            return "IN" if name == "x" else "OUT"

        def get_tensor_shape(self, name: str) -> list:
            return [-1, 3, 16, 16] if name == "x" else [-1, 10]

        def get_tensor_dtype(self, name: str) -> str:
            return "float32"

        def create_execution_context(self) -> Context:
            return Context()

    class Runtime:
        def __init__(self, logger: Any) -> None:
            pass

        def deserialize_cuda_engine(self, blob: bytes) -> Engine:
            return Engine()

    trt.Builder, trt.OnnxParser, trt.Runtime = Builder, OnnxParser, Runtime

    rt = types.ModuleType("cuda.bindings.runtime")
    state = {"ptr": 0x1000, "queries": 0}

    def malloc(n: int) -> tuple:
        state["ptr"] += 0x100
        calls.append(("cudaMalloc", state["ptr"]))
        return (0, state["ptr"])

    def end_capture(stream: Any) -> tuple:
        calls.append(("cudaStreamEndCapture",))
        return (0, "graph") if capture_ok else (900, None)

    def query(event: Any) -> tuple:
        calls.append(("cudaEventQuery",))
        state["queries"] += 1
        return (600,) if state["queries"] % 3 else (0,)

    rt.cudaMalloc = malloc
    rt.cudaFree = lambda p: calls.append(("cudaFree", p)) or (0,)
    rt.cudaMemcpy = lambda *a: calls.append(("cudaMemcpy",)) or (0,)
    rt.cudaMemcpyKind = types.SimpleNamespace(cudaMemcpyHostToDevice=1)
    rt.cudaStreamCreate = lambda: (0, 7)
    rt.cudaEventCreate = lambda: (0, object())
    rt.cudaStreamCaptureMode = types.SimpleNamespace(cudaStreamCaptureModeThreadLocal=1)
    rt.cudaStreamBeginCapture = lambda s, m: calls.append(("cudaStreamBeginCapture",)) or (0,)
    rt.cudaStreamEndCapture = end_capture
    rt.cudaGraphInstantiate = lambda g, f: (0, "exec")
    rt.cudaGraphLaunch = lambda g, s: calls.append(("cudaGraphLaunch",)) or (0,)
    rt.cudaEventRecord = lambda e, s: (0,)
    rt.cudaEventQuery = query
    rt.cudaError_t = types.SimpleNamespace(cudaErrorNotReady=600)
    rt.cudaEventElapsedTime = lambda a, b: (0, 1.25)
    rt.cudaStreamSynchronize = lambda s: (0,)
    rt.cudaGetLastError = lambda: (0,)
    for name in (
        "cudaGraphExecDestroy",
        "cudaGraphDestroy",
        "cudaEventDestroy",
        "cudaStreamDestroy",
    ):
        setattr(rt, name, lambda *a: (0,))
    return trt, rt, calls


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Any:
    def install(**kw: Any) -> Calls:
        trt, rt, calls = fake_modules(**kw)
        cuda = types.ModuleType("cuda")
        bindings = types.ModuleType("cuda.bindings")
        bindings.runtime = rt
        cuda.bindings = bindings
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        monkeypatch.setitem(sys.modules, "cuda", cuda)
        monkeypatch.setitem(sys.modules, "cuda.bindings", bindings)
        monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", rt)
        return calls

    return install


def _model(tmp_path: Path, batch: Any = "N") -> Any:
    return open_model(save(conv_model(batch=batch), tmp_path / "m.onnx"))


def test_dynamic_input_gets_one_profile_min_opt_max(fake: Any, tmp_path: Path) -> None:
    calls = fake()
    m = _model(tmp_path)
    sp = tc.shape_plan(m.info, 2)
    api.build_engine(m, tc.PrecisionPlan(flags=["fp16"]), sp)
    prof = [c for c in calls if c[0] == "profile.set_shape"]
    assert prof == [("profile.set_shape", "x", (2, 3, 16, 16), (2, 3, 16, 16), (2, 3, 16, 16))]
    assert ("add_optimization_profile",) in calls and ("flag", "FP16") in calls
    assert ("parse_from_file", m.path) in calls  # a path: external data stays beside it
    assert ("create_network", 1) in calls  # EXPLICIT_BATCH before TensorRT 10


def test_strongly_typed_network_on_10_and_11(fake: Any, tmp_path: Path) -> None:
    calls = fake(version="11.1.0")
    m = _model(tmp_path, batch=1)
    plan = tc.precision_plan((11, 1), "fp32", m.info.precision)
    api.build_engine(m, plan, tc.shape_plan(m.info, 1))
    assert ("create_network", 1 << 1) in calls and not [c for c in calls if c[0] == "flag"]
    with pytest.raises(Exception, match="builds what the ONNX says"):
        tc.precision_plan((11, 1), "fp16", "fp32")
    assert tc.precision_plan((10, 3), "fp16", "fp16").strongly_typed
    assert tc.precision_plan((10, 3), "fp16", "fp32").flags == ["fp16"]
    assert tc.precision_plan((8, 5), "int8", "fp32").calibration
    assert tc.precision_plan((8, 5), "int8", "int8").flags == ["int8", "fp16"]


def test_int8_calibration_from_user_data_cache_reused_buffers_freed(
    fake: Any, tmp_path: Path
) -> None:
    calls = fake()
    m = _model(tmp_path)
    data = tmp_path / "calib"
    data.mkdir()
    for i in range(3):
        np.save(
            data / f"{i:03d}.npy",
            np.random.default_rng(i).standard_normal((2, 3, 16, 16)).astype(np.float32),
        )
    cache = tmp_path / "int8.cache"
    req = {
        "precision": "int8",
        "batch": 2,
        "cfg": api.TimingConfig(repeats=3, min_time_s=0, warmup=1, max_attempts=1),
        "per_layer": False,
        "shapes": None,
        "timing_cache": None,
    }

    class R:  # the bits of Result measure() fills
        def __init__(self) -> None:
            self.timing_s, self.memory, self.extra, self.notes, self.layers = {}, {}, {}, [], []
            self.device_id, self.timing_method, self.status, self.timing = "id", "", "", None
            self.engine_graph = None

    r = R()
    api.measure(m, options={"calib_data": str(data), "calib_cache": str(cache)}, result=r, **req)
    # the context's device memory from the engine (device_memory_size before 10.1), the
    # activations from the build log; no weights reported here: no model peak, marked missing
    assert r.memory["device_memory_bytes"] == 4096 and r.memory["activation_bytes"] == 4096
    assert "model_peak_bytes" not in r.memory and r.memory["missing"]
    assert (
        calls.names().count("calibrated_batch") == 3 and cache.read_bytes() == b"calibration-table"
    )
    mallocs = {c[1] for c in calls if c[0] == "cudaMalloc"}
    assert mallocs <= {c[1] for c in calls if c[0] == "cudaFree"}  # every buffer given back
    calls.clear()
    api.measure(m, options={"calib_cache": str(cache)}, result=R(), **req)  # the cache alone
    assert "calibrated_batch" not in calls.names()
    with pytest.raises(RequestError, match="calib-data"):
        api.measure(m, options={}, result=R(), **req)
    bad = tmp_path / "bad"
    bad.mkdir()
    np.save(bad / "0.npy", np.zeros((1, 3, 16, 16), np.float32))
    with pytest.raises(RequestError, match="needs \\[2, 3, 16, 16\\]"):
        api.calibration_batches(str(bad), {"x": [2, 3, 16, 16]})


def test_timing_cache_checked_and_written_atomically(fake: Any, tmp_path: Path) -> None:
    m = _model(tmp_path, batch=1)
    cache = tmp_path / "c" / "dev.timing.cache"
    fake()
    _, _, notes = api.build_engine(
        m, tc.PrecisionPlan(), tc.shape_plan(m.info, 1), timing_cache=str(cache)
    )
    assert cache.read_bytes() == b"+new" and not notes
    fake(cache_ok=False)  # a cache TensorRT refuses (other version/device): start empty, say so
    _, _, notes = api.build_engine(
        m, tc.PrecisionPlan(), tc.shape_plan(m.info, 1), timing_cache=str(cache)
    )
    assert notes and "did not match" in notes[0] and cache.read_bytes() == b"+new"
    assert [p.name for p in cache.parent.iterdir()] == ["dev.timing.cache"]  # no temp left


def test_runner_times_like_trtexec_graph_launch_and_spin_wait(fake: Any, tmp_path: Path) -> None:
    calls = fake()
    sp = tc.shape_plan(_model(tmp_path).info, 2)
    with api.TrtRunner(b"engine", sp) as r:
        assert ("set_input_shape", "x", [2, 3, 16, 16]) in calls
        calls.clear()
        assert r.timed_step_ms() == 1.25
    assert "cudaGraphLaunch" in calls.names() and "execute_async_v3" not in calls.names()
    assert calls.names().count("cudaEventQuery") >= 2  # polled, not a blocking wait
    calls = fake(capture_ok=False)
    with api.TrtRunner(b"engine", sp) as r:
        r.timed_step_ms()
        assert r.graph_failed  # recorded: the id then carries -nograph
