"""What the trtexec and TensorRT Python API backends share, so that one device id means one
way of building and timing:

- :data:`TIMING_METHOD`: CUDA graph launches, spin-wait synchronisation, no host<->device
  transfers (trtexec ``--useCudaGraph --useSpinWait --noDataTransfers``, the defaults from
  TensorRT 11; the Python API captures ``execute_async_v3`` in a CUDA graph and polls its end
  event). A run that could not use a CUDA graph carries :data:`NO_GRAPH_SUFFIX` in its id.
- :func:`precision_plan`: where the precision comes from, by TensorRT version. Builder flags
  (``--fp16``/``--int8``) before TensorRT 11; strongly typed networks (precision from the ONNX)
  from 11, and on 10 when the model already carries its precision. A request whose precision
  the engine would not have is refused (never an FP32 engine recorded as fp16).
- :func:`shape_plan`: input shapes at the request's batch (a fixed batch that differs is
  refused) and one optimization profile with min = opt = max for dynamic inputs.
- readers of TensorRT's JSON reports (times, profile, layer info) and of its build log
  (memory, layers placed on DLA / GPU).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Tuple

from nasctl_agent.errors import ModelError, RequestError
from nasctl_agent.onnx_wire import ModelInfo
from nasctl_agent.protocol import TimingStats

Version = Tuple[int, int]

TIMING_METHOD = "cuda-graph+spin-wait+no-transfers"
NO_GRAPH_METHOD = "stream+spin-wait+no-transfers"
NO_GRAPH_SUFFIX = "-nograph"


def parse_version(text: str) -> Version:
    parts = (text.split(".") + ["0"])[:2]
    try:
        return int(parts[0]), int(parts[1])
    except ValueError:
        raise RequestError(f"cannot read TensorRT version {text!r}") from None


@dataclass
class PrecisionPlan:
    """How an engine gets the request's precision.

    Attributes:
        flags: builder precisions to enable: ``"fp16"``, ``"int8"`` (trtexec ``--fp16``,
            ``--int8``; ``BuilderFlag.FP16``/``INT8``).
        strongly_typed: build a strongly typed network (trtexec ``--stronglyTyped`` on 10.x,
            always on from 11; ``NetworkDefinitionCreationFlag.STRONGLY_TYPED``).
        calibration: INT8 by implicit quantization (a calibrator or its cache; TensorRT < 10.1).
        notes: what the record should say about it.
    """

    flags: list[str] = field(default_factory=list)
    strongly_typed: bool = False
    calibration: bool = False
    notes: list[str] = field(default_factory=list)


def precision_plan(
    version: Version, requested: str, model_precision: str | None, dla: bool = False
) -> PrecisionPlan:
    """The plan for ``requested`` (fp32|fp16|int8) on TensorRT ``version`` for a model whose
    own precision is ``model_precision`` (``int8`` = Q/DQ nodes, ``fp16`` = FP16 tensors,
    ``fp32``; None when unknown). Raises :class:`ModelError` when the engine could not have
    the requested precision."""
    if requested not in ("fp32", "fp16", "int8"):
        raise RequestError(f"TensorRT precision must be fp32, fp16 or int8; got {requested!r}")
    if dla and requested == "fp32":
        raise RequestError("DLA runs FP16 or INT8 only; ask for --precision fp16 or int8")
    mp = model_precision
    if version >= (11, 0):
        if mp is None:
            raise ModelError("TensorRT >= 11 takes precision from the ONNX, which cannot be read")
        if mp != requested:
            raise ModelError(
                f"TensorRT {version[0]}.{version[1]} builds what the ONNX says ({mp}), the "
                f"request asks for {requested}: write the model in {requested} (FP16 tensors, "
                "Q/DQ nodes for INT8; nasctl does so for --precision) or ask for "
                f"--precision {mp}"
            )
        return PrecisionPlan(
            strongly_typed=True, notes=["TensorRT >= 11 is strongly typed: the ONNX's precision"]
        )
    if mp == "int8" and requested != "int8" or mp == "fp16" and requested == "fp32":
        raise ModelError(
            f"the ONNX carries {mp} precision; measuring it as {requested} would mislabel "
            f"the engine: ask for --precision {mp} or give the {requested} model"
        )
    if version >= (10, 0) and mp == requested and requested != "fp32" and not dla:
        return PrecisionPlan(strongly_typed=True, notes=["strongly typed: precision from the ONNX"])
    if requested == "fp32":
        return PrecisionPlan()
    if requested == "fp16":
        return PrecisionPlan(flags=["fp16"])
    # int8
    if mp == "int8":  # explicit quantization: the Q/DQ scales decide, fp16 where faster
        return PrecisionPlan(flags=["int8", "fp16"], notes=["explicit quantization (Q/DQ)"])
    if version >= (10, 1):
        raise ModelError(
            "implicit INT8 quantization (calibration) is deprecated from TensorRT 10.1: "
            "give a Q/DQ ONNX (nasctl writes one for --precision int8)"
        )
    return PrecisionPlan(
        flags=["int8", "fp16"],
        calibration=True,
        notes=["implicit quantization: scales from the calibration data/cache"],
    )


@dataclass
class ShapePlan:
    """Input shapes at the request's batch; ``dynamic`` names the inputs that need an
    optimization profile (min = opt = max = their shape)."""

    shapes: dict[str, list[int]]
    dynamic: list[str]

    def spec(self, names: list[str] | None = None) -> str:
        """trtexec's shape list: ``x:1x3x224x224,y:1x10``."""
        names = self.dynamic if names is None else names
        return ",".join(f"{n}:{'x'.join(str(d) for d in self.shapes[n])}" for n in names)


def shape_plan(info: ModelInfo, batch: int, given: dict[str, list[int]] | None = None) -> ShapePlan:
    """Shapes of every input at ``batch``: a symbolic dim 0 becomes ``batch``, other symbolic
    dims come from ``given``; a fixed batch that differs is refused (:class:`ModelError`):
    a record must not claim a batch it did not run."""
    given = given or {}
    shapes: dict[str, list[int]] = {}
    dynamic: list[str] = []
    for inp in info.inputs:
        dims = list(inp.dims)
        if inp.name in given:
            g = list(given[inp.name])
            if len(g) != len(dims) or any(isinstance(d, int) and d != x for d, x in zip(dims, g)):
                raise ModelError(f"input {inp.name!r} has shape {dims}; the request gives {g}")
            if len(g) > 1 and g[0] != batch:
                raise ModelError(
                    f"input {inp.name!r}: the request's shape {g} is not at batch {batch}"
                )
            shapes[inp.name] = g
            if any(not isinstance(d, int) for d in dims):
                dynamic.append(inp.name)
            continue
        out: list[int] = []
        for k, d in enumerate(dims):
            if isinstance(d, int):
                if k == 0 and len(dims) > 1 and d != batch:
                    raise ModelError(
                        f"input {inp.name!r} has a fixed batch of {d}, the request asks for "
                        f"batch {batch}; build the graph at that batch or export a dynamic batch"
                    )
                out.append(d)
            elif k == 0:
                out.append(batch)
            else:
                raise ModelError(
                    f"input {inp.name!r} has an unknown dimension {k} ({d!r}); give its shape "
                    "in the request (--shape NAME:DxDxD) or export fixed sizes"
                )
        shapes[inp.name] = out
        if any(not isinstance(d, int) for d in dims):
            dynamic.append(inp.name)
    return ShapePlan(shapes, dynamic)


# -- reports ---------------------------------------------------------------------------------------
def read_json(path: str) -> Any:
    """JSON from ``path``; a missing or broken report is a :class:`ModelError`."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot read TensorRT report {path}: {e}") from e


def timing_stats(times: list[dict[str, Any]], key: str = "computeMs") -> TimingStats:
    """Statistics over the iterations of an ``--exportTimes`` list (``computeMs``: GPU time
    of one inference, which with no transfers equals ``latencyMs``)."""
    samples = [float(it[key]) for it in times if isinstance(it, dict) and key in it]
    if not samples:
        raise ModelError(f"TensorRT times report has no {key!r} values")
    return TimingStats.from_samples(samples)


def profile_to_layers(profile: Any) -> list[dict[str, Any]]:
    """``--exportProfile`` (``[{"count": N}, {"name", "timeMs", "averageMs", "medianMs",
    "percentage"}, ...]``) -> the result's layers, names as TensorRT wrote them."""
    if not isinstance(profile, list) or not profile:
        raise ModelError("TensorRT profile report is empty")
    out = []
    for e in profile:
        if isinstance(e, dict) and "name" in e:
            ms = e.get("averageMs", e.get("timeMs")) or 0.0
            out.append(
                {
                    "name": str(e["name"]),
                    "time_ms": float(ms),
                    "extra": {"median_ms": e.get("medianMs"), "percentage": e.get("percentage")},
                }
            )
    return out


_MEM = {
    "activation_bytes": re.compile(r"Total Activation Memory:\s*(\d+)"),
    "device_persistent_bytes": re.compile(r"Total Device Persistent Memory:\s*(\d+)"),
    "host_persistent_bytes": re.compile(r"Total Host Persistent Memory:\s*(\d+)"),
    # "Total Scratch Memory" (8.x), "Max Scratch Memory" (10.x)
    "scratch_bytes": re.compile(r"(?:Total|Max) Scratch Memory:\s*(\d+)"),
    "weights_bytes": re.compile(r"Total Weights Memory:\s*(\d+)"),
}
_MIB = {
    # trtexec's inference phase (static allocation, its default): the execution context's
    # device memory, ICudaEngine::getDeviceMemorySize(V2), printed in MiB
    "device_memory_bytes": re.compile(
        r"Created execution context with device memory size:\s*([\d.]+)\s*MiB"
    ),
    # the builder's own peak while building ("[MemUsageStats] Peak memory usage of TRT CPU/GPU
    # memory allocators: CPU 9 MiB, GPU 105 MiB")
    "build_peak_gpu_bytes": re.compile(
        r"Peak memory usage of TRT CPU/GPU memory allocators:.*?GPU\s*([\d.]+)\s*MiB"
    ),
}


def memory_from_log(log: str) -> dict[str, int]:
    """Engine memory TensorRT logs (bytes): activations, persistent device/host memory, scratch,
    weights (builder, info level), the execution context's device memory and the builder's GPU
    peak (trtexec, in MiB); the last value of each, as printed."""
    out: dict[str, int] = {}
    for key, rx in _MEM.items():
        found = rx.findall(log)
        if found:
            out[key] = int(found[-1])
    for key, rx in _MIB.items():
        found = rx.findall(log)
        if found:
            out[key] = int(round(float(found[-1]) * (1 << 20)))
    return out


#: bytes per element of the ``Type`` names in TensorRT's layer information (``--exportLayerInfo``
#: / the engine inspector's JSON at detailed verbosity)
_TYPE_BYTES = {
    "Float": 4.0, "Half": 2.0, "BFloat16": 2.0, "Int8": 1.0, "UInt8": 1.0, "FP8": 1.0,
    "Int4": 0.5, "FP4": 0.5, "Int32": 4.0, "Int64": 8.0, "Bool": 1.0,
}  # fmt: skip


def weights_from_layer_info(info: Any) -> int | None:
    """Bytes of the weights the engine's layers hold, from the layer information JSON: every
    ``{"Type", "Count"}`` of a layer (``Weights``, ``Bias``, ``ConvWeights``...) times its
    element size. None when the report has no layer details (not built with detailed
    profiling verbosity) or a type this table does not know."""
    layers = info.get("Layers") if isinstance(info, dict) else None
    if not isinstance(layers, list):
        return None
    total, seen = 0.0, False
    for layer in layers:
        if not isinstance(layer, dict):
            continue
        for v in layer.values():
            if isinstance(v, dict) and "Count" in v and "Type" in v:
                size = _TYPE_BYTES.get(str(v["Type"]))
                if size is None:
                    return None
                total += size * int(v["Count"])
                seen = True
    return int(total) if seen else None


def engine_memory(
    log: str,
    *,
    measured: dict[str, int] | None = None,
    layer_info: Any = None,
    engine_bytes: int | None = None,
) -> dict[str, Any]:
    """A TensorRT measurement's memory (bytes): what the runtime reported (``measured``, e.g.
    ``device_memory_size_v2``) first, then the log's values, the weights counted from the
    layer information, the serialized engine's size, and ``model_peak_bytes`` = weights +
    the execution context's device memory (activations and scratch; TensorRT's
    "Total Activation Memory" where the context size is not printed)."""
    out: dict[str, Any] = dict(measured or {})
    for key, value in memory_from_log(log).items():
        out.setdefault(key, value)
    w = weights_from_layer_info(layer_info) if layer_info is not None else None
    if w is not None:
        out["layer_info_weights_bytes"] = w
    if engine_bytes is not None:
        out["engine_bytes"] = int(engine_bytes)
    weights = out.get("weights_bytes", out.get("layer_info_weights_bytes"))
    context = out.get("device_memory_bytes", out.get("activation_bytes"))
    if weights is not None and context is not None:
        out["model_peak_bytes"] = int(weights) + int(context)
        out["model_peak_scope"] = "engine: weights + execution context device memory"
    else:
        out["missing"] = "the engine's weights or device memory were not reported"
    return out


def finish_result(
    result: Any,
    res: Any,
    *,
    log: str,
    graph_ok: bool,
    dla: Any,
    notes: list[str],
    memory: dict[str, Any],
) -> None:
    """What both TensorRT backends record after timing: status and timing, the timing method
    (a run without a CUDA graph carries :data:`NO_GRAPH_SUFFIX` in its id), the memory, the
    DLA placement read from the build log, and the notes."""
    result.status = res.status
    result.timing = res.to_dict()
    result.timing_method = TIMING_METHOD if graph_ok else NO_GRAPH_METHOD
    if not graph_ok:
        result.device_id += NO_GRAPH_SUFFIX
    result.memory.update(memory)
    if dla is not None:
        placement = dla_placement(log)
        result.extra["gpu_fallback_layers"] = mark_dla_layers(result.layers, placement)
        result.extra["dla_layers"] = placement["dla"]
    result.notes += notes


_DLA_HEAD = re.compile(r"-+\s*Layers running on DLA\b", re.I)
_GPU_HEAD = re.compile(r"-+\s*Layers running on GPU\b", re.I)
_ITEM = re.compile(
    r"\[(DlaLayer|GpuLayer)\]\s*(?:[A-Z_]+:\s*)?(.+?)(?=,\s*\[(?:Dla|Gpu)Layer\]|,?\s*$)"
)


def dla_placement(log: str) -> dict[str, list[str]]:
    """``{"dla": [...], "gpu": [...]}``: layers TensorRT placed on the DLA and those that fell
    back to the GPU, from the build log's "Layers running on DLA/GPU" sections (info level)."""
    out: dict[str, list[str]] = {"dla": [], "gpu": []}
    section = None
    for line in log.splitlines():
        if _DLA_HEAD.search(line):
            section = "dla"
            continue
        if _GPU_HEAD.search(line):
            section = "gpu"
            continue
        if section is None:
            continue
        body = re.sub(r"^\s*(\[[^\]]*\]\s*)*?(?=\[(Dla|Gpu)Layer\])", "", line)
        items = _ITEM.findall(body)
        if not items:
            if "Layer]" not in line and line.strip() and "[TRT]" not in line:
                section = None
            continue
        for kind, name in items:
            out["dla" if kind == "DlaLayer" else "gpu"].append(name.strip().rstrip(","))
    return out


def mark_dla_layers(layers: list[dict[str, Any]], placement: dict[str, list[str]]) -> list[str]:
    """Mark each profiled layer with the unit it ran on (``extra["device"]``: ``DLA`` or
    ``GPU``, ``extra["fell_back"]``) and return the network layers that fell back to the GPU."""
    dla = set(placement.get("dla", []))
    for la in layers:
        on_dla = la["name"] in dla or any(d in la["name"] for d in dla if d.startswith("{"))
        la.setdefault("extra", {})["device"] = "DLA" if on_dla else "GPU"
        la["extra"]["fell_back"] = not on_dla
    return list(placement.get("gpu", []))
