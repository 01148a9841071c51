"""``NB201Space.graph_arrays``: node arrays of many NB201 networks without building graphs.

A network is stem, ``cells_per_stage`` identical cells per stage, a reduction block before
stages 2 and 3, and the head (see :mod:`nasctl.spaces.nb201`). The stem, reductions and
head are cut out of one real ``to_graph`` output; so are the rows of the eight node kinds a cell
is made of, per stage (:data:`PROBE` holds all of them). A cell's structure follows from its six
ops (as in ``nb201._cell``) and is cached per op tuple (at most 15,625); rows of a cell are its
node kinds offset by its stage's rows. See :mod:`nasctl.spaces.templates`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from nasctl.arch import arrays
from nasctl.arch.graph import Graph
from nasctl.spaces import nb201_genotype as nb201
from nasctl.spaces.templates import SETUP_KEY, ChainStore, slice_graph, space_store


class NB201Space(Protocol):
    """What this module needs of :class:`nasctl.spaces.nb201.NB201Space` (which imports it)."""

    num_classes: int
    channels: int
    cells_per_stage: int
    resolution: int

    def to_graph(self, genotype: str) -> Graph: ...


_OP = "(" + "|".join(nb201.OPS) + ")"
_ARCH = re.compile(rf"\|{_OP}~0\|\+\|{_OP}~0\|{_OP}~1\|\+\|{_OP}~0\|{_OP}~1\|{_OP}~2\|")
#: A cell with every node kind: node 1 a consumed zero, node 2 an add of two, node 3 of three.
PROBE = ("none", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3", "skip_connect", "nor_conv_3x3")
#: Node kinds of a cell and where the probe cell of stage s has one (``/s{s}/c1/...``).
KIND_IDS = ("n1/zero", "e02/relu", "e02/conv", "e02/bn", "e12/conv", "n2/add", "e03/pool", "n3/add")
ZERO, RELU, CONV1, BN, CONV3, ADD2, POOL, ADD3 = range(len(KIND_IDS))


def _config(space: NB201Space) -> tuple[int, int, int, int]:
    return (space.num_classes, space.channels, space.cells_per_stage, space.resolution)


def _store(space: NB201Space) -> ChainStore:
    return space_store(
        space, _config(space), lambda st: _setup(space, st), max_structs=20_000, max_rows=1_000
    )


def _setup(space: NB201Space, store: ChainStore) -> tuple[np.ndarray, np.ndarray]:
    """Stem, reductions, head and per-stage kind rows from one real graph: structure id and
    row base of each segment slot (cell slots: structure -1 and their stage's kind rows)."""
    g = space.to_graph(nb201.format_genotype(PROBE))
    by_id = {n.id: n for n in g.nodes}
    k = space.cells_per_stage
    structs: list[int] = []
    bases: list[int] = []
    sid, base = store.add_piece(slice_graph(g, "/stem/", graph_input=True))
    structs.append(sid)
    bases.append(base)
    for s in (1, 2, 3):
        if s > 1:
            sid, base = store.add_piece(slice_graph(g, f"/s{s}/reduce/"))
            structs.append(sid)
            bases.append(base)
        stage_base = store.add_rows(
            [arrays.node_row(by_id[f"/s{s}/c1/{kind}"]) for kind in KIND_IDS]
        )
        structs += [-1] * k
        bases += [stage_base] * k
    sid, base = store.add_piece(slice_graph(g, "/head/"))
    structs.append(sid)
    bases.append(base)
    return np.array(structs, np.int64), np.array(bases, np.int64)


#: per cell node 1..3: (source node, index of the edge in the op tuple), in arch-string order
_INCOMING = ((1, ((0, 0),)), (2, ((0, 1), (1, 2))), (3, ((0, 3), (1, 4), (2, 5))))


def _add_cell(store: ChainStore, ops: tuple[str, ...]) -> int:
    """Structure of a cell (node kinds as row ids), mirroring ``nb201._cell``: per node, its
    incoming op edges in order (ReLU-conv-BN, a pool, or the source tensor itself), then a
    zero map (no edges but consumed) or an add (two or more terms)."""
    kinds: list[int] = []
    src: list[int] = []
    dst: list[int] = []
    depth: list[int] = []
    # node 1 is consumed by edges 1->2 and 1->3, node 2 by 2->3, node 3 is the output
    consumed = (True, ops[2] != "none" or ops[4] != "none", ops[5] != "none", True)
    tensors: list[tuple[int, int] | None] = [(-1, 0), None, None, None]  # (producer, depth)
    for i, edges in _INCOMING:
        terms: list[tuple[int, int]] = []
        for s, e in edges:
            op = ops[e]
            if op == "none":
                continue
            t = tensors[s]
            assert t is not None  # a source of an op edge is consumed, so materialised
            if op == "skip_connect":
                terms.append(t)
                continue
            j, d = t
            n = len(kinds)
            if op == "avg_pool_3x3":
                kinds.append(POOL)
                src.append(j)
                dst.append(n)
                depth.append(d + 1)
                terms.append((n, d + 1))
            else:
                kinds += (RELU, CONV1 if op == "nor_conv_1x1" else CONV3, BN)
                src += (j, n, n + 1)
                dst += (n, n + 1, n + 2)
                depth += (d + 1, d + 2, d + 3)
                terms.append((n + 2, d + 3))
        if len(terms) == 1:
            tensors[i] = terms[0]
        elif terms:
            n = len(kinds)
            kinds.append(ADD2 if len(terms) == 2 else ADD3)
            d = 0
            for j, dj in terms:
                src.append(j)
                dst.append(n)
                d = dj if dj > d else d
            depth.append(d + 1)
            tensors[i] = (n, d + 1)
        elif consumed[i]:
            n = len(kinds)
            kinds.append(ZERO)
            src.append(-1)
            dst.append(n)
            depth.append(1)
            tensors[i] = (n, 1)
    out = tensors[3]
    assert out is not None
    return store.add_struct(src, dst, out[0], depth, row_local=kinds)


def nb201_graph_arrays(space: NB201Space, genotypes: Sequence[str]) -> arrays.GraphArrays:
    """Exactly ``arrays.graph_arrays([space.to_graph(g) for g in genotypes])`` (no node ids)."""
    if space.cells_per_stage < 1:
        return arrays.graph_arrays([space.to_graph(g) for g in genotypes], keep_ids=False)
    store = _store(space)
    cache = store.cache
    match = _ARCH.fullmatch
    cells: list[int] = []
    for g in genotypes:
        m = match(g) if type(g) is str else None
        ops = m.groups() if m is not None else nb201.parse_genotype(g)  # raises
        sid = cache.get(ops)
        if sid is None:
            sid = cache[ops] = _add_cell(store, ops)
        cells.append(sid)
    structs, bases = cache[SETUP_KEY]
    n, width = len(cells), structs.size
    seg = np.tile(structs, (n, 1))
    cell_cols = structs < 0
    seg[:, cell_cols] = np.asarray(cells, np.int64)[:, None]
    r = space.resolution
    return store.assemble(
        seg.ravel(),
        np.tile(bases, n),
        np.full(n, width, np.int64),
        [(1, 3, r, r)] * n,
    )
