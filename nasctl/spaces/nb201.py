"""NAS-Bench-201: the cell space of Dong & Yang (ICLR 2020), all 15,625 cells.

Genotype: the official arch string, six edges ``op~j`` (edge from node j) grouped by target node::

    |nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|

Ops: ``none``, ``skip_connect``, ``nor_conv_1x1``, ``nor_conv_3x3``, ``avg_pool_3x3``.

Network (as in the NB201 reference code, CIFAR input 32x32): stem conv3x3(16)+BN; three stages of
five cells (C = 16, 32, 64) with a residual reduction block before stages 2 and 3 (ReLU-conv3x3
s2-BN, ReLU-conv3x3-BN; shortcut avgpool 2x2 s2 + conv1x1); then BN-ReLU-global avgpool-linear(10).

Cell semantics in the graph:
  * ``nor_conv_kxk`` = ReLU-Conv-BN (one ReLU per edge, as in the reference code);
    ``avg_pool_3x3`` = stride 1, pad 1, ``count_include_pad=False``.
  * ``skip_connect`` adds no node: the edge passes the source tensor itself.
  * ``none`` adds nothing. A node is the sum of its incoming edges (an ``add`` node when there
    are two or more, else the single edge's tensor).
  * A node without any incoming edge is zero. When something consumes it (an op edge out of it,
    or it is the cell output) it is materialised as a ``pad`` node that crops every row of the
    cell input and pads as many zero rows (ONNX ``Pad`` with a negative begin pad), so a cell
    whose output is cut off outputs an exact zero map and the rest of the network runs on it,
    as in the reference implementation. The graph computes the NB201 function exactly.
  * Nodes that do not reach the cell output are still built ("dead branches still run" in the
    PyTorch reference the public latency tables were measured with).

Node ids: ``/stem/conv``, ``/s1/c1/e01/conv`` (edge 0->1 of cell 1 of stage 1), ``/s1/c1/n3/add``,
``/s1/c1/n1/zero``, ``/s2/reduce/a/conv``, ``/s2/reduce/short/pool``, ``/head/fc``.

Index order: :meth:`NB201Space.enumerate` returns the arch strings in the official ``nb201_index``
order, read from ``data/nb201_order.txt`` (derived from the HELP repository data, MIT licence; see
``data/README.md``).
"""

from __future__ import annotations

import functools
import random
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from nasctl.arch.graph import Graph, GraphBuilder
from nasctl.errors import SpaceError
from nasctl.spaces.base import SearchSpace, register_space
from nasctl.spaces.nb201_arrays import nb201_graph_arrays
from nasctl.spaces.nb201_genotype import (  # noqa: F401 - EDGES, OPS re-exported
    EDGES,
    NUM_ARCHS,
    OPS,
    format_genotype,
    genotype_code,
    parse_genotype,
)

if TYPE_CHECKING:
    from nasctl.arch.arrays import GraphArrays

ORDER_FILE = "nb201_order.txt"


@functools.lru_cache(maxsize=1)
def _order() -> tuple[str, ...]:
    """Six-digit op codes in official index order, from the shipped data file."""
    text = resources.files("nasctl.spaces").joinpath("data", ORDER_FILE).read_text()
    codes = tuple(ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#"))
    if len(codes) != NUM_ARCHS:  # pragma: no cover - packaging error
        raise SpaceError(f"{ORDER_FILE} has {len(codes)} entries; expected {NUM_ARCHS}")
    return codes


@functools.lru_cache(maxsize=1)
def _index() -> dict[str, int]:
    return {c: i for i, c in enumerate(_order())}


def write_order_file(csv_path: str | Path, out_path: str | Path) -> int:
    """Regenerate ``data/nb201_order.txt`` from a table with columns ``nb201_index`` and ``arch``
    (e.g. ``shared/data/nb201/latency_ms.csv``). Returns the number of rows written."""
    import csv

    rows: dict[int, str] = {}
    with open(csv_path, newline="") as f:
        for r in csv.DictReader(f):
            rows[int(r["nb201_index"])] = genotype_code(parse_genotype(r["arch"]))
    if sorted(rows) != list(range(NUM_ARCHS)):
        raise SpaceError(f"{csv_path}: expected nb201_index 0..{NUM_ARCHS - 1}")
    header = (
        "# NAS-Bench-201 official index order: line i (after these comments) is the cell with\n"
        "# nb201_index i, one digit per edge (1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2), op codes\n"
        "# 0 none, 1 skip_connect, 2 nor_conv_1x1, 3 nor_conv_3x3, 4 avg_pool_3x3.\n"
        "# Derived from the HELP repository data (MIT licence), see README.md.\n"
    )
    Path(out_path).write_text(header + "\n".join(rows[i] for i in range(NUM_ARCHS)) + "\n")
    return NUM_ARCHS


@register_space
class NB201Space(SearchSpace):
    """NAS-Bench-201 cells in the NB201 CIFAR network (15,625 genotypes)."""

    name = "nb201"
    description = "NAS-Bench-201 cell space (official arch strings and index order), CIFAR 32x32"

    def __init__(
        self,
        num_classes: int = 10,
        channels: int = 16,
        cells_per_stage: int = 5,
        resolution: int = 32,
    ) -> None:
        if resolution < 8 or resolution > 512:
            raise SpaceError(f"nb201 resolution {resolution} out of range; expected 8..512")
        self.num_classes = num_classes
        self.channels = channels
        self.cells_per_stage = cells_per_stage
        self.resolution = resolution

    def proxy_space(self, num_classes: int) -> NB201Space:
        """Proxy training (``train:*``): the same cell, 8 stem channels, one cell per stage,
        16 px input."""
        return NB201Space(num_classes, channels=8, cells_per_stage=1, resolution=16)

    # -- genotypes ---------------------------------------------------------------------------
    def parse(self, genotype: str) -> tuple[str, ...]:
        return parse_genotype(genotype)

    def format(self, value: tuple[str, ...] | list[str]) -> str:
        return format_genotype(value)

    def sample(self, rng: random.Random) -> str:
        return format_genotype([rng.choice(OPS) for _ in EDGES])

    def mutate(self, genotype: str, rng: random.Random) -> str:
        ops = list(parse_genotype(genotype))
        k = rng.randrange(len(ops))
        ops[k] = rng.choice([o for o in OPS if o != ops[k]])
        return format_genotype(ops)

    def crossover(self, a: str, b: str, rng: random.Random) -> str:
        pa, pb = parse_genotype(a), parse_genotype(b)
        return format_genotype(
            [x if rng.random() < 0.5 else y for x, y in zip(pa, pb, strict=True)]
        )

    def size(self) -> int:
        return NUM_ARCHS

    def enumerate(self) -> list[str]:
        return [format_genotype([OPS[int(c)] for c in code]) for code in _order()]

    def index_of(self, genotype: str) -> int:
        """Official ``nb201_index`` of an arch string."""
        return _index()[genotype_code(parse_genotype(genotype))]

    def arch_at(self, index: int) -> str:
        """Arch string of an official ``nb201_index``."""
        if not 0 <= index < NUM_ARCHS:
            raise SpaceError(f"nb201 index {index} out of range; expected 0..{NUM_ARCHS - 1}")
        return format_genotype([OPS[int(c)] for c in _order()[index]])

    def structure_counts(self, genotype: str) -> tuple[float, ...]:
        """Live edges per op (on a path from the cell input to its output), additions and zero
        maps per cell (those the graph materialises: a node without inputs that an edge or the
        output reads), nodes without inputs (read or not), and 1.0 when the output is cut off
        from the input: what a cell's cost depends on beyond its op counts."""
        return _structure(parse_genotype(genotype))

    def connected(self, genotype: str) -> bool:
        """Whether the cell output is reachable from its input (341 cells are not: their
        networks' logits do not depend on the image; report them separately)."""
        reach = {0}
        for (src, dst), op in zip(EDGES, parse_genotype(genotype), strict=True):
            if op != "none" and src in reach:
                reach.add(dst)
        return 3 in reach

    # -- graph -------------------------------------------------------------------------------
    def graph_arrays(self, genotypes: Sequence[str]) -> GraphArrays:
        """As :meth:`SearchSpace.graph_arrays`, from cached cells (see ``nb201_arrays``)."""
        if type(self).to_graph is not NB201Space.to_graph:  # a subclass builds other graphs
            return super().graph_arrays(genotypes)
        return nb201_graph_arrays(self, genotypes)

    def to_graph(self, genotype: str) -> Graph:
        ops = parse_genotype(genotype)
        r = self.resolution
        b = GraphBuilder(f"nb201-{genotype_code(ops)}", (1, 3, r, r))
        x = b.conv(b.input, self.channels, 3, id="/stem/conv")
        x = b.batchnorm(x, id="/stem/bn")
        c = self.channels
        for s in range(1, 4):
            if s > 1:
                c *= 2
                x = _reduction(b, x, c, f"/s{s}/reduce")
            for k in range(1, self.cells_per_stage + 1):
                x = _cell(b, x, ops, f"/s{s}/c{k}")
        x = b.batchnorm(x, id="/head/bn")
        x = b.act(x, "relu", id="/head/relu")
        x = b.global_pool(x, id="/head/pool")
        x = b.flatten(x, id="/head/flatten")
        x = b.linear(x, self.num_classes, id="/head/fc")
        meta = {"space": self.name, "genotype": format_genotype(ops), "resolution": r}
        return b.build([x], meta=meta)


def _relu_conv_bn(b: GraphBuilder, x: str, c: int, k: int, prefix: str, stride: int = 1) -> str:
    x = b.act(x, "relu", id=f"{prefix}/relu")
    x = b.conv(x, c, k, stride=stride, id=f"{prefix}/conv")
    return b.batchnorm(x, id=f"{prefix}/bn")


def _reduction(b: GraphBuilder, x: str, c: int, prefix: str) -> str:
    """NB201 ResNetBasicblock with stride 2."""
    y = _relu_conv_bn(b, x, c, 3, f"{prefix}/a", stride=2)
    y = _relu_conv_bn(b, y, c, 3, f"{prefix}/b")
    s = b.pool(x, "avg", 2, stride=2, pads=[0, 0, 0, 0], id=f"{prefix}/short/pool")
    s = b.conv(s, c, 1, id=f"{prefix}/short/conv")
    return b.add([s, y], id=f"{prefix}/add")


def _zeros_like(b: GraphBuilder, x: str, id: str) -> str:
    """A zero map shaped like ``x``: crop all rows, pad as many zero rows (ONNX Pad)."""
    h = b.shape(x)[2]
    return b.pad(x, [-h, 0, h, 0], id=id)


@functools.lru_cache(maxsize=4096)
def _cell_plan(ops: tuple[str, ...]) -> tuple[dict[int, list[tuple[int, str]]], frozenset[int]]:
    """Incoming op edges (source, op) of nodes 1..3 and the nodes something consumes."""
    incoming: dict[int, list[tuple[int, str]]] = {1: [], 2: [], 3: []}
    for (src, dst), op in zip(EDGES, ops, strict=True):
        if op != "none":
            incoming[dst].append((src, op))
    # Which nodes are consumed: the output, and sources of op edges out of them.
    consumed = frozenset({3} | {src for d in incoming.values() for src, _ in d})
    return incoming, consumed


def _cell(b: GraphBuilder, x: str, ops: tuple[str, ...], prefix: str) -> str:
    """One NB201 cell on input ``x``; returns the cell output tensor."""
    c = b.shape(x)[1]
    incoming, consumed = _cell_plan(ops)
    nodes: dict[int, str | None] = {0: x}
    for i in (1, 2, 3):
        terms: list[str] = []
        for src, op in incoming[i]:
            t = nodes[src]  # never None: sources of edges are consumed, so materialised
            assert t is not None
            terms.append(_edge(b, t, c, op, f"{prefix}/e{src}{i}"))
        if not terms:
            nodes[i] = _zeros_like(b, x, id=f"{prefix}/n{i}/zero") if i in consumed else None
        elif len(terms) == 1:
            nodes[i] = terms[0]
        else:
            nodes[i] = b.add(terms, id=f"{prefix}/n{i}/add")
    out = nodes[3]
    assert out is not None
    return out


def _edge(b: GraphBuilder, x: str, c: int, op: str, prefix: str) -> str:
    if op == "skip_connect":
        return x
    if op == "nor_conv_1x1":
        return _relu_conv_bn(b, x, c, 1, prefix)
    if op == "nor_conv_3x3":
        return _relu_conv_bn(b, x, c, 3, prefix)
    if op == "avg_pool_3x3":
        return b.pool(x, "avg", 3, stride=1, id=f"{prefix}/pool", count_include_pad=False)
    raise SpaceError(f"nb201: op {op!r} has no graph")  # pragma: no cover - parse checks ops


@functools.lru_cache(maxsize=16384)
def _structure(ops: tuple[str, ...]) -> tuple[float, ...]:
    """See :meth:`NB201Space.structure_counts` (ops in edge order)."""
    fwd = {0}
    for (s, t), o in zip(EDGES, ops, strict=True):
        if o != "none" and s in fwd:
            fwd.add(t)
    bwd = {3}
    for (s, t), o in reversed(list(zip(EDGES, ops, strict=True))):
        if o != "none" and t in bwd:
            bwd.add(s)
    live = [0.0] * len(OPS)
    for (s, t), o in zip(EDGES, ops, strict=True):
        if o != "none" and s in fwd and t in bwd:
            live[OPS.index(o)] += 1
    incoming, consumed = _cell_plan(ops)  # what the graph builds (to_graph)
    adds = sum(max(0, len(incoming[j]) - 1) for j in (1, 2, 3))
    # zero maps the graph materialises: a node without incoming edges that something consumes
    # (a node nothing reads is not built; counting it made sparse cells look like rare ones)
    zeros = sum(1 for j in (1, 2, 3) if not incoming[j] and j in consumed)
    # and every node without inputs, read or not: the public tables follow neither count alone
    # (without this one pixel3 at p25 missed in 2 of 10 seeds; docs/benchmarks.md, issue 17)
    empty = sum(1 for j in (1, 2, 3) if not incoming[j])
    return (*live, float(adds), float(zeros), float(empty), 0.0 if 3 in fwd else 1.0)
