"""Fold the small constant sub-graphs that exporters emit (shape arithmetic, computed pads).

``torch.onnx.export`` writes ``F.pad`` as ``ConstantOfShape -> Concat -> Reshape -> Slice ->
Transpose -> Cast -> Pad`` and ``x.view(x.size(0), -1)`` as ``Shape -> Gather -> Unsqueeze ->
Concat -> Reshape``. Once the graph inputs have static shapes these are constants: folding them
leaves the architecture (one ``pad``, one ``reshape``) and lets shape inference resolve the
shapes behind them. Only small tensors are evaluated (with ``onnx.reference``); weights are
never touched and nothing here raises: a node that cannot be folded stays as it is.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

#: never folded: random, stateful or with sub-graphs
_NO_FOLD = frozenset(
    {
        "RandomNormal",
        "RandomUniform",
        "RandomNormalLike",
        "RandomUniformLike",
        "Multinomial",
        "Bernoulli",
        "If",
        "Loop",
        "Scan",
        "Constant",
    }
)
MAX_FOLD_ELEMS = 65536


def _shape_value(node: onnx.NodeProto, shapes: dict[str, tuple[int, ...]]) -> np.ndarray | None:
    s = shapes.get(node.input[0])
    if s is None or any(d < 0 for d in s):
        return None
    a = {x.name: helper.get_attribute_value(x) for x in node.attribute}
    rank = len(s)
    start, end = int(a.get("start", 0)), a.get("end")
    end = rank if end is None else int(end)
    start, end = (start + rank if start < 0 else start), (end + rank if end < 0 else end)
    return np.array(s[max(start, 0) : min(end, rank)], dtype=np.int64)


def _evaluate(node: onnx.NodeProto, values: list[np.ndarray], opset: int) -> list[Any]:
    from onnx.reference import ReferenceEvaluator  # lazy: 0.7 s to import

    names = [f"i{k}" for k in range(len(node.input))]
    inputs = [n if t else "" for n, t in zip(names, node.input, strict=True)]
    outs = [f"o{k}" for k in range(len(node.output))]
    single = helper.make_node(node.op_type, inputs, outs, domain=node.domain)
    single.attribute.extend(node.attribute)
    feeds = {n: v for n, t, v in zip(names, node.input, values, strict=True) if t}
    g = helper.make_graph(
        [single],
        "fold",
        [
            helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
            for n, v in feeds.items()
        ],
        [helper.make_tensor_value_info(o, onnx.TensorProto.UNDEFINED, None) for o in outs],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    return list(ReferenceEvaluator(m).run(None, feeds))


def fold_constants(
    model: onnx.ModelProto,
    shapes: dict[str, tuple[int, ...]],
    value_of: Any,
) -> int:
    """Replace foldable nodes of ``model.graph`` by ``Constant`` nodes, in place.

    Args:
        model: the model (nodes in topological order); modified in place.
        shapes: tensor shapes from a first shape inference (for ``Shape`` nodes).
        value_of: ``name -> np.ndarray | None`` for initializers and Constant outputs.

    Returns:
        the number of nodes folded.
    """
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
    known: dict[str, np.ndarray] = {}
    folded = 0
    for k, node in enumerate(model.graph.node):
        if node.domain not in ("", "ai.onnx") or node.op_type in _NO_FOLD or not node.output:
            continue
        outs: list[Any] | None = None
        if node.op_type == "Shape":
            v = _shape_value(node, shapes)
            outs = None if v is None else [v]
        elif node.input and all(node.input):
            maybe = [known[t] if t in known else value_of(t) for t in node.input]
            vals = [v for v in maybe if v is not None]
            if len(vals) == len(maybe) and sum(v.size for v in vals) <= MAX_FOLD_ELEMS:
                try:
                    outs = _evaluate(node, vals, opset)
                except Exception:  # noqa: BLE001 - not foldable: keep the node
                    outs = None
        if not outs or any(not isinstance(o, np.ndarray) for o in outs):
            continue
        if any(o.size > MAX_FOLD_ELEMS for o in outs) or len(outs) != len(node.output):
            continue
        for t, o in zip(node.output, outs, strict=True):
            known[t] = o
        if len(node.output) == 1:
            const = helper.make_node(
                "Constant",
                [],
                list(node.output),
                name=node.name,
                value=numpy_helper.from_array(np.asarray(outs[0]), node.output[0]),
            )
            model.graph.node[k].CopyFrom(const)
            folded += 1
    return folded
