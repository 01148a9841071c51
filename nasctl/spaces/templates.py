"""Node arrays for many genotypes at once, from cached pieces (no graph per genotype).

Every built-in space is a chain of *segments* (stem, cells or blocks, head): each segment
consumes only the output tensor of the segment before it (or the graph input, for the first)
and its nodes follow that segment's nodes in :meth:`~nasctl.spaces.base.SearchSpace.to_graph`
order. A segment is a *structure* (local edges, where input ``-1`` is the segment input; the local
node producing the segment output, ``-1`` when the output is the input itself; depths counted from
the input) plus the raw rows of its nodes, which are row ids into one row table.

:class:`ChainStore` holds structures and rows (bounded: it empties itself when full, between
calls; :func:`space_store` shares one per space class and configuration, LRU) and
:meth:`ChainStore.assemble` turns per-genotype segment lists into
:class:`~nasctl.arch.arrays.GraphArrays` with numpy only. :func:`harvest` cuts a structure and its
rows out of nodes built by the space's own builder functions (rows by
:func:`nasctl.arch.arrays.node_row` itself); :func:`built_graph_arrays` does that once per segment
key for ``resnet`` and ``fbnet``. ``nb201`` and ``mbconv`` have their own modules
(``nb201_arrays``, ``mbconv_arrays``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import numpy as np

from nasctl.arch import arrays
from nasctl.arch.graph import Graph, GraphBuilder, Node, Shape

_I64 = np.int64
_I32 = np.int32


class Piece:
    """A harvested segment: local structure (see module docstring) and its node rows."""

    __slots__ = ("depth", "dst", "out", "rows", "src")

    def __init__(
        self,
        rows: list[tuple[float, ...]],
        src: list[int],
        dst: list[int],
        out: int,
        depth: list[int],
    ) -> None:
        self.rows, self.src, self.dst, self.out, self.depth = rows, src, dst, out, depth


def harvest(
    nodes: Sequence[Node], input_tensor: str | None, output_tensor: str, *, graph_input: bool
) -> Piece:
    """Structure and rows of ``nodes`` (one segment, in graph order) whose outside input is
    ``input_tensor``. ``graph_input``: that tensor is a graph input, which :func:`arrays._scan`
    gives no edges (the segment is then a first segment)."""
    producer: dict[str, int] = {}
    rows, src, dst = [], [], []
    depth: list[int] = []
    for i, node in enumerate(nodes):
        d = 0
        for t in node.inputs:
            j = producer.get(t)
            if j is None:
                if t != input_tensor:
                    raise ValueError(f"segment node {node.id!r} reads {t!r}, not the segment input")
                if graph_input:
                    continue
                j, dj = -1, 0
            else:
                dj = depth[j]
            src.append(j)
            dst.append(i)
            d = max(d, dj)
        depth.append(d + 1)
        rows.append(arrays.node_row(node))
        for t in node.outputs:
            producer[t] = i
    if output_tensor == input_tensor:
        out = -1
    elif output_tensor in producer:
        out = producer[output_tensor]
    else:
        raise ValueError(f"segment output {output_tensor!r} is not produced by the segment")
    return Piece(rows, src, dst, out, depth)


def slice_graph(graph: Graph, prefix: str, *, graph_input: bool = False) -> Piece:
    """The segment of ``graph`` whose node ids start with ``prefix`` (contiguous), its input the
    one tensor read from before it and its output the one tensor of it read after it (or the
    graph output). No such node: a segment that passes its input through."""
    idx = [i for i, n in enumerate(graph.nodes) if n.id.startswith(prefix)]
    if not idx:
        return Piece([], [], [], -1, [])
    if idx != list(range(idx[0], idx[-1] + 1)):
        raise ValueError(f"segment {prefix!r} of {graph.name} is not contiguous")
    nodes = graph.nodes[idx[0] : idx[-1] + 1]
    inside = {t for n in nodes for t in n.outputs}
    outside_in = {t for n in nodes for t in n.inputs if t not in inside}
    if len(outside_in) != 1:
        raise ValueError(f"segment {prefix!r} reads {sorted(outside_in)}; expected one tensor")
    (inp,) = outside_in
    after = graph.nodes[idx[-1] + 1 :]
    used = {t for n in after for t in n.inputs if t in inside} | {
        t for t in graph.outputs if t in inside
    }
    if len(used) != 1:
        raise ValueError(f"segment {prefix!r} has outputs {sorted(used)}; expected one")
    return harvest(nodes, inp, used.pop(), graph_input=graph_input)


#: one segment of a plan: (key, build, args); ``build(builder, x, *args)`` adds the segment's
#: nodes on tensor ``x`` and returns its output tensor; the key holds everything the nodes (and
#: the segment's input shape) depend on
Segment = tuple[Hashable, Callable[..., str], tuple[Any, ...]]


def built_graph_arrays(
    store: ChainStore,
    genotypes: Sequence[str],
    plan: Callable[[str], tuple[Shape, list[Segment]]],
) -> arrays.GraphArrays:
    """Arrays of chain-space genotypes whose segments are built once per key.

    ``plan(genotype)`` returns the input shape and the segments in graph order (the first reads
    the graph input). A segment whose key is new is built with the space's own builder function
    on a scratch :class:`GraphBuilder` whose input has the shape the segment before it outputs,
    and harvested (:func:`harvest`); its output shape is cached with it."""
    cache = store.cache
    structs: list[int] = []
    bases: list[int] = []
    counts: list[int] = []
    shapes: list[Shape] = []
    for g in genotypes:
        shape, segs = plan(g)
        cur = shape
        for i, (key, build, args) in enumerate(segs):
            hit = cache.get(key)
            if hit is None:
                b = GraphBuilder("segment", cur)
                y = build(b, b.input, *args)
                piece = harvest(b.build([y]).nodes, b.input, y, graph_input=i == 0)
                hit = cache[key] = (*store.add_piece(piece), b.shape(y))
            structs.append(hit[0])
            bases.append(hit[1])
            cur = hit[2]
        counts.append(len(segs))
        shapes.append(shape)
    return store.assemble(
        np.array(structs, _I64), np.array(bases, _I64), np.array(counts, _I64), shapes
    )


class ChainStore:
    """Structures and rows of segments, appended as they are met; bounded (see :meth:`trim`)."""

    def __init__(self, max_structs: int = 50_000, max_rows: int = 400_000) -> None:
        self.max_structs, self.max_rows = max_structs, max_rows
        self.clear()

    def clear(self) -> None:
        #: caller's caches (key -> anything), emptied with the store
        self.cache: dict[Hashable, Any] = {}
        self._n: list[int] = []
        self._out: list[int] = []
        self._od: list[int] = []
        self._md: list[int] = []
        self._rl: list[int] = []
        self._es: list[int] = []
        self._ed: list[int] = []
        self._ne: list[int] = []
        self._rows: list[np.ndarray] = []  # blocks of rows (k, N_RAW)
        self._n_rows = 0
        self._mat: dict[str, np.ndarray] = {}
        self._mat_counts = (0, 0, 0, 0)

    def trim(self) -> bool:
        """Empty the store if it is over its bounds (call between batches); True if emptied."""
        if len(self._n) > self.max_structs or self._n_rows > self.max_rows:
            self.clear()
            return True
        return False

    @property
    def n_rows(self) -> int:
        return self._n_rows

    def add_rows(self, rows: Sequence[tuple[float, ...]] | np.ndarray) -> int:
        """Append rows (:data:`~nasctl.arch.arrays.RAW_COLUMNS`); returns the id of the first."""
        block = np.asarray(rows, dtype=np.float64).reshape(-1, arrays.N_RAW)
        base = self._n_rows
        self._rows.append(block)
        self._n_rows += block.shape[0]
        return base

    def add_struct(
        self,
        src: Sequence[int],
        dst: Sequence[int],
        out: int,
        depth: Sequence[int],
        row_local: Sequence[int] | None = None,
    ) -> int:
        """Append a structure of ``len(depth)`` nodes; ``row_local`` are its nodes' row ids
        relative to a segment's row base (default ``0..n-1``). Returns its id."""
        n = len(depth)
        self._n.append(n)
        self._out.append(out)
        self._od.append(depth[out] if out >= 0 else 0)
        self._md.append(max(depth, default=0))
        self._rl.extend(range(n) if row_local is None else row_local)
        self._es.extend(src)
        self._ed.extend(dst)
        self._ne.append(len(src))
        return len(self._n) - 1

    def add_piece(self, piece: Piece) -> tuple[int, int]:
        """Structure id and row base of a harvested piece."""
        return self.add_struct(piece.src, piece.dst, piece.out, piece.depth), self.add_rows(
            piece.rows
        )

    def _arrays(self) -> dict[str, np.ndarray]:
        counts = (len(self._n), len(self._rl), len(self._es), len(self._rows))  # row blocks
        if counts == self._mat_counts:
            return self._mat
        old, m = self._mat_counts, self._mat

        def grow(name: str, data: list[Any], k: int, dtype: Any = _I64) -> None:
            new = np.asarray(data[old[k] :], dtype=dtype)
            m[name] = np.concatenate([m[name], new]) if name in m else new

        for name, data in (("n", self._n), ("out", self._out), ("od", self._od)):
            grow(name, data, 0)
        grow("md", self._md, 0)
        grow("ne", self._ne, 0)
        grow("rl", self._rl, 1, _I32)
        grow("es", self._es, 2, _I32)
        grow("ed", self._ed, 2, _I32)
        m["rows"] = np.vstack([m.get("rows", np.zeros((0, arrays.N_RAW))), *self._rows[old[3] :]])
        m["n0"] = np.r_[0, np.cumsum(m["n"])[:-1]].astype(_I64)
        m["e0"] = np.r_[0, np.cumsum(m["ne"])[:-1]].astype(_I64)
        self._mat_counts = counts
        return m

    def assemble(
        self,
        seg_struct: np.ndarray,
        seg_base: np.ndarray,
        segs_per_graph: np.ndarray,
        input_shapes: Sequence[Shape],
    ) -> arrays.GraphArrays:
        """Arrays of graphs made of consecutive segments: ``seg_struct`` (S,) structure ids,
        ``seg_base`` (S,) row bases, ``segs_per_graph`` (B,) segments of each graph (>= 1)."""
        m = self._arrays()
        seg_struct = np.asarray(seg_struct, _I64)
        seg_base = np.asarray(seg_base, _I64)
        counts = np.asarray(segs_per_graph, _I64)
        n_graphs, n_segs = counts.size, seg_struct.size
        if n_graphs == 0:
            return arrays.graph_arrays([], keep_ids=False)
        g0 = np.r_[0, np.cumsum(counts)[:-1]].astype(_I64)  # first segment of each graph
        seg_graph_first = np.repeat(g0, counts)  # first segment of my graph
        n_seg = m["n"][seg_struct]
        node_off = np.r_[0, np.cumsum(n_seg)[:-1]].astype(_I64)
        n_nodes = int(n_seg.sum())
        # node rows: row_local of the segment's structure, plus the segment's row base (int32
        # index arithmetic: half the memory traffic of int64)
        rl = np.repeat((m["n0"][seg_struct] - node_off).astype(_I32), n_seg)
        rl += np.arange(n_nodes, dtype=_I32)
        rl = m["rl"][rl]
        rl += np.repeat(seg_base.astype(_I32), n_seg)
        raw = np.take(m["rows"], rl, axis=0)
        # the tensor each segment reads: output of the last segment before it with an output
        out_l = m["out"][seg_struct]
        has_out = out_l >= 0
        out_glob = np.where(has_out, node_off + out_l, -1)
        last = np.maximum.accumulate(np.where(has_out, np.arange(n_segs, dtype=_I64), -1))
        prev = np.r_[-1, last[:-1]]
        in_prod = np.where(prev >= seg_graph_first, out_glob[np.maximum(prev, 0)], -1)
        # edges
        ne = m["ne"][seg_struct]
        e_off = np.r_[0, np.cumsum(ne)[:-1]].astype(_I64)
        n_edges = int(ne.sum())
        e_idx = np.repeat((m["e0"][seg_struct] - e_off).astype(_I32), ne)
        e_idx += np.arange(n_edges, dtype=_I32)
        e_node_off = np.repeat(node_off, ne)
        src_l = m["es"][e_idx]
        # an input edge (local -1) comes from in_prod, i.e. node_off + (in_prod - node_off);
        # the graph input (in_prod -1) gives -1, dropped below
        src = np.repeat(in_prod - node_off, ne)
        np.copyto(src, src_l, where=src_l >= 0)
        src += e_node_off
        dst = np.add(e_node_off, m["ed"][e_idx], out=e_node_off)
        keep = src >= 0
        if not keep.all():
            src, dst = src[keep], dst[keep]
        # depth: a segment's input depth is the sum of its predecessors' output depths
        od = m["od"][seg_struct]
        excl = np.cumsum(od) - od
        in_depth = excl - excl[seg_graph_first]
        depth = np.maximum.reduceat(in_depth + m["md"][seg_struct], g0)
        final = last[g0 + counts - 1]  # the segment producing each graph's output
        outs = out_glob[final[final >= g0]]
        sizes = np.add.reduceat(n_seg, g0).astype(_I64)
        return arrays.GraphArrays(
            raw=raw,
            sizes=sizes,
            src=src.astype(_I64, copy=False),
            dst=dst.astype(_I64, copy=False),
            outs=np.asarray(outs, _I64),
            depth=depth.astype(_I64, copy=False),
            input_shapes=list(input_shapes),
            precisions=["fp32"] * n_graphs,
            node_ids=None,
        )


#: stores by (space class, config), least recently used first; at most :data:`MAX_STORES`
_STORES: OrderedDict[Hashable, ChainStore] = OrderedDict()
MAX_STORES = 6
SETUP_KEY = "__setup__"


def space_store(
    space: Any, config: Hashable, setup: Callable[[ChainStore], Any] | None = None, **bounds: int
) -> ChainStore:
    """The :class:`ChainStore` shared by the instances of ``space``'s class with the same
    ``config`` (everything rows depend on); ``setup(store)`` fills an empty one (its result is
    ``store.cache["__setup__"]``). Stores are bounded (:meth:`ChainStore.trim`) and only the
    :data:`MAX_STORES` most recently used are kept."""
    key = (type(space).__module__, type(space).__qualname__, config)
    store = _STORES.pop(key, None)
    if store is None:
        store = ChainStore(**bounds)
    _STORES[key] = store
    while len(_STORES) > MAX_STORES:
        _STORES.popitem(last=False)
    if store.trim() or SETUP_KEY not in store.cache:
        store.clear()
        store.cache[SETUP_KEY] = setup(store) if setup is not None else None
    return store


def clear_stores() -> None:
    """Forget every cached segment (all spaces)."""
    _STORES.clear()
