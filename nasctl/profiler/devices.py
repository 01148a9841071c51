"""The device registry: ``get_device(name, **opts)``, ``list_devices()``, ``describe_devices()``.

A device turns a :class:`~nasctl.records.MeasurementRequest` into a
:class:`~nasctl.records.Measurement`. It never writes files and never raises for a model
that fails: that is a measurement with ``status="failed"`` and the error. It raises
:class:`~nasctl.errors.DeviceError` for a device that cannot run here or a request it cannot
serve (a precision it lacks, bad options).

Options (device kwargs, overridden per request by ``request.options``): the timing protocol's
``warmup``, ``warmup_s``, ``repeats``, ``min_time_s``, ``max_repeats``, ``cv_threshold``,
``max_attempts`` (see :class:`~nasctl.profiler.protocol.TimingConfig`), plus per device:
``threads``, ``clock`` (``wall`` | ``thread``), ``per_layer_runs`` (cpu); ``trtexec``,
``timing_cache_dir``, ``workspace_mb`` (t4, xavier); ``data_dir`` (replay).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from nasctl.errors import DeviceError, NasctlError
from nasctl.records import Measurement, MeasurementRequest

_REGISTRY: dict[str, Callable[..., Device]] = {}

TRT_MISSING = (
    "TensorRT Python module not found; run on the Jetson with JetPack's TensorRT, "
    "or point at trtexec with trtexec=PATH"
)


def register_device(name: str) -> Callable[[type[Device]], type[Device]]:
    """Class decorator adding a device factory under ``name``."""

    def deco(cls: type[Device]) -> type[Device]:
        _REGISTRY[name] = cls
        return cls

    return deco


def list_devices() -> list[str]:
    """Registered device names; ``replay:<table>/<column>`` is listed as ``"replay"``."""
    return sorted(_REGISTRY)


def get_device(name: str, **opts: Any) -> Device:
    """The device called ``name`` (``cpu``, ``t4``, ``xavier``, ``cuda``,
    ``replay:<table>/<column>``), configured with ``opts``."""
    if name.startswith("replay:") or name == "replay":
        return _REGISTRY["replay"](spec=name.partition(":")[2], **opts)
    if name not in _REGISTRY or name == "replay":
        known = ", ".join(n for n in list_devices() if n != "replay")
        raise DeviceError(
            f"unknown device {name!r}; known devices: {known}, replay:<table>/<column>"
        )
    return _REGISTRY[name](**opts)


def describe_devices(**opts: Any) -> list[dict[str, Any]]:
    """One row per registered device: name, description, available, reason (for ``nasctl
    devices``). Replay is described by its pattern."""
    rows = []
    for name in list_devices():
        dev = get_device(name, **opts) if name != "replay" else None
        if dev is None:
            from nasctl.profiler.backends.replay import replay_tables

            tables = replay_tables(opts.get("data_dir"))
            rows.append(
                {
                    "name": "replay:<table>/<column>",
                    "available": bool(tables),
                    "reason": "tables: " + (", ".join(tables) or "none found"),
                    "description": "answers from a recorded latency table",
                }
            )
            continue
        ok, reason = dev.available()
        rows.append(
            {"name": name, "available": ok, "reason": reason, "description": dev.description}
        )
    return rows


class Device(ABC):
    """A place that measures. Subclasses set ``name``/``description`` and implement
    :meth:`available`, :meth:`device_id_for` and :meth:`measure_impl`."""

    name = ""
    description = ""
    precisions: tuple[str, ...] = ("fp32",)
    #: A stored measurement of the same content hash answers for this device: the same network
    #: is the same measurement. False where the device answers per genotype (a replay table lists
    #: isomorphic NB201 cells with different latencies), so only the device itself answers.
    reuses_by_hash: bool = True

    def __init__(self, **opts: Any) -> None:
        self.opts = dict(opts)

    @property
    def precision(self) -> str:
        """The precision named in the options (default fp32), used by :attr:`device_id`."""
        return str(self.opts.get("precision", "fp32"))

    @property
    def device_id(self) -> str:
        """Canonical dataset id at :attr:`precision`, e.g. ``cpu-ort1.32-fp32-t1``."""
        return self.device_id_for(self.precision)

    @abstractmethod
    def device_id_for(self, precision: str) -> str:
        """Canonical dataset id of a measurement at ``precision``."""

    @abstractmethod
    def available(self) -> tuple[bool, str]:
        """(usable here, why not / what it uses)."""

    def measure(self, request: MeasurementRequest) -> Measurement:
        """Measure ``request``; a failing model gives a ``failed`` measurement, not an error."""
        ok, reason = self.available()
        if not ok:
            raise DeviceError(f"device {self.name!r} is not usable here: {reason}")
        if request.precision not in self.precisions:
            raise DeviceError(
                f"device {self.name!r} measures precisions {', '.join(self.precisions)}; "
                f"got {request.precision!r}"
            )
        if request.batch < 1:
            raise DeviceError(f"batch must be >= 1; got {request.batch}")
        return self.measure_impl(request, {**self.opts, **(request.options or {})})

    @abstractmethod
    def measure_impl(self, request: MeasurementRequest, opts: dict[str, Any]) -> Measurement:
        """Measure with merged options (device kwargs, then request options)."""

    def failed(
        self, request: MeasurementRequest, error: str, device_id: str | None = None, **extra: Any
    ) -> Measurement:
        """A ``failed`` record for ``request``."""
        return Measurement(
            arch_hash=request.arch_hash,
            device_id=device_id or self.device_id_for(request.precision),
            precision=request.precision,
            batch=request.batch,
            status="failed",
            error=error,
            extra=dict(extra),
        )


def load_model_bytes(request: MeasurementRequest) -> tuple[bytes, set[str] | None]:
    """Serialized ONNX for ``request`` and, for ``graph_json`` requests, the graph's node ids
    (to map inner ONNX nodes ``<id>/<part>`` back to ids). Raises :class:`NasctlError`."""
    if request.graph_json:
        from nasctl.arch.graph import Graph
        from nasctl.arch.onnx_io import to_onnx
        from nasctl.errors import GraphError

        try:
            graph = Graph.from_json(request.graph_json)
        except (ValueError, KeyError, TypeError) as e:
            raise GraphError(f"request graph_json is not a graph: {e}") from e
        return to_onnx(graph).SerializeToString(), {n.id for n in graph.nodes}
    if request.onnx_path:
        from pathlib import Path

        from nasctl.errors import OnnxReadError

        p = Path(request.onnx_path)
        try:
            data = p.read_bytes()
        except OSError as e:
            raise OnnxReadError(f"cannot read ONNX file {p}: {e.strerror or e}") from e
        if not data:
            raise OnnxReadError(f"ONNX file {p} is empty")
        return data, None
    raise DeviceError("measurement request has neither graph_json nor onnx_path")


def to_graph_ids(names: list[str], ids: set[str] | None) -> list[str]:
    """Map ONNX node names to graph node ids: ``"<id>/<part>"`` -> ``"<id>"``; unchanged when
    ``ids`` is None (user ONNX) or nothing matches."""
    if ids is None:
        return names
    out: list[str] = []
    for n in names:
        cur = n
        while cur not in ids and "/" in cur.strip("/"):
            cur = cur.rsplit("/", 1)[0]
        mapped = cur if cur in ids else n
        if mapped not in out:
            out.append(mapped)
    return out


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text[:300] if text else type(e).__name__


def cpu_device_id(ort_version: str, precision: str, threads: int, clock: str = "wall") -> str:
    """``cpu-ort1.32-fp32-t1``; ``-cputime`` appended for thread-CPU-time measurements."""
    base = f"cpu-ort{ort_version}-{precision}-t{threads}"
    return base + ("-cputime" if clock == "thread" else "")


@register_device("cpu")
class CpuDevice(Device):
    """ONNX Runtime on the CPU: ``threads`` intra-op threads (default 1), FP32, all graph
    optimizations, sequential execution. Whole-graph latency from an un-profiled session,
    per-layer times from a separate profiling session."""

    name = "cpu"
    description = "ONNX Runtime CPU, FP32, 1 intra-op thread by default (option threads)"

    def threads(self, opts: dict[str, Any] | None = None) -> int:
        raw = (opts or self.opts).get("threads")
        try:
            t = 1 if raw is None else int(raw)
        except (TypeError, ValueError):
            raise DeviceError(f"threads must be an integer; got {raw!r}") from None
        if t < 1:
            raise DeviceError(f"threads must be >= 1; got {t}")
        return t

    def device_id_for(self, precision: str) -> str:
        from nasctl.profiler.backends.onnxruntime import ort_version

        return cpu_device_id(ort_version(), precision, self.threads(), self.clock())

    def clock(self, opts: dict[str, Any] | None = None) -> str:
        """``wall`` (latency, the default) or ``thread`` (CPU time of the calling thread)."""
        c = str((opts or self.opts).get("clock", "wall"))
        if c not in ("wall", "thread"):
            raise DeviceError(f"clock must be 'wall' or 'thread'; got {c!r}")
        if c == "thread" and self.threads(opts) != 1:
            raise DeviceError("clock 'thread' needs threads=1")
        return c

    def available(self) -> tuple[bool, str]:
        import importlib.util

        if importlib.util.find_spec("onnxruntime") is None:
            return False, "onnxruntime is not installed (pip install onnxruntime)"
        from nasctl.profiler.backends.onnxruntime import ort_version

        return True, f"ONNX Runtime {ort_version()} on the CPU"

    def measure_impl(self, request: MeasurementRequest, opts: dict[str, Any]) -> Measurement:
        from nasctl.profiler.backends import onnxruntime as ob
        from nasctl.profiler.fingerprint import collect
        from nasctl.profiler.protocol import TimingConfig

        cfg = TimingConfig.from_options(opts)
        threads = self.threads(opts)
        clock = self.clock(opts)
        dev_id = cpu_device_id(ob.ort_version(), request.precision, threads, clock)
        t0 = time.perf_counter()
        try:
            model, ids = load_model_bytes(request)
        except DeviceError:
            raise
        except NasctlError as e:
            return self.failed(request, str(e), dev_id)
        load_s = time.perf_counter() - t0
        runner = ob.OrtRunner(model, threads=threads, batch=request.batch, clock=clock)
        try:
            with runner:
                res = runner.measure(cfg)
        except NasctlError as e:
            return self.failed(request, str(e), dev_id)
        except Exception as e:  # ORT runtime errors have their own classes
            return self.failed(request, f"ONNX Runtime failed: {_one_line(e)}", dev_id)
        m = res.to_measurement(
            request,
            dev_id,
            fingerprint=collect(threads=threads, libs=("onnxruntime",)),
            extra={
                "clock": clock,
                "cvs": res.cvs,
                "timing_s": {
                    "load": load_s,
                    "session_create": runner.session_create_s,
                    "warmup": res.warmup_s,
                    "timed": res.timed_s,
                },
                "protocol": cfg.to_dict(),
            },
        )
        if request.per_layer:
            self._add_layers(m, model, ids, threads, request.batch, opts)
        m.extra["timing_s"]["total"] = time.perf_counter() - t0
        return m

    def _add_layers(
        self,
        m: Measurement,
        model: bytes,
        ids: set[str] | None,
        threads: int,
        batch: int,
        opts: dict[str, Any],
    ) -> None:
        from nasctl.profiler.backends.onnxruntime import profile_layers

        try:
            prof = profile_layers(
                model,
                threads=threads,
                batch=batch,
                runs=int(opts.get("per_layer_runs", 3)),
                warmup=int(opts.get("per_layer_warmup", 1)),
            )
        except Exception as e:  # whole-graph numbers stand on their own
            m.extra["per_layer_error"] = _one_line(e)
            return
        for la in prof.layers:
            la.nodes = to_graph_ids(la.nodes, ids)
            if la.kind == "fused" and len(la.nodes) == 1:  # ONNX parts of one graph node
                la.kind = "kernel"
        m.layers = prof.layers
        m.extra["timing_s"]["per_layer"] = prof.wall_s
        m.extra["layers_sum_ms"] = prof.sum_ms
        m.extra["layers_sum_ratio"] = prof.sum_ms / m.median_ms if m.median_ms else None
        if prof.unassigned:
            m.extra["layers_unassigned_nodes"] = to_graph_ids(prof.unassigned, ids)


# the other devices register themselves on import (they need Device and register_device above)
from nasctl.profiler import gpu_devices as _gpu  # noqa: E402,F401
from nasctl.profiler.backends import replay as _replay  # noqa: E402,F401
