"""A stable content hash of an architecture graph (Merkle-style over the DAG).

* A graph input tensor hashes its shape (not its name).
* A node hashes its label (op, canonical attrs, output shapes) and the hashes of its input
  tensors in order; sorted for commutative ops (``add``, ``mul``), so ``a + b == b + a``.
* Output tensor ``k`` of a node hashes (node hash, k).
* The graph hashes the sorted hashes of its output tensors and the sorted multiset of all node
  hashes (dead branches count too).

So node ids, tensor names and the (topological) node order do not matter; any change of op,
kernel, stride, channels, shape or wiring changes the hash. Canonical attrs make
``kernel=3`` equal ``kernel=[3, 3]`` and ``axis=-1`` equal ``axis=rank-1``.
"""

from __future__ import annotations

import hashlib
from typing import Any

from nasctl.arch.graph import Graph, Node

HASH_HEX_CHARS = 20
COMMUTATIVE_OPS = frozenset({"add", "mul"})
_SPATIAL_KEYS = frozenset({"kernel", "stride", "dilation"})
_AXIS_OPS = frozenset({"concat", "split", "softmax", "flatten", "layernorm"})
#: attrs that describe how a node was read, not what it computes
_IGNORED_ATTRS = frozenset({"map_error"})


def _canon_value(v: Any) -> str:
    t = type(v)
    if t is int or t is str:
        return repr(v)
    if t is list or t is tuple:
        if all(type(x) is int for x in v):
            return "[" + ",".join(map(str, v)) + "]"
        return "[" + ",".join(_canon_value(x) for x in v) + "]"
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, int | str):
        return repr(int(v) if isinstance(v, int) else str(v))
    if isinstance(v, dict):
        return "{" + ",".join(f"{k}:{_canon_value(v[k])}" for k in sorted(v)) + "}"
    return repr(v)


def _label(n: Node) -> str:
    rank = len(n.in_shapes[0]) if n.in_shapes else len(n.out_shape)
    parts = [n.op]
    for k in sorted(n.attrs):
        if k in _IGNORED_ATTRS:
            continue
        v = n.attrs[k]
        if k in _SPATIAL_KEYS and isinstance(v, int):
            v = [v] * max(rank - 2, 1)
        elif k == "axis" and isinstance(v, int) and v < 0 and n.op in _AXIS_OPS and rank:
            v += rank
        parts.append(f"{k}={_canon_value(v)}")
    parts.append("->" + "/".join(",".join(map(str, s)) for s in n.out_shapes))
    return ";".join(parts)


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def graph_hash(graph: Graph) -> str:
    """Content hash of ``graph`` as 20 hex characters (80 bits of SHA-256)."""
    tensors: dict[str, bytes] = {
        name: _h(b"input:" + ",".join(map(str, shape)).encode())
        for name, shape in graph.inputs.items()
    }
    node_hashes: list[bytes] = []
    missing = _h(b"missing")
    for n in graph.nodes:
        ins = [tensors.get(t, missing) for t in n.inputs]
        if n.op in COMMUTATIVE_OPS:
            ins.sort()
        nh = _h(_label(n).encode() + b"|" + b"".join(ins))
        node_hashes.append(nh)
        for k, t in enumerate(n.outputs):
            tensors[t] = nh if k == 0 else _h(nh + str(k).encode())
    outs = sorted(tensors.get(t, missing) for t in graph.outputs)
    node_hashes.sort()
    return hashlib.sha256(b"".join(outs) + b"#" + b"".join(node_hashes)).hexdigest()[
        :HASH_HEX_CHARS
    ]
