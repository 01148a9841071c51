"""Probe (issue 16): a kernel measured alone, as ``nasctl profile --kernels`` measures a sample,
vs the same kernel repeated in a chain of 10 (time per link = chain / 10): what a kernel costs
inside a network. ONNX Runtime, 1 thread, all graph optimizations, median of 300 runs after 30
warm-up runs, wall clock (the cpu device's session options, without its protocol).

    flock /work/notes/cpu0.lock taskset -c 0 .venv/bin/python bench/probe_kernel_chain.py
"""

from __future__ import annotations

import sys
import time

import numpy as np
import onnxruntime as ort

from nasctl.arch.graph import Graph, GraphBuilder
from nasctl.arch.onnx_io import to_onnx


def _session(g: Graph) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(
        to_onnx(g).SerializeToString(), so, providers=["CPUExecutionProvider"]
    )


def median_ms(g: Graph, shape: tuple[int, ...], runs: int = 300) -> float:
    s = _session(g)
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    name = s.get_inputs()[0].name
    for _ in range(30):
        s.run(None, {name: x})
    ts = []
    for _ in range(runs):
        a = time.perf_counter()
        s.run(None, {name: x})
        ts.append(time.perf_counter() - a)
    return float(np.median(ts)) * 1e3


def chain(kind: str, c: int, h: int, n: int) -> tuple[Graph, tuple[int, ...]]:
    """``n`` links of ``kind``: sigmoid, split (halves swapped by a concat) or fc (c -> c)."""
    shape = (1, c, h, h) if kind != "fc" else (1, c)
    b = GraphBuilder(f"{kind}{n}", shape)
    x = b.input
    for i in range(n):
        if kind == "sigmoid":
            x = b.act(x, "sigmoid", id=f"s{i}")
        elif kind == "fc":
            x = b.linear(x, c, id=f"l{i}")
        else:
            p, q = b.split(x, [c // 2, c // 2], id=f"sp{i}")
            x = b.concat([q, p], id=f"c{i}")
    return b.build([x]), shape


CASES = (
    ("sigmoid", 24, 56),
    ("sigmoid", 96, 28),
    ("split", 48, 56),
    ("split", 192, 14),
    ("fc", 1280, 1),
    ("fc", 512, 1),
)


def main() -> int:
    for kind, c, h in CASES:
        alone = median_ms(*chain(kind, c, h, 1))
        link = median_ms(*chain(kind, c, h, 10)) / 10
        print(
            f"{kind:7s} c={c:5d} h={h:3d}: alone {alone * 1e3:7.1f} us, "
            f"per link of 10 {link * 1e3:7.1f} us, ratio {link / alone:.2f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
