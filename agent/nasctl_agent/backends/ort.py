"""ONNX Runtime CPU backend: whole-graph timing from a plain session, per-kernel timing from a
separate profiling session. Kernel names are the optimized graph's node names, as ORT's profiler
reports them; the optimized graph's nodes travel with the result (``engine_graph``) so the host
can map kernels back to the model's nodes.

``numpy`` and ``onnxruntime`` (extra ``nasctl-agent[ort]``) are imported lazily.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from typing import Any

from nasctl_agent.errors import MissingBackendError, ModelError, RequestError
from nasctl_agent.model import Model
from nasctl_agent.protocol import Runner

ORT_MISSING = "onnxruntime is not installed (pip install 'nasctl-agent[ort]')"

_DTYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
}


def _ort() -> Any:
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise MissingBackendError(ORT_MISSING) from e
    return ort


def ort_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


def ort_version() -> str:
    """``major.minor`` of the installed ONNX Runtime (e.g. ``"1.32"``)."""
    return ".".join(_ort().__version__.split(".")[:2])


def session_options(
    threads: int,
    *,
    profile_prefix: str | None = None,
    optimized_path: str | None = None,
    external_data: bool = False,
) -> Any:
    """Session options of the ``cpu`` device: ``threads`` intra-op threads, one inter-op thread,
    sequential execution, all graph optimizations; optionally profiling / optimized-model dump."""
    ort = _ort()
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3  # errors only: the optimized-model dump warns on every call
    if profile_prefix is not None:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    if optimized_path is not None:
        so.optimized_model_filepath = optimized_path
        if external_data:  # an optimized model over 2 GB must keep its weights outside
            so.add_session_config_entry(
                "session.optimized_model_external_initializers_file_name", "optimized.data"
            )
    return so


def create_session(model: Model, threads: int, **kw: Any) -> Any:
    """An ``InferenceSession`` on the CPU provider, from the model's bytes, or from its path when
    it has external data (ORT resolves those next to the file); failures are :class:`ModelError`."""
    ort = _ort()
    so = session_options(threads, external_data=model.has_external_data, **kw)
    src: Any = model.path if model.has_external_data else model.read_bytes()
    try:
        return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT raises its own Fail/InvalidGraph/... classes
        raise ModelError(f"ONNX Runtime cannot load the model: {_one_line(e)}") from e


def make_feeds(
    session: Any, batch: int, seed: int = 0, shapes: dict[str, list[int]] | None = None
) -> dict[str, Any]:
    """Random inputs for every session input; a symbolic dim 0 becomes ``batch``; ``shapes``
    (input name -> full shape) gives any other dynamic input its shape.

    Raises :class:`ModelError` for other unknown dimensions, input types, or a fixed batch
    dimension that differs from ``batch`` (a record must not claim a batch it did not run).
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    feeds: dict[str, Any] = {}
    for i in session.get_inputs():
        if shapes and i.name in shapes:
            shape = _given_shape(i.name, list(i.shape), shapes[i.name], batch)
        else:
            shape = _batch_shape(i.name, list(i.shape), batch)
        dtype = _DTYPES.get(i.type)
        if dtype is None:
            raise ModelError(f"input {i.name!r} has unsupported type {i.type}")
        if dtype.startswith("float"):
            feeds[i.name] = rng.standard_normal(shape).astype(dtype)
        else:
            feeds[i.name] = np.zeros(shape, dtype=dtype)
    return feeds


def _batch_shape(name: str, dims: list[Any], batch: int) -> list[int]:
    shape = []
    for k, d in enumerate(dims):
        if isinstance(d, int) and d > 0:
            if k == 0 and d != batch and len(dims) > 1:
                raise ModelError(
                    f"input {name!r} has a fixed batch of {d}, the request asks for "
                    f"batch {batch}; build the graph at that batch or export a dynamic batch"
                )
            shape.append(d)
        elif k == 0:
            shape.append(int(batch))
        else:
            raise ModelError(
                f"input {name!r} has an unknown dimension {k} ({d!r}) in shape {dims}; "
                "export the model with fixed input sizes or give its shape in the request"
            )
    return shape


def _given_shape(name: str, dims: list[Any], given: list[int], batch: int) -> list[int]:
    if len(given) != len(dims):
        raise ModelError(f"input {name!r} has rank {len(dims)}; the request's shape {given}")
    for k, (d, g) in enumerate(zip(dims, given)):
        if isinstance(d, int) and d > 0 and d != g:
            raise ModelError(f"input {name!r} dimension {k} is fixed at {d}; request gives {g}")
    if given and given[0] != batch and len(given) > 1:
        raise ModelError(f"input {name!r}: the request's shape {given} is not at batch {batch}")
    return list(given)


class OrtRunner(Runner):
    """Times ``session.run`` on pre-allocated random inputs (host clock; CPU runs synchronously).

    Attributes set by :meth:`activate`: ``session``, ``feeds``, ``session_create_s`` (seconds).
    """

    def __init__(
        self,
        model: Model,
        *,
        threads: int = 1,
        batch: int = 1,
        seed: int = 0,
        clock: str = "wall",
        shapes: dict[str, list[int]] | None = None,
    ) -> None:
        super().__init__()
        if clock not in ("wall", "thread"):
            raise RequestError(f"clock must be 'wall' or 'thread'; got {clock!r}")
        if clock == "thread" and threads != 1:
            raise RequestError("clock 'thread' needs threads=1 (kernels run on the caller)")
        self.clock = clock
        self.model = model
        self.threads = threads
        self.batch = batch
        self.seed = seed
        self.shapes = shapes
        self.session: Any = None
        self.feeds: dict[str, Any] = {}
        self.session_create_s = 0.0

    def activate_impl(self) -> None:
        t0 = time.perf_counter()
        self.session = create_session(self.model, self.threads)
        self.session_create_s = time.perf_counter() - t0
        self.feeds = make_feeds(self.session, self.batch, self.seed, self.shapes)
        self._outputs = [o.name for o in self.session.get_outputs()]
        try:
            self.step_impl()  # first run surfaces runtime errors (bad shapes) as ModelError
        except Exception as e:
            self.session = None
            raise ModelError(f"ONNX Runtime cannot run the model: {_one_line(e)}") from e

    def step_impl(self) -> None:
        self.session.run(self._outputs, self.feeds)

    def timed_step_ms(self) -> float:
        """Wall clock (latency) by default; with ``clock="thread"`` the calling thread's CPU
        time, which on a shared, oversubscribed machine excludes time the thread was preempted
        (one intra-op thread runs every kernel on the caller)."""
        if self.clock == "wall":
            return super().timed_step_ms()
        t0 = time.thread_time_ns()
        self.step_impl()
        return (time.thread_time_ns() - t0) / 1e6

    def deactivate_impl(self) -> None:
        self.session = None
        self.feeds = {}


def profile_kernels(
    model: Model,
    *,
    threads: int = 1,
    batch: int = 1,
    runs: int = 5,
    warmup: int = 2,
    seed: int = 0,
    shapes: dict[str, list[int]] | None = None,
) -> dict[str, Any]:
    """A separate profiling session: ``{"layers": [{"name", "time_ms", "extra": {"op",
    "runs"}}], "engine_graph": {...} | None, "wall_s": s}``; each kernel's time is its median
    over ``runs`` runs after ``warmup`` discarded ones. Names are ORT's kernel names."""
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="nasctl-agent-ort-") as tmp:
        opt_path = os.path.join(tmp, "optimized.onnx")
        sess = create_session(
            model, threads, profile_prefix=os.path.join(tmp, "prof"), optimized_path=opt_path
        )
        feeds = make_feeds(sess, batch, seed, shapes)
        try:
            for _ in range(warmup + runs):
                sess.run(None, feeds)
        finally:
            prof_path = sess.end_profiling()
        with open(prof_path, encoding="utf-8") as f:
            events = json.load(f)
        graph = optimized_nodes(opt_path)
    per_kernel = kernel_times_ms(events, skip_runs=warmup)
    layers = [
        {
            "name": name,
            "time_ms": statistics.median(rec["times"]),
            "extra": {"op": rec["op"], "runs": len(rec["times"])},
        }
        for name, rec in per_kernel.items()
    ]
    return {
        "layers": layers,
        "engine_graph": {"format": "ort-optimized-nodes", "data": graph} if graph else None,
        "wall_s": time.perf_counter() - t0,
    }


def optimized_nodes(path: str) -> list[dict[str, Any]] | None:
    """Nodes of ORT's optimized-model dump as JSON (name, op_type, domain, inputs, outputs,
    scalar/list attributes); None without the ``onnx`` package."""
    try:
        import onnx
    except ImportError:
        return None
    m = onnx.load(path, load_external_data=False)
    out: list[dict[str, Any]] = []
    for n in m.graph.node:
        attrs: dict[str, Any] = {}
        for a in n.attribute:
            if a.type in (
                onnx.AttributeProto.INT,
                onnx.AttributeProto.FLOAT,
                onnx.AttributeProto.STRING,
                onnx.AttributeProto.INTS,
                onnx.AttributeProto.FLOATS,
                onnx.AttributeProto.STRINGS,
            ):
                v = onnx.helper.get_attribute_value(a)
                if isinstance(v, bytes):
                    v = v.decode("utf-8", errors="replace")
                elif isinstance(v, list):
                    v = [
                        x.decode("utf-8", errors="replace") if isinstance(x, bytes) else x
                        for x in v
                    ]
                attrs[a.name] = v
        out.append(
            {
                "name": n.name,
                "op_type": n.op_type,
                "domain": n.domain,
                "inputs": list(n.input),
                "outputs": list(n.output),
                "attributes": attrs,
            }
        )
    return out


def kernel_times_ms(events: list[dict[str, Any]], skip_runs: int = 0) -> dict[str, dict[str, Any]]:
    """Parse ORT's profiling JSON: kernel (optimized-graph node) name -> {"op", "times" (ms per
    run)}, in execution order, ignoring the first ``skip_runs`` runs.

    Node events have ``cat == "Node"`` and names ``<node>_kernel_time`` (``dur`` in µs); a run
    ends with a ``model_run`` session event.
    """
    out: dict[str, dict[str, Any]] = {}
    run = 0
    for ev in events:
        if ev.get("cat") == "Session" and ev.get("name") == "model_run":
            run += 1
            continue
        name = ev.get("name", "")
        if ev.get("cat") != "Node" or not name.endswith("_kernel_time") or run < skip_runs:
            continue
        node = name[: -len("_kernel_time")]
        rec = out.setdefault(node, {"op": ev.get("args", {}).get("op_name", ""), "runs": {}})
        rec["runs"][run] = rec["runs"].get(run, 0.0) + float(ev.get("dur", 0)) / 1e3
    for rec in out.values():  # a node inside a loop runs several times per run: sum per run
        rec["times"] = list(rec.pop("runs").values())
    return out


def _pb(field: int, value: bytes | int | str) -> bytes:
    """One protobuf field: an int as a varint, bytes/str length-delimited."""

    def varint(n: int) -> bytes:
        out = b""
        while True:
            b, n = n & 0x7F, n >> 7
            out += bytes([b | (0x80 if n else 0)])
            if not n:
                return out

    if isinstance(value, int):
        return varint(field << 3) + varint(value)
    data = value.encode() if isinstance(value, str) else value
    return varint(field << 3 | 2) + varint(len(data)) + data


def relu_model_bytes() -> bytes:
    """A one-Relu ONNX model (x[1] -> y[1], opset 17, IR 8), written without the onnx package."""
    shape = _pb(2, _pb(1, _pb(1, 1)))  # TensorShapeProto { dim { dim_value: 1 } }
    tensor_type = _pb(1, _pb(1, 1) + shape)  # TypeProto { tensor_type { elem_type FLOAT } }
    x = _pb(1, "x") + _pb(2, tensor_type)
    y = _pb(1, "y") + _pb(2, tensor_type)
    node = _pb(1, "x") + _pb(2, "y") + _pb(4, "Relu")
    graph = _pb(1, node) + _pb(2, "warm") + _pb(11, x) + _pb(12, y)
    return _pb(1, 8) + _pb(7, graph) + _pb(8, _pb(1, "") + _pb(2, 17))


_WARM: list[bool] = []


def warm_runtime(threads: int) -> None:
    """Once per process, create and run a one-Relu session: ONNX Runtime's environment, kernel
    registry and allocators come into being on the first session, so that a process's first
    model is not charged for them (a fresh process measured the same way: about 12 MB)."""
    if _WARM:
        return
    import numpy as np

    sess = _ort().InferenceSession(
        relu_model_bytes(), session_options(threads), providers=["CPUExecutionProvider"]
    )
    sess.run(None, {"x": np.ones(1, dtype=np.float32)})
    _WARM.append(True)


def trim_heap() -> bool:
    """Give freed heap memory back to the OS (glibc ``malloc_trim(0)``), so that a model's
    allocations show as RSS growth instead of reusing pages an earlier model left resident;
    False where there is no glibc."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        return False
    return True


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (Linux: ``5`` to ``/proc/self/clear_refs``), so that the
    peak read after a measurement is that measurement's; False where it cannot be reset."""
    trim_heap()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def current_rss_bytes() -> int | None:
    """Resident set size of this process now (bytes, ``VmRSS``); None where absent (not Linux)."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def peak_rss_bytes() -> int | None:
    """Peak resident set size of this process (bytes): ``VmHWM`` of ``/proc/self/status``
    (reset by :func:`reset_peak_rss`), else ``getrusage``'s lifetime peak; None where absent."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource
        import sys

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak if sys.platform == "darwin" else peak * 1024)
    except (ImportError, OSError):
        return None


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text[:300] if text else type(e).__name__
