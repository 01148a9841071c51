"""The architecture graph: op nodes with attributes and tensor shapes, edges as data flow.

A :class:`Graph` is a DAG of :class:`Node` s in topological order. Nodes consume and produce named
tensors; a node's first output tensor is named after the node id (``"/s2/b1/dw"``), so an edge is
"the producer of one of my input tensors". Graph inputs are tensors with no producer.

Shapes are tuples of ints, NCHW for images, batch first (``(1, 3, 224, 224)``). Unknown dimensions
(from an ONNX model with dynamic axes that shape inference could not resolve) are ``-1``.

The op vocabulary is fixed (:data:`OPS`); anything else is ``"other"`` with the original op type
kept in ``attrs["onnx_op"]``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from nasctl.errors import GraphError

Shape = tuple[int, ...]

#: Activation ops (elementwise, one input, one output).
ACTIVATIONS: tuple[str, ...] = (
    "relu",
    "relu6",
    "hardswish",
    "hardsigmoid",
    "sigmoid",
    "swish",
    "gelu",
)

#: The fixed op vocabulary. Order is stable: features one-hot encode by index.
OPS: tuple[str, ...] = (
    "conv",  # dense convolution, groups == 1
    "dwconv",  # depthwise convolution, groups == in_channels == out_channels (or multiplier)
    "gconv",  # grouped convolution, 1 < groups < in_channels
    "linear",  # fully connected (Gemm)
    "matmul",  # MatMul between activations or with a weight
    "batchnorm",
    *ACTIVATIONS,
    "add",  # 2+ inputs (Sum when more than two)
    "mul",
    "concat",
    "split",
    "maxpool",
    "avgpool",
    "globalavgpool",
    "globalmaxpool",
    "reshape",
    "flatten",
    "transpose",
    "resize",
    "softmax",
    "layernorm",
    "pad",
    "identity",
    "other",
)

OP_INDEX: dict[str, int] = {op: i for i, op in enumerate(OPS)}

CONV_OPS: frozenset[str] = frozenset({"conv", "dwconv", "gconv"})
POOL_OPS: frozenset[str] = frozenset({"maxpool", "avgpool"})


@dataclass
class Node:
    """One operation.

    Attributes:
        id: unique, stable name; also the ONNX node name and the name of output 0.
        op: one of :data:`OPS`.
        inputs: names of the tensors consumed (graph inputs or other nodes' outputs), in order.
        outputs: names of the tensors produced; ``outputs[0] == id`` for graphs built here.
        attrs: op attributes. Convs: ``kernel`` (int or [kh, kw]), ``stride``, ``dilation``,
            ``groups``, ``pads`` ([top, left, bottom, right]), ``in_channels``, ``out_channels``,
            ``bias`` (bool). Linear: ``in_features``, ``out_features``, ``bias``. Pools:
            ``kernel``, ``stride``, ``pads``, ``count_include_pad`` (avgpool). Concat/split/
            softmax: ``axis``. Split: ``sizes``. Other: ``onnx_op``.
        in_shapes: shape of each input tensor.
        out_shapes: shape of each output tensor.
    """

    id: str
    op: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    in_shapes: list[Shape] = field(default_factory=list)
    out_shapes: list[Shape] = field(default_factory=list)

    @property
    def out_shape(self) -> Shape:
        """Shape of output 0."""
        return self.out_shapes[0] if self.out_shapes else ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "op": self.op,
            "inputs": list(self.inputs),
            "outputs": list(self.outputs),
            "attrs": self.attrs,
            "in_shapes": [list(s) for s in self.in_shapes],
            "out_shapes": [list(s) for s in self.out_shapes],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Node:
        return cls(
            id=d["id"],
            op=d["op"],
            inputs=list(d["inputs"]),
            outputs=list(d["outputs"]),
            attrs=dict(d.get("attrs", {})),
            in_shapes=[tuple(s) for s in d.get("in_shapes", [])],
            out_shapes=[tuple(s) for s in d.get("out_shapes", [])],
        )


@dataclass
class Graph:
    """A DAG of nodes in topological order.

    Attributes:
        nodes: nodes, each after the producers of its inputs.
        inputs: graph input tensor name -> shape.
        outputs: names of the graph's output tensors.
        name: free-form model name.
        meta: provenance, e.g. ``{"space": "mbconv", "genotype": "...", "resolution": 160}``.
    """

    nodes: list[Node]
    inputs: dict[str, Shape]
    outputs: list[str]
    name: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    # -- structure ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.nodes)

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def node(self, node_id: str) -> Node:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(node_id)

    def producers(self) -> dict[str, tuple[int, int]]:
        """Tensor name -> (index of producing node, output slot)."""
        out: dict[str, tuple[int, int]] = {}
        for i, n in enumerate(self.nodes):
            for k, t in enumerate(n.outputs):
                out[t] = (i, k)
        return out

    def edges(self) -> list[tuple[int, int]]:
        """Data-flow edges as (producer node index, consumer node index), in consumer order."""
        prod = self.producers()
        es: list[tuple[int, int]] = []
        for j, n in enumerate(self.nodes):
            for t in n.inputs:
                if t in prod:
                    es.append((prod[t][0], j))
        return es

    def tensor_shapes(self) -> dict[str, Shape]:
        shapes: dict[str, Shape] = dict(self.inputs)
        for n in self.nodes:
            for t, s in zip(n.outputs, n.out_shapes, strict=False):
                shapes[t] = s
        return shapes

    def validate(self) -> None:
        """Raise :class:`GraphError` unless ids are unique, the order is topological and every
        consumed tensor is produced (or is a graph input)."""
        known = set(self.inputs)
        ids: set[str] = set()
        for n in self.nodes:
            if n.id in ids:
                raise GraphError(f"duplicate node id {n.id!r}")
            ids.add(n.id)
            if n.op not in OP_INDEX:
                raise GraphError(f"node {n.id!r}: op {n.op!r} is not in the vocabulary")
            for t in n.inputs:
                if t not in known:
                    raise GraphError(
                        f"node {n.id!r} consumes {t!r}, which no earlier node produces"
                    )
            known.update(n.outputs)
        for t in self.outputs:
            if t not in known:
                raise GraphError(f"graph output {t!r} is not produced by any node")

    # -- serialization -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "inputs": {k: list(v) for k, v in self.inputs.items()},
            "outputs": list(self.outputs),
            "meta": self.meta,
            "nodes": [n.to_dict() for n in self.nodes],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Graph:
        return cls(
            nodes=[Node.from_dict(n) for n in d["nodes"]],
            inputs={k: tuple(v) for k, v in d["inputs"].items()},
            outputs=list(d["outputs"]),
            name=d.get("name", ""),
            meta=dict(d.get("meta", {})),
        )

    @classmethod
    def from_json(cls, s: str) -> Graph:
        return cls.from_dict(json.loads(s))

    # -- convenience -------------------------------------------------------------------------
    @property
    def input_shape(self) -> Shape:
        """Shape of the first graph input."""
        return next(iter(self.inputs.values()))

    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for n in self.nodes:
            counts[n.op] = counts.get(n.op, 0) + 1
        return counts


# ------------------------------------------------------------------------------------------------
# Builder with shape inference, used by search spaces and tests.
# ------------------------------------------------------------------------------------------------


def _pair(v: int | Iterable[int]) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    a, b = tuple(v)
    return (int(a), int(b))


def conv_out_hw(
    h: int, w: int, kernel: int | tuple[int, int], stride: int, pads: list[int], dilation: int = 1
) -> tuple[int, int]:
    kh, kw = _pair(kernel)
    oh = (h + pads[0] + pads[2] - dilation * (kh - 1) - 1) // stride + 1
    ow = (w + pads[1] + pads[3] - dilation * (kw - 1) - 1) // stride + 1
    return oh, ow


def same_pads(kernel: int | tuple[int, int], dilation: int = 1) -> list[int]:
    """Symmetric padding that keeps H, W at stride 1 for odd kernels: [top, left, bottom, right]."""
    kh, kw = _pair(kernel)
    ph, pw = dilation * (kh - 1) // 2, dilation * (kw - 1) // 2
    return [ph, pw, ph, pw]


class GraphBuilder:
    """Builds a :class:`Graph` op by op with shapes inferred as it goes.

    Every method takes input tensor name(s) and a node ``id`` and returns the output tensor name
    (equal to ``id``). Ids must be unique; use path-like ids (``"/s2/b1/dw"``)::

        b = GraphBuilder("net", (1, 3, 224, 224))
        x = b.conv(b.input, 32, 3, stride=2, id="/stem/conv")
        x = b.batchnorm(x, id="/stem/bn")
        x = b.act(x, "relu6", id="/stem/act")
        g = b.build([x])
    """

    def __init__(self, name: str, input_shape: Shape, input_name: str = "input") -> None:
        if len(input_shape) < 2 or any(int(d) <= 0 for d in input_shape):
            raise GraphError(f"input shape must be positive, batch first; got {input_shape}")
        self.name = name
        self.input = input_name
        self._inputs: dict[str, Shape] = {input_name: tuple(int(d) for d in input_shape)}
        self._nodes: list[Node] = []
        self._shapes: dict[str, Shape] = dict(self._inputs)

    def shape(self, tensor: str) -> Shape:
        return self._shapes[tensor]

    def _add(
        self, id: str, op: str, inputs: list[str], attrs: dict[str, Any], out_shapes: list[Shape]
    ) -> str:
        shapes = self._shapes
        if id in shapes:
            raise GraphError(f"duplicate node id {id!r}")
        try:
            in_shapes = [shapes[t] for t in inputs]
        except KeyError as e:
            raise GraphError(f"node {id!r}: unknown input tensor {e.args[0]!r}") from None
        outs = [tuple(map(int, s)) for s in out_shapes]
        if len(outs) == 1:
            outputs = [id]
            shapes[id] = outs[0]
        else:
            outputs = [id] + [f"{id}:{k}" for k in range(1, len(outs))]
            shapes.update(zip(outputs, outs, strict=False))
        self._nodes.append(Node(id, op, list(inputs), outputs, attrs, in_shapes, outs))
        return id

    # -- convolution / linear ----------------------------------------------------------------
    def conv(
        self,
        x: str,
        out_channels: int,
        kernel: int | tuple[int, int],
        *,
        id: str,
        stride: int = 1,
        groups: int = 1,
        dilation: int = 1,
        pads: list[int] | None = None,
        bias: bool = False,
    ) -> str:
        n, c, h, w = self._shapes[x]
        if c % groups or out_channels % groups:
            raise GraphError(f"{id}: channels {c}->{out_channels} not divisible by groups {groups}")
        pads = list(pads) if pads is not None else same_pads(kernel, dilation)
        oh, ow = conv_out_hw(h, w, kernel, stride, pads, dilation)
        if oh <= 0 or ow <= 0:
            raise GraphError(f"{id}: input {h}x{w} too small for kernel {kernel} stride {stride}")
        if groups == 1:
            op = "conv"
        elif groups == c:
            op = "dwconv"
        else:
            op = "gconv"
        k = kernel if isinstance(kernel, int) else list(kernel)
        attrs = {
            "kernel": k,
            "stride": stride,
            "dilation": dilation,
            "groups": groups,
            "pads": pads,
            "in_channels": c,
            "out_channels": out_channels,
            "bias": bias,
        }
        return self._add(id, op, [x], attrs, [(n, out_channels, oh, ow)])

    def linear(self, x: str, out_features: int, *, id: str, bias: bool = True) -> str:
        shp = self._shapes[x]
        attrs = {"in_features": shp[-1], "out_features": out_features, "bias": bias}
        return self._add(id, "linear", [x], attrs, [(*shp[:-1], out_features)])

    # -- normalization / activation ----------------------------------------------------------
    def batchnorm(self, x: str, *, id: str, eps: float = 1e-5) -> str:
        shp = self._shapes[x]
        return self._add(id, "batchnorm", [x], {"channels": shp[1], "eps": eps}, [shp])

    def act(self, x: str, kind: str, *, id: str) -> str:
        if kind not in ACTIVATIONS:
            raise GraphError(f"{id}: unknown activation {kind!r}; expected one of {ACTIVATIONS}")
        return self._add(id, kind, [x], {}, [self._shapes[x]])

    # -- elementwise / structural ------------------------------------------------------------
    def add(self, xs: list[str], *, id: str) -> str:
        if len(xs) < 2:
            raise GraphError(f"{id}: add needs at least two inputs")
        shapes = {self._shapes[t] for t in xs}
        if len(shapes) != 1:
            raise GraphError(f"{id}: add of mismatched shapes {sorted(shapes)}")
        return self._add(id, "add", xs, {}, [self._shapes[xs[0]]])

    def mul(self, a: str, b: str, *, id: str) -> str:
        """Elementwise multiply with numpy broadcasting (e.g. SE: (N,C,H,W) * (N,C,1,1))."""
        sa, sb = self._shapes[a], self._shapes[b]
        if len(sa) != len(sb):
            raise GraphError(f"{id}: mul of ranks {len(sa)} and {len(sb)}")
        out = tuple(max(p, q) for p, q in zip(sa, sb, strict=False))
        return self._add(id, "mul", [a, b], {}, [out])

    def concat(self, xs: list[str], *, id: str, axis: int = 1) -> str:
        shapes = [self._shapes[t] for t in xs]
        out = list(shapes[0])
        out[axis] = sum(s[axis] for s in shapes)
        return self._add(id, "concat", xs, {"axis": axis}, [tuple(out)])

    def identity(self, x: str, *, id: str) -> str:
        return self._add(id, "identity", [x], {}, [self._shapes[x]])

    # -- pooling -----------------------------------------------------------------------------
    def pool(
        self,
        x: str,
        kind: str,
        kernel: int,
        *,
        id: str,
        stride: int = 1,
        pads: list[int] | None = None,
        count_include_pad: bool = False,
    ) -> str:
        if kind not in ("max", "avg"):
            raise GraphError(f"{id}: pool kind must be 'max' or 'avg'")
        n, c, h, w = self._shapes[x]
        pads = list(pads) if pads is not None else same_pads(kernel)
        oh, ow = conv_out_hw(h, w, kernel, stride, pads)
        attrs: dict[str, Any] = {"kernel": kernel, "stride": stride, "pads": pads}
        if kind == "avg":
            attrs["count_include_pad"] = count_include_pad
        return self._add(id, f"{kind}pool", [x], attrs, [(n, c, oh, ow)])

    def global_pool(self, x: str, *, id: str, kind: str = "avg") -> str:
        n, c = self._shapes[x][:2]
        return self._add(id, f"global{kind}pool", [x], {}, [(n, c, 1, 1)])

    def flatten(self, x: str, *, id: str) -> str:
        shp = self._shapes[x]
        flat = 1
        for d in shp[1:]:
            flat *= d
        return self._add(id, "flatten", [x], {"axis": 1}, [(shp[0], flat)])

    # -- less common ops (transformer heads, upsampling, user spaces) ------------------------
    def matmul(self, a: str, b: str, *, id: str) -> str:
        """MatMul of two activations (numpy semantics for rank >= 2, equal batch dims)."""
        sa, sb = self._shapes[a], self._shapes[b]
        if len(sa) < 2 or len(sb) < 2 or sa[-1] != sb[-2]:
            raise GraphError(f"{id}: matmul of shapes {sa} and {sb}")
        return self._add(id, "matmul", [a, b], {}, [(*sa[:-1], sb[-1])])

    def layernorm(self, x: str, *, id: str, axis: int = -1, eps: float = 1e-5) -> str:
        return self._add(id, "layernorm", [x], {"axis": axis, "eps": eps}, [self._shapes[x]])

    def softmax(self, x: str, *, id: str, axis: int = -1) -> str:
        return self._add(id, "softmax", [x], {"axis": axis}, [self._shapes[x]])

    def reshape(self, x: str, shape: Shape, *, id: str) -> str:
        src = self._shapes[x]
        n_src = 1
        for d in src:
            n_src *= d
        n_dst = 1
        for d in shape:
            n_dst *= d
        if n_src != n_dst or any(d <= 0 for d in shape):
            raise GraphError(f"{id}: cannot reshape {src} to {tuple(shape)}")
        return self._add(id, "reshape", [x], {"shape": list(shape)}, [tuple(shape)])

    def transpose(self, x: str, perm: list[int], *, id: str) -> str:
        src = self._shapes[x]
        if sorted(perm) != list(range(len(src))):
            raise GraphError(f"{id}: perm {perm} does not fit rank {len(src)}")
        return self._add(id, "transpose", [x], {"perm": list(perm)}, [tuple(src[p] for p in perm)])

    def split(self, x: str, sizes: list[int], *, id: str, axis: int = 1) -> list[str]:
        """Split along ``axis``; returns the output tensor names (``id``, ``id:1``, ...)."""
        src = self._shapes[x]
        if sum(sizes) != src[axis]:
            raise GraphError(f"{id}: split sizes {sizes} do not add up to {src[axis]}")
        outs = []
        for s in sizes:
            o = list(src)
            o[axis] = s
            outs.append(tuple(o))
        self._add(id, "split", [x], {"axis": axis, "sizes": list(sizes)}, outs)
        return [id] + [f"{id}:{k}" for k in range(1, len(sizes))]

    def resize(self, x: str, scale: int, *, id: str, mode: str = "nearest") -> str:
        """Upsample H, W by an integer ``scale`` (``mode`` "nearest" or "linear")."""
        if mode not in ("nearest", "linear"):
            raise GraphError(f"{id}: resize mode must be 'nearest' or 'linear'")
        n, c, h, w = self._shapes[x]
        attrs = {"mode": mode, "scale": scale}
        return self._add(id, "resize", [x], attrs, [(n, c, h * scale, w * scale)])

    def pad(self, x: str, pads: list[int], *, id: str, mode: str = "constant") -> str:
        """Pad H, W by ``pads`` = [top, left, bottom, right]."""
        n, c, h, w = self._shapes[x]
        out = (n, c, h + pads[0] + pads[2], w + pads[1] + pads[3])
        return self._add(id, "pad", [x], {"pads": list(pads), "mode": mode}, [out])

    def build(self, outputs: list[str], meta: dict[str, Any] | None = None) -> Graph:
        g = Graph(
            nodes=list(self._nodes),
            inputs=dict(self._inputs),
            outputs=list(outputs),
            name=self.name,
            meta=dict(meta or {}),
        )
        # What Graph.validate checks beyond _add (unique ids, inputs produced earlier, which hold
        # by construction): ops in the vocabulary and outputs produced.
        for n in g.nodes:
            if n.op not in OP_INDEX:
                raise GraphError(f"node {n.id!r}: op {n.op!r} is not in the vocabulary")
        for t in g.outputs:
            if t not in self._shapes:
                raise GraphError(f"graph output {t!r} is not produced by any node")
        return g
