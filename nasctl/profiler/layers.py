"""Engine layer names -> graph nodes, for the records the agent returns: ONNX Runtime kernels
(through :mod:`nasctl.profiler.ort_names` and the optimized graph the agent sent back) and
TensorRT layers (through :mod:`nasctl.profiler.trt_reports`). The agent reports names as the
engine does; only the host knows the graph."""

from __future__ import annotations

from typing import Any

from nasctl.profiler.node_ids import to_graph_ids
from nasctl.records import LayerTiming

__all__ = ["optimized_model", "ort_layers", "to_graph_ids", "trt_layers"]


def optimized_model(nodes: list[dict[str, Any]]) -> Any:
    """An ``onnx.ModelProto`` holding the agent's ``ort-optimized-nodes`` (no weights): what
    :func:`~nasctl.profiler.ort_names.map_kernels` reads."""
    from onnx import helper

    made = []
    for n in nodes:
        attrs = {k: v for k, v in (n.get("attributes") or {}).items() if v is not None and v != []}
        made.append(
            helper.make_node(
                n["op_type"],
                list(n.get("inputs", [])),
                list(n.get("outputs", [])),
                name=n.get("name", ""),
                domain=n.get("domain") or None,
                **attrs,
            )
        )
    return helper.make_model(helper.make_graph(made, "optimized", [], []))


def ort_layers(
    raw: list[dict[str, Any]],
    graph_nodes: list[dict[str, Any]] | None,
    original: Any,
    ids: set[str] | None,
) -> tuple[list[LayerTiming], list[str]]:
    """Kernels as ORT named them (``raw``: the agent's layers) -> :class:`LayerTiming` with the
    graph nodes each covers, and the graph nodes no kernel could be placed on."""
    from nasctl.profiler.ort_names import map_kernels

    kernels: dict[str, Any] = {}
    unassigned: list[str] = []
    if graph_nodes is not None and original is not None:
        mapping = map_kernels(
            original, optimized_model(graph_nodes), [str(la["name"]) for la in raw]
        )
        kernels, unassigned = mapping.kernels, list(mapping.unassigned)
    out: list[LayerTiming] = []
    for la in raw:
        info = kernels.get(la["name"])
        extra = {"op": la.get("extra", {}).get("op", "")}
        if info:
            extra.update(info.extra)
        lt = LayerTiming(
            name=la["name"],
            time_ms=float(la["time_ms"]),
            nodes=to_graph_ids(list(info.nodes), ids) if info else [],
            kind=info.kind if info else "unknown",
            extra=extra,
        )
        if not lt.nodes and ids is not None:  # a Q/DQ kernel ORT renamed: its tensor's node
            named = [n for n in to_graph_ids([la["name"]], ids) if n in ids]
            if named:
                lt.nodes, lt.kind = named, "kernel"
                lt.extra["mapped_by"] = "qdq-tensor-name"
        if lt.kind == "fused" and len(lt.nodes) == 1:  # ONNX parts of one graph node
            lt.kind = "kernel"
        out.append(lt)
    return out, to_graph_ids(unassigned, ids)


def trt_layers(
    raw: list[dict[str, Any]], info: dict[str, Any] | None, onnx_proto: Any, ids: set[str] | None
) -> list[LayerTiming]:
    """TensorRT layers as the engine named them (``raw``: ``{"name", "time_ms", "extra":
    {"median_ms", "percentage"}}``) with the layer info (inspector / ``--exportLayerInfo``
    JSON) -> :class:`LayerTiming` on graph nodes."""
    from nasctl.profiler.trt_reports import profile_layers

    nodes = [n.name for n in onnx_proto.graph.node if n.name] if onnx_proto is not None else None
    profile: list[dict[str, Any]] = [{"count": 1}]
    for la in raw:
        ex = la.get("extra", {})
        profile.append(
            {
                "name": la["name"],
                "averageMs": float(la["time_ms"]),
                "medianMs": ex.get("median_ms"),
                "percentage": ex.get("percentage"),
            }
        )
    layers = profile_layers(profile, info, nodes, nodes, ids)
    for lt, la in zip(layers, raw, strict=True):
        for key in ("device", "fell_back"):  # DLA: where the layer ran
            if key in la.get("extra", {}):
                lt.extra[key] = la["extra"][key]
    return layers
