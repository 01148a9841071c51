"""Jobs on the wire: task ids derived from the request, the message with its ONNX payload, and
reading a result back (checked before anything is stored).

A task id is a hash of what is measured and where (architecture content hash, device key,
precision, batch, per-layer flag, timing options): the same command sends the same ids, so a host
that restarts finds the answers of the jobs it sent before instead of sending them again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nasctl.fleet.connect import Fleet, FleetError
from nasctl.records import LayerTiming, Measurement, MeasurementRequest

STATUSES = ("ok", "noisy", "failed")


def task_id(request: MeasurementRequest, device_id: str) -> str:
    """``nasctl-<32 hex>`` from the request's content and the device key."""
    what = {
        "arch": request.arch_hash,
        "device_id": device_id,
        "precision": request.precision,
        "batch": request.batch,
        "per_layer": request.per_layer,
        "options": {k: str(v) for k, v in sorted((request.options or {}).items())},
    }
    text = json.dumps(what, sort_keys=True)
    return "nasctl-" + hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass
class Prepared:
    """A job ready to send: its id, message, and the graph node ids (None for a user ONNX) to
    map engine layer names back."""

    tid: str
    request: MeasurementRequest
    message: dict[str, Any]
    node_ids: set[str] | None


def prepare(
    fleet: Fleet,
    request: MeasurementRequest,
    device: str,
    device_id: str,
    shared_dir: Path | None = None,
) -> Prepared:
    """Write the request's ONNX (graph requests) and build its message. A model over
    ``INLINE_MAX_BYTES`` is stored as Redis chunks (or sent as a path when it lies under
    ``shared_dir``, a folder both sides see at the same path); over ``MAX_BLOB_BYTES`` without a
    shared folder it is refused."""
    from nasctl.profiler.devices import load_model_bytes

    p = fleet.proto
    data, ids = load_model_bytes(request)
    if request.onnx_path and shared_dir and _under(Path(request.onnx_path), shared_dir):
        payload = p.payload_path(str(Path(request.onnx_path).resolve()), data)
    elif len(data) <= p.INLINE_MAX_BYTES:
        payload = p.payload_inline(data)
    elif len(data) <= p.MAX_BLOB_BYTES:
        payload = p.payload_chunks(data)
        keys = p.chunk_keys(payload)
        step = int(payload["chunk_bytes"])
        pipe = fleet.redis.pipeline()
        for i, k in enumerate(keys):
            pipe.set(k, data[i * step : (i + 1) * step], ex=p.KEEP_S)
        fleet.call(pipe.execute)
    else:
        raise FleetError(
            f"{request.model or request.arch_hash[:12]} is {len(data) / 2**20:.0f} MiB, over the "
            f"fleet's {p.MAX_BLOB_BYTES / 2**20:.0f} MiB limit for models sent through Redis; put "
            "it in a folder both host and workers see and pass --fleet-shared-dir"
        )
    job = {"arch_hash": request.arch_hash, "genotype": request.genotype, "model": request.model}
    msg = {
        "protocol": p.PROTOCOL_VERSION,
        "request": agent_request(request, device),
        "job": job,  # the worker gets ONNX and these labels, never graphs
        "payload": payload,
    }
    return Prepared(task_id(request, device_id), request, msg, ids)


#: timing-protocol keys of a request's options (the rest are backend options)
TIMING_KEYS = (
    "warmup",
    "warmup_s",
    "repeats",
    "min_time_s",
    "max_repeats",
    "cv_threshold",
    "max_attempts",
)


def agent_request(request: MeasurementRequest, device: str) -> dict[str, Any]:
    """The agent's request JSON (``nasctl_agent.Request``) for ``request`` on the workers'
    ``device``."""
    from nasctl_agent import PROTOCOL_VERSION

    opts = dict(request.options or {})
    timing = {k: _number(opts.pop(k)) for k in TIMING_KEYS if k in opts}
    return {
        "protocol": PROTOCOL_VERSION,
        "device": device,
        "precision": request.precision,
        "batch": request.batch,
        "shapes": None,
        "timing": timing,
        "per_layer": request.per_layer,
        "backend": None,
        "options": {k: _number(v) for k, v in opts.items()},
    }


def _number(v: Any) -> Any:
    """CLI option strings as numbers where they are numbers."""
    if not isinstance(v, str):
        return v
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            continue
    return v


def _under(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def read_result(
    meta: dict[str, Any], job: Prepared, device_id: str, protocol_version: int
) -> tuple[Measurement, dict[str, Any]]:
    """The measurement and the worker's identity from a finished task's meta, checked: a
    malformed answer raises FleetError (nothing of it is stored)."""
    label = job.request.model or job.request.genotype or job.request.arch_hash[:12]
    if meta.get("status") == "FAILURE":  # the task raised: the model failed there, go on
        err = meta.get("result")
        text = err.get("exc_message") if isinstance(err, dict) else err
        if isinstance(text, list | tuple):
            text = " ".join(str(t) for t in text)
        r = job.request
        error = f"the worker's task failed: {' '.join(str(text).split())[:300]}"
        m = Measurement(r.arch_hash, device_id, r.precision, r.batch, "failed", error=error)
        return m, {}
    res = meta.get("result")
    if not isinstance(res, dict):
        raise FleetError(f"malformed answer for {label}: a {type(res).__name__}, not a result")
    worker = res.get("worker") if isinstance(res.get("worker"), dict) else {}
    who = worker.get("name", "a worker")
    if res.get("protocol") != protocol_version:
        raise FleetError(
            f"{who} answered in fleet protocol {res.get('protocol')}; this nasctl speaks "
            f"{protocol_version}: install the matching nasctl-agent there"
        )
    if res.get("error"):
        raise FleetError(f"{who} refused {label}: {res['error']}")
    try:
        m = measurement_from_result(job.request, res["result"], job.node_ids)
        _check(m)
    except (KeyError, TypeError, ValueError) as e:
        raise FleetError(
            f"malformed answer from {who} for {label} ({' '.join(str(e).split())[:200]}); "
            "nothing of it is stored"
        ) from None
    want = (job.request.arch_hash, device_id, job.request.precision, job.request.batch)
    got = (m.arch_hash, m.device_id, m.precision, m.batch)
    if got != want:
        raise FleetError(
            f"{who} answered for {got[0][:12]} on {got[1]} ({got[2]}, batch {got[3]}); asked "
            f"{want[0][:12]} on {want[1]} ({want[2]}, batch {want[3]}); nothing stored"
        )
    m.extra.setdefault("fleet", {}).update({"worker": who, "task_id": job.tid})
    return m, worker


def measurement_from_result(
    request: MeasurementRequest, result: dict[str, Any], node_ids: set[str] | None
) -> Measurement:
    """The store's record of an agent Result dict. Raises KeyError/TypeError/ValueError on a
    result of the wrong shape."""
    from nasctl.profiler.devices import to_graph_ids

    if not isinstance(result, dict):
        raise TypeError(f"result is a {type(result).__name__}")
    timing = result.get("timing") or {}
    if not isinstance(timing, dict):
        raise TypeError("timing must be an object")
    layers = []
    for la in result.get("layers") or []:
        name = la["name"]
        nodes = to_graph_ids([name], node_ids)
        layers.append(
            LayerTiming(name, la["time_ms"], nodes, "kernel", dict(la.get("extra") or {}))
        )
    extra = {
        k: result.get(k)
        for k in ("backend", "timing_method", "protocol_config", "memory", "timing_s", "notes")
        if result.get(k)
    }
    extra.update(result.get("extra") or {})
    return Measurement(
        arch_hash=request.arch_hash,
        device_id=result["device_id"],
        precision=result["precision"],
        batch=result["batch"],
        status=result["status"],
        median_ms=timing.get("median_ms"),
        mean_ms=timing.get("mean_ms"),
        p90_ms=timing.get("p90_ms"),
        std_ms=timing.get("std_ms"),
        cv=timing.get("cv"),
        runs=int(timing.get("runs") or 0),
        warmup=int(timing.get("warmup_runs") or 0),
        attempts=int(timing.get("attempts") or 1),
        error=result.get("error"),
        fingerprint=result.get("fingerprint") or {},
        layers=layers,
        extra=extra,
    )


def _check(m: Measurement) -> None:
    """Types and values a stored measurement must have."""
    if m.status not in STATUSES:
        raise ValueError(f"status {m.status!r}")
    if not isinstance(m.arch_hash, str) or not isinstance(m.device_id, str):
        raise TypeError("arch_hash and device_id must be strings")
    if not isinstance(m.batch, int) or not isinstance(m.fingerprint, dict):
        raise TypeError("batch must be an integer and fingerprint an object")
    if not isinstance(m.extra, dict):
        raise TypeError("extra must be an object")
    for name in ("median_ms", "mean_ms", "p90_ms", "std_ms", "cv"):
        v = getattr(m, name)
        if v is not None and (not isinstance(v, int | float) or v != v or v < 0):
            raise ValueError(f"{name} = {v!r}")
    if m.status != "failed" and not (isinstance(m.median_ms, int | float) and m.median_ms > 0):
        raise ValueError(f"an {m.status} measurement needs median_ms > 0; got {m.median_ms!r}")
    for la in m.layers:
        if not isinstance(la.name, str) or not isinstance(la.time_ms, int | float):
            raise TypeError("a layer needs a name and a time_ms")
