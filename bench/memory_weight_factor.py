"""How many bytes ONNX Runtime (cpu device) holds per byte of FP32 weights, per op type: one-op
graphs whose weights dominate (tiny activations), each measured by the cpu device's
fresh-process memory probe (:func:`nasctl_agent.memprobe.measure_fresh`). Prints, per graph,
the weight MB, the measured model peak MB and the ratio; the slope between two sizes of the same
op (peak difference / weight difference) removes the per-session constant.

    PYTHONPATH=$PWD:$PWD/agent nice -n 19 .venv/bin/python bench/memory_weight_factor.py [--json F]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from nasctl_agent.memprobe import measure_fresh
from onnx import TensorProto, helper, numpy_helper


def _model(nodes, inits, x_shape, y_shape) -> onnx.ModelProto:
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)],
        [numpy_helper.from_array(a, n) for n, a in inits.items()],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def _w(*shape: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32)


def gemm(n_in: int, n_out: int) -> onnx.ModelProto:
    """torch's Linear export: Gemm(x, W[out, in], b, transB=1)."""
    node = helper.make_node("Gemm", ["x", "W", "b"], ["y"], transB=1)
    return _model([node], {"W": _w(n_out, n_in), "b": _w(n_out)}, [1, n_in], [1, n_out])


def matmul(n_in: int, n_out: int) -> onnx.ModelProto:
    node = helper.make_node("MatMul", ["x", "W"], ["y"])
    return _model([node], {"W": _w(n_in, n_out)}, [1, n_in], [1, n_out])


def conv(cin: int, cout: int, k: int, h: int, groups: int = 1) -> onnx.ModelProto:
    node = helper.make_node(
        "Conv", ["x", "W", "b"], ["y"], kernel_shape=[k, k], pads=[k // 2] * 4, group=groups
    )
    inits = {"W": _w(cout, cin // groups, k, k), "b": _w(cout)}
    return _model([node], inits, [1, cin, h, h], [1, cout, h, h])


def chain(op: str, n: int, c: int, k: int = 3, h: int = 7) -> onnx.ModelProto:
    """``n`` layers of the same size in a row: the slope over ``n`` is what each weight byte
    costs once the session is built, the rest what building it costs on top (transients)."""
    nodes, inits, x = [], {}, "x"
    for i in range(n):
        y = "y" if i == n - 1 else f"t{i}"
        if op == "gemm":
            nodes.append(helper.make_node("Gemm", [x, f"W{i}", f"b{i}"], [y], transB=1))
            inits[f"W{i}"] = _w(c, c)
        else:
            nodes.append(helper.make_node(
                "Conv", [x, f"W{i}", f"b{i}"], [y], kernel_shape=[k, k], pads=[k // 2] * 4
            ))  # fmt: skip
            inits[f"W{i}"] = _w(c, c, k, k)
        inits[f"b{i}"] = _w(c)
        x = y
    shape = [1, c] if op == "gemm" else [1, c, h, h]
    return _model(nodes, inits, shape, shape)


CASES = {
    "gemm chain 1x 2048": lambda: chain("gemm", 1, 2048),
    "gemm chain 2x 2048": lambda: chain("gemm", 2, 2048),
    "gemm chain 4x 2048": lambda: chain("gemm", 4, 2048),
    "conv chain 1x 512": lambda: chain("conv", 1, 512),
    "conv chain 2x 512": lambda: chain("conv", 2, 512),
    "conv chain 4x 512": lambda: chain("conv", 4, 512),
    "conv chain 8x 512": lambda: chain("conv", 8, 512),
    "conv1x1 chain 4x 1024": lambda: chain("conv", 4, 1024, k=1),
    "gemm 4096x4096": lambda: gemm(4096, 4096),
    "gemm 9216x4096": lambda: gemm(9216, 4096),
    "gemm 25088x2048": lambda: gemm(25088, 2048),
    "matmul 4096x4096": lambda: matmul(4096, 4096),
    "matmul 9216x4096": lambda: matmul(9216, 4096),
    "conv3x3 512->512 h7": lambda: conv(512, 512, 3, 7),
    "conv3x3 1024->1024 h7": lambda: conv(1024, 1024, 3, 7),
    "conv1x1 2048->2048 h7": lambda: conv(2048, 2048, 1, 7),
    "conv1x1 4096->4096 h1": lambda: conv(4096, 4096, 1, 1),
    "conv3x3 g32 2048->2048 h7": lambda: conv(2048, 2048, 3, 7, groups=32),
    "conv3x3 g32 4096->4096 h7": lambda: conv(4096, 4096, 3, 7, groups=32),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path)
    ap.add_argument("--only", default="")
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for name, make in CASES.items():
            if args.only and args.only not in name:
                continue
            m = make()
            wbytes = sum(numpy_helper.to_array(t).nbytes for t in m.graph.initializer)
            p = Path(d) / "m.onnx"
            onnx.save(m, p)
            rec = measure_fresh(str(p), threads=1, batch=1, seed=0, shapes=None)
            peak = rec.get("model_peak_bytes")
            row = {"case": name, "weight_mb": wbytes / 1e6,
                   "peak_mb": None if peak is None else peak / 1e6, "memory": rec}  # fmt: skip
            rows.append(row)
            ratio = "-" if peak is None else f"{peak / wbytes:.3f}"
            print(f"| {name} | {wbytes / 1e6:.1f} | {row['peak_mb']} | {ratio} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
