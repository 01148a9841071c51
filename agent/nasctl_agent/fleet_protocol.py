"""The fleet's wire contract, shared by the worker (``nasctl-agent worker``) and the host
(``nasctl.fleet``): one definition, imported by both sides.

Standard library only and Python >= 3.8 (a Jetson Xavier NX runs JetPack 5.1's Python 3.8).

Messages are JSON (Celery's ``accept_content=["json"]``; pickle is refused on both sides).
A job message is ``{"protocol": PROTOCOL_VERSION, "request": {...}, "payload": {...}}`` where
``request`` is a ``nasctl.records.MeasurementRequest`` as a dict (without ``graph_json``) and
``payload`` says where the ONNX bytes are (see :func:`payload_inline` and friends): in the
message (small models), as Redis chunks under the job's task id (checked by size and CRC-32;
the host deletes them once it has the answer), or as a path when both sides see the same
files (a shared folder, or the same machine: :func:`filesystem_view`). A result is
``{"protocol": ..., "measurement": {...}, "worker": {...}}`` where ``measurement`` is a
``nasctl.records.Measurement`` as a dict whose layer ``nodes`` are the engine's own names (the
host maps them to graph nodes).

Redis keys (all under ``nasctl:``): ``worker:<name>`` (a worker's announcement, a JSON string
with a short time to live that its heartbeat renews), ``running:<task id>`` (the lease of the
worker measuring a job), ``started:<task id>`` (who took a job), ``sent:<task id>`` (the host sent
it), ``blob:<task id>:<i>`` (chunks of a large ONNX).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import zlib
from typing import Any

#: Bumped when a message or key changes meaning; host and worker must agree.
#: 2: chunks keyed by task id and checked by CRC-32 (was SHA-256 content keys); path payloads
#: on one machine; workers announce their filesystem view.
PROTOCOL_VERSION = 2
TASK_NAME = "nasctl.measure"
KEY_PREFIX = "nasctl:"
#: A worker's announcement and its job's lease (``running:<id>``) live this long unless its
#: heartbeat (every fifth of it) renews them (seconds; ``nasctl-agent worker --lease-s``).
LEASE_TTL_S = 10.0
#: ONNX up to this size travels inside the message (base64); larger ones as Redis chunks.
INLINE_MAX_BYTES = 1 << 20
CHUNK_BYTES = 8 << 20
#: The largest ONNX a job may carry through Redis (larger: a path both sides see).
MAX_BLOB_BYTES = 1 << 30
#: How long sent markers, leases' records and chunks are kept (seconds).
KEEP_S = 7 * 24 * 3600


def queue_name(device_id: str) -> str:
    """The queue of one device key: ``nasctl.<device id>``."""
    return "nasctl." + device_id


def key(*parts: str) -> str:
    return KEY_PREFIX + ":".join(parts)


def celery_config(url: str, visibility_timeout_s: float = 3600.0) -> dict[str, Any]:
    """The Celery settings both sides use: JSON only, acknowledgement after the work, a worker
    takes one job at a time, a job whose worker is lost goes back to the queue."""
    base, tls = split_tls(url)
    conf: dict[str, Any] = {
        "broker_url": base,
        "result_backend": base,
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_serializer": "json",
        "result_serializer": "json",
        "event_serializer": "json",
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        "worker_concurrency": 1,
        "task_track_started": False,  # nasctl:started:<id> says it; one publish less
        "task_send_sent_event": True,
        "worker_send_task_events": True,
        "result_expires": KEEP_S,
        "result_extended": False,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {"visibility_timeout": visibility_timeout_s},
        "result_backend_transport_options": {"retry_policy": {"timeout": 5.0}},
        "worker_hijack_root_logger": False,
        "task_default_queue": "nasctl.default",
    }
    if tls is not None:
        conf["broker_use_ssl"] = tls
        conf["redis_backend_use_ssl"] = dict(tls)
    return conf


#: TLS settings a ``rediss://`` URL may carry in its query string
TLS_QUERY = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")


def split_tls(url: str) -> tuple[str, dict[str, Any] | None]:
    """``(url without its query, TLS settings)`` for Celery: a ``rediss://`` URL always checks
    the server's certificate (``CERT_REQUIRED``); ``?ssl_ca_certs=/path/ca.pem`` names the CA,
    ``ssl_certfile``/``ssl_keyfile`` a client certificate. ``redis://``: no TLS (None)."""
    import ssl
    from urllib.parse import parse_qsl, urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.scheme != "rediss":
        return url, None
    query = dict(parse_qsl(parts.query))
    tls: dict[str, Any] = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    tls.update({k: query[k] for k in TLS_QUERY if query.get(k)})
    return urlunsplit(parts._replace(query="")), tls


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for messages and logs)."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at or ":" not in creds:
        return url
    return "{}{}{}:***@{}".format(scheme, sep, creds.split(":", 1)[0], host)


def crc32(data: bytes) -> str:
    """The check a payload carries: CRC-32 (against a truncated or mixed-up transfer; the
    message is trusted as much as the broker, so no cryptographic hash is paid for twice)."""
    return "%08x" % (zlib.crc32(data) & 0xFFFFFFFF)


def payload_inline(data: bytes) -> dict[str, Any]:
    return {
        "kind": "inline",
        "size": len(data),
        "crc32": crc32(data),
        "data": base64.b64encode(data).decode("ascii"),
    }


def payload_chunks(data: bytes, blob_id: str, chunk_bytes: int = CHUNK_BYTES) -> dict[str, Any]:
    """The reference to ``data`` stored as Redis chunks under ``blob_id`` (the job's task id;
    the caller stores them with :func:`chunk_keys`)."""
    n = max(1, -(-len(data) // chunk_bytes))
    return {
        "kind": "chunks",
        "blob": blob_id,
        "size": len(data),
        "crc32": crc32(data),
        "chunks": n,
        "chunk_bytes": chunk_bytes,
    }


def payload_path(path: str, size: int) -> dict[str, Any]:
    """A model both sides see at ``path`` (external data next to it): checked by size only."""
    return {"kind": "path", "path": path, "size": size}


def chunk_keys(payload: dict[str, Any]) -> list[str]:
    return [key("blob", str(payload["blob"]), str(i)) for i in range(int(payload["chunks"]))]


def read_payload(
    payload: dict[str, Any], redis: Any = None, parts: list[Any] | None = None
) -> bytes | str:
    """The model a payload points at: its bytes, checked against size and CRC-32, or for a
    ``path`` payload the path (checked by size; the engine reads it and its external data).
    ``parts``: the chunks already fetched (``MGET`` of :func:`chunk_keys`), else read from
    ``redis``. Raises ``ValueError`` with a one-line reason."""
    kind = payload.get("kind")
    if kind == "path":
        path = str(payload["path"])
        size = os.path.getsize(path)
        if size != int(payload.get("size", -1)):
            raise ValueError(f"{path} is {size} bytes here; the host saw {payload.get('size')}")
        return path
    if kind == "inline":
        data = base64.b64decode(payload["data"])
    elif kind == "chunks":
        if parts is None:
            if redis is None:
                raise ValueError("a chunked payload needs the broker's Redis")
            parts = redis.mget(chunk_keys(payload))
        if any(p is None for p in parts):
            raise ValueError(
                f"the model's chunks ({payload.get('blob', '?')}) are gone from Redis "
                "(expired or flushed); the host sends them again when the command is rerun"
            )
        data = parts[0] if len(parts) == 1 else b"".join(parts)
    else:
        raise ValueError(f"unknown payload kind {kind!r}")
    if len(data) != int(payload.get("size", -1)):
        raise ValueError(f"payload is {len(data)} bytes; the message says {payload['size']}")
    if crc32(data) != payload.get("crc32"):
        raise ValueError("payload CRC-32 does not match the message (corrupt or changed file)")
    return data


def filesystem_view() -> str | None:
    """Who sees which files, as a short string: this kernel's boot id, the process's mount
    namespace and user id (Linux). Two processes with the same view see the same file at the
    same path with the same rights, so a host may send a worker the path of a model instead of
    its bytes. None where it cannot be told (no ``/proc``): models then travel through Redis."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        mnt = os.readlink("/proc/self/ns/mnt")
        uid = os.getuid()
    except (OSError, AttributeError):
        return None
    return f"{boot}/{mnt}/{uid}" if boot and mnt else None


def fingerprint_digest(fingerprint: dict[str, Any]) -> str:
    """A short digest of the parts of a fingerprint that must agree between workers of one key
    (everything but per-machine or per-moment fields: the host name, the time, the load)."""
    skip = {"hostname", "host", "node", "pid", "time", "timestamp", "uptime_s", "serial", "loadavg"}
    kept = {k: v for k, v in fingerprint.items() if k not in skip}
    text = json.dumps(kept, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
