"""Plain, serializable measurement records: the seam between backends, the store and a fleet.

Requests and results are dataclasses of JSON-able values, so they can cross a process or a Ray
boundary unchanged (``to_dict``/``from_dict``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class MeasurementRequest:
    """What to measure.

    Either ``graph_json`` (a :class:`nasctl.arch.Graph` as JSON; the backend writes ONNX) or
    ``onnx_path`` (a user's model) is set. ``arch_hash`` is the graph's content hash.
    """

    arch_hash: str
    device: str  # device name as given to the CLI: "cpu", "t4", "xavier", "replay:nb201/col"
    precision: str = "fp32"  # fp32 | fp16 | int8
    batch: int = 1
    graph_json: str | None = None
    onnx_path: str | None = None
    model: str | None = None  # file name for --onnx models
    space: str | None = None
    genotype: str | None = None
    per_layer: bool = True
    options: dict[str, Any] = field(default_factory=dict)  # warmup, repeats, threads, ...

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MeasurementRequest:
        return cls(**d)


@dataclass
class LayerTiming:
    """Time of one device layer (kernel) and the graph nodes it covers.

    ``name`` is the device's own layer name (e.g. a TensorRT fused name ``"/a/conv + /a/act"``);
    ``nodes`` the graph node ids it maps to (several for a fused kernel, empty if unknown);
    ``kind`` e.g. ``"fused"``, ``"reformat"``, ``"foreign"``, ``"kernel"``.
    """

    name: str
    time_ms: float
    nodes: list[str] = field(default_factory=list)
    kind: str = "kernel"
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Measurement:
    """One whole-graph latency measurement with its statistics and environment.

    ``status`` is ``"ok"``, ``"noisy"`` (quality gate still failing after re-measuring) or
    ``"failed"`` (``error`` says why; latency fields are None).
    """

    arch_hash: str
    device_id: str  # canonical dataset id, e.g. "cpu-ort1.32-fp32-t1", "xaviernx-trt8.5-fp16"
    precision: str
    batch: int
    status: str
    median_ms: float | None = None
    mean_ms: float | None = None
    p90_ms: float | None = None
    std_ms: float | None = None
    cv: float | None = None
    runs: int = 0
    warmup: int = 0
    attempts: int = 1
    error: str | None = None
    fingerprint: dict[str, Any] = field(default_factory=dict)
    layers: list[LayerTiming] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. engine device memory bytes

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Measurement:
        d = dict(d)
        d["layers"] = [LayerTiming(**x) for x in d.get("layers", [])]
        return cls(**d)
