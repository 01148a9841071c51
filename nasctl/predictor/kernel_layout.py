"""Where ONNX Runtime's CPU provider converts tensors between layouts (issue 16): the
``ReorderInput`` / ``ReorderOutput`` kernels around its blocked-channel (NCHWc) kernels.

ORT (checked on 1.32, block :data:`NCHWC_BLOCK` = 16 channels on an AVX-512 CPU, 8 on AVX2) runs
dense, dilated and depthwise convolutions in NCHWc (channels padded to the block), a grouped
convolution only when both its group widths are multiples of the block, pooling and global
pooling when their channels are, and elementwise ops, unfused activations and concatenations in
whatever layout their inputs already have (concatenation only with block-aligned inputs); a
dense convolution with fewer input channels than the block reads the plain NCHW tensor; FC layers,
squeeze-excitation's gate multiply and the other ops run in NCHW. Where a tensor's producer and
consumer disagree, ORT inserts a reorder of that tensor (once per tensor and direction).

So a single convolution measured alone pays a reorder of its input and of its output, while
inside a network a run of convolutions pays them once at its ends; and a squeeze-excitation block
inside a network pays two reorders of its full-size input that it does not pay alone.
:func:`reorders` replays these rules on a graph's units (:mod:`kernel_units`);
``tests/test_kernel_layout.py`` checks them against ORT's optimized graphs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

NCHWC_BLOCK = 16
_ALWAYS_C = frozenset({"conv", "dwconv"})
_ALIGNED_C = frozenset({"pool", "gap"})
_FOLLOW = frozenset({"add", "act"})


@dataclass
class Reorder:
    """A layout conversion of ``tensor`` (shape ``shape``): ``to_blocked`` True for ORT's
    ``ReorderInput`` (NCHW -> NCHWc), False for ``ReorderOutput``."""

    tensor: str
    shape: tuple[int, ...]
    to_blocked: bool


def _channels(shape: Any) -> int:
    return int(shape[1]) if len(shape) > 1 else 1


def reorders(graph: Any, units: list[Any], block: int = NCHWC_BLOCK) -> list[Reorder]:
    """The reorders ORT runs for ``graph`` split into ``units`` (:func:`kernel_units.graph_units`),
    in unit order."""
    nodes = graph.nodes
    prod = graph.producers()
    shapes = graph.tensor_shapes()
    owner = {i: k for k, u in enumerate(units) for i in u.nodes}

    def source(t: str) -> int | None:
        """The unit producing ``t`` (through nodes that run no kernel); None: a graph input."""
        while t in prod:
            i = prod[t][0]
            if i in owner:
                return owner[i]
            if not nodes[i].inputs:
                return None
            t = nodes[i].inputs[0]
        return None

    layout: dict[int | None, str] = {None: "n"}
    out: list[Reorder] = []
    done: set[tuple[str, bool]] = set()

    def need(t: str, want: str) -> None:
        have = layout.get(source(t), "n")
        if have != want and (t, want == "c") not in done:
            done.add((t, want == "c"))
            out.append(Reorder(t, tuple(shapes.get(t, ())), want == "c"))

    for k, u in enumerate(units):
        inside = set(u.nodes)
        ins: list[str] = []
        for i in sorted(inside):
            for t in nodes[i].inputs:
                if (t not in prod or prod[t][0] not in inside) and t not in ins:
                    ins.append(t)
        lay = _layout(u, nodes, ins, shapes, block, [layout.get(source(t), "n") for t in ins])
        layout[k] = lay
        lead = nodes[u.nodes[0]]
        for t in ins:
            if lay == "c" and u.type == "conv" and t == lead.inputs[0]:
                need(t, "n" if _channels(shapes.get(t, ())) < block else "c")
            elif lay == "c" and u.type not in _FOLLOW | {"concat"}:
                need(t, "c")
            elif lay == "n":
                need(t, "n")
    for t in graph.outputs:
        need(t, "n")
    return out


def _layout(
    u: Any, nodes: list[Any], ins: list[str], shapes: dict, block: int, have: list[str]
) -> str:
    lead = nodes[u.nodes[0]]
    if u.type in _ALWAYS_C:
        return "c"
    if u.type == "gconv":
        g = int(lead.attrs.get("groups", 1))
        cin = int(lead.attrs.get("in_channels", _channels(lead.in_shapes[0])))
        cout = int(lead.attrs.get("out_channels", _channels(lead.out_shape)))
        return "c" if (cin // g) % block == 0 and (cout // g) % block == 0 else "n"
    if u.type in _ALIGNED_C:
        return "c" if _channels(lead.in_shapes[0]) % block == 0 else "n"
    if u.type == "concat":
        aligned = all(_channels(shapes.get(t, ())) % block == 0 for t in ins)
        return "c" if aligned and have and all(h == "c" for h in have) else "n"
    if u.type in _FOLLOW:
        return "c" if have and all(h == "c" for h in have) else "n"
    return "n"


def reorder_bytes(r: Reorder) -> float:
    """Bytes a reorder reads (fp32)."""
    return 4.0 * math.prod(r.shape) if r.shape else 0.0
