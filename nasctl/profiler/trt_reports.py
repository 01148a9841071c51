"""Readers of TensorRT's JSON reports (trtexec ``--exportTimes``, ``--exportProfile``,
``--exportLayerInfo``; the engine inspector's JSON is the same as the last), shared by the trtexec
and TensorRT Python backends.

- times (``*.timing.json``): a list of iterations ``{"startComputeMs", "computeMs", "latencyMs",
  "h2dMs", "d2hMs", ...}`` -> :class:`~nasctl.profiler.protocol.TimingStats` of ``computeMs``
  (GPU compute; with ``--noDataTransfers`` equal to ``latencyMs``);
- profile (``*.profile.json``): ``[{"count": N}, {"name", "timeMs", "averageMs", "medianMs",
  "percentage"}, ...]`` -> per-layer :class:`~nasctl.records.LayerTiming` (``averageMs``);
- layer info (``*.graph.json``): ``{"Layers": [{"Name", "LayerType", "Inputs", "Outputs",
  "TacticName", ...}], "Bindings": [...]}`` (names only at lower verbosity).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from nasctl.errors import BackendError
from nasctl.profiler.node_ids import to_graph_ids
from nasctl.profiler.protocol import TimingStats
from nasctl.profiler.trt_names import _ONNX_LAYER, map_engine_layers
from nasctl.records import LayerTiming


def read_json(path: str | Path) -> Any:
    """JSON from ``path``; a missing or broken file is a :class:`BackendError`."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise BackendError(f"cannot read TensorRT report {path}: {e}") from e


def timing_stats(times: list[dict[str, Any]], key: str = "computeMs") -> TimingStats:
    """Statistics over iterations of an ``--exportTimes`` list (``key``: ``computeMs`` or
    ``latencyMs``, ms)."""
    samples = [float(it[key]) for it in times if key in it]
    if not samples:
        raise BackendError(f"TensorRT times report has no {key!r} values")
    return TimingStats.from_samples(samples)


def profile_entries(profile: list[dict[str, Any]]) -> tuple[int, list[dict[str, Any]]]:
    """(profiled iteration count, layer entries) of an ``--exportProfile`` list."""
    if not profile or not isinstance(profile, list):
        raise BackendError("TensorRT profile report is empty")
    head = profile[0]
    count = int(head.get("count", 0)) if isinstance(head, dict) and "count" in head else 0
    entries = [e for e in profile if isinstance(e, dict) and "name" in e]
    return count, entries


def layer_info(info: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Layer name -> layer dict of an ``--exportLayerInfo`` / inspector JSON (``Layers`` holds
    dicts at detailed verbosity, plain names otherwise)."""
    out: dict[str, dict[str, Any]] = {}
    for layer in info.get("Layers", []):
        if isinstance(layer, str):
            out[layer] = {"Name": layer}
        elif isinstance(layer, dict) and "Name" in layer:
            out[layer["Name"]] = layer
    return out


def graph_names(
    model_bytes: bytes, graph_ids: set[str] | None = None
) -> tuple[list[str] | None, list[str] | None, set[str] | None]:
    """(known node names, their order, graph ids) of the ONNX a device built, for
    :func:`profile_layers`; Nones when the model cannot be read."""
    import onnx

    try:
        nodes = [n.name for n in onnx.load_from_string(model_bytes).graph.node if n.name]
    except Exception:
        return None, None, graph_ids
    return nodes, nodes, graph_ids


def _metadata_nodes(li: dict[str, Any]) -> list[str]:
    """ONNX node names from a layer's ``Metadata`` (TensorRT >= 10 at detailed verbosity:
    ``"[ONNX Layer: /a/Conv]\x1e[ONNX Layer: /a/Relu]"``)."""
    meta = li.get("Metadata")
    return _ONNX_LAYER.findall(meta) if isinstance(meta, str) else []


def profile_layers(
    profile: list[dict[str, Any]],
    info: dict[str, Any] | None = None,
    known: Collection[str] | None = None,
    order: Sequence[str] | None = None,
    graph_ids: set[str] | None = None,
) -> list[LayerTiming]:
    """Per-layer timings (``averageMs``) with the graph nodes each layer covers and, when the
    layer info is given, its type and tactic. ``known``/``order``: the ONNX node names (to
    filter and expand ranges); ``graph_ids``: map ONNX names ``<id>/<part>`` to graph ids. A
    layer's ``[ONNX Layer: ...]`` metadata, when present, wins over its name."""
    _, entries = profile_entries(profile)
    names = [e["name"] for e in entries]
    infos = layer_info(info) if info else {}
    parsed = map_engine_layers(list(dict.fromkeys([*names, *infos])), known, order)
    out: list[LayerTiming] = []
    for e in entries:
        p = parsed[e["name"]]
        extra: dict[str, Any] = {"median_ms": e.get("medianMs"), "percentage": e.get("percentage")}
        li = infos.get(e["name"], {})
        for key in ("LayerType", "TacticName"):
            if key in li:
                extra[key] = li[key]
        if p.target:
            extra["charged_to"] = p.target
        nodes, kind = p.nodes, p.kind
        meta = _metadata_nodes(li)
        if meta and kind not in ("reformat", "generated"):
            nodes = list(dict.fromkeys(meta))
            kind = "fused" if len(nodes) > 1 else "kernel"
        nodes = to_graph_ids(nodes, graph_ids)
        if kind == "fused" and len(nodes) == 1:
            kind = "kernel"
        ms = e.get("averageMs", e.get("timeMs", 0.0))
        out.append(
            LayerTiming(name=e["name"], time_ms=float(ms), nodes=nodes, kind=kind, extra=extra)
        )
    return out


def reconcile(layers: list[LayerTiming], whole_ms: float) -> dict[str, float]:
    """Per-layer sum vs the whole-graph time of the same engine: ``{"layers_sum_ms",
    "whole_ms", "ratio"}`` (profiled runs are serialised per layer, so the ratio is usually > 1)."""
    total = sum(la.time_ms for la in layers)
    return {
        "layers_sum_ms": total,
        "whole_ms": whole_ms,
        "ratio": total / whole_ms if whole_ms > 0 else float("nan"),
    }
