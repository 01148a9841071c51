"""Many graphs as flat arrays, one row per node: the input of featurization.

:class:`GraphArrays` holds, for a batch of graphs stored one after the other, each node's raw
attributes (:data:`RAW_COLUMNS`), the data-flow edges as global node indices, the output nodes and
each graph's depth. :func:`graph_arrays` scans :class:`~nasctl.arch.graph.Graph` objects node by
node; a search space may build the same arrays for many genotypes at once without building graphs
(``SearchSpace.graph_arrays``), which must give exactly what :func:`graph_arrays` gives for the
space's ``to_graph`` (rows, edge order, outputs, depth).

Units: kernel area and output spatial size in pixels, MACs in multiply-accumulates, params and
element counts in elements (bytes are the featurizer's business: it knows the precision).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod
from typing import Any

import numpy as np

from nasctl.arch.graph import OP_INDEX, Graph, Shape

#: Columns of :attr:`GraphArrays.raw`.
RAW_COLUMNS: tuple[str, ...] = (
    "op",  # index into OPS
    "kernel_area",
    "stride",
    "groups",
    "c_in",
    "c_out",
    "spatial_out",  # output pixels (H*W), 1 for non-spatial outputs
    "macs",
    "params",
    "read_elems",  # elements of all inputs
    "out_elems",  # elements of all outputs
)
N_RAW = len(RAW_COLUMNS)
_OTHER = OP_INDEX["other"]


@dataclass
class GraphArrays:
    """A batch of graphs as arrays (see the module docstring).

    ``raw``: (N, N_RAW) float64, nodes of graph 0 in graph order, then graph 1, ...
    ``sizes``: (B,) int64 nodes per graph. ``src``/``dst``: (E,) int64 global node indices of each
    data-flow edge (producer, consumer), grouped by graph, in consumer order then input order.
    ``outs``: (O,) int64 global indices of the nodes producing graph outputs. ``depth``: (B,)
    int64 longest path in nodes. ``input_shapes``: first input shape per graph (``(1,)`` if
    none). ``precisions``: ``meta["precision"]`` per graph (``"fp32"`` if unset).
    ``node_ids``: per graph, node ids in order (None when built without graphs).
    """

    raw: np.ndarray
    sizes: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    outs: np.ndarray
    depth: np.ndarray
    input_shapes: list[Shape]
    precisions: list[str]
    node_ids: list[list[str]] | None = None

    def __len__(self) -> int:
        return int(self.sizes.size)

    @property
    def offsets(self) -> np.ndarray:
        """(B + 1,) first node index of each graph, then N."""
        return np.r_[0, np.cumsum(self.sizes)].astype(np.int64)

    @classmethod
    def concat(cls, parts: list[GraphArrays]) -> GraphArrays:
        """One batch of the graphs of ``parts``, in order."""
        if len(parts) == 1:
            return parts[0]
        shift = np.r_[0, np.cumsum([p.raw.shape[0] for p in parts])[:-1]].astype(np.int64)
        ids = None
        if all(p.node_ids is not None for p in parts):
            ids = [i for p in parts for i in p.node_ids or []]
        return cls(
            raw=np.vstack([p.raw for p in parts]),
            sizes=np.concatenate([p.sizes for p in parts]),
            src=np.concatenate([p.src + s for p, s in zip(parts, shift, strict=True)]),
            dst=np.concatenate([p.dst + s for p, s in zip(parts, shift, strict=True)]),
            outs=np.concatenate([p.outs + s for p, s in zip(parts, shift, strict=True)]),
            depth=np.concatenate([p.depth for p in parts]),
            input_shapes=[s for p in parts for s in p.input_shapes],
            precisions=[s for p in parts for s in p.precisions],
            node_ids=ids,
        )


def _kernel_area(k: Any) -> float:
    if isinstance(k, int):
        return float(k * k)
    if isinstance(k, list | tuple) and len(k) >= 2:
        return float(k[0] * k[1])
    return 1.0


def _first(v: Any) -> float:
    if isinstance(v, list | tuple):
        return float(v[0]) if v else 1.0
    return float(v)


def node_raw(node: Any) -> tuple[int, float, float, float, float, float, float, float, float]:
    """(op index, kernel area, stride, groups, c_in, c_out, output pixels, MACs, params)."""
    op = node.op
    a = node.attrs
    out: tuple[int, ...] = node.out_shapes[0] if node.out_shapes else ()
    out_el = float(prod(out)) if out else 0.0
    spatial = float(prod(out[2:])) if len(out) > 2 else 1.0
    ins = node.in_shapes
    c_out = float(out[1]) if len(out) > 1 else 0.0
    c_in = float(ins[0][1]) if ins and len(ins[0]) > 1 else 0.0
    k_area, stride, groups, macs, params = 1.0, 1.0, 1.0, 0.0, 0.0
    if op == "conv" or op == "dwconv" or op == "gconv":
        k_area = _kernel_area(a.get("kernel", 1))
        stride = _first(a.get("stride", 1))
        groups = float(a.get("groups", 1)) or 1.0
        macs = out_el * (c_in / groups) * k_area
        params = c_out * (c_in / groups) * k_area + (c_out if a.get("bias") else 0.0)
    elif op == "linear" or op == "matmul":
        c_in = float(a.get("in_features", ins[0][-1] if ins and ins[0] else 0))
        c_out = float(out[-1]) if out else 0.0
        macs = out_el * c_in
        if op == "linear":
            params = c_in * c_out + (c_out if a.get("bias", True) else 0.0)
    elif op == "maxpool" or op == "avgpool":
        k_area = _kernel_area(a.get("kernel", 1))
        stride = _first(a.get("stride", 1))
        macs = out_el * k_area
    elif op == "globalavgpool" or op == "globalmaxpool":
        macs = float(prod(ins[0])) if ins else 0.0
    elif op == "batchnorm" or op == "layernorm":
        params = 2.0 * c_out
    return OP_INDEX.get(op, _OTHER), k_area, stride, groups, c_in, c_out, spatial, macs, params


_CONV_KEYS = ("kernel", "stride", "groups", "bias")
_POOL_KEYS = ("kernel", "stride")
_FC_KEYS = ("in_features", "bias")
_KEYS_OF: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("conv", "dwconv", "gconv"), _CONV_KEYS),
    **dict.fromkeys(("maxpool", "avgpool"), _POOL_KEYS),
    **dict.fromkeys(("linear", "matmul"), _FC_KEYS),
}
_MISSING = object()


def _row_key(node: Any) -> tuple[Any, ...]:
    """What :func:`node_row` of a node depends on: op, input count, shapes and the attributes
    that :func:`node_raw` reads (lists as tuples). May be unhashable (odd attribute values)."""
    key = (node.op, len(node.inputs), tuple(node.in_shapes), tuple(node.out_shapes))
    names = _KEYS_OF.get(node.op)
    if names is None:
        return key
    a = node.attrs
    vals = [a.get(k, _MISSING) for k in names]
    return key + tuple(tuple(v) if type(v) is list else v for v in vals)


def node_row(node: Any) -> tuple[float, ...]:
    """Raw row of a node (:data:`RAW_COLUMNS`): :func:`node_raw` plus input and output element
    counts."""
    read = 0
    for s in node.in_shapes[: len(node.inputs)]:
        read += prod(s)
    outs = node.out_shapes
    outs_el = prod(outs[0]) if len(outs) == 1 else sum(prod(s) for s in outs)
    return (*node_raw(node), read, outs_el)


def _scan(
    graph: Graph, memo: dict[Any, tuple[float, ...]] | None = None
) -> tuple[np.ndarray, list[int], list[int], list[int], int]:
    """One pass over the nodes: raw rows (n, N_RAW), edge lists, output nodes, depth. ``memo``
    caches rows of nodes with equal content (shared across the graphs of a batch)."""
    memo = {} if memo is None else memo
    nodes = graph.nodes
    n = len(nodes)
    rows: list[tuple[float, ...]] = []
    producer: dict[str, int] = {}
    src: list[int] = []
    dst: list[int] = []
    depth = [0] * n
    for i, node in enumerate(nodes):
        d = 0
        for t in node.inputs:
            j = producer.get(t)
            if j is not None:
                src.append(j)
                dst.append(i)
                if depth[j] > d:
                    d = depth[j]
        depth[i] = d + 1
        key: tuple[Any, ...] | None = _row_key(node)
        try:
            row = memo.get(key)
        except TypeError:  # an unhashable attribute value: no caching
            key, row = None, None
        if row is None:
            row = node_row(node)
            if key is not None:
                memo[key] = row
        rows.append(row)
        for t in node.outputs:
            producer[t] = i
    outs = [producer[t] for t in graph.outputs if t in producer]
    raw = np.array(rows, dtype=np.float64).reshape(n, N_RAW)
    return raw, src, dst, outs, max(depth, default=0)


def graph_arrays(graphs: list[Graph], *, keep_ids: bool = True) -> GraphArrays:
    """Scan ``graphs`` into one :class:`GraphArrays` (node rows of equal nodes computed once)."""
    memo: dict[Any, tuple[float, ...]] = {}
    scans = [_scan(g, memo) for g in graphs]
    sizes = np.array([s[0].shape[0] for s in scans], dtype=np.int64)
    off = (np.cumsum(sizes) - sizes).astype(np.int64)
    empty = np.zeros(0, np.int64)

    def cat(k: int) -> np.ndarray:
        parts = (np.asarray(s[k], np.int64) + o for s, o in zip(scans, off, strict=True))
        return np.concatenate([empty, *parts])

    raw = np.vstack([s[0] for s in scans]) if scans else np.zeros((0, N_RAW))
    return GraphArrays(
        raw=raw,
        sizes=sizes,
        src=cat(1),
        dst=cat(2),
        outs=cat(3),
        depth=np.array([s[4] for s in scans], dtype=np.int64),
        input_shapes=[tuple(g.input_shape) if g.inputs else (1,) for g in graphs],
        precisions=[str(g.meta.get("precision", "fp32")) for g in graphs],
        node_ids=[[nd.id for nd in g.nodes] for g in graphs] if keep_ids else None,
    )
