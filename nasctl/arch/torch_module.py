"""Turn a :class:`~nasctl.arch.graph.Graph` into a trainable ``torch.nn.Module``.

:class:`GraphModule` runs the nodes in graph order and computes the same function as
:func:`nasctl.arch.onnx_io.to_onnx` of the same graph; ``to_onnx(g, params=m.export_params())``
gives an ONNX model with the module's weights.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nasctl.arch.graph import Graph, Node, _pair
from nasctl.errors import GraphError

Tensor = torch.Tensor


def _sanitize(node_id: str) -> str:
    s = re.sub(r"[^0-9A-Za-z_]", "_", node_id).strip("_") or "node"
    return "n_" + s if s[0].isdigit() else s


def _torch_pads(pads: list[int]) -> tuple[int, int, int, int]:
    """[top, left, bottom, right] -> F.pad order (left, right, top, bottom)."""
    t, left, b, r = (int(p) for p in pads)
    return (left, r, t, b)


class _Conv(nn.Module):
    def __init__(self, n: Node) -> None:
        super().__init__()
        a = n.attrs
        self.pads = [int(p) for p in a.get("pads", [0, 0, 0, 0])]
        sym = self.pads[0] == self.pads[2] and self.pads[1] == self.pads[3]
        self.pre_pad = None if sym else _torch_pads(self.pads)
        self.conv = nn.Conv2d(
            int(a["in_channels"]),
            int(a["out_channels"]),
            _pair(a["kernel"]),
            stride=_pair(a.get("stride", 1)),
            padding=(self.pads[0], self.pads[1]) if sym else 0,
            dilation=_pair(a.get("dilation", 1)),
            groups=int(a.get("groups", 1)),
            bias=bool(a.get("bias", False)),
        )

    def forward(self, x: Tensor) -> Tensor:
        if self.pre_pad is not None:
            x = F.pad(x, self.pre_pad)
        return self.conv(x)


class _Pool(nn.Module):
    def __init__(self, n: Node) -> None:
        super().__init__()
        a = n.attrs
        self.avg = n.op == "avgpool"
        self.k = _pair(a["kernel"])
        self.s = _pair(a.get("stride", 1))
        self.pads = [int(p) for p in a.get("pads", [0, 0, 0, 0])]
        self.include = bool(a.get("count_include_pad", False))
        self.ceil = bool(a.get("ceil_mode", False))
        self.dil = _pair(a.get("dilation", 1))
        p = self.pads
        self.sym = p[0] == p[2] and p[1] == p[3] and 2 * p[0] <= self.k[0] and 2 * p[1] <= self.k[1]

    def forward(self, x: Tensor) -> Tensor:
        p = self.pads
        if self.sym:
            if self.avg:
                return F.avg_pool2d(x, self.k, self.s, (p[0], p[1]), self.ceil, self.include)
            return F.max_pool2d(x, self.k, self.s, (p[0], p[1]), self.dil, self.ceil)
        tp = _torch_pads(p)
        if not self.avg:
            return F.max_pool2d(F.pad(x, tp, value=float("-inf")), self.k, self.s, 0, self.dil)
        summed = F.avg_pool2d(F.pad(x, tp), self.k, self.s, 0, self.ceil, True)
        if self.include:
            return summed
        ones = F.pad(torch.ones_like(x[:1, :1]), tp)
        frac = F.avg_pool2d(ones, self.k, self.s, 0, self.ceil, True)
        return summed / frac


class _Fn(nn.Module):
    """A parameter-free op."""

    def __init__(self, fn: Callable[..., Tensor | tuple[Tensor, ...]]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *xs: Tensor) -> Tensor | tuple[Tensor, ...]:
        return self.fn(*xs)


def _sum(*xs: Tensor) -> Tensor:
    out = xs[0]
    for x in xs[1:]:
        out = out + x
    return out


def _gelu(x: Tensor) -> Tensor:
    return F.gelu(x)


def _stateless(n: Node) -> Callable[..., Tensor | tuple[Tensor, ...]]:
    a, op = n.attrs, n.op
    simple: dict[str, Callable[..., Tensor]] = {
        "relu": F.relu,
        "relu6": F.relu6,
        "hardswish": F.hardswish,
        "hardsigmoid": F.hardsigmoid,
        "sigmoid": torch.sigmoid,
        "swish": F.silu,
        "gelu": _gelu,
        "add": _sum,
        "mul": torch.mul,
        "identity": lambda x: x,
        "globalavgpool": lambda x: x.mean(dim=tuple(range(2, x.dim())), keepdim=True),
        "globalmaxpool": lambda x: x.amax(dim=tuple(range(2, x.dim())), keepdim=True),
    }
    if op == "hardsigmoid" and ("alpha" in a or "beta" in a):
        alpha, beta = float(a.get("alpha", 1 / 6)), float(a.get("beta", 0.5))
        return lambda x: torch.clamp(alpha * x + beta, 0.0, 1.0)
    if op == "globalavgpool" and not a.get("keepdims", True):
        return lambda x: x.mean(dim=tuple(range(2, x.dim())))
    if op in simple:
        return simple[op]
    if op == "matmul" and len(n.inputs) == 2:
        return torch.matmul
    if op == "concat":
        return lambda *xs: torch.cat(xs, dim=int(a.get("axis", 1)))
    if op == "flatten":
        return lambda x: torch.flatten(x, int(a.get("axis", 1)))
    if op == "softmax":
        return lambda x: torch.softmax(x, dim=int(a.get("axis", -1)))
    if op == "transpose":
        return lambda x: x.permute(*[int(p) for p in a["perm"]])
    if op == "reshape":
        shape = [int(d) for d in (a.get("shape") or n.out_shape)]
        # the graph's shapes are at its batch size; a module trained on mini-batches keeps the
        # leading (batch) dimension of its input where the graph's reshape keeps it
        keeps_batch = bool(shape) and bool(n.out_shape) and shape[0] == n.out_shape[0]
        return lambda x: x.reshape([x.shape[0], *shape[1:]] if keeps_batch else shape)
    if op == "split":
        axis = int(a.get("axis", 1))
        sizes = [int(v) for v in (a.get("sizes") or [s[axis] for s in n.out_shapes])]
        return lambda x: tuple(torch.split(x, sizes, dim=axis))
    if op == "resize":
        size = tuple(int(d) for d in n.out_shape[2:])
        mode = str(a.get("mode", "nearest"))
        tmode = {"nearest": "nearest", "linear": "bilinear" if len(size) == 2 else "linear"}[mode]
        if tmode == "nearest":
            return lambda x: F.interpolate(x, size=size, mode="nearest")
        return lambda x: F.interpolate(x, size=size, mode=tmode, align_corners=False)
    if op == "pad":
        p = [int(v) for v in a.get("pads", [0, 0, 0, 0])]
        if len(p) != 4:
            raise GraphError(f"node {n.id!r}: to_torch supports 4-value pads only, got {p}")
        mode = {"constant": "constant", "reflect": "reflect", "edge": "replicate"}[
            str(a.get("mode", "constant"))
        ]
        value = float(a.get("value", 0.0))
        if mode == "constant":
            return lambda x: F.pad(x, _torch_pads(p), mode=mode, value=value)
        return lambda x: F.pad(x, _torch_pads(p), mode=mode)
    raise GraphError(f"node {n.id!r}: op {n.op!r} cannot be converted to torch")


def _make_module(n: Node) -> nn.Module:
    a = n.attrs
    if n.op in ("conv", "dwconv", "gconv"):
        return _Conv(n)
    if n.op in ("maxpool", "avgpool"):
        return _Pool(n)
    if n.op == "linear":
        return nn.Linear(int(a["in_features"]), int(a["out_features"]), bool(a.get("bias", True)))
    if n.op == "matmul" and len(n.inputs) == 1:
        return _MatMulW(int(a["in_features"]), int(a["out_features"]))
    if n.op == "batchnorm":
        c = int(a.get("channels", n.in_shapes[0][1]))
        rank = len(n.in_shapes[0]) if n.in_shapes else 4
        cls = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}[rank]
        return cls(c, eps=float(a.get("eps", 1e-5)))
    if n.op == "layernorm":
        axis = int(a.get("axis", -1))
        return nn.LayerNorm(
            tuple(int(d) for d in n.in_shapes[0][axis:]), eps=float(a.get("eps", 1e-5))
        )
    return _Fn(_stateless(n))


class _MatMulW(nn.Module):
    """MatMul with a weight in ONNX layout (in_features, out_features)."""

    def __init__(self, fin: int, fout: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(fin, fout) / fin**0.5)

    def forward(self, x: Tensor) -> Tensor:
        return x @ self.weight


_PARAM_NAMES = ("weight", "bias", "running_mean", "running_var")


class GraphModule(nn.Module):
    """Executes a :class:`Graph` node by node (graph order); one submodule per node.

    Submodule names are sanitized node ids (``"/s2/b1/dw"`` -> ``"s2_b1_dw"``); ``node_modules``
    maps node id -> submodule name. ``forward`` takes the graph inputs positionally, in
    ``graph.inputs`` order, and returns one tensor (one graph output) or a tuple.
    """

    def __init__(self, graph: Graph) -> None:
        super().__init__()
        graph.validate()
        self.graph = graph
        self.layers = nn.ModuleDict()
        self.node_modules: dict[str, str] = {}
        for n in graph.nodes:
            name = base = _sanitize(n.id)
            k = 1
            while name in self.layers:
                k += 1
                name = f"{base}_{k}"
            self.layers[name] = _make_module(n)
            self.node_modules[n.id] = name
        self._plan = [(self.node_modules[n.id], n.inputs, n.outputs) for n in graph.nodes]
        self._inputs = list(graph.inputs)

    def forward(self, *xs: Tensor) -> Tensor | tuple[Tensor, ...]:
        if len(xs) != len(self._inputs):
            raise GraphError(f"expected {len(self._inputs)} input tensor(s), got {len(xs)}")
        env: dict[str, Tensor] = dict(zip(self._inputs, xs, strict=False))
        for name, ins, outs in self._plan:
            y = self.layers[name](*[env[t] for t in ins])
            if isinstance(y, tuple):
                env.update(zip(outs, y, strict=False))
            else:
                env[outs[0]] = y
        res = tuple(env[t] for t in self.graph.outputs)
        return res[0] if len(res) == 1 else res

    def _leaf(self, node: Node) -> nn.Module:
        m = self.layers[self.node_modules[node.id]]
        return m.conv if isinstance(m, _Conv) else m

    def export_params(self) -> dict[str, np.ndarray]:
        """Learnable tensors and BN running stats as float32 numpy arrays, keyed like the
        initializers of :func:`~nasctl.arch.onnx_io.to_onnx` (``"<node id>.weight"``, ...)."""
        out: dict[str, np.ndarray] = {}
        for n in self.graph.nodes:
            m = self._leaf(n)
            for pn in _PARAM_NAMES:
                t = getattr(m, pn, None)
                if isinstance(t, torch.Tensor):
                    out[f"{n.id}.{pn}"] = t.detach().cpu().float().numpy().copy()
        return out

    def load_params(self, params: dict[str, np.ndarray]) -> None:
        """Inverse of :meth:`export_params` (e.g. to load the random weights of ``to_onnx``)."""
        with torch.no_grad():
            for n in self.graph.nodes:
                m = self._leaf(n)
                for pn in _PARAM_NAMES:
                    t = getattr(m, pn, None)
                    key = f"{n.id}.{pn}"
                    if isinstance(t, torch.Tensor) and key in params:
                        src = torch.as_tensor(np.array(params[key]), dtype=t.dtype)
                        if src.shape != t.shape:
                            raise GraphError(f"{key}: shape {tuple(src.shape)} != {tuple(t.shape)}")
                        t.copy_(src)


def to_torch(graph: Graph) -> GraphModule:
    """A trainable module computing the same function as ``to_onnx(graph)``.

    Raises:
        GraphError: the graph has an op that cannot run in torch (``other``).
    """
    return GraphModule(graph)
