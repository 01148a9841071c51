"""TensorRT Python API backend: ONNX -> engine (timing cache per device) -> timed with CUDA events.

``tensorrt`` and ``cuda-python`` (``cudart``, extra ``nasctl[tensorrt]``) are imported lazily.
Version-dependent choices live in :func:`build_plan` (pure, tested with fake versions):

- TensorRT < 10: ``EXPLICIT_BATCH`` network flag; TensorRT >= 10 networks are always explicit;
- FP16/INT8 builder flags where they exist (< 11); INT8 with an entropy calibrator over random
  data (``IInt8EntropyCalibrator2``, deprecated in 10.1, gone in 11) - enough for latency;
- TensorRT >= 11: every network is strongly typed, precision comes from the ONNX: the request's
  precision is recorded, no flag is set (``extra["precision_note"]``);
- ``ProfilingVerbosity.DETAILED`` so that the engine inspector reports layer types and tactics;
- engine device memory from ``device_memory_size_v2`` (>= 10.1) or ``device_memory_size``.

Whole-graph latency: the base protocol with one ``execute_async_v3`` per step between two CUDA
events. Per-layer: a separate run with an ``IProfiler`` attached.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nasctl.errors import BackendError, DeviceError, NasctlError
from nasctl.profiler.base import Device
from nasctl.profiler.protocol import Runner, TimingConfig
from nasctl.records import Measurement, MeasurementRequest

Version = tuple[int, int]


def _trt() -> Any:
    try:
        import tensorrt as trt
    except ImportError as e:
        from nasctl.profiler.devices import TRT_MISSING

        raise DeviceError(TRT_MISSING) from e
    return trt


def _cudart() -> Any:
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart
        except ImportError as e:
            raise DeviceError(
                "cuda-python is needed next to TensorRT (pip install "
                "'nasctl[tensorrt]' or pip install cuda-python)"
            ) from e
    return cudart


def trt_version() -> str:
    """``major.minor`` of the importable TensorRT."""
    return ".".join(_trt().__version__.split(".")[:2])


def parse_version(text: str) -> Version:
    major, minor = (text.split(".") + ["0"])[:2]
    return int(major), int(minor)


@dataclass
class BuildPlan:
    """What the builder is told for a TensorRT version and precision."""

    explicit_batch_flag: bool
    strongly_typed: bool
    flags: list[str]  # BuilderFlag names: "FP16", "INT8"
    calibrator: bool
    notes: list[str] = field(default_factory=list)


def build_plan(version: Version, precision: str) -> BuildPlan:
    """Builder choices for ``version`` (major, minor) and ``precision`` (fp32|fp16|int8)."""
    if precision not in ("fp32", "fp16", "int8"):
        raise DeviceError(f"TensorRT precision must be fp32, fp16 or int8; got {precision!r}")
    if version >= (11, 0):
        return BuildPlan(
            False,
            True,
            [],
            False,
            ["TensorRT >= 11 is strongly typed: precision comes from the ONNX"],
        )
    flags = {"fp32": [], "fp16": ["FP16"], "int8": ["INT8", "FP16"]}[precision]
    notes = []
    if precision == "int8" and version >= (10, 1):
        notes.append("implicit INT8 calibration is deprecated since TensorRT 10.1")
    return BuildPlan(version < (10, 0), False, flags, precision == "int8", notes)


def _check(result: Any) -> Any:
    """Unwrap a cuda-python ``(err, *values)`` tuple, raising on error."""
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise BackendError(f"CUDA error {err}")
    return rest[0] if len(rest) == 1 else (tuple(rest) if rest else None)


def build_engine(
    onnx_bytes: bytes,
    precision: str,
    *,
    batch: int = 1,
    timing_cache: Path | None = None,
    workspace_mb: int = 1024,
) -> tuple[bytes, BuildPlan]:
    """Parse and build; return the serialized engine and the plan used."""
    trt = _trt()
    logger = trt.Logger(trt.Logger.WARNING)
    plan = build_plan(parse_version(trt.__version__), precision)
    builder = trt.Builder(logger)
    flags = 0
    if plan.explicit_batch_flag:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    if plan.strongly_typed and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendError(f"TensorRT cannot parse the ONNX: {errs or 'unknown error'}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    for name in plan.flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    if plan.calibrator:
        config.int8_calibrator = make_calibrator(network, batch)
    cache = config.create_timing_cache(
        timing_cache.read_bytes() if timing_cache and timing_cache.is_file() else b""
    )
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError("TensorRT failed to build the engine (see its log above)")
    if timing_cache is not None:
        timing_cache.parent.mkdir(parents=True, exist_ok=True)
        timing_cache.write_bytes(bytes(cache.serialize()))
    return bytes(serialized), plan


def make_calibrator(network: Any, batch: int, batches: int = 4) -> Any:
    """An ``IInt8EntropyCalibrator2`` feeding ``batches`` batches of random normal data."""
    trt = _trt()
    cudart = _cudart()
    shapes = {
        network.get_input(i).name: tuple(max(d, 1) for d in network.get_input(i).shape)
        for i in range(network.num_inputs)
    }

    class RandomCalibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.left = batches
            self.ptrs = {
                n: _check(cudart.cudaMalloc(int(np.prod(s)) * 4)) for n, s in shapes.items()
            }

        def get_batch_size(self) -> int:
            return batch

        def get_batch(self, names: list[str]) -> list[int] | None:
            if self.left <= 0:
                return None
            self.left -= 1
            for n in names:
                host = (
                    np.random.default_rng(self.left).standard_normal(shapes[n]).astype(np.float32)
                )
                _check(
                    cudart.cudaMemcpy(
                        self.ptrs[n],
                        host.ctypes.data,
                        host.nbytes,
                        cudart.cudaMemcpyKind.cudaMemcpyHostToDevice,
                    )
                )
            return [int(self.ptrs[n]) for n in names]

        def read_calibration_cache(self) -> None:
            return None

        def write_calibration_cache(self, cache: Any) -> None:
            return None

    return RandomCalibrator()


class TrtRunner(Runner):
    """Runs a deserialized engine; each timed step is bracketed by CUDA events (GPU time, ms)."""

    def __init__(self, engine_bytes: bytes, batch: int = 1) -> None:
        super().__init__()
        self.engine_bytes = engine_bytes
        self.batch = batch
        self.engine: Any = None
        self.context: Any = None

    def activate_impl(self) -> None:
        trt, cudart = _trt(), _cudart()
        self._rt = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self._rt.deserialize_cuda_engine(self.engine_bytes)
        if self.engine is None:
            raise BackendError("TensorRT cannot deserialize the engine")
        self.context = self.engine.create_execution_context()
        self.stream = _check(cudart.cudaStreamCreate())
        self.events = (_check(cudart.cudaEventCreate()), _check(cudart.cudaEventCreate()))
        self.buffers: list[int] = []
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            shape = list(self.engine.get_tensor_shape(name))
            if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT and -1 in shape:
                shape = [self.batch if d == -1 and k == 0 else d for k, d in enumerate(shape)]
                self.context.set_input_shape(name, shape)
            shape = list(self.context.get_tensor_shape(name))
            nbytes = int(np.prod(shape)) * trt.nptype(self.engine.get_tensor_dtype(name))(0).nbytes
            ptr = _check(cudart.cudaMalloc(max(nbytes, 1)))
            self.buffers.append(ptr)
            self.context.set_tensor_address(name, int(ptr))

    def step_impl(self) -> None:
        cudart = _cudart()
        if not self.context.execute_async_v3(int(self.stream)):
            raise BackendError("TensorRT execution failed")
        _check(cudart.cudaStreamSynchronize(self.stream))

    def timed_step_ms(self) -> float:
        cudart = _cudart()
        start, end = self.events
        _check(cudart.cudaEventRecord(start, self.stream))
        if not self.context.execute_async_v3(int(self.stream)):
            raise BackendError("TensorRT execution failed")
        _check(cudart.cudaEventRecord(end, self.stream))
        _check(cudart.cudaEventSynchronize(end))
        return float(_check(cudart.cudaEventElapsedTime(start, end)))

    def profile_layers(self, runs: int = 10) -> list[tuple[str, float]]:
        """Average per-layer time (ms) over ``runs`` runs with an ``IProfiler`` attached."""
        trt = _trt()
        totals: dict[str, list[float]] = {}

        class Profiler(trt.IProfiler):  # type: ignore[misc, name-defined]
            def __init__(self) -> None:
                trt.IProfiler.__init__(self)

            def report_layer_time(self, layer_name: str, ms: float) -> None:
                totals.setdefault(layer_name, []).append(ms)

        self.context.profiler = Profiler()
        for _ in range(runs):
            self.step_impl()
        self.context.profiler = None
        return [(n, sum(v) / len(v)) for n, v in totals.items()]

    def layer_info(self) -> dict[str, Any]:
        """The engine inspector's JSON (``{"Layers": [...], "Bindings": [...]}``)."""
        import json

        trt = _trt()
        inspector = self.engine.create_engine_inspector()
        return json.loads(inspector.get_engine_information(trt.LayerInformationFormat.JSON))

    def device_memory_bytes(self) -> int:
        e = self.engine
        return int(getattr(e, "device_memory_size_v2", None) or e.device_memory_size)

    def deactivate_impl(self) -> None:
        cudart = _cudart()
        for p in self.buffers:
            cudart.cudaFree(p)
        for ev in self.events:
            cudart.cudaEventDestroy(ev)
        cudart.cudaStreamDestroy(self.stream)
        self.context = self.engine = None


def measure_tensorrt(
    device: Device, request: MeasurementRequest, opts: dict[str, Any]
) -> Measurement:
    """Build (or fail as a record), time with the base protocol, then profile per layer."""
    from nasctl.profiler.fingerprint import collect
    from nasctl.profiler.source import load_model
    from nasctl.profiler.trt_reports import graph_names, profile_layers, reconcile

    cfg = TimingConfig.from_options(opts)
    dev_id = device.device_id_for(request.precision)
    t0 = time.perf_counter()
    try:
        src = load_model(request)
        model, ids = src.data or src.path.read_bytes(), src.graph_ids  # type: ignore[union-attr]
        cache_dir = opts.get("timing_cache_dir")
        cache = Path(cache_dir) / f"{dev_id}.timing.cache" if cache_dir else None
        engine, plan = build_engine(
            model,
            request.precision,
            batch=request.batch,
            timing_cache=cache,
            workspace_mb=int(opts.get("workspace_mb", 1024)),
        )
        build_s = time.perf_counter() - t0
        runner = TrtRunner(engine, batch=request.batch)
        with runner:
            res = runner.measure(cfg)
            layers, info = [], {}
            if request.per_layer:
                raw = runner.profile_layers(int(opts.get("per_layer_runs", 10)))
                info = runner.layer_info()
                profile = [{"count": 1}] + [{"name": n, "averageMs": ms} for n, ms in raw]
                layers = profile_layers(profile, info, *graph_names(model, ids))
            mem = runner.device_memory_bytes()
    except DeviceError:
        raise
    except NasctlError as e:
        return device.failed(request, str(e), dev_id)
    except Exception as e:  # TensorRT/CUDA binding errors: the model failed, the run goes on
        text = " ".join(str(e).split())[:300] or type(e).__name__
        return device.failed(request, f"TensorRT failed: {text}", dev_id)
    m = res.to_measurement(
        request,
        dev_id,
        layers=layers,
        fingerprint=collect(libs=("tensorrt",), gpu=True),
        extra={
            "backend": "tensorrt",
            "cvs": res.cvs,
            "engine_device_memory_bytes": mem,
            "engine_bytes": len(engine),
            "build_s": build_s,
            "plan_notes": plan.notes,
            "wall_s": time.perf_counter() - t0,
        },
    )
    if layers and m.median_ms:
        r = reconcile(layers, m.median_ms)
        m.extra.update(layers_sum_ms=r["layers_sum_ms"], layers_sum_ratio=r["ratio"])
    return m
