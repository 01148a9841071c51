"""Where ONNX Runtime's CPU provider converts tensors between layouts (issue 16): the
``ReorderInput`` / ``ReorderOutput`` kernels around its blocked-channel (NCHWc) kernels.

ORT (checked on 1.32; its block: 16 channels on an AVX-512 CPU, 8 on AVX2, :func:`host_block`) runs
dense, dilated and depthwise convolutions in NCHWc (channels padded to the block) when their input
channels are a multiple of :data:`CHANNEL_ALIGN` (or, dense, fewer than the block), a grouped
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

The block is the host's (:func:`host_block`: read from the optimized graph ORT builds for a
one-channel convolution, whose reordered weights are padded to the block): the cpu device is the
host that measures it. Where ORT runs no NCHWc kernels (no AVX2, or not x86) the block is 0 and
there are no reorders; where onnxruntime cannot be asked, :data:`DEFAULT_BLOCK`.
"""

from __future__ import annotations

import functools
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_BLOCK = 16  # AVX-512's, when ORT cannot be asked (models of before the detection)
#: ORT leaves a dense or depthwise convolution in NCHW when its input channels are not a multiple
#: of this (a dense one with fewer input channels than the block reads NCHW input and is blocked)
CHANNEL_ALIGN = 4
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


@functools.lru_cache(maxsize=1)
def host_block() -> int:
    """The NCHWc block (channels) ONNX Runtime uses on this host: the output-channel dimension of
    the reordered weights of a 1x3x3x3 -> 1-channel convolution in ORT's optimized graph (padded to
    the block: 16 with AVX-512, 8 with AVX2); 0 when ORT leaves the convolution in NCHW;
    :data:`DEFAULT_BLOCK` when onnxruntime or onnx is missing or fails. About 10 ms, once."""
    try:
        import numpy as np
        import onnx
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return DEFAULT_BLOCK
    w = numpy_helper.from_array(np.ones((1, 3, 3, 3), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])],
        "block",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 8, 8])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    try:
        with tempfile.TemporaryDirectory() as tmp:
            so = ort.SessionOptions()
            so.intra_op_num_threads = 1
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            so.log_severity_level = 3
            so.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
            ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
            opt = onnx.load(so.optimized_model_filepath)
    except Exception:  # noqa: BLE001 - any failure of the probe: the documented default
        return DEFAULT_BLOCK
    convs = [n for n in opt.graph.node if n.op_type == "Conv" and "nchwc" in n.domain]
    if not convs:
        return 0
    dims = {i.name: list(i.dims) for i in opt.graph.initializer}
    wdims = dims.get(convs[0].input[1], [])
    return int(wdims[0]) if wdims and wdims[0] > 1 else DEFAULT_BLOCK


def reorders(graph: Any, units: list[Any], block: int | None = None) -> list[Reorder]:
    """The reorders ORT runs for ``graph`` split into ``units`` (:func:`kernel_units.graph_units`),
    in unit order, for NCHWc block ``block`` (default: :func:`host_block`; 0: none)."""
    block = host_block() if block is None else int(block)
    if block <= 0:
        return []
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

    # a unit's layout is known once its last node is (a fused-sum conv can lead with a node
    # that comes before the shortcut conv feeding its Add): visit units in that order
    for k in sorted(range(len(units)), key=lambda k: max(units[k].nodes)):
        u = units[k]
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
    if u.type in _ALWAYS_C:  # unless the input channels are not a multiple of 4 (and >= block)
        cin = _channels(lead.in_shapes[0]) if lead.in_shapes else 0
        return "c" if cin % CHANNEL_ALIGN == 0 or (u.type == "conv" and cin < block) else "n"
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
