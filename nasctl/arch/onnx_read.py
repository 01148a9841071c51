"""Read any ONNX model (opset 13-18 and beyond) into a :class:`~nasctl.arch.graph.Graph`.

* Weights are not loaded (``load_external_data=False``): only their shapes matter here, so a
  model with gigabytes of external data reads in milliseconds; small constants that a mapping
  needs (clip bounds, split sizes, pads) are read from the external file when necessary.
* Shapes come from ONNX shape inference with data propagation; dynamic batch dimensions of the
  graph inputs are set to 1 first (recorded in ``meta["dynamic_batch"]``).
* Initializers and ``Constant`` outputs are not edges: they are dropped from ``Node.inputs``
  (for ``other`` nodes ``attrs["const_elems"]`` counts their elements, for weight bytes).
* Patterns fused into one node: ``x * Sigmoid(x)`` -> ``swish``; ``x * HardSigmoid(x)`` ->
  ``hardswish`` (opset 13 exports); the Erf expansion of GELU ->
  ``gelu``; ``MatMul(x, W) + b`` -> ``linear``. The fused node takes the id of the last ONNX node.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import shape_inference

from nasctl.arch.graph import Graph, Node
from nasctl.arch.onnx_fold import MAX_FOLD_ELEMS, fold_constants
from nasctl.arch.onnx_ops import Ctx, map_node
from nasctl.errors import OnnxReadError

Shape = tuple[int, ...]


# -- loading -----------------------------------------------------------------------------------


def _load(
    path_or_model: str | os.PathLike[str] | onnx.ModelProto,
) -> tuple[onnx.ModelProto, str, str]:
    """(model, display name, base dir for external data)."""
    if isinstance(path_or_model, onnx.ModelProto):
        return path_or_model, path_or_model.graph.name or "model", ""
    p = Path(path_or_model)
    if not p.exists():
        raise OnnxReadError(f"ONNX file not found: {p}")
    if not p.is_file():
        raise OnnxReadError(f"not a file: {p} (expected an .onnx model file)")
    if p.stat().st_size == 0:
        raise OnnxReadError(f"ONNX file is empty: {p}")
    try:
        model = onnx.load_model(str(p), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - protobuf raises DecodeError, RuntimeWarning, ...
        raise OnnxReadError(
            f"cannot parse {p} as ONNX (truncated, corrupt or not an ONNX model): "
            f"{type(e).__name__}"
        ) from e
    _check_parsed(model, p)
    return model, p.name, str(p.resolve().parent)


def _check_parsed(model: onnx.ModelProto, p: Path) -> None:
    """Protobuf parses many byte strings 'successfully'; reject what is not a usable model."""
    g = model.graph
    if model.ir_version <= 0 or not model.opset_import or not (len(g.node) or len(g.input)):
        raise OnnxReadError(
            f"{p} is not an ONNX model (no IR version, opset or nodes); "
            "is it a truncated download or another format?"
        )
    known = {i.name for i in g.input} | {t.name for t in g.initializer}
    known |= {t.name for t in g.sparse_initializer}
    for n in g.node:
        known.update(n.output)
    for n in g.node:
        for t in n.input:
            if t and t not in known:
                raise OnnxReadError(
                    f"{p} is incomplete: node {n.name or n.op_type!r} reads tensor {t!r} that "
                    "nothing produces (truncated file?)"
                )
    for o in g.output:
        if o.name not in known:
            raise OnnxReadError(f"{p} is incomplete: graph output {o.name!r} is never produced")


# -- shapes ------------------------------------------------------------------------------------


def _fix_dynamic_batch(model: onnx.ModelProto, inits: set[str]) -> list[str]:
    """Set a symbolic/unknown dim 0 of each graph input to 1; return the inputs changed."""
    changed = []
    for vi in model.graph.input:
        if vi.name in inits or not vi.type.HasField("tensor_type"):
            continue
        shp = vi.type.tensor_type.shape
        if len(shp.dim) and (shp.dim[0].HasField("dim_param") or shp.dim[0].dim_value <= 0):
            shp.dim[0].Clear()
            shp.dim[0].dim_value = 1
            changed.append(vi.name)
    return changed


def _infer(model: onnx.ModelProto) -> tuple[onnx.ModelProto, str]:
    """Shape-inferred copy of ``model`` and a status ("ok" or why it failed)."""
    try:
        return shape_inference.infer_shapes(
            model, check_type=False, strict_mode=False, data_prop=True
        ), "ok"
    except ValueError:  # > 2 GB in memory: go through a file
        pass
    except Exception as e:  # noqa: BLE001 - a valid model must still read, without shapes
        return (
            model,
            f"failed: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}",
        )
    with tempfile.TemporaryDirectory() as d:
        src, dst = os.path.join(d, "in.onnx"), os.path.join(d, "out.onnx")
        onnx.save_model(model, src, save_as_external_data=True)
        try:
            shape_inference.infer_shapes_path(
                src, dst, check_type=False, strict_mode=False, data_prop=True
            )
            return onnx.load_model(dst, load_external_data=False), "ok"
        except Exception as e:  # noqa: BLE001
            return model, f"failed: {type(e).__name__}"


def _shape_of(t: onnx.TypeProto) -> tuple[Shape | None, int | None]:
    if not t.HasField("tensor_type"):
        return None, None
    tt = t.tensor_type
    elem = tt.elem_type or None
    if not tt.HasField("shape"):
        return None, elem
    dims = tuple(
        d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1 for d in tt.shape.dim
    )
    return dims, elem


def _collect_shapes(model: onnx.ModelProto) -> tuple[dict[str, Shape], dict[str, int]]:
    g = model.graph
    shapes: dict[str, Shape] = {}
    types: dict[str, int] = {}
    for vi in (*g.input, *g.value_info, *g.output):
        s, e = _shape_of(vi.type)
        if s is not None:
            shapes[vi.name] = s
        if e is not None:
            types[vi.name] = e
    for t in g.initializer:
        shapes[t.name] = tuple(int(d) for d in t.dims)
        types[t.name] = t.data_type
    return shapes, types


# -- fusion of multi-node patterns ---------------------------------------------------------------


def _is_torch_hardsigmoid(n: onnx.NodeProto) -> bool:
    a = {x.name: onnx.helper.get_attribute_value(x) for x in n.attribute}
    return abs(a.get("alpha", 0.2) - 1 / 6) < 1e-6 and abs(a.get("beta", 0.5) - 0.5) < 1e-6


class _Fuser:
    """Finds swish, GELU (Erf form) and MatMul+bias patterns. ``absorbed`` holds indices of
    ONNX nodes folded into a later one; ``fused[i] = (op, inputs, attrs)`` replaces node i."""

    def __init__(self, nodes: list[onnx.NodeProto], ctx: Ctx, outputs: set[str]) -> None:
        self.nodes, self.ctx = nodes, ctx
        self.prod: dict[str, int] = {t: i for i, n in enumerate(nodes) for t in n.output}
        self.uses: dict[str, int] = {}
        for n in nodes:
            for t in n.input:
                self.uses[t] = self.uses.get(t, 0) + 1
        for t in outputs:
            self.uses[t] = self.uses.get(t, 0) + 1
        self.absorbed: set[int] = set()
        self.fused: dict[int, tuple[str, list[str], dict[str, Any]]] = {}

    def _src(self, t: str, op_type: str) -> int | None:
        """Index of the single-use producer of ``t`` when it has ``op_type``."""
        i = self.prod.get(t)
        if i is None or self.nodes[i].op_type != op_type or self.uses.get(t, 0) != 1:
            return None
        return None if i in self.absorbed else i

    def _scalar(self, t: str, value: float) -> bool:
        v = self.ctx.value(t, max_elems=1)
        return v is not None and v.size == 1 and abs(float(v.reshape(-1)[0]) - value) < 1e-4

    def run(self) -> None:
        for i, n in enumerate(self.nodes):
            if n.op_type == "Mul" and len(n.input) == 2:
                self._swish(i, n) or self._gelu(i, n)
            elif n.op_type == "Add" and len(n.input) == 2:
                self._matmul_bias(i, n)

    def _swish(self, i: int, n: onnx.NodeProto) -> bool:
        """x * Sigmoid(x) -> swish; x * HardSigmoid(x) (alpha 1/6, opset 13 export) -> hardswish."""
        for x, s in ((n.input[0], n.input[1]), (n.input[1], n.input[0])):
            for op_type, op in (("Sigmoid", "swish"), ("HardSigmoid", "hardswish")):
                j = self._src(s, op_type)
                if j is None or self.nodes[j].input[0] != x:
                    continue
                if op_type == "HardSigmoid" and not _is_torch_hardsigmoid(self.nodes[j]):
                    continue
                self.absorbed.add(j)
                self.fused[i] = (op, [x], {})
                return True
        return False

    def _gelu(self, i: int, n: onnx.NodeProto) -> bool:
        # Mul(Mul(x, Add(Erf(Div(x, sqrt2)), 1)), 0.5), any operand order
        for m1_out, half in ((n.input[0], n.input[1]), (n.input[1], n.input[0])):
            j = self._src(m1_out, "Mul")
            if j is None or not self._scalar(half, 0.5):
                continue
            m1 = self.nodes[j]
            for x, add_out in ((m1.input[0], m1.input[1]), (m1.input[1], m1.input[0])):
                chain = self._erf_chain(add_out, x)
                if chain is not None:
                    self.absorbed.update([j, *chain])
                    self.fused[i] = ("gelu", [x], {})
                    return True
        return False

    def _erf_chain(self, add_out: str, x: str) -> list[int] | None:
        k = self._src(add_out, "Add")
        if k is None:
            return None
        a = self.nodes[k]
        for erf_out, one in ((a.input[0], a.input[1]), (a.input[1], a.input[0])):
            e = self._src(erf_out, "Erf")
            if e is None or not self._scalar(one, 1.0):
                continue
            d = self._src(self.nodes[e].input[0], "Div")
            if d is not None and self.nodes[d].input[0] == x:
                if self._scalar(self.nodes[d].input[1], float(np.sqrt(2.0))):
                    return [k, e, d]
        return None

    def _matmul_bias(self, i: int, n: onnx.NodeProto) -> None:
        for mm_out, b in ((n.input[0], n.input[1]), (n.input[1], n.input[0])):
            j = self._src(mm_out, "MatMul")
            if j is None or not self.ctx.is_const(b):
                continue
            ws = self.ctx.const_shape(self.nodes[j].input[1])
            bs = self.ctx.const_shape(b)
            if not self.ctx.is_const(self.nodes[j].input[1]) or not ws or len(ws) != 2:
                continue
            if bs is None or len(bs) != 1 or bs[0] != ws[1]:
                continue
            self.absorbed.add(j)
            attrs = {"in_features": int(ws[0]), "out_features": int(ws[1]), "bias": True}
            self.fused[i] = ("linear", [self.nodes[j].input[0]], attrs)
            return


def _fold(model: onnx.ModelProto, shapes: dict[str, Shape], base_dir: str) -> int:
    """Fold constant sub-graphs in place (see :mod:`nasctl.arch.onnx_fold`); never raises."""
    g = model.graph
    consts: dict[str, onnx.TensorProto] = {t.name: t for t in g.initializer}
    for n in g.node:
        t = _constant_value(n)
        if t is not None:
            consts[n.output[0]] = t
    ctx = Ctx(consts=consts, shapes=shapes, base_dir=base_dir)
    try:
        return fold_constants(model, shapes, lambda t: ctx.value(t, MAX_FOLD_ELEMS))
    except Exception:  # noqa: BLE001 - folding is an improvement, never a requirement
        return 0


# -- assembly ----------------------------------------------------------------------------------


def _constant_value(n: onnx.NodeProto) -> onnx.TensorProto | None:
    """The tensor of a ``Constant`` node (any value_* form but sparse), else None."""
    if n.op_type != "Constant" or n.domain not in ("", "ai.onnx") or len(n.output) != 1:
        return None
    for a in n.attribute:
        if a.name == "value":
            return a.t
        if a.name in ("value_float", "value_floats", "value_int", "value_ints"):
            dtype = np.float32 if "float" in a.name else np.int64
            v = np.array(onnx.helper.get_attribute_value(a), dtype=dtype)
            return onnx.numpy_helper.from_array(v, n.output[0])
    return None


_RUNTIME_VARYING = frozenset({"RandomNormal", "RandomUniform", "Multinomial", "Bernoulli"})


def _split_constants(
    nodes: list[onnx.NodeProto],
    consts: dict[str, onnx.TensorProto],
    shapes: dict[str, Shape],
    types: dict[str, int],
) -> list[onnx.NodeProto]:
    """Register ``Constant`` outputs and outputs computed from constants only (weights made by
    ``Identity``, ``ConstantOfShape``, ``DequantizeLinear`` of stored tensors, ...) in
    ``consts``; return the remaining nodes. A computed constant gets a data-less placeholder
    with its inferred shape; one of unknown shape stays a node."""
    rest: list[onnx.NodeProto] = []
    for n in nodes:
        t = _constant_value(n)
        if t is None and n.op_type == "Identity" and n.input and n.input[0] in consts:
            t = consts[n.input[0]]  # exporters alias shared weights through Identity
        if t is not None:
            consts[n.output[0]] = t
            shapes.setdefault(n.output[0], tuple(int(d) for d in t.dims))
            continue
        if _computes_constant(n, consts, shapes):
            for o in n.output:
                if o:
                    ph = onnx.TensorProto(name=o, data_type=types.get(o, onnx.TensorProto.FLOAT))
                    ph.dims.extend(shapes[o])
                    consts[o] = ph
            continue
        rest.append(n)
    return rest


def _computes_constant(
    n: onnx.NodeProto, consts: dict[str, onnx.TensorProto], shapes: dict[str, Shape]
) -> bool:
    if n.domain not in ("", "ai.onnx") or n.op_type in _RUNTIME_VARYING:
        return False
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in n.attribute):
        return False
    if not all(t in consts for t in n.input if t) or not n.input:
        return False
    outs = [o for o in n.output if o]
    return bool(outs) and all(o in shapes and all(d >= 0 for d in shapes[o]) for o in outs)


def _toposort(nodes: list[onnx.NodeProto]) -> list[onnx.NodeProto]:
    """Nodes in a topological order, keeping the file order where it already is one."""
    produced = {t for n in nodes for t in n.output}
    ready: set[str] = set()
    out: list[onnx.NodeProto] = []
    pending = nodes
    while pending:
        rest = []
        for n in pending:
            if all((not t) or t not in produced or t in ready for t in n.input):
                out.append(n)
                ready.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):  # a cycle (invalid model): keep the file order
            return out + rest
        pending = rest
    return out


# -- ids ----------------------------------------------------------------------------------


def _unique_ids(nodes: list[onnx.NodeProto]) -> list[str]:
    seen: set[str] = set()
    counters: dict[str, int] = {}
    ids = []
    for n in nodes:
        base = n.name
        if not base:
            op = n.op_type.lower()
            counters[op] = counters.get(op, -1) + 1
            base = f"{op}_{counters[op]}"
        nid, k = base, 1
        while nid in seen:
            k += 1
            nid = f"{base}_{k}"
        seen.add(nid)
        ids.append(nid)
    return ids


def _numel(s: Shape | None) -> int:
    if not s or any(d < 0 for d in s):
        return 0
    return int(np.prod(s, dtype=np.int64))


def from_onnx(path_or_model: str | os.PathLike[str] | onnx.ModelProto) -> Graph:
    """Read an ONNX model (a path, or an in-memory ``ModelProto``) into a :class:`Graph`.

    Node ids are the ONNX node names (made unique; ``"<op>_<N>"`` for unnamed nodes). Ops
    outside the vocabulary are ``"other"`` with ``attrs["onnx_op"]``. ``meta`` records
    ``source="onnx"``, ``model`` (file name), ``opset``, ``dynamic_batch`` (inputs whose batch
    dim was set to 1) and ``shape_inference`` ("ok" or why not).

    Raises:
        OnnxReadError: missing, empty, truncated or non-ONNX file (one line naming the file).
    """
    model, display, base_dir = _load(path_or_model)
    work = model
    if isinstance(path_or_model, onnx.ModelProto):  # never modify the caller's model
        work = onnx.ModelProto()
        work.CopyFrom(model)
    inits = {t.name for t in work.graph.initializer}
    dynamic = _fix_dynamic_batch(work, inits)
    inferred, status = _infer(work)
    shapes, types = _collect_shapes(inferred)
    folded = _fold(work, shapes, base_dir)
    if folded:
        inferred, status = _infer(work)
        shapes, types = _collect_shapes(inferred)
    g = inferred.graph

    consts: dict[str, onnx.TensorProto] = {t.name: t for t in g.initializer}
    onnx_nodes = _split_constants(_toposort(list(g.node)), consts, shapes, types)
    ctx = Ctx(consts=consts, shapes=shapes, base_dir=base_dir)
    graph_inputs = {vi.name: shapes.get(vi.name, ()) for vi in g.input if vi.name not in consts}
    out_names = [o.name for o in g.output]

    fuser = _Fuser(onnx_nodes, ctx, set(out_names))
    fuser.run()
    ids = _unique_ids(onnx_nodes)
    nodes: list[Node] = []
    known = set(graph_inputs)
    for i, n in enumerate(onnx_nodes):
        if i in fuser.absorbed:
            continue
        outputs = [t for t in n.output if t]
        if i in fuser.fused:
            op, raw_inputs, attrs = fuser.fused[i]
            attrs = dict(attrs)
        else:
            op, attrs = map_node(ctx, n, types.get(outputs[0]) if outputs else None)
            raw_inputs = [t for t in n.input if t]
        ins = [t for t in raw_inputs if t in known]
        const_ins = [t for t in n.input if t and t not in known and t in consts]
        if const_ins and op == "other":  # for weight bytes; vocabulary ops derive them
            attrs["const_elems"] = sum(_numel(ctx.const_shape(t)) for t in const_ins)
        nodes.append(
            Node(
                id=ids[i],
                op=op,
                inputs=ins,
                outputs=outputs,
                attrs=attrs,
                in_shapes=[shapes.get(t, ()) for t in ins],
                out_shapes=[shapes.get(t, ()) for t in outputs],
            )
        )
        known.update(outputs)
    meta: dict[str, Any] = {
        "source": "onnx",
        "model": display,
        "opset": next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0),
        "shape_inference": status,
    }
    for prop in model.metadata_props:  # provenance written by to_onnx (space, genotype, ...)
        if prop.key.startswith("nasctl_") and prop.key[7:] not in meta:
            value: Any = prop.value
            meta[prop.key[7:]] = int(value) if value.isdigit() else value
    if dynamic:
        meta["dynamic_batch"] = dynamic
    if folded:
        meta["folded_constants"] = folded
    unknown = sum(1 for n in nodes if any(not s or min(s) < 0 for s in n.out_shapes))
    if unknown:
        meta["unknown_shape_nodes"] = unknown  # their activation bytes and MACs count 0
    graph = Graph(
        nodes=nodes,
        inputs=graph_inputs,
        outputs=[t for t in out_names if t in known],
        name=g.name or display,
        meta=meta,
    )
    graph.validate()
    return graph
