"""Cost counts of an architecture graph: MACs, parameters, activation and weight bytes.

Conventions (those of the published ResNet/MobileNet numbers):

* MACs are counted for conv/dwconv/gconv (``out_elems * in_channels / groups * kh * kw``),
  linear (``out_elems * in_features``, i.e. ``batch * in * out``) and matmul
  (``out_elems * K``); every other op counts 0 MACs.
* ``params``: learnable values: conv/linear weights and biases, batch/layer norm affine
  (gamma, beta); not batch-norm running statistics.
* ``weight_bytes``: every stored tensor of the node at FP32 (4 bytes/value), running statistics
  included; for ``other`` nodes read from ONNX, their constant inputs (``attrs["const_elems"]``).
* ``act_read_bytes`` / ``act_write_bytes``: elements of the node's input / output activation
  tensors x 4 bytes (FP32), views such as reshape included; unknown shapes count 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from nasctl.arch.graph import CONV_OPS, Graph, Node, Shape

BYTES_PER_ELEM = 4  # FP32

COST_KEYS: tuple[str, ...] = (
    "macs",
    "params",
    "act_read_bytes",
    "act_write_bytes",
    "weight_bytes",
)


@dataclass
class GraphCosts:
    """Costs of a graph.

    Attributes:
        total: sums over nodes, keys :data:`COST_KEYS` (MACs, params count, bytes).
        per_node: node id -> dict with the same keys.
    """

    total: dict[str, int] = field(default_factory=dict)
    per_node: dict[str, dict[str, int]] = field(default_factory=dict)


def numel(shape: Shape) -> int:
    """Number of elements; 0 for an empty or partly unknown (``-1``) shape."""
    if not shape or any(d < 0 for d in shape):
        return 0
    return math.prod(shape)


def _kernel_elems(node: Node) -> int:
    k = node.attrs.get("kernel", 1)
    if isinstance(k, int):
        nd = max(len(node.out_shape) - 2, 1) if node.out_shape else 2
        return k**nd
    return math.prod(int(v) for v in k)


def _conv_costs(n: Node) -> tuple[int, int, int]:
    """(macs, params, weight values) of a convolution."""
    a = n.attrs
    cin, cout, g = int(a["in_channels"]), int(a["out_channels"]), int(a.get("groups", 1))
    per_out = cin // g * _kernel_elems(n)
    weights = cout * per_out + (cout if a.get("bias", False) else 0)
    return numel(n.out_shape) * per_out, weights, weights


def _linear_costs(n: Node) -> tuple[int, int, int]:
    a = n.attrs
    fin, fout = int(a["in_features"]), int(a["out_features"])
    weights = fin * fout + (fout if a.get("bias", n.op == "linear") else 0)
    return numel(n.out_shape) * fin, weights, weights


def _matmul_costs(n: Node) -> tuple[int, int, int]:
    if "in_features" in n.attrs and "out_features" in n.attrs:
        return _linear_costs(n)
    k = n.in_shapes[0][-1] if n.in_shapes and n.in_shapes[0] else -1
    return (numel(n.out_shape) * k if k > 0 else 0), 0, 0


def _norm_costs(n: Node) -> tuple[int, int, int]:
    if n.op == "batchnorm":
        c = int(n.attrs.get("channels", -1))
        if c < 0 and n.in_shapes and len(n.in_shapes[0]) > 1:
            c = n.in_shapes[0][1]
        c = max(c, 0)
        return 0, 2 * c, 4 * c
    shp = n.in_shapes[0] if n.in_shapes else ()
    axis = int(n.attrs.get("axis", -1))
    norm = numel(tuple(shp[axis:])) if shp else 0
    return 0, 2 * norm, 2 * norm


def node_costs(n: Node) -> dict[str, int]:
    """Costs of one node (see the module docstring for conventions)."""
    macs = params = weight_elems = 0
    if n.op in CONV_OPS and "in_channels" in n.attrs:
        macs, params, weight_elems = _conv_costs(n)
    elif n.op == "linear" and "in_features" in n.attrs:
        macs, params, weight_elems = _linear_costs(n)
    elif n.op == "matmul":
        macs, params, weight_elems = _matmul_costs(n)
    elif n.op in ("batchnorm", "layernorm"):
        macs, params, weight_elems = _norm_costs(n)
    elif n.op == "other":
        weight_elems = int(n.attrs.get("const_elems", 0))
    return {
        "macs": int(macs),
        "params": int(params),
        "act_read_bytes": BYTES_PER_ELEM * sum(numel(s) for s in n.in_shapes),
        "act_write_bytes": BYTES_PER_ELEM * sum(numel(s) for s in n.out_shapes),
        "weight_bytes": BYTES_PER_ELEM * int(weight_elems),
    }


def graph_costs(graph: Graph) -> GraphCosts:
    """Per-node and total MACs, parameters, activation bytes read/written and weight bytes."""
    per_node = {n.id: node_costs(n) for n in graph.nodes}
    total = {k: 0 for k in COST_KEYS}
    for c in per_node.values():
        for k in COST_KEYS:
            total[k] += c[k]
    return GraphCosts(total=total, per_node=per_node)
