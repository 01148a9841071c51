"""The ``cpu`` device: ONNX Runtime on the CPU, ``threads`` intra-op threads (default 1), FP32 or
INT8 (the precision is the model's: an ``int8`` request needs explicit Q/DQ nodes, which ORT runs
as its int8 kernels, ``QLinearConv``/``MatMulInteger``...), all graph optimizations, sequential
execution. Whole-graph latency from an un-profiled session,
per-kernel times from a separate profiling session."""

from __future__ import annotations

import time
from typing import Any

from nasctl_agent.devices import AgentDevice, register
from nasctl_agent.errors import ModelError, RequestError
from nasctl_agent.model import Model
from nasctl_agent.protocol import TimingConfig
from nasctl_agent.request import Request, Result


def cpu_device_id(ort_version: str, precision: str, threads: int, clock: str = "wall") -> str:
    """``cpu-ort1.32-fp32-t1``; ``-cputime`` appended for thread-CPU-time measurements."""
    base = f"cpu-ort{ort_version}-{precision}-t{threads}"
    return base + ("-cputime" if clock == "thread" else "")


def threads_of(options: dict[str, Any]) -> int:
    raw = options.get("threads")
    try:
        t = 1 if raw is None else int(raw)
    except (TypeError, ValueError):
        raise RequestError(f"threads must be an integer; got {raw!r}") from None
    if t < 1:
        raise RequestError(f"threads must be >= 1; got {t}")
    return t


MEMORY_MODES = ("fresh", "forked", "inprocess", "off")


def memory_of(options: dict[str, Any]) -> str:
    """How the model's peak memory is measured: ``fresh`` (default: a new Python process per
    model, :mod:`nasctl_agent.memprobe`), ``forked`` (a process forked per model from a probe
    server that has ONNX Runtime imported, :mod:`nasctl_agent.memserver`: about 0.22 s less CPU
    a model, no bias on average, but not the default: on the 12 zoo classifiers it did not stay
    within 10 % of an independent fresh-process measurement, see docs/benchmarks.md),
    ``inprocess`` (around the timed session, in this process: no extra process, but a model
    measured after others can read low) or ``off``."""
    m = str(options.get("memory", "fresh"))
    if m not in MEMORY_MODES:
        raise RequestError(f"memory must be one of {', '.join(MEMORY_MODES)}; got {m!r}")
    return m


def clock_of(options: dict[str, Any]) -> str:
    """``wall`` (latency, the default) or ``thread`` (CPU time of the calling thread)."""
    c = str(options.get("clock", "wall"))
    if c not in ("wall", "thread"):
        raise RequestError(f"clock must be 'wall' or 'thread'; got {c!r}")
    if c == "thread" and threads_of(options) != 1:
        raise RequestError("clock 'thread' needs threads=1")
    return c


@register("cpu")
class CpuDevice(AgentDevice):
    description = (
        "ONNX Runtime CPU, FP32 or INT8 (Q/DQ model), 1 intra-op thread by default (option threads)"
    )
    precisions = ("fp32", "int8")

    def available(self) -> tuple[bool, str]:
        from nasctl_agent.backends.ort import ORT_MISSING, ort_available, ort_version

        if not ort_available():
            return False, ORT_MISSING
        return True, f"ONNX Runtime {ort_version()} on the CPU"

    def backend_name(self, request: Request) -> str:
        if request.backend not in (None, "onnxruntime"):
            raise RequestError(f"device 'cpu' measures with onnxruntime, not {request.backend}")
        return "onnxruntime"

    def device_id(self, request: Request) -> str:
        from nasctl_agent.backends.ort import ort_version

        opts = request.options
        return cpu_device_id(ort_version(), request.precision, threads_of(opts), clock_of(opts))

    def check_request(self, request: Request) -> None:
        threads_of(request.options)
        clock_of(request.options)
        memory_of(request.options)
        self.backend_name(request)

    def fingerprint(self, request: Request) -> dict[str, Any]:
        from nasctl_agent.fingerprint import collect

        return collect(threads=threads_of(request.options), libs=("onnxruntime",))

    def measure_impl(
        self, model: Model, request: Request, cfg: TimingConfig, result: Result
    ) -> None:
        from nasctl_agent.backends import ort

        opts = request.options
        threads, clock = threads_of(opts), clock_of(opts)
        written = model.info.precision
        if (
            written is not None
            and "int8" in (written, request.precision)
            and written != request.precision
        ):
            raise ModelError(
                f"the model is {written} but the request asks for {request.precision}: "
                "the precision is written into the ONNX (INT8 = Q/DQ nodes; nasctl's host "
                "writes them, or use onnxruntime.quantization.quantize_static)"
            )
        seed = int(opts.get("seed", 0))
        memory = memory_of(opts)
        scoped, baseline = False, None
        if memory == "inprocess":
            if model.data is None and not model.has_external_data:
                # the caller's copy of the ONNX bytes is not the model's memory: read them
                # before the baseline (the session is created from these bytes)
                model.data = model.read_bytes()
            ort.warm_runtime(threads)
            scoped = ort.reset_peak_rss()
            baseline = ort.current_rss_bytes() if scoped else None
        runner = ort.OrtRunner(
            model,
            threads=threads,
            batch=request.batch,
            clock=clock,
            seed=seed,
            shapes=request.shapes,
        )
        with runner:
            res = runner.measure(cfg)
        # the timed session's peak: read before the per-layer pass, whose profiling session
        # (events, optimized-model dump) is not what running the model costs
        peak = ort.peak_rss_bytes()
        result.status = res.status
        result.timing = res.to_dict()
        result.timing_method = "host-clock" if clock == "wall" else "thread-cpu-time"
        result.extra["clock"] = clock
        result.timing_s.update(
            session_create=runner.session_create_s, warmup=res.warmup_s, timed=res.timed_s
        )
        if request.per_layer:
            try:
                prof = ort.profile_kernels(
                    model,
                    threads=threads,
                    batch=request.batch,
                    runs=int(opts.get("per_layer_runs", 3)),
                    warmup=int(opts.get("per_layer_warmup", 1)),
                    seed=seed,
                    shapes=request.shapes,
                )
            except Exception as e:  # whole-graph numbers stand on their own
                result.extra["per_layer_error"] = " ".join(str(e).split())[:300]
            else:
                result.layers = prof["layers"]
                result.engine_graph = prof["engine_graph"]
                result.timing_s["per_layer"] = prof["wall_s"]
        if memory == "inprocess":
            from nasctl_agent.memprobe import model_memory

            result.memory.update(model_memory(scoped, baseline, peak))
        elif memory in ("fresh", "forked"):  # after every timed run: never competes with them
            from nasctl_agent.memprobe import measure_fresh
            from nasctl_agent.memserver import measure_forked

            t0 = time.perf_counter()
            where: dict[str, Any] = dict(
                threads=threads, batch=request.batch, seed=seed, shapes=request.shapes
            )
            path = model.file_path()
            rec = measure_forked(path, **where) if memory == "forked" else None
            result.memory.update(rec if rec is not None else measure_fresh(path, **where))
            result.timing_s["memory"] = time.perf_counter() - t0
        else:
            result.memory["missing"] = "not measured (option memory=off)"
