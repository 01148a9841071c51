"""Jobs on the wire: task ids derived from the request, the message with its ONNX payload, and
reading a result back (checked before anything is stored).

A task id is a hash of what is measured and where (architecture content hash, device key,
precision, batch, per-layer flag, timing options): the same command sends the same ids, so a host
that restarts finds the answers of the jobs it sent before instead of sending them again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nasctl.errors import NasctlError, OnnxReadError
from nasctl.fleet.connect import Fleet, FleetError
from nasctl.profiler.source import ModelSource
from nasctl.records import Measurement, MeasurementRequest

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
    """A job ready to send: its id, message, the graph node ids (None for a user ONNX) to map
    engine layer names back, and the Redis chunks of its model (stored when it is sent, deleted
    once it is answered)."""

    tid: str
    request: MeasurementRequest
    message: dict[str, Any]
    source: ModelSource
    chunks: dict[str, bytes | memoryview] = field(default_factory=dict)

    @property
    def transfer(self) -> str:
        """How the model travels: ``inline``, ``chunks`` or ``path``."""
        return str(self.message["payload"]["kind"])


def prepare(
    fleet: Fleet,
    request: MeasurementRequest,
    device: str,
    device_id: str,
    shared_dir: Path | None = None,
    host_opts: dict[str, Any] | None = None,
    same_files: bool = False,
) -> Prepared:
    """Write the request's ONNX (graph requests) and build its message. The model is written as
    the local device of that name writes it (:func:`host_model`): an INT8 request to ``cpu``
    workers travels as the Q/DQ model, calibrated with ``host_opts`` (``calib_data``, ``seed``),
    not as the FP32 model the worker would refuse to measure as INT8. A user's ONNX travels as
    its path (external data included) when the workers see the same files (``same_files``: on
    this machine) or it lies under ``shared_dir`` (a folder both sides see at the same path);
    other models up to ``INLINE_MAX_BYTES`` travel in the message, larger ones as Redis chunks
    under the task id, and over ``MAX_BLOB_BYTES`` they are refused."""
    source = host_model(request, device, host_opts)
    tid = task_id(request, device_id)
    chunks: dict[str, bytes | memoryview] = {}
    if source.path is not None and (same_files or (shared_dir and _under(source.path, shared_dir))):
        path = source.path.resolve()
        payload = dict(fleet.proto.payload_path(str(path), path.stat().st_size))
    else:
        payload, chunks = _send_bytes(fleet, request, source, tid)
    job = {"arch_hash": request.arch_hash, "genotype": request.genotype, "model": request.model}
    msg = {
        "protocol": fleet.proto.PROTOCOL_VERSION,
        "request": agent_request_dict(request, device),
        "job": job,  # the worker gets ONNX and these labels, never graphs
        "payload": payload,
    }
    return Prepared(tid, request, msg, source, chunks)


def host_model(
    request: MeasurementRequest, device: str, host_opts: dict[str, Any] | None = None
) -> ModelSource:
    """The model of ``request`` as the local device called ``device`` loads it (a registered
    device writes its precision into the model: the cpu device's Q/DQ INT8); a device name
    nasctl does not know here (a replay table, a device id) gets the model as it is."""
    from nasctl.profiler.devices import device_class
    from nasctl.profiler.source import load_model

    cls = device_class(device)
    if cls is None:
        return load_model(request)
    return cls(**(host_opts or {})).load(request)


def _send_bytes(
    fleet: Fleet, request: MeasurementRequest, source: ModelSource, tid: str
) -> tuple[dict[str, Any], dict[str, bytes | memoryview]]:
    """The payload of a model's bytes (inline, or Redis chunks) and the chunks to store."""
    p = fleet.proto
    if source.data is not None:
        data = source.data
    else:
        assert source.path is not None
        try:
            data = source.path.read_bytes()
        except OSError as e:
            raise OnnxReadError(f"cannot read ONNX file {source.path}: {e.strerror or e}") from e
    if len(data) <= p.INLINE_MAX_BYTES:
        return dict(p.payload_inline(data)), {}
    if len(data) > p.MAX_BLOB_BYTES:
        raise FleetError(
            f"{request.model or request.arch_hash[:12]} is {len(data) / 2**20:.0f} MiB, over the "
            f"fleet's {p.MAX_BLOB_BYTES / 2**20:.0f} MiB limit for models sent through Redis; put "
            "it in a folder both host and workers see and set fleet_shared_dir=DIR"
        )
    payload = dict(p.payload_chunks(data, tid))
    step, view = int(payload["chunk_bytes"]), memoryview(data)
    keys = p.chunk_keys(payload)
    return payload, {k: view[i * step : (i + 1) * step] for i, k in enumerate(keys)}


def agent_request_dict(request: MeasurementRequest, device: str) -> dict[str, Any]:
    """The agent's request JSON for ``request`` on the workers' ``device`` (the same request a
    local agent-backed device builds)."""
    from nasctl.profiler.agent_devices import agent_request
    from nasctl.profiler.protocol import TimingConfig

    opts = dict(request.options or {})
    try:
        cfg = TimingConfig.from_options(opts)
    except NasctlError:
        raise
    except Exception as e:  # the agent's RequestError: a bad timing option
        raise FleetError(f"bad timing option: {' '.join(str(e).split())}") from None
    return dict(agent_request(device, request, opts, cfg).to_dict())


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
    raw_worker = res.get("worker")
    worker: dict[str, Any] = raw_worker if isinstance(raw_worker, dict) else {}
    who = worker.get("name", "a worker")
    if res.get("protocol") != protocol_version:
        raise FleetError(
            f"{who} answered in fleet protocol {res.get('protocol')}; this nasctl speaks "
            f"{protocol_version}: install the matching nasctl-agent there"
        )
    if res.get("error"):
        raise FleetError(f"{who} refused {label}: {res['error']}")
    from nasctl_agent import AgentError

    from nasctl.profiler.agent_devices import measurement_from_result

    try:
        m = measurement_from_result(job.request, res["result"], job.source)
        _check(m)
    except AgentError as e:  # a result of another agent protocol
        raise FleetError(f"{who} answered: {' '.join(str(e).split())}; nothing stored") from None
    except (KeyError, TypeError, ValueError, AttributeError) as e:
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
    m.extra.setdefault("fleet", {}).update(
        {"worker": who, "task_id": job.tid, "transfer": job.transfer}
    )
    return m, worker


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
