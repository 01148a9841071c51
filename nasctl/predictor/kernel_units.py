"""A graph as the kernels the cpu device runs (issue 16): the units a per-kernel model predicts.

ONNX Runtime's CPU provider (checked on ORT 1.32 with :func:`nasctl.profiler.ort_names.map_kernels`
on the optimized graph, ``tests/test_kernel_units.py``) folds BatchNorm into the convolution
before it, fuses ReLU/ReLU6 (Clip)/sigmoid/hardsigmoid into a convolution or a Gemm, and fuses a
residual ``Add`` (and the activation after it) into the convolution that produces one of its
operands when that convolution has no other consumer (``FusedConv`` with a sum input); Identity,
Flatten, Reshape and Dropout run no real kernel. A *unit* is one such fused kernel, with one
deliberate widening: an activation ORT runs as its own kernel right after its producer (SiLU,
hardswish) joins its producer's unit, as :mod:`nasctl.spaces.kernels` measures a layer with its
activation as one sample. A squeeze-excitation block (global pool, 1x1 reduce, activation, 1x1
expand, sigmoid/hardsigmoid gate, multiply with the block input) is one unit of type ``se``, as
nn-Meter treats it and as the kernels space samples it. So each sample of the kernels space is
exactly one unit, plus the layout conversions (``reorder`` units, :mod:`kernel_layout`) ORT runs
around it when it is measured alone; the sample's per-layer profile splits its latency between
them (:mod:`kernel_model`).

:func:`graph_units` returns per unit its type (:data:`TYPES`), its nodes and a feature row
(:data:`UNIT_FEATURES`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from nasctl.arch.costs import node_costs
from nasctl.arch.graph import ACTIVATIONS, Graph
from nasctl.predictor.kernel_layout import Reorder, reorder_bytes, reorders

#: unit types; ``split``: a channel split (ONNX Split, or the Slices of one tensor that ORT fuses
#: into one Split); ``transpose``: a Transpose with the Reshapes around it (ShuffleNet's channel
#: shuffle); ``other``: ops the kernels space does not sample (resize, pad, ...); ``reorder``: a
#: layout conversion ORT inserts (:mod:`kernel_layout`), no graph node of its own
TYPES: tuple[str, ...] = (
    "conv",
    "dwconv",
    "gconv",
    "linear",
    "pool",
    "gap",
    "add",
    "concat",
    "act",
    "se",
    "split",
    "transpose",
    "other",
    "reorder",
)
UNIT_FEATURES: tuple[str, ...] = (
    "log1p_c_in",
    "log1p_c_out",
    "log1p_h_in",
    "log1p_h_out",
    "kernel",
    "stride",
    "log1p_groups",
    "log1p_group_width",
    "dilation",
    "act",  # 0: none, else 1 + index in ACTIVATIONS (batchnorm/other unary: len + 1)
    "fused_sum",
    "log1p_macs",
    "log1p_read_bytes",
    "log1p_write_bytes",
    "log1p_weight_bytes",
    "n_nodes",
)
_FOLDS_BN = frozenset({"conv", "dwconv", "gconv", "linear"})
_TAKES_ACT = frozenset({"conv", "dwconv", "gconv", "linear", "add"})
FREE_OPS = frozenset({"identity", "flatten", "reshape"})
COMPUTE_OPS = frozenset({"conv", "dwconv", "gconv", "linear", "matmul"})
_UNARY = frozenset({*ACTIVATIONS, "batchnorm"})
_TYPE_OF = {
    "conv": "conv",
    "dwconv": "dwconv",
    "gconv": "gconv",
    "linear": "linear",
    "matmul": "linear",
    "maxpool": "pool",
    "avgpool": "pool",
    "globalavgpool": "gap",
    "globalmaxpool": "gap",
    "add": "add",
    "mul": "add",
    "sub": "add",
    "concat": "concat",
    "split": "split",
    "transpose": "transpose",
    "batchnorm": "act",
    "layernorm": "act",
    "softmax": "act",
    **{a: "act" for a in ACTIVATIONS},
}


@dataclass
class Unit:
    """One kernel as the device runs it: ``type`` (one of :data:`TYPES`), graph node indices
    (``nodes[0]`` the lead node), activation and fused-sum flags."""

    type: str
    nodes: list[int]
    act: str | None = None
    fused_sum: bool = False


def _act_code(op: str | None) -> int:
    if op is None:
        return 0
    return 1 + ACTIVATIONS.index(op) if op in ACTIVATIONS else len(ACTIVATIONS) + 1


def _se_blocks(graph: Graph, prod: dict[str, tuple[int, int]]) -> dict[int, list[int]]:
    """mul node index -> the six SE nodes [pool, reduce, act, expand, gate, mul]."""
    nodes = graph.nodes
    out: dict[int, list[int]] = {}

    def producer(t: str) -> int | None:
        return prod[t][0] if t in prod else None

    for j, n in enumerate(nodes):
        if n.op != "mul" or len(n.inputs) != 2:
            continue
        for x, gate in (n.inputs, n.inputs[::-1]):
            chain = [producer(gate)]
            want = (("sigmoid", "hardsigmoid"), ("conv",), ACTIVATIONS, ("conv",))
            for ops in want:
                i = chain[-1]
                if i is None or nodes[i].op not in ops:
                    break
                chain.append(producer(nodes[i].inputs[0]))
            else:
                pool = chain[-1]
                if pool is not None and nodes[pool].op == "globalavgpool":
                    if nodes[pool].inputs[0] == x:
                        out[j] = [pool, *reversed([c for c in chain[:-1] if c is not None]), j]
                        break
    return out


def _is_slice(n: Any) -> bool:
    return n.op == "other" and n.attrs.get("onnx_op") == "Slice"


def _slice_groups(graph: Graph) -> list[list[int]]:
    """Slices of one tensor whose outputs together cover its channels (``x.chunk(2, 1)`` as torch
    exports it: two Slices), which ORT runs as one ``Split`` (GatherSliceToSplitFusion)."""
    by_input: dict[str, list[int]] = {}
    for j, n in enumerate(graph.nodes):
        if _is_slice(n) and n.inputs and len(n.in_shapes[0]) > 1:
            by_input.setdefault(n.inputs[0], []).append(j)
    out = []
    for idx in by_input.values():
        ins = graph.nodes[idx[0]].in_shapes[0]
        outs = [graph.nodes[j].out_shape for j in idx]
        same_rest = all(tuple(o[2:]) == tuple(ins[2:]) and len(o) == len(ins) for o in outs)
        if len(idx) > 1 and same_rest and sum(o[1] for o in outs) == ins[1]:
            out.append(idx)
    return out


def graph_units(graph: Graph) -> list[Unit]:
    """The units (fused kernels, module docstring) of ``graph``, in node order of their lead."""
    nodes = graph.nodes
    prod = graph.producers()
    uses: dict[str, int] = {}
    for n in nodes:
        for t in n.inputs:
            uses[t] = uses.get(t, 0) + 1
    se = _se_blocks(graph, prod)
    unit_of: dict[int, Unit] = {}
    units: list[Unit] = []
    for block in se.values():
        u = Unit("se", block, act=nodes[block[2]].op)
        units.append(u)
        unit_of.update({i: u for i in block})
    for group in _slice_groups(graph):  # one Split kernel
        u = Unit("split", list(group))
        units.append(u)
        unit_of.update({i: u for i in group})

    def only_producer(t: str) -> Unit | None:
        """The unit producing ``t`` when ``t`` has no other consumer."""
        if t not in prod or uses.get(t, 0) != 1:
            return None
        return unit_of.get(prod[t][0])

    for j, n in enumerate(nodes):
        if j in unit_of:
            continue
        if n.op in FREE_OPS:
            src = only_producer(n.inputs[0]) if n.inputs else None
            if src is not None:
                unit_of[j] = src  # carried along (no kernel), keeps chains joinable
            continue
        if n.op in _UNARY and n.inputs:
            src = only_producer(n.inputs[0])
            if n.op == "batchnorm":  # folded into the convolution before it
                ok = src is not None and src.type in _FOLDS_BN and src.act is None
            else:  # fused (or run right after, measured with it by the kernels space)
                ok = src is not None and (
                    (src.type in _TAKES_ACT and src.act is None)
                    or (src.type == "act" and src.act == "batchnorm")  # BN-act chain
                )
            if ok and src is not None:
                if n.op != "batchnorm":
                    src.act = n.op
                src.nodes.append(j)
                unit_of[j] = src
                continue
        if n.op == "add" and len(n.inputs) == 2:
            convs = [
                u
                for u in (only_producer(t) for t in n.inputs)
                if u is not None
                and u.type in ("conv", "dwconv", "gconv")
                and not u.fused_sum
                and u.act is None
            ]
            if convs:
                u = convs[0]  # ORT fuses the sum into its first operand's convolution
                u.fused_sum = True
                u.nodes.append(j)
                unit_of[j] = u
                continue
        u = Unit("split" if _is_slice(n) else _TYPE_OF.get(n.op, "other"), [j])
        if u.type == "act":
            u.act = n.op
        pre = only_producer(n.inputs[0]) if n.inputs else None
        if u.type in _FOLDS_BN and pre is not None and pre.type == "act" and pre in units:
            # a pre-activation BN(-ReLU) whose only consumer is this conv: ORT fuses them
            units.remove(pre)
            u.nodes = [j, *pre.nodes]
            unit_of.update({i: u for i in pre.nodes})
        units.append(u)
        unit_of[j] = u
    units.sort(key=lambda u: u.nodes[0])
    return units


def unit_rows(graph: Graph, units: list[Unit] | None = None) -> tuple[np.ndarray, list[str]]:
    """Float64 feature rows (:data:`UNIT_FEATURES`) and types of ``graph``'s units, followed by
    one ``reorder`` row per layout conversion ORT runs between them (:func:`reorder_rows`)."""
    units = graph_units(graph) if units is None else units
    rows, types = _kernel_rows(graph, units)
    extra = reorder_rows(reorders(graph, units))
    return np.vstack([rows, extra]), types + ["reorder"] * len(extra)


def reorder_rows(found: list[Reorder]) -> np.ndarray:
    """Feature rows of layout conversions: channels in and out, spatial size in and out, the
    direction in ``kernel`` (1: to NCHWc, ORT's ReorderInput; 2: back to NCHW), the tensor's
    bytes read and written."""
    rows = np.zeros((len(found), len(UNIT_FEATURES)), dtype=np.float64)
    for r, x in enumerate(found):
        c = x.shape[1] if len(x.shape) > 1 else 1
        h = x.shape[-1] if len(x.shape) == 4 else 1
        nbytes = reorder_bytes(x)
        vals = dict.fromkeys(UNIT_FEATURES, 0.0)
        vals.update(
            log1p_c_in=np.log1p(c),
            log1p_c_out=np.log1p(c),
            log1p_h_in=np.log1p(h),
            log1p_h_out=np.log1p(h),
            kernel=1.0 if x.to_blocked else 2.0,
            stride=1.0,
            log1p_groups=np.log1p(1),
            log1p_group_width=np.log1p(c),
            dilation=1.0,
            log1p_read_bytes=np.log1p(nbytes),
            log1p_write_bytes=np.log1p(nbytes),
        )
        rows[r] = [vals[k] for k in UNIT_FEATURES]
    return rows


def _kernel_rows(graph: Graph, units: list[Unit]) -> tuple[np.ndarray, list[str]]:
    nodes = graph.nodes
    costs = [node_costs(n) for n in nodes]
    rows = np.zeros((len(units), len(UNIT_FEATURES)), dtype=np.float64)
    for r, u in enumerate(units):
        lead = nodes[u.nodes[0]]
        if u.type == "se":  # the block's input, squeeze width, spatial size
            red = nodes[u.nodes[1]]
            ins = nodes[u.nodes[-1]].out_shapes[0]
            c_in, c_out, h_in, h_out = ins[1], red.attrs.get("out_channels", 1), ins[-1], ins[-1]
        elif u.type in _MOVES:  # channels as an NCHW tensor of the same size would have them
            ishape = lead.in_shapes[0] if lead.in_shapes else (1,)
            h_in = h_out = ishape[-1] if len(ishape) >= 4 else 1
            c_in = max(1, math.prod(ishape[1:]) // max(1, h_in * h_in))
            c_out = nodes[u.nodes[-1]].out_shape[1] if u.type == "split" else c_in
        else:
            ishape = lead.in_shapes[0] if lead.in_shapes else ()
            oshape = lead.out_shape
            a_in = lead.attrs.get("in_channels", lead.attrs.get("in_features"))
            c_in = int(a_in) if a_in is not None else (ishape[1] if len(ishape) > 1 else 1)
            a_out = lead.attrs.get("out_channels", lead.attrs.get("out_features"))
            c_out = int(a_out) if a_out is not None else (oshape[1] if len(oshape) > 1 else 1)
            h_in = ishape[-1] if len(ishape) == 4 else 1
            h_out = oshape[-1] if len(oshape) == 4 else 1
        k = lead.attrs.get("kernel", 0)
        k = max(k) if isinstance(k, list) else k
        s = lead.attrs.get("stride", 1)
        s = max(s) if isinstance(s, list) else s
        d = lead.attrs.get("dilation", 1)
        d = max(d) if isinstance(d, list) else d
        g = int(lead.attrs.get("groups", 1)) if u.type != "se" else 1
        if u.type == "transpose":  # a channel shuffle's groups: the first channel axis
            ishape = lead.in_shapes[0] if lead.in_shapes else ()
            g = int(ishape[1]) if len(ishape) == 5 else 1
        elif u.type == "split":
            g = sum(len(nodes[i].out_shapes) for i in u.nodes if nodes[i].op != "reshape")
        tot: list[float] = [sum(costs[i][key] for i in u.nodes) for key in _COST_KEYS]
        if u.type in _MOVES:  # a copy: reads the input once, writes every piece; no weights
            moved = [costs[i] for i in u.nodes if nodes[i].op not in FREE_OPS]
            tot[1] = costs[u.nodes[0]]["act_read_bytes"]
            tot[2] = sum(c["act_write_bytes"] for c in moved)
            tot[3] = 0
        elif u.type != "se":  # the unit reads its lead's inputs, writes its last node's output
            tot[1] = (
                costs[u.nodes[0]]["act_read_bytes"]
                + sum(costs[i]["act_read_bytes"] for i in u.nodes if nodes[i].op == "add") / 2.0
            )
            tot[2] = costs[u.nodes[-1]]["act_write_bytes"]
        rows[r] = [
            np.log1p(c_in),
            np.log1p(c_out),
            np.log1p(h_in),
            np.log1p(h_out),
            k,
            s,
            np.log1p(g),
            np.log1p(max(int(c_in), 1) / max(g, 1)),
            d,
            _act_code(u.act),
            float(u.fused_sum),
            *np.log1p(tot),
            len(u.nodes),
        ]
    return rows, [u.type for u in units]


_COST_KEYS = ("macs", "act_read_bytes", "act_write_bytes", "weight_bytes")
_MOVES = frozenset({"split", "transpose"})


#: profile entries of layout conversions (no graph node of their own; left out of
#: :func:`profile_unit_times`)
_REORDER_OPS = frozenset({"ReorderInput", "ReorderOutput"})


def profile_unit_times(
    graph: Graph, units: list[Unit], layers: list[Any] | None, latency_ms: float, n_rows: int
) -> np.ndarray | None:
    """In-network time (ms) of each of ``graph``'s units from the graph's per-layer profile
    (``layers``: entries with ``time_ms``, ``nodes`` and ``extra["op"]``), scaled so that the
    profile sums to the measured ``latency_ms``; ``n_rows`` entries (:func:`unit_rows`' rows,
    the ``reorder`` rows after the units), 0 for reorders and for units no entry maps to. None
    without a profile."""
    timed = [la for la in (layers or []) if float(getattr(la, "time_ms", 0.0) or 0.0) > 0]
    total = sum(float(la.time_ms) for la in timed)
    if not timed or total <= 0 or latency_ms <= 0:
        return None
    owner = {graph.nodes[i].id: k for k, u in enumerate(units) for i in u.nodes}
    out = np.zeros(n_rows)
    for la in timed:
        if str((getattr(la, "extra", None) or {}).get("op", "")) in _REORDER_OPS:
            continue
        ks = [owner[n] for n in (getattr(la, "nodes", None) or []) if n in owner]
        if ks:
            out[ks[0]] += float(la.time_ms) * latency_ms / total
    return out
