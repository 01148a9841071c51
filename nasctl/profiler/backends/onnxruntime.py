"""ONNX Runtime CPU backend: whole-graph timing from a plain session, per-layer timing from a
separate profiling session, mapped back to the ONNX graph's nodes
(:mod:`nasctl.profiler.ort_names`).

``onnxruntime`` is imported lazily (inside functions) so that importing the profiler stays cheap.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nasctl.errors import BackendError
from nasctl.profiler.protocol import Runner
from nasctl.records import LayerTiming

_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


def ort_version() -> str:
    """``major.minor`` of the installed ONNX Runtime (e.g. ``"1.32"``)."""
    import onnxruntime as ort

    return ".".join(ort.__version__.split(".")[:2])


def session_options(
    threads: int, *, profile_prefix: str | None = None, optimized_path: str | None = None
) -> Any:
    """Session options of the ``cpu`` device: ``threads`` intra-op threads, one inter-op thread,
    sequential execution, all graph optimizations; optionally profiling / optimized-model dump."""
    import onnxruntime as ort

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
    return so


def create_session(model: bytes, threads: int, **kw: Any) -> Any:
    """An ``InferenceSession`` on the CPU provider; ORT failures become :class:`BackendError`."""
    import onnxruntime as ort

    try:
        return ort.InferenceSession(
            model, session_options(threads, **kw), providers=["CPUExecutionProvider"]
        )
    except Exception as e:  # ORT raises its own Fail/InvalidGraph/... classes
        raise BackendError(f"ONNX Runtime cannot load the model: {_one_line(e)}") from e


def make_feeds(session: Any, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs for every session input; symbolic dim 0 becomes ``batch``.

    Raises :class:`BackendError` for other unknown dimensions, input types, or a fixed batch
    dimension that differs from ``batch`` (a record must not claim a batch it did not run).
    """
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for i in session.get_inputs():
        shape = []
        for k, d in enumerate(i.shape):
            if isinstance(d, int) and d > 0:
                if k == 0 and d != batch and len(i.shape) > 1:
                    raise BackendError(
                        f"input {i.name!r} has a fixed batch of {d}, the request asks for "
                        f"batch {batch}; build the graph at that batch or export a dynamic batch"
                    )
                shape.append(d)
            elif k == 0:
                shape.append(int(batch))
            else:
                raise BackendError(
                    f"input {i.name!r} has an unknown dimension {k} ({d!r}) in shape {i.shape}; "
                    "export the model with fixed input sizes"
                )
        dtype = _DTYPES.get(i.type)
        if dtype is None:
            raise BackendError(f"input {i.name!r} has unsupported type {i.type}")
        if np.issubdtype(dtype, np.floating):
            feeds[i.name] = rng.standard_normal(shape).astype(dtype)
        else:
            feeds[i.name] = np.zeros(shape, dtype=dtype)
    return feeds


class OrtRunner(Runner):
    """Times ``session.run`` on pre-allocated random inputs (host clock; CPU runs synchronously).

    Attributes set by :meth:`activate`: ``session``, ``feeds``, ``session_create_s`` (seconds).
    """

    def __init__(
        self,
        model: bytes,
        *,
        threads: int = 1,
        batch: int = 1,
        seed: int = 0,
        clock: str = "wall",
    ) -> None:
        super().__init__()
        if clock not in ("wall", "thread"):
            raise BackendError(f"clock must be 'wall' or 'thread'; got {clock!r}")
        if clock == "thread" and threads != 1:
            raise BackendError("clock='thread' needs threads=1 (kernels run on the caller)")
        self.clock = clock
        self.model = model
        self.threads = threads
        self.batch = batch
        self.seed = seed
        self.session: Any = None
        self.feeds: dict[str, np.ndarray] = {}
        self.session_create_s = 0.0

    def activate_impl(self) -> None:
        t0 = time.perf_counter()
        self.session = create_session(self.model, self.threads)
        self.session_create_s = time.perf_counter() - t0
        self.feeds = make_feeds(self.session, self.batch, self.seed)
        self._outputs = [o.name for o in self.session.get_outputs()]
        try:
            self.step_impl()  # first run surfaces runtime errors (bad shapes) as BackendError
        except Exception as e:
            self.session = None
            raise BackendError(f"ONNX Runtime cannot run the model: {_one_line(e)}") from e

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


@dataclass
class LayerProfile:
    """Per-layer result of :func:`profile_layers`: layers in execution order (median over runs,
    ms), the sum, and wall time of the profiling pass (seconds)."""

    layers: list[LayerTiming]
    sum_ms: float
    runs: int
    wall_s: float
    unassigned: list[str] = field(default_factory=list)


def profile_layers(
    model: bytes, *, threads: int = 1, batch: int = 1, runs: int = 5, warmup: int = 2, seed: int = 0
) -> LayerProfile:
    """Run a separate profiling session and return per-kernel times mapped to graph nodes.

    The first ``warmup`` runs are discarded; each kernel's time is the median over ``runs``.
    """
    import onnx

    from nasctl.profiler.ort_names import map_kernels

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="nasctl-ort-") as tmp:
        opt_path = os.path.join(tmp, "optimized.onnx")
        sess = create_session(
            model, threads, profile_prefix=os.path.join(tmp, "prof"), optimized_path=opt_path
        )
        feeds = make_feeds(sess, batch, seed)
        try:
            for _ in range(warmup + runs):
                sess.run(None, feeds)
        finally:
            prof_path = sess.end_profiling()
        with open(prof_path, encoding="utf-8") as f:
            events = json.load(f)
        optimized = onnx.load(opt_path, load_external_data=False)
    original = onnx.load_from_string(model)
    per_kernel = kernel_times_ms(events, skip_runs=warmup)
    mapping = map_kernels(original, optimized)
    layers: list[LayerTiming] = []
    for name, times in per_kernel.items():
        info = mapping.kernels.get(name)
        layers.append(
            LayerTiming(
                name=name,
                time_ms=statistics.median(times["times"]),
                nodes=list(info.nodes) if info else [],
                kind=info.kind if info else "unknown",
                extra={"op": times["op"], **(info.extra if info else {})},
            )
        )
    return LayerProfile(
        layers=layers,
        sum_ms=sum(la.time_ms for la in layers),
        runs=runs,
        wall_s=time.perf_counter() - t0,
        unassigned=list(mapping.unassigned),
    )


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


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text[:300] if text else type(e).__name__
