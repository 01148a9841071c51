"""Who serves the fleet: workers' announcements, queue lengths and jobs in flight.

Each worker keeps ``nasctl:worker:<name>`` alive with its heartbeat (device, device id,
fingerprint, protocol, the job in hand); a worker that dies disappears within the announcement's
time to live.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from nasctl.fleet.connect import Fleet, FleetError


@dataclass
class WorkerInfo:
    """One live worker as it announced itself."""

    name: str
    device: str
    device_id: str
    precision: str
    protocol: int
    agent_protocol: int
    queue: str
    fingerprint: dict[str, Any] = field(default_factory=dict)
    fingerprint_digest: str = ""
    hostname: str = ""
    job: str | None = None
    jobs_done: int = 0
    seen: float = 0.0
    fs_view: str | None = None  # who sees which files (``fleet_protocol.filesystem_view``)

    @classmethod
    def from_json(cls, raw: bytes | str) -> WorkerInfo | None:
        try:
            d = json.loads(raw)
            return cls(
                name=str(d["name"]),
                device=str(d["device"]),
                device_id=str(d["device_id"]),
                precision=str(d.get("precision", "fp32")),
                protocol=int(d["protocol"]),
                agent_protocol=int(d.get("agent_protocol", -1)),
                queue=str(d["queue"]),
                fingerprint=dict(d.get("fingerprint") or {}),
                fingerprint_digest=str(d.get("fingerprint_digest", "")),
                hostname=str(d.get("hostname", "")),
                job=d.get("job"),
                jobs_done=int(d.get("jobs_done", 0)),
                seen=float(d.get("seen", 0.0)),
                fs_view=d.get("fs_view") or None,
            )
        except (ValueError, KeyError, TypeError):
            return None  # not a worker of this protocol's shape: listed by status as unreadable


def workers(fleet: Fleet) -> list[WorkerInfo]:
    """Live workers, sorted by name (announcements that do not parse are left out)."""
    r, p = fleet.redis, fleet.proto
    names = sorted(fleet.call(lambda: list(r.scan_iter(match=p.key("worker", "*"), count=500))))
    raws = fleet.call(r.mget, names) if names else []
    return sorted(
        (w for w in (WorkerInfo.from_json(x) for x in raws if x is not None) if w is not None),
        key=lambda w: w.name,
    )


def serving(fleet: Fleet, device: str, precision: str) -> list[WorkerInfo]:
    """Live workers of ``device`` (the name a worker was started with, or its device id) at
    ``precision``."""
    return [
        w
        for w in workers(fleet)
        if (w.device == device and w.precision == precision) or w.device_id == device
    ]


def check_agree(ws: list[WorkerInfo], protocol_version: int) -> None:
    """Refuse workers of another protocol (the fleet's or the agent's request/result one), or
    workers of one key whose fingerprints disagree."""
    from nasctl_agent import PROTOCOL_VERSION as AGENT_PROTOCOL

    for w in ws:
        for what, theirs, ours in (
            ("fleet", w.protocol, protocol_version),
            ("nasctl-agent", w.agent_protocol, AGENT_PROTOCOL),
        ):
            if theirs != ours:
                raise FleetError(
                    f"worker {w.name} speaks {what} protocol {theirs}; this nasctl speaks {ours}: "
                    f"install the matching nasctl-agent on {w.hostname or 'it'} "
                    "(pip install './agent[worker]') and restart the worker"
                )
    ids = sorted({w.device_id for w in ws})
    if len(ids) > 1:
        which = "; ".join(f"{i} ({', '.join(w.name for w in ws if w.device_id == i)})" for i in ids)
        raise FleetError(
            f"workers of this device serve {len(ids)} device ids: {which}; pass one of them as "
            "device=ID so measurements of different setups never mix"
        )
    digests = {w.fingerprint_digest for w in ws}
    if len(digests) > 1:
        a, b = ws[0], next(w for w in ws if w.fingerprint_digest != ws[0].fingerprint_digest)
        diff = sorted(
            k
            for k in set(a.fingerprint) | set(b.fingerprint)
            if a.fingerprint.get(k) != b.fingerprint.get(k)
        )
        raise FleetError(
            f"workers {a.name} and {b.name} serve {a.device_id} but their fingerprints differ "
            f"({', '.join(diff[:5]) or 'digest'}); stop one, or align their software, so "
            "measurements of different setups never mix"
        )


def status(fleet: Fleet) -> dict[str, Any]:
    """Workers, queues (length, workers, jobs in flight) of the fleet, for ``nasctl fleet
    status``."""
    ws = workers(fleet)
    queues: dict[str, dict[str, Any]] = {}
    for w in ws:
        q = queues.setdefault(
            w.queue, {"queue": w.queue, "device_id": w.device_id, "workers": 0, "in_flight": 0}
        )
        q["workers"] += 1
        q["in_flight"] += int(bool(w.job))
    r = fleet.redis
    for name in fleet.call(lambda: list(r.scan_iter(match="nasctl.*", count=500))):
        qn = name.decode()
        if fleet.call(r.type, name) != b"list":
            continue
        q = queues.setdefault(
            qn, {"queue": qn, "device_id": qn.removeprefix("nasctl."), "workers": 0, "in_flight": 0}
        )
    for q in queues.values():
        q["waiting"] = int(fleet.call(r.llen, q["queue"]))
    now = time.time()
    return {
        "broker": _masked(fleet.url),
        "protocol": fleet.proto.PROTOCOL_VERSION,
        "workers": [
            {
                "name": w.name,
                "device": w.device,
                "device_id": w.device_id,
                "precision": w.precision,
                "protocol": w.protocol,
                "fingerprint_digest": w.fingerprint_digest,
                "job": w.job,
                "jobs_done": w.jobs_done,
                "seen_s_ago": round(max(0.0, now - w.seen), 1),
            }
            for w in ws
        ],
        "queues": sorted(queues.values(), key=lambda q: q["queue"]),
    }


def _masked(url: str) -> str:
    from nasctl.fleet.connect import mask

    return mask(url)
