"""TensorRT Python API backend: ONNX (by path, so external data works) -> engine -> timed the
way trtexec times (:data:`~nasctl_agent.backends.trt_common.TIMING_METHOD`): each step is one
``cudaGraphLaunch`` of a captured ``execute_async_v3`` between two CUDA events, its end polled
with ``cudaEventQuery`` (spin wait), inputs left on the device (no transfers).

Build (NVIDIA's documented API: ``Builder``, ``OnnxParser.parse_from_file``,
``IBuilderConfig``):

- ``NetworkDefinitionCreationFlag.EXPLICIT_BATCH`` before 10 (always explicit from 10), and
  ``STRONGLY_TYPED`` when the precision comes from the ONNX (:func:`trt_common.precision_plan`);
- dynamic inputs: one ``IOptimizationProfile`` with min = opt = max at the request's shape;
- ``BuilderFlag.FP16``/``INT8`` where the plan says; INT8 by implicit quantization (< 10.1) with
  an ``IInt8EntropyCalibrator2`` over the user's ``.npy`` batches, its cache read and written
  (reused across builds), its device buffers freed after the build;
- DLA: ``default_device_type = DeviceType.DLA``, ``DLA_core``, ``BuilderFlag.GPU_FALLBACK``;
  which layers fell back is read from the build log;
- a timing cache per device id: loaded with ``create_timing_cache``; if
  ``set_timing_cache(..., ignore_mismatch=False)`` refuses it, the build starts from an empty
  one (noted); the updated cache is written back atomically;
- ``ProfilingVerbosity.DETAILED`` so the engine inspector reports layer types and tactics.

``tensorrt``, ``numpy`` and ``cuda-python`` (extra ``nasctl-agent[tensorrt]``) are imported
lazily; calibration lives in :mod:`~nasctl_agent.backends.trt_calibration`; nothing here ran
on real TensorRT on the machine this was written on (see the docs).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from nasctl_agent.backends import trt_common as tc
from nasctl_agent.backends.trt_calibration import (
    calibration_batches,
    make_calibrator,
    write_bytes_atomically,
)
from nasctl_agent.backends.trt_libs import check, cudart, trt, version
from nasctl_agent.errors import ModelError, RequestError
from nasctl_agent.model import Model
from nasctl_agent.protocol import Runner, TimingConfig


# -- build ---------------------------------------------------------------------------------------
class _Logger:
    """A TensorRT logger that keeps the messages (to read DLA placement and memory)."""

    def __new__(cls) -> Any:
        t = trt()

        class Logger(t.ILogger):  # type: ignore[misc, name-defined]
            def __init__(self) -> None:
                t.ILogger.__init__(self)
                self.lines: list[str] = []

            def log(self, severity: Any, msg: str) -> None:
                self.lines.append(f"[{severity}] [TRT] {msg}")

        return Logger()


def build_engine(
    model: Model,
    plan: tc.PrecisionPlan,
    shapes: tc.ShapePlan,
    *,
    timing_cache: str | None = None,
    workspace_mb: int = 1024,
    dla_core: int | None = None,
    calibrator: Any = None,
) -> tuple[bytes, str, list[str]]:
    """Parse and build; return (serialized engine, build log, notes)."""
    t = trt()
    logger = _Logger()
    notes: list[str] = []
    builder = t.Builder(logger)
    flags = 0
    if version() < (10, 0):
        flags |= 1 << int(t.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    if plan.strongly_typed:
        flags |= 1 << int(t.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = t.OnnxParser(network, logger)
    # a path: external data is read from the model's folder
    if not parser.parse_from_file(model.file_path()):
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelError(f"TensorRT cannot parse the ONNX: {errs or 'unknown error'}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(t.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    config.profiling_verbosity = t.ProfilingVerbosity.DETAILED
    for name in plan.flags:
        config.set_flag(getattr(t.BuilderFlag, name.upper()))
    if shapes.dynamic:  # without a profile a dynamic network does not build
        profile = builder.create_optimization_profile()
        for name in shapes.dynamic:
            s = tuple(shapes.shapes[name])
            profile.set_shape(name, s, s, s)
        config.add_optimization_profile(profile)
        if calibrator is not None:
            config.set_calibration_profile(profile)
    if calibrator is not None:
        config.int8_calibrator = calibrator
    if dla_core is not None:
        config.default_device_type = t.DeviceType.DLA
        config.DLA_core = int(dla_core)
        config.set_flag(t.BuilderFlag.GPU_FALLBACK)
    cache = None
    if timing_cache is not None:
        blob = b""
        if os.path.isfile(timing_cache):
            with open(timing_cache, "rb") as f:
                blob = f.read()
        cache = config.create_timing_cache(blob)
        if not config.set_timing_cache(cache, ignore_mismatch=False):
            notes.append(f"timing cache {timing_cache} did not match this TensorRT; started empty")
            cache = config.create_timing_cache(b"")
            config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    log = "\n".join(logger.lines)
    if serialized is None:
        raise ModelError("TensorRT failed to build the engine: " + _last_error(logger.lines))
    if timing_cache is not None:
        updated = config.get_timing_cache()
        data = bytes(updated.serialize()) if updated is not None else b""
        if data:
            write_bytes_atomically(timing_cache, data)
        else:
            notes.append("TensorRT returned an empty timing cache; the stored one is kept")
    return bytes(serialized), log, notes


def _last_error(lines: list[str]) -> str:
    errs = [ln for ln in lines if "ERROR" in ln.upper()]
    return (errs[-1] if errs else "see the TensorRT log")[:300]


# -- run -----------------------------------------------------------------------------------------
class TrtRunner(Runner):
    """Runs a deserialized engine the way trtexec does: each timed step is one CUDA graph launch
    between two events, the end event polled (spin wait); inputs stay on the device."""

    def __init__(self, engine_bytes: bytes, shapes: tc.ShapePlan, use_graph: bool = True) -> None:
        super().__init__()
        self.engine_bytes = engine_bytes
        self.shapes = shapes
        self.use_graph = use_graph
        self.engine: Any = None
        self.context: Any = None
        self.graph_exec: Any = None
        self.buffers: list[int] = []
        self.graph_failed = False

    def activate_impl(self) -> None:
        t, rt = trt(), cudart()
        self._rt = t.Runtime(t.Logger(t.Logger.WARNING))
        self.engine = self._rt.deserialize_cuda_engine(self.engine_bytes)
        if self.engine is None:
            raise ModelError("TensorRT cannot deserialize the engine")
        self.context = self.engine.create_execution_context()
        self.stream = check(rt.cudaStreamCreate())
        self.events = (check(rt.cudaEventCreate()), check(rt.cudaEventCreate()))
        import numpy as np

        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            if (
                self.engine.get_tensor_mode(name) == t.TensorIOMode.INPUT
                and name in self.shapes.shapes
            ):
                if -1 in list(self.engine.get_tensor_shape(name)):
                    self.context.set_input_shape(name, self.shapes.shapes[name])
            shape = list(self.context.get_tensor_shape(name))
            itemsize = np.dtype(t.nptype(self.engine.get_tensor_dtype(name))).itemsize
            ptr = check(rt.cudaMalloc(max(int(np.prod(shape)) * itemsize, 1)))
            self.buffers.append(ptr)
            self.context.set_tensor_address(name, int(ptr))
        self._enqueue()  # one plain run before capture (TensorRT allocates lazily)
        self._sync()
        if self.use_graph:
            self._capture()

    def _enqueue(self) -> None:
        if not self.context.execute_async_v3(int(self.stream)):
            raise ModelError("TensorRT execution failed")

    def _capture(self) -> None:
        rt = cudart()
        mode = rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        check(rt.cudaStreamBeginCapture(self.stream, mode))
        ok = self.context.execute_async_v3(int(self.stream))
        err, graph = rt.cudaStreamEndCapture(self.stream)
        if not ok or int(err) != 0 or graph is None:
            rt.cudaGetLastError()
            self.graph_failed = True  # recorded: the id then says no graph was used
            return
        self._graph = graph
        self.graph_exec = check(rt.cudaGraphInstantiate(graph, 0))

    def _launch(self) -> None:
        if self.graph_exec is not None:
            check(cudart().cudaGraphLaunch(self.graph_exec, self.stream))
        else:
            self._enqueue()

    def _sync(self) -> None:
        rt = cudart()
        check(rt.cudaStreamSynchronize(self.stream))

    def _spin(self, event: Any) -> None:
        rt = cudart()
        not_ready = rt.cudaError_t.cudaErrorNotReady
        while True:
            (err,) = rt.cudaEventQuery(event)
            if err != not_ready:
                if int(err) != 0:
                    raise ModelError(f"CUDA error {err}")
                return

    def step_impl(self) -> None:
        start, end = self.events
        self._launch()
        check(cudart().cudaEventRecord(end, self.stream))
        self._spin(end)

    def timed_step_ms(self) -> float:
        rt = cudart()
        start, end = self.events
        check(rt.cudaEventRecord(start, self.stream))
        self._launch()
        check(rt.cudaEventRecord(end, self.stream))
        self._spin(end)
        return float(check(rt.cudaEventElapsedTime(start, end)))

    def profile_layers(self, runs: int = 10) -> list[dict[str, Any]]:
        """Per-layer times (ms, mean and median over ``runs``) with an ``IProfiler`` attached,
        in a separate run (as trtexec's separate profile run)."""
        t = trt()
        totals: dict[str, list[float]] = {}

        class Profiler(t.IProfiler):  # type: ignore[misc, name-defined]
            def __init__(self) -> None:
                t.IProfiler.__init__(self)

            def report_layer_time(self, layer_name: str, ms: float) -> None:
                totals.setdefault(layer_name, []).append(ms)

        self.context.profiler = Profiler()
        for _ in range(runs):
            self._enqueue()
            self._sync()
        self.context.profiler = None
        out = []
        for name, v in totals.items():
            s = sorted(v)
            out.append(
                {
                    "name": name,
                    "time_ms": sum(v) / len(v),
                    "extra": {"median_ms": s[len(s) // 2], "percentage": None},
                }
            )
        return out

    def layer_info(self) -> dict[str, Any]:
        """The engine inspector's JSON (``{"Layers": [...], "Bindings": [...]}``)."""
        t = trt()
        inspector = self.engine.create_engine_inspector()
        return json.loads(inspector.get_engine_information(t.LayerInformationFormat.JSON))  # type: ignore[no-any-return]

    def memory(self) -> dict[str, int]:
        """The execution context's device memory (activations and scratch:
        ``device_memory_size_v2`` from 10.1, the only one from 11, else ``device_memory_size``);
        the weights from the build log's "Total Weights Memory" (see
        :func:`trt_common.engine_memory`)."""
        e = self.engine
        size = getattr(e, "device_memory_size_v2", None)
        if size is None:
            size = e.device_memory_size
        return {"device_memory_bytes": int(size)}

    def deactivate_impl(self) -> None:
        rt = cudart()
        if self.graph_exec is not None:
            rt.cudaGraphExecDestroy(self.graph_exec)
            rt.cudaGraphDestroy(self._graph)
            self.graph_exec = None
        for p in self.buffers:
            rt.cudaFree(p)
        self.buffers = []
        for ev in self.events:
            rt.cudaEventDestroy(ev)
        rt.cudaStreamDestroy(self.stream)
        self.context = self.engine = None


def measure(
    model: Model,
    *,
    precision: str,
    batch: int,
    cfg: TimingConfig,
    per_layer: bool,
    options: dict[str, Any],
    shapes: dict[str, list[int]] | None,
    timing_cache: str | None,
    result: Any,
) -> None:
    """Build (calibrating if the plan says so), time with the base protocol, profile per layer."""
    ver = version()
    dla = options.get("dla_core")
    plan = tc.precision_plan(ver, precision, model.info.precision, dla=dla is not None)
    sp = tc.shape_plan(model.info, batch, shapes)
    calibrator = None
    if plan.calibration:
        cache = options.get("calib_cache")
        data = options.get("calib_data")
        if not data and not (cache and os.path.isfile(str(cache))):
            raise RequestError(
                "INT8 by calibration (TensorRT < 10.1) needs --calib-data DIR of .npy batches "
                "(or an existing --calib-cache); or give a Q/DQ ONNX"
            )
        batches = calibration_batches(str(data), sp.shapes) if data else []
        calibrator = make_calibrator(batches or [{}], cache)
    t0 = time.perf_counter()
    try:
        engine, log, notes = build_engine(
            model,
            plan,
            sp,
            timing_cache=timing_cache,
            workspace_mb=int(options.get("workspace_mb", 1024)),
            dla_core=dla,
            calibrator=calibrator,
        )
    finally:
        if calibrator is not None:
            calibrator.free()  # device buffers go back before the engine runs
    result.timing_s["build"] = time.perf_counter() - t0
    runner = TrtRunner(engine, sp, use_graph=dla is None)
    with runner:
        res = runner.measure(cfg)
        if per_layer:
            result.layers = runner.profile_layers(int(options.get("per_layer_runs", 10)))
            result.engine_graph = {"format": "tensorrt-layer-info", "data": runner.layer_info()}
        measured = runner.memory()
    info = (result.engine_graph or {}).get("data")
    memory = tc.engine_memory(log, measured=measured, layer_info=info, engine_bytes=len(engine))
    graph_ok = dla is None and not runner.graph_failed
    tc.finish_result(
        result, res, log=log, graph_ok=graph_ok, dla=dla, notes=plan.notes + notes, memory=memory
    )
    result.extra["tensorrt"] = f"{ver[0]}.{ver[1]}"
