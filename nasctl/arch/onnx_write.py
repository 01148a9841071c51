"""Write a :class:`~nasctl.arch.graph.Graph` to ONNX directly with ``onnx.helper``.

Node names equal graph node ids (``"/s2/b1/dw"``) so that per-layer reports of a runtime map back
to graph nodes. Ops that need several ONNX nodes (``swish``, ``gelu``, ``linear`` on rank > 2) name
their inner nodes ``"<id>/<part>"`` and the last node ``<id>``.

Learnable tensors are initializers named ``"<id>.weight"``, ``"<id>.bias"`` and, for batch norm,
``"<id>.running_mean"``/``"<id>.running_var"``, in PyTorch layout (the same keys and shapes as
:meth:`nasctl.arch.torch_module.GraphModule.export_params`). Constants (clip bounds, reshape
shapes) are initializers named ``"<id>.<what>"`` and are never taken from ``params``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from nasctl.arch.graph import Graph, Node, _pair
from nasctl.errors import GraphError

Params = dict[str, np.ndarray]


_POOL_SIZE = 1 << 20
_POOL: np.ndarray | None = None


def _uniform(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` uniform values in [-1, 1): a window, at an offset drawn from ``rng``, into a fixed
    pool of 2^20 random values (drawn once per process). Drawing fresh values for a 37 M-param
    network takes ~0.5 s; this is a copy. The values only need to be well scaled and free of
    structure a runtime could exploit (zeros, denormals), not independent across tensors."""
    global _POOL
    if _POOL is None:
        pool = np.random.default_rng(20240601).random(_POOL_SIZE, dtype=np.float32) * 2 - 1
        _POOL = np.concatenate([pool, pool])
        _POOL.setflags(write=False)
    off = int(rng.integers(_POOL_SIZE))
    if n <= _POOL_SIZE:
        return _POOL[off : off + n]
    window = _POOL[off : off + _POOL_SIZE]
    return np.concatenate([window] * -(-n // _POOL_SIZE))[:n]


class _Writer:
    """Accumulates ONNX nodes and initializers for one graph (appended in place: no copies)."""

    def __init__(self, params: Params | None, seed: int, opset: int) -> None:
        self.params = params
        self.rng = np.random.default_rng(seed)
        #: estimated second moment E[x^2] of each tensor under the random weights; weights and
        #: BN running_var are scaled with it so that every conv/BN output is ~unit scale.
        self.m2: dict[str, float] = {}
        self.in_m2 = 1.0  # E[x^2] of the current node's first input
        self.opset = opset
        self.model = onnx.ModelProto(producer_name="nasctl")
        self.graph = self.model.graph

    # -- initializers ------------------------------------------------------------------------
    def const(self, name: str, value: np.ndarray) -> str:
        arr = np.ascontiguousarray(value)
        t = self.graph.initializer.add()
        t.name = name
        t.data_type = helper.np_dtype_to_tensor_dtype(arr.dtype)
        t.dims.extend(arr.shape)
        t.raw_data = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()  # LE per spec
        return name

    def param(self, name: str, shape: tuple[int, ...], kind: str, fan_in: int = 1) -> str:
        """A learnable tensor: from ``params`` if given, else random (uniform, see
        :func:`_uniform`) and scaled to the data flowing in, so that deep nets neither overflow nor
        underflow into denormals (which would slow CPU timing):

        ``"weight"``: variance 1 / (fan_in * E[x^2] of the input), so outputs have E[y^2] ~ 1;
        ``"var"`` (BN running_var): E[x^2] of the input, so BN outputs are ~unit scale;
        ``"bias"``/``"mean"``: near 0; ``"gamma"``: near 1.
        """
        if self.params is not None:
            if name not in self.params:
                raise GraphError(f"params has no tensor {name!r} (expected shape {shape})")
            arr = np.asarray(self.params[name], dtype=np.float32)
            if tuple(arr.shape) != tuple(shape):
                raise GraphError(f"params[{name!r}] has shape {arr.shape}, expected {shape}")
            return self.const(name, arr)
        u = _uniform(self.rng, math.prod(shape)).reshape(shape)  # [-1, 1), read-only view
        if kind == "weight":
            arr = u * np.float32(math.sqrt(3.0 / (fan_in * self.in_m2)))
        elif kind in ("bias", "mean"):
            arr = u * np.float32(0.01)
        elif kind == "gamma":
            arr = u * np.float32(0.01) + np.float32(1.0)
        elif kind == "var":
            arr = (u * np.float32(0.01) + np.float32(1.01)) * np.float32(self.in_m2)
        else:  # pragma: no cover - internal
            raise ValueError(kind)
        return self.const(name, arr)

    def add(
        self, op_type: str, inputs: list[str], outputs: list[str], name: str, **attrs: Any
    ) -> None:
        """Append a node in place (what ``helper.make_node`` does, without its copies)."""
        nd = self.graph.node.add()
        nd.op_type, nd.name = op_type, name
        nd.input.extend(inputs)
        nd.output.extend(outputs)
        for key, v in attrs.items():
            at = nd.attribute.add()
            at.name = key
            if isinstance(v, bool | int):
                at.type, at.i = onnx.AttributeProto.INT, int(v)
            elif isinstance(v, float):
                at.type, at.f = onnx.AttributeProto.FLOAT, v
            elif isinstance(v, str):
                at.type, at.s = onnx.AttributeProto.STRING, v.encode()
            elif all(isinstance(x, int) for x in v):
                at.type = onnx.AttributeProto.INTS
                at.ints.extend(int(x) for x in v)
            else:
                at.type = onnx.AttributeProto.FLOATS
                at.floats.extend(float(x) for x in v)


# -- per-op writers ----------------------------------------------------------------------------


def _conv(w: _Writer, n: Node) -> None:
    a = n.attrs
    cin, cout, groups = int(a["in_channels"]), int(a["out_channels"]), int(a.get("groups", 1))
    kh, kw = _pair(a["kernel"])
    fan_in = cin // groups * kh * kw
    if n.in_shapes and len(n.in_shapes[0]) == 4 and n.out_shape:  # zero padding: fewer taps
        fan_in = max(1, round(fan_in * _valid_tap_fraction(n, kh, kw)))
    ins = [n.inputs[0], w.param(f"{n.id}.weight", (cout, cin // groups, kh, kw), "weight", fan_in)]
    if a.get("bias", False):
        ins.append(w.param(f"{n.id}.bias", (cout,), "bias"))
    d = a.get("dilation", 1)
    w.add(
        "Conv",
        ins,
        n.outputs,
        n.id,
        kernel_shape=[kh, kw],
        strides=list(_pair(a.get("stride", 1))),
        dilations=list(_pair(d)),
        pads=[int(p) for p in a.get("pads", [0, 0, 0, 0])],
        group=groups,
    )


def _valid_tap_fraction(n: Node, kh: int, kw: int) -> float:
    """Mean fraction of a conv's kernel taps that fall inside the (unpadded) input."""
    a = n.attrs
    pads = [int(p) for p in a.get("pads", [0, 0, 0, 0])]
    (sh, sw), (dh, dw) = _pair(a.get("stride", 1)), _pair(a.get("dilation", 1))
    (_, _, h, wd), (_, _, oh, ow) = n.in_shapes[0], n.out_shape
    return _taps_1d(h, oh, kh, sh, dh, pads[0]) * _taps_1d(wd, ow, kw, sw, dw, pads[1])


@functools.lru_cache(maxsize=4096)
def _taps_1d(size: int, out: int, k: int, s: int, d: int, pad_begin: int) -> float:
    if size <= 0 or out <= 0:
        return 1.0
    pos = np.arange(out)[:, None] * s - pad_begin + np.arange(k)[None, :] * d
    return float(((pos >= 0) & (pos < size)).mean())


def _linear(w: _Writer, n: Node) -> None:
    a = n.attrs
    fin, fout = int(a["in_features"]), int(a["out_features"])
    wname = f"{n.id}.weight"
    bias = a.get("bias", True)
    rank = len(n.in_shapes[0]) if n.in_shapes else 2
    if rank == 2:
        ins = [n.inputs[0], w.param(wname, (fout, fin), "weight", fin)]
        if bias:
            ins.append(w.param(f"{n.id}.bias", (fout,), "bias"))
        w.add("Gemm", ins, n.outputs, n.id, transB=1)
        return
    # rank > 2: MatMul with the transposed weight (stored in torch layout), then Add.
    w.param(wname, (fout, fin), "weight", fin)
    wt = numpy_helper.to_array(w.graph.initializer.pop()).T
    w.const(wname, np.ascontiguousarray(wt))
    if not bias:
        w.add("MatMul", [n.inputs[0], wname], n.outputs, n.id)
        return
    w.add("MatMul", [n.inputs[0], wname], [f"{n.id}/matmul"], f"{n.id}/matmul")
    w.add("Add", [f"{n.id}/matmul", w.param(f"{n.id}.bias", (fout,), "bias")], n.outputs, n.id)


def _matmul(w: _Writer, n: Node) -> None:
    if len(n.inputs) == 2:
        w.add("MatMul", list(n.inputs), n.outputs, n.id)
        return
    a = n.attrs
    if "in_features" not in a or "out_features" not in a:
        raise GraphError(f"node {n.id!r}: matmul with one input needs in_features/out_features")
    fin, fout = int(a["in_features"]), int(a["out_features"])
    wname = w.param(f"{n.id}.weight", (fin, fout), "weight", fin)
    w.add("MatMul", [n.inputs[0], wname], n.outputs, n.id)


def _batchnorm(w: _Writer, n: Node) -> None:
    c = int(n.attrs.get("channels", n.in_shapes[0][1]))
    ins = [
        n.inputs[0],
        w.param(f"{n.id}.weight", (c,), "gamma"),
        w.param(f"{n.id}.bias", (c,), "bias"),
        w.param(f"{n.id}.running_mean", (c,), "mean"),
        w.param(f"{n.id}.running_var", (c,), "var"),
    ]
    w.add("BatchNormalization", ins, n.outputs, n.id, epsilon=float(n.attrs.get("eps", 1e-5)))


def _layernorm(w: _Writer, n: Node) -> None:
    if w.opset < 17:
        raise GraphError(f"node {n.id!r}: layernorm needs opset >= 17 (asked for {w.opset})")
    shp = n.in_shapes[0]
    axis = int(n.attrs.get("axis", -1))
    norm = tuple(int(d) for d in shp[axis:])
    ins = [
        n.inputs[0],
        w.param(f"{n.id}.weight", norm, "gamma"),
        w.param(f"{n.id}.bias", norm, "bias"),
    ]
    eps = float(n.attrs.get("eps", 1e-5))
    w.add("LayerNormalization", ins, n.outputs, n.id, axis=axis, epsilon=eps)


def _relu6(w: _Writer, n: Node) -> None:
    lo = w.const(f"{n.id}.min", np.array(0.0, dtype=np.float32))
    hi = w.const(f"{n.id}.max", np.array(6.0, dtype=np.float32))
    w.add("Clip", [n.inputs[0], lo, hi], n.outputs, n.id)


def _swish(w: _Writer, n: Node) -> None:
    s = f"{n.id}/sigmoid"
    w.add("Sigmoid", [n.inputs[0]], [s], s)
    w.add("Mul", [n.inputs[0], s], n.outputs, n.id)


def _gelu(w: _Writer, n: Node) -> None:
    x = n.inputs[0]
    if w.opset >= 20:
        w.add("Gelu", [x], n.outputs, n.id)
        return
    i = n.id
    sqrt2 = w.const(f"{i}.sqrt2", np.array(math.sqrt(2.0), dtype=np.float32))
    one = w.const(f"{i}.one", np.array(1.0, dtype=np.float32))
    half = w.const(f"{i}.half", np.array(0.5, dtype=np.float32))
    w.add("Div", [x, sqrt2], [f"{i}/div"], f"{i}/div")
    w.add("Erf", [f"{i}/div"], [f"{i}/erf"], f"{i}/erf")
    w.add("Add", [f"{i}/erf", one], [f"{i}/add"], f"{i}/add")
    w.add("Mul", [x, f"{i}/add"], [f"{i}/mul"], f"{i}/mul")
    w.add("Mul", [f"{i}/mul", half], n.outputs, i)


def _add(w: _Writer, n: Node) -> None:
    w.add("Add" if len(n.inputs) == 2 else "Sum", list(n.inputs), n.outputs, n.id)


def _pool(w: _Writer, n: Node) -> None:
    a = n.attrs
    attrs: dict[str, Any] = {
        "kernel_shape": list(_pair(a["kernel"])),
        "strides": list(_pair(a.get("stride", 1))),
        "pads": [int(p) for p in a.get("pads", [0, 0, 0, 0])],
    }
    if a.get("ceil_mode"):
        attrs["ceil_mode"] = 1
    if n.op == "avgpool":
        attrs["count_include_pad"] = int(bool(a.get("count_include_pad", False)))
        w.add("AveragePool", [n.inputs[0]], n.outputs, n.id, **attrs)
    else:
        if a.get("dilation", 1) != 1:
            attrs["dilations"] = list(_pair(a["dilation"]))
        w.add("MaxPool", [n.inputs[0]], n.outputs, n.id, **attrs)


def _split(w: _Writer, n: Node) -> None:
    axis = int(n.attrs.get("axis", 1))
    sizes = n.attrs.get("sizes") or [s[axis] for s in n.out_shapes]
    sz = w.const(f"{n.id}.split", np.array(sizes, dtype=np.int64))
    w.add("Split", [n.inputs[0], sz], n.outputs, n.id, axis=axis)


def _reshape(w: _Writer, n: Node) -> None:
    shape = n.attrs.get("shape") or list(n.out_shape)
    if not shape:
        raise GraphError(f"node {n.id!r}: reshape needs attrs['shape'] or an output shape")
    s = w.const(f"{n.id}.shape", np.array(shape, dtype=np.int64))
    w.add("Reshape", [n.inputs[0], s], n.outputs, n.id)


def _transpose(w: _Writer, n: Node) -> None:
    perm = n.attrs.get("perm")
    if perm is None:
        raise GraphError(f"node {n.id!r}: transpose needs attrs['perm']")
    w.add("Transpose", [n.inputs[0]], n.outputs, n.id, perm=[int(p) for p in perm])


def _resize(w: _Writer, n: Node) -> None:
    if not n.out_shape:
        raise GraphError(f"node {n.id!r}: resize needs an output shape")
    mode = str(n.attrs.get("mode", "nearest"))
    sizes = w.const(f"{n.id}.sizes", np.array(n.out_shape, dtype=np.int64))
    attrs: dict[str, Any] = {"mode": mode}
    if mode == "nearest":  # torch F.interpolate(mode="nearest")
        attrs.update(coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    else:  # torch align_corners=False
        attrs["coordinate_transformation_mode"] = "half_pixel"
    w.add("Resize", [n.inputs[0], "", "", sizes], n.outputs, n.id, **attrs)


def _pad(w: _Writer, n: Node) -> None:
    rank = len(n.in_shapes[0]) if n.in_shapes else 4
    p = [int(v) for v in n.attrs.get("pads", [0, 0, 0, 0])]
    if len(p) == 4 and rank == 4:  # [top, left, bottom, right] -> ONNX begins..., ends...
        full = [0, 0, p[0], p[1], 0, 0, p[2], p[3]]
    elif len(p) == 2 * rank:
        full = p
    else:
        raise GraphError(f"node {n.id!r}: pads {p} do not fit an input of rank {rank}")
    ins = [n.inputs[0], w.const(f"{n.id}.pads", np.array(full, dtype=np.int64))]
    mode = str(n.attrs.get("mode", "constant"))
    if mode == "constant" and n.attrs.get("value", 0.0):
        ins.append(w.const(f"{n.id}.value", np.array(float(n.attrs["value"]), dtype=np.float32)))
    w.add("Pad", ins, n.outputs, n.id, mode=mode)


def _hardsigmoid(w: _Writer, n: Node) -> None:
    """torch's hardsigmoid (alpha 1/6, beta 0.5) unless attrs say otherwise."""
    alpha = float(n.attrs.get("alpha", 1.0 / 6.0))
    beta = float(n.attrs.get("beta", 0.5))
    w.add("HardSigmoid", [n.inputs[0]], n.outputs, n.id, alpha=alpha, beta=beta)


def _global_avg(w: _Writer, n: Node) -> None:
    if n.attrs.get("keepdims", True):
        w.add("GlobalAveragePool", [n.inputs[0]], n.outputs, n.id)
        return
    axes = list(range(2, len(n.in_shapes[0]) if n.in_shapes else 4))
    if w.opset >= 18:
        ax = w.const(f"{n.id}.axes", np.array(axes, dtype=np.int64))
        w.add("ReduceMean", [n.inputs[0], ax], n.outputs, n.id, keepdims=0)
    else:
        w.add("ReduceMean", [n.inputs[0]], n.outputs, n.id, axes=axes, keepdims=0)


def _simple(op_type: str, **fixed: Any) -> Callable[[_Writer, Node], None]:
    def write(w: _Writer, n: Node) -> None:
        w.add(op_type, list(n.inputs), n.outputs, n.id, **fixed)

    return write


def _with_axis(op_type: str, default: int) -> Callable[[_Writer, Node], None]:
    def write(w: _Writer, n: Node) -> None:
        w.add(op_type, list(n.inputs), n.outputs, n.id, axis=int(n.attrs.get("axis", default)))

    return write


WRITERS: dict[str, Callable[[_Writer, Node], None]] = {
    "conv": _conv,
    "dwconv": _conv,
    "gconv": _conv,
    "linear": _linear,
    "matmul": _matmul,
    "batchnorm": _batchnorm,
    "layernorm": _layernorm,
    "relu": _simple("Relu"),
    "relu6": _relu6,
    "hardswish": _simple("HardSwish"),
    "hardsigmoid": _hardsigmoid,
    "sigmoid": _simple("Sigmoid"),
    "swish": _swish,
    "gelu": _gelu,
    "add": _add,
    "mul": _simple("Mul"),
    "concat": _with_axis("Concat", 1),
    "split": _split,
    "maxpool": _pool,
    "avgpool": _pool,
    "globalavgpool": _global_avg,
    "globalmaxpool": _simple("GlobalMaxPool"),
    "reshape": _reshape,
    "flatten": _with_axis("Flatten", 1),
    "transpose": _transpose,
    "resize": _resize,
    "softmax": _with_axis("Softmax", -1),
    "pad": _pad,
    "identity": _simple("Identity"),
}


_HALVING = frozenset({"relu", "relu6", "hardswish", "swish", "gelu"})
_BOUNDED = frozenset({"sigmoid", "hardsigmoid", "softmax"})
_NORMALIZED = frozenset({"conv", "dwconv", "gconv", "linear", "batchnorm", "layernorm"})


def _out_m2(w: _Writer, n: Node) -> float:
    """Estimated E[y^2] of the node's output under the random initializers."""
    ins = [w.m2.get(t, 1.0) for t in n.inputs]
    if n.op in _NORMALIZED or (n.op == "matmul" and len(ins) == 1):
        return 1.0
    if n.op in _HALVING:
        return ins[0] / 2
    if n.op in _BOUNDED:
        return 0.3
    if n.op == "add":
        return sum(ins)
    if n.op in ("mul", "matmul"):
        k = n.in_shapes[0][-1] if n.op == "matmul" and n.in_shapes else 1
        return math.prod(ins) * max(k, 1)
    if n.op == "concat":
        return sum(ins) / len(ins)
    return ins[0] if ins else 1.0


def _value_info(name: str, shape: tuple[int, ...]) -> onnx.ValueInfoProto:
    dims = [d if d > 0 else None for d in shape]
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)


def to_onnx(
    graph: Graph, params: Params | None = None, seed: int = 0, opset: int = 17
) -> onnx.ModelProto:
    """Write ``graph`` as an ONNX model (FP32) with one ONNX node per graph node where possible.

    Args:
        graph: the architecture graph (validated here).
        params: learnable tensors by initializer name (torch layout, e.g. from
            ``GraphModule.export_params()``); random with ``seed`` when None.
        seed: seed of the random initializers.
        opset: ONNX default-domain opset, 14 or newer (HardSwish needs 14, layernorm 17).

    Raises:
        GraphError: an op that cannot be written (``other``), missing attrs or params.
    """
    if opset < 14:
        raise GraphError(f"to_onnx needs opset >= 14 (HardSwish, Split with sizes); got {opset}")
    graph.validate()
    w = _Writer(params, seed, opset)
    for n in graph.nodes:
        writer = WRITERS.get(n.op)
        if writer is None:
            what = n.attrs.get("onnx_op", n.op)
            raise GraphError(
                f"node {n.id!r}: op {n.op!r} ({what}) cannot be written to ONNX; "
                "only the vocabulary ops (nasctl.arch.OPS except 'other') can"
            )
        w.in_m2 = w.m2.get(n.inputs[0], 1.0) if n.inputs else 1.0
        writer(w, n)
        m2 = min(max(_out_m2(w, n), 1e-4), 1e4)
        for t in n.outputs:
            w.m2[t] = m2
    shapes = graph.tensor_shapes()
    g = w.graph
    g.name = graph.name or "nasctl"
    g.input.extend(_value_info(k, tuple(v)) for k, v in graph.inputs.items())
    g.output.extend(_value_info(t, tuple(shapes.get(t, ()))) for t in graph.outputs)
    opsets = [helper.make_opsetid("", opset)]
    model = w.model
    model.opset_import.extend(opsets)
    model.ir_version = helper.find_min_ir_version_for(opsets)
    meta = {"nasctl_" + str(k): str(v) for k, v in graph.meta.items() if isinstance(v, str | int)}
    if meta:
        helper.set_model_props(model, meta)
    return model
