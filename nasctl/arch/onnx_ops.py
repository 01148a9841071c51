"""ONNX op -> graph vocabulary mapping, used by :mod:`nasctl.arch.onnx_read`.

Each mapper gets a :class:`Ctx` (constant values, tensor shapes) and one ONNX node and returns
``(op, attrs)``. Anything that cannot be mapped with confidence becomes ``"other"`` with the ONNX
op type in ``attrs["onnx_op"]``; mapping never raises on a valid model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

Shape = tuple[int, ...]


@dataclass
class Ctx:
    """What a mapper may look at.

    Attributes:
        consts: tensor name -> TensorProto for initializers and Constant outputs (data may be
            external and unloaded: use :meth:`value`, which returns None then).
        shapes: tensor name -> shape (``-1`` for unknown dims), from shape inference.
        base_dir: folder for external data of small constants.
    """

    consts: dict[str, onnx.TensorProto]
    shapes: dict[str, Shape]
    base_dir: str = ""
    _values: dict[str, np.ndarray | None] = field(default_factory=dict)

    def is_const(self, name: str) -> bool:
        return name in self.consts

    def const_shape(self, name: str) -> Shape | None:
        """Shape of a constant or of any tensor with an inferred shape."""
        if name in self.consts:
            return tuple(int(d) for d in self.consts[name].dims)
        return self.shapes.get(name)

    def value(self, name: str, max_elems: int = 4096) -> np.ndarray | None:
        """Value of a small constant, or None (not a constant, too big, external and missing)."""
        if name not in self.consts:
            return None
        if name not in self._values:
            t = self.consts[name]
            n = int(np.prod(t.dims)) if len(t.dims) else 1
            try:
                self._values[name] = (
                    numpy_helper.to_array(t, self.base_dir) if n <= max_elems else None
                )
            except Exception:  # noqa: BLE001 - unreadable constant: treat as unknown
                self._values[name] = None
        return self._values[name]


def node_attrs(node: onnx.NodeProto) -> dict[str, Any]:
    """ONNX attributes as plain Python values (graphs and tensors left out)."""
    out: dict[str, Any] = {}
    for a in node.attribute:
        if a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
            continue
        if a.type in (onnx.AttributeProto.TENSOR, onnx.AttributeProto.SPARSE_TENSOR):
            continue
        v = helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode("utf-8", "replace")
        elif isinstance(v, list):
            v = [x.decode("utf-8", "replace") if isinstance(x, bytes) else x for x in v]
        out[a.name] = v
    return out


def _squash(v: list[int]) -> int | list[int]:
    """[3, 3] -> 3 (as the graph builder writes square kernels); else the list."""
    v = [int(x) for x in v]
    return v[0] if len(v) == 2 and v[0] == v[1] else v


def _eps(a: dict[str, Any]) -> float:
    """epsilon attr without float32 noise (9.99999974e-06 -> 1e-05)."""
    return float(f"{float(a.get('epsilon', 1e-5)):.6g}")


def _in_shape(ctx: Ctx, node: onnx.NodeProto, i: int = 0) -> Shape:
    return ctx.shapes.get(node.input[i], ()) if len(node.input) > i else ()


def _norm_axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 and rank > 0 else axis


def _auto_pads(a: dict[str, Any], ctx: Ctx, node: onnx.NodeProto, k: list[int]) -> list[int]:
    """Explicit [top, left, bottom, right] pads, resolving auto_pad SAME_* from shapes."""
    if "pads" in a:
        return [int(p) for p in a["pads"]]
    mode = a.get("auto_pad", "NOTSET")
    nd = len(k)
    if mode not in ("SAME_UPPER", "SAME_LOWER"):
        return [0] * (2 * nd)
    xs, ys = _in_shape(ctx, node), ctx.shapes.get(node.output[0], ())
    strides = a.get("strides", [1] * nd)
    dil = a.get("dilations", [1] * nd)
    begins, ends = [], []
    for d in range(nd):
        if len(xs) != nd + 2 or len(ys) != nd + 2 or xs[2 + d] < 0 or ys[2 + d] < 0:
            begins.append(0)
            ends.append(0)
            continue
        total = max(0, (ys[2 + d] - 1) * strides[d] + (k[d] - 1) * dil[d] + 1 - xs[2 + d])
        small, big = total // 2, total - total // 2
        begins.append(small if mode == "SAME_UPPER" else big)
        ends.append(big if mode == "SAME_UPPER" else small)
    return begins + ends


def _conv(ctx: Ctx, node: onnx.NodeProto, a: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    ws = ctx.const_shape(node.input[1]) if len(node.input) > 1 else None
    if not ws or len(ws) < 3 or any(d < 0 for d in ws):
        return "other", {"onnx_op": "Conv"}
    g = int(a.get("group", 1))
    xs = _in_shape(ctx, node)
    cin = xs[1] if len(xs) > 1 and xs[1] > 0 else ws[1] * g
    k = [int(d) for d in a.get("kernel_shape", ws[2:])]
    nd = len(k)
    attrs = {
        "kernel": _squash(k),
        "stride": _squash(a.get("strides", [1] * nd)),
        "dilation": _squash(a.get("dilations", [1] * nd)),
        "groups": g,
        "pads": _auto_pads(a, ctx, node, k),
        "in_channels": int(cin),
        "out_channels": int(ws[0]),
        "bias": len(node.input) > 2 and node.input[2] != "",
    }
    if g == 1:
        op = "conv"
    elif g == cin:
        op = "dwconv"
    else:
        op = "gconv"
    return op, attrs


def _gemm(ctx: Ctx, node: onnx.NodeProto, a: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    ws = ctx.const_shape(node.input[1])
    if not ctx.is_const(node.input[1]) or not ws or len(ws) != 2:
        return "matmul", {"onnx_op": "Gemm"}
    fout, fin = (ws[0], ws[1]) if a.get("transB", 0) else (ws[1], ws[0])
    bias = len(node.input) > 2 and node.input[2] != ""
    return "linear", {"in_features": int(fin), "out_features": int(fout), "bias": bias}


def _matmul(ctx: Ctx, node: onnx.NodeProto, a: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    ws = ctx.const_shape(node.input[1])
    if ctx.is_const(node.input[1]) and ws and len(ws) == 2:
        return "linear", {"in_features": int(ws[0]), "out_features": int(ws[1]), "bias": False}
    return "matmul", {}


def _batchnorm(ctx: Ctx, node: onnx.NodeProto, a: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    s = ctx.const_shape(node.input[1]) or _in_shape(ctx, node)[1:2]
    c = int(s[0]) if s else -1
    return "batchnorm", {"channels": c, "eps": _eps(a)}


def _clip(ctx: Ctx, node: onnx.NodeProto, a: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    lo, hi = a.get("min"), a.get("max")  # opset < 11
    if len(node.input) > 1 and node.input[1]:
        v = ctx.value(node.input[1])
        lo = None if v is None else float(v.reshape(-1)[0])
    if len(node.input) > 2 and node.input[2]:
        v = ctx.value(node.input[2])
        hi = None if v is None else float(v.reshape(-1)[0])
    if lo == 0.0 and hi == 6.0:
        return "relu6", {}
    return "other", {"onnx_op": "Clip", "min": lo, "max": hi}


def _hardsigmoid(ctx: Ctx, node: onnx.NodeProto, a: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    alpha, beta = float(a.get("alpha", 0.2)), float(a.get("beta", 0.5))
    if abs(alpha - 1 / 6) < 1e-6 and abs(beta - 0.5) < 1e-6:
        return "hardsigmoid", {}
    return "hardsigmoid", {"alpha": alpha, "beta": beta}


def _axis_op(op: str, default: int) -> Callable[..., tuple[str, dict[str, Any]]]:
    def m(ctx: Ctx, node: onnx.NodeProto, a: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        rank = len(_in_shape(ctx, node))
        return op, {"axis": _norm_axis(int(a.get("axis", default)), rank)}

    return m


def _split(ctx: Ctx, node: onnx.NodeProto, a: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    rank = len(_in_shape(ctx, node))
    axis = _norm_axis(int(a.get("axis", 0)), rank)
    sizes = a.get("split")
    if len(node.input) > 1 and node.input[1]:
        v = ctx.value(node.input[1])
        sizes = None if v is None else [int(x) for x in v.reshape(-1)]
    if sizes is None:
        outs = [ctx.shapes.get(o, ()) for o in node.output]
        if all(len(s) > axis and s[axis] >= 0 for s in outs):
            sizes = [int(s[axis]) for s in outs]
    return "split", {"axis": axis, "sizes": sizes}


def _pool(ctx: Ctx, node: onnx.NodeProto, a: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    k = [int(v) for v in a.get("kernel_shape", [1, 1])]
    nd = len(k)
    attrs: dict[str, Any] = {
        "kernel": _squash(k),
        "stride": _squash(a.get("strides", [1] * nd)),
        "pads": _auto_pads(a, ctx, node, k),
    }
    if a.get("ceil_mode", 0):
        attrs["ceil_mode"] = True
    if node.op_type == "AveragePool":
        attrs["count_include_pad"] = bool(a.get("count_include_pad", 0))
        return "avgpool", attrs
    if any(d != 1 for d in a.get("dilations", [1] * nd)):
        attrs["dilation"] = _squash(a["dilations"])
    return "maxpool", attrs


def _reduce_mean(ctx: Ctx, node: onnx.NodeProto, a: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    axes = a.get("axes")
    if axes is None and len(node.input) > 1 and node.input[1]:
        v = ctx.value(node.input[1])
        axes = None if v is None else [int(x) for x in v.reshape(-1)]
    rank = len(_in_shape(ctx, node))
    if axes is not None and rank >= 3:
        if sorted(_norm_axis(x, rank) for x in axes) == list(range(2, rank)):
            return "globalavgpool", {"keepdims": bool(a.get("keepdims", 1))}
    return "other", {"onnx_op": node.op_type, "axes": axes}


def _reshape(ctx: Ctx, node: onnx.NodeProto, a: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    attrs: dict[str, Any] = {}
    if node.op_type != "Reshape":
        attrs["onnx_op"] = node.op_type
    out = ctx.shapes.get(node.output[0])
    if out and all(d > 0 for d in out):
        attrs["shape"] = [int(d) for d in out]
    return "reshape", attrs


def _resize(ctx: Ctx, node: onnx.NodeProto, a: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    attrs: dict[str, Any] = {"mode": str(a.get("mode", "nearest"))}
    xs, ys = _in_shape(ctx, node), ctx.shapes.get(node.output[0], ())
    if len(xs) == len(ys) >= 3 and all(d > 0 for d in (*xs, *ys)):
        ratios = {ys[d] / xs[d] for d in range(2, len(xs))}
        if len(ratios) == 1 and (r := ratios.pop()) == int(r):
            attrs["scale"] = int(r)
    return "resize", attrs


def _pad(ctx: Ctx, node: onnx.NodeProto, a: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    pads = a.get("pads")
    if len(node.input) > 1 and node.input[1]:
        v = ctx.value(node.input[1])
        pads = None if v is None else [int(x) for x in v.reshape(-1)]
    attrs: dict[str, Any] = {"mode": str(a.get("mode", "constant"))}
    if pads is not None and len(pads) == 8 and pads[0] == pads[1] == pads[4] == pads[5] == 0:
        pads = [pads[2], pads[3], pads[6], pads[7]]  # [top, left, bottom, right]
    attrs["pads"] = pads
    return "pad", attrs


def _transpose(ctx: Ctx, node: onnx.NodeProto, a: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    perm = a.get("perm")
    if perm is None:
        perm = list(reversed(range(len(_in_shape(ctx, node)))))
    return "transpose", {"perm": [int(p) for p in perm]}


def _layernorm(ctx: Ctx, node: onnx.NodeProto, a: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return "layernorm", {"axis": int(a.get("axis", -1)), "eps": _eps(a)}


def _fixed(op: str) -> Callable[..., tuple[str, dict[str, Any]]]:
    def m(ctx: Ctx, node: onnx.NodeProto, a: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return op, {}

    return m


MAPPERS: dict[str, Callable[[Ctx, onnx.NodeProto, dict[str, Any]], tuple[str, dict[str, Any]]]] = {
    "Conv": _conv,
    "Gemm": _gemm,
    "MatMul": _matmul,
    "BatchNormalization": _batchnorm,
    "Relu": _fixed("relu"),
    "Clip": _clip,
    "HardSwish": _fixed("hardswish"),
    "HardSigmoid": _hardsigmoid,
    "Sigmoid": _fixed("sigmoid"),
    "Gelu": _fixed("gelu"),
    "Add": _fixed("add"),
    "Sum": _fixed("add"),
    "Mul": _fixed("mul"),
    "Concat": _axis_op("concat", 1),
    "Split": _split,
    "MaxPool": _pool,
    "AveragePool": _pool,
    "GlobalAveragePool": _fixed("globalavgpool"),
    "GlobalMaxPool": _fixed("globalmaxpool"),
    "ReduceMean": _reduce_mean,
    "Reshape": _reshape,
    "Squeeze": _reshape,
    "Unsqueeze": _reshape,
    "Flatten": _axis_op("flatten", 1),
    "Transpose": _transpose,
    "Resize": _resize,
    "Upsample": _resize,
    "Softmax": _axis_op("softmax", -1),
    "LayerNormalization": _layernorm,
    "Pad": _pad,
    "Identity": _fixed("identity"),
    "Dropout": _fixed("identity"),
}

#: ONNX element types of float activations; a node whose output is e.g. int64 is a shape
#: computation and is kept as ``other`` whatever its op type.
FLOAT_TYPES = frozenset(
    {
        onnx.TensorProto.FLOAT,
        onnx.TensorProto.FLOAT16,
        onnx.TensorProto.BFLOAT16,
        onnx.TensorProto.DOUBLE,
    }
)
NON_ACTIVATION_TYPES = frozenset(
    {onnx.TensorProto.INT64, onnx.TensorProto.INT32, onnx.TensorProto.BOOL}
)


def map_node(ctx: Ctx, node: onnx.NodeProto, out_type: int | None) -> tuple[str, dict[str, Any]]:
    """Vocabulary op and attrs of one ONNX node; ``"other"`` when unsure. Never raises."""
    a = node_attrs(node)
    domain = node.domain if node.domain not in ("", "ai.onnx") else ""
    mapper = MAPPERS.get(node.op_type) if not domain else None
    if mapper is None or (out_type in NON_ACTIVATION_TYPES):
        attrs: dict[str, Any] = {"onnx_op": node.op_type}
        if domain:
            attrs["domain"] = domain
        return "other", attrs
    try:
        return mapper(ctx, node, a)
    except Exception as e:  # noqa: BLE001 - a mapping bug must not make a valid model unreadable
        return "other", {"onnx_op": node.op_type, "map_error": f"{type(e).__name__}: {e}"}
