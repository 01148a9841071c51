"""An independent measurement of a model's peak memory under ONNX Runtime, for
``bench/bench_memory_zoo.py``: nothing from nasctl or nasctl_agent, one fresh process per run.

The parent starts this script twice per model; each run prints its own process's peak resident
set size when it is done (``VmHWM`` of ``/proc/self/status``: the high-water mark of this
process's memory since its ``exec``, never reset; no ``clear_refs``, no baseline taken inside):

- ``--baseline``: Python, numpy and ONNX Runtime imported, the runtime's environment created by
  one session of a one-Relu model (run once), the model file read;
- without it: the same, then a session of the model (the cpu device's settings: 1 intra-op
  thread, 1 inter-op thread, sequential, all graph optimizations, the CPU arena on, the
  model's bytes as input) run ``--runs`` times on random N(0,1) inputs at batch 1.

(Not ``os.wait4``'s ``ru_maxrss``: on Linux that keeps the high-water mark of the image the
child was forked from, so a parent bigger than the child, one that imported torch, hides it.)

Model peak = peak(model) - peak(baseline): what creating and running the session added.

    python bench/peak_rss_fresh.py MODEL.onnx [--baseline] [--runs 10] [--no-arena]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper


def options(arena: bool) -> ort.SessionOptions:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.enable_cpu_mem_arena = arena
    so.log_severity_level = 3
    return so


def warm_runtime() -> None:
    """Create ORT's environment (thread pools, logging, kernel registry) with a one-Relu model."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu", [x], [y])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    s = ort.InferenceSession(
        m.SerializeToString(), options(True), providers=["CPUExecutionProvider"]
    )
    s.run(None, {"x": np.ones((1, 4), np.float32)})


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--baseline", action="store_true")
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--no-arena", action="store_true")
    a = ap.parse_args()
    warm_runtime()
    with open(a.model, "rb") as f:
        data = f.read()
    if not a.baseline:
        run_model(data, a.runs, arena=not a.no_arena)
    print(peak_bytes())
    return 0


def peak_bytes() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise SystemExit("no VmHWM in /proc/self/status (Linux only)")


def run_model(data: bytes, runs: int, arena: bool) -> None:
    s = ort.InferenceSession(data, options(arena), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {}
    for i in s.get_inputs():
        shape = [1 if not isinstance(d, int) else d for d in i.shape]
        feeds[i.name] = rng.standard_normal(shape).astype(np.float32)
    for _ in range(runs):
        s.run(None, feeds)


if __name__ == "__main__":
    sys.exit(main())
