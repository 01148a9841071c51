"""The wire format: a measurement request and its result, both plain JSON objects.

Request (``Request.to_dict()``)::

    {"protocol": 1,
     "device": "cpu",                 # cpu | xavier | t4 | jetson | cuda-trt
     "precision": "fp32",             # fp32 | fp16 | int8
     "batch": 1,
     "shapes": {"input": [1, 3, 224, 224]} | null,   # input name -> full shape (dynamic inputs)
     "timing": {"warmup": 10, "warmup_s": 0.2, "repeats": 20, "min_time_s": 1.0,
                "max_repeats": 10000, "cv_threshold": 0.025, "max_attempts": 3},
     "per_layer": true,
     "backend": null,                 # onnxruntime | trtexec | tensorrt | null (default)
     "options": {...}}                # backend options, see OPTIONS

Result (``Result.to_dict()``)::

    {"protocol": 1, "agent_version": "0.1.0",
     "status": "ok" | "noisy" | "failed", "error": null | "one line",
     "device": "cpu", "device_id": "cpu-ort1.32-fp32-t1", "backend": "onnxruntime",
     "precision": "fp32", "batch": 1,
     "timing": {"median_ms", "mean_ms", "p90_ms", "std_ms", "cv", "runs", "status", "attempts",
                "warmup_runs", "cvs", "warmup_s", "timed_s"} | null,
     "timing_method": "host-clock" | "cuda-graph+spin-wait+no-transfers" | ...,
     "protocol_config": {the TimingConfig used},
     "layers": [{"name": <engine's own layer name>, "time_ms": float, "extra": {...}}],
     "engine_graph": {"format": "ort-optimized-nodes" | "tensorrt-layer-info", "data": ...} | null,
     "memory": {"peak_rss_bytes": ..., "engine_device_memory_bytes": ..., ...},
     "fingerprint": {...},
     "timing_s": {"load": s, "build": s, "per_layer": s, "total": s, ...},
     "notes": [str], "warnings": [str], "extra": {...}}

Layer names are exactly as the engine reports them (ORT kernel names of the optimized graph,
TensorRT layer names); mapping them to graph nodes is the host's job. ``PROTOCOL_VERSION``
changes when a field changes meaning; a reader refuses a protocol it does not know.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from nasctl_agent.errors import RequestError
from nasctl_agent.protocol import TimingConfig

PROTOCOL_VERSION = 1

DEVICES = ("cpu", "xavier", "t4", "jetson", "cuda-trt")
PRECISIONS = ("fp32", "fp16", "int8")
BACKENDS = ("onnxruntime", "trtexec", "tensorrt")

#: backend options a request may carry (anything else is refused, so typos are not silent)
OPTIONS = {
    "threads": "cpu: intra-op threads (default 1)",
    "clock": "cpu: wall (default) or thread (CPU time of the calling thread, needs threads=1)",
    "per_layer_runs": "profiled runs for per-layer times (cpu 3, TensorRT 10)",
    "per_layer_warmup": "cpu: profiled warm-up runs discarded (default 1)",
    "seed": "random input seed (default 0)",
    "memory": "cpu: fresh (default: peak memory in a fresh process per model), inprocess, off",
    "trtexec": "path of trtexec (default: PATH, then JetPack's /usr/src/tensorrt/bin)",
    "timeout_s": "trtexec: seconds before a run is killed (default 1800)",
    "timing_cache_dir": "TensorRT timing cache folder ('' disables it)",
    "workspace_mb": "TensorRT builder workspace (MiB)",
    "dla_core": "Jetson: DLA core 0 or 1 (GPU fallback on)",
    "calib_data": "INT8 (TensorRT < 10.1 implicit quantization): folder of .npy batches",
    "calib_cache": "INT8: calibration cache file, reused across builds",
}


#: options that are numbers (a host may pass them as strings: ``--option dla_core=0``)
_NUMERIC = {
    "threads": int,
    "per_layer_runs": int,
    "per_layer_warmup": int,
    "seed": int,
    "dla_core": int,
    "workspace_mb": int,
    "timeout_s": float,
}


@dataclass
class Request:
    """What to measure (the model travels separately: a path, or bytes plus external data)."""

    device: str = "cpu"
    precision: str = "fp32"
    batch: int = 1
    shapes: dict[str, list[int]] | None = None
    timing: dict[str, Any] = field(default_factory=dict)
    per_layer: bool = True
    backend: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    protocol: int = PROTOCOL_VERSION

    def check(self) -> None:
        """Raise :class:`RequestError` for a request no device could serve."""
        if self.protocol != PROTOCOL_VERSION:
            raise RequestError(
                f"request protocol {self.protocol} is not this agent's ({PROTOCOL_VERSION}); "
                "install the nasctl-agent that matches the host's nasctl"
            )
        if self.device not in DEVICES:
            raise RequestError(
                f"unknown device {self.device!r}; this agent measures {', '.join(DEVICES)}"
            )
        if self.precision not in PRECISIONS:
            raise RequestError(
                f"precision must be one of {', '.join(PRECISIONS)}; got {self.precision!r}"
            )
        if not isinstance(self.batch, int) or isinstance(self.batch, bool) or self.batch < 1:
            raise RequestError(f"batch must be an integer >= 1; got {self.batch!r}")
        if self.backend is not None and self.backend not in BACKENDS:
            raise RequestError(
                f"backend must be one of {', '.join(BACKENDS)}; got {self.backend!r}"
            )
        unknown = sorted(set(self.options) - set(OPTIONS))
        if unknown:
            raise RequestError(
                f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(OPTIONS))}"
            )
        for key, kind in _NUMERIC.items():
            value = self.options.get(key)
            if value is not None and not isinstance(value, kind):
                try:
                    self.options[key] = kind(value)
                except (TypeError, ValueError):
                    what = "an integer" if kind is int else "a number"
                    raise RequestError(f"option {key}={value!r} must be {what}") from None
        for name, shape in (self.shapes or {}).items():
            if not (isinstance(shape, list) and shape and all(_pos_int(d) for d in shape)):
                raise RequestError(
                    f"shape of input {name!r} must be a list of positive integers; got {shape!r}"
                )
        self.timing_config()

    def timing_config(self) -> TimingConfig:
        unknown = sorted(set(self.timing) - set(TimingConfig().to_dict()))
        if unknown:
            raise RequestError(f"unknown timing key(s): {', '.join(unknown)}")
        return TimingConfig.from_options(self.timing)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Request:
        """A checked request from JSON; unknown keys are refused."""
        if not isinstance(d, dict):
            raise RequestError(f"a request is a JSON object; got {type(d).__name__}")
        known = set(cls.__dataclass_fields__)
        extra = sorted(set(d) - known)
        if extra:
            raise RequestError(f"unknown request field(s): {', '.join(extra)}")
        req = cls(**d)
        req.check()
        return req


def _pos_int(d: Any) -> bool:
    return isinstance(d, int) and not isinstance(d, bool) and d > 0


@dataclass
class Result:
    """What the agent measured (see the module docstring for the JSON)."""

    device: str
    device_id: str
    backend: str
    precision: str
    batch: int
    status: str = "ok"
    error: str | None = None
    timing: dict[str, Any] | None = None
    timing_method: str = ""
    protocol_config: dict[str, Any] = field(default_factory=dict)
    layers: list[dict[str, Any]] = field(default_factory=list)
    engine_graph: dict[str, Any] | None = None
    memory: dict[str, Any] = field(default_factory=dict)
    fingerprint: dict[str, Any] = field(default_factory=dict)
    timing_s: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    protocol: int = PROTOCOL_VERSION
    agent_version: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Result:
        if d.get("protocol") != PROTOCOL_VERSION:
            raise RequestError(
                f"result protocol {d.get('protocol')!r} is not {PROTOCOL_VERSION}; "
                "the agent and nasctl versions do not match"
            )
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})
