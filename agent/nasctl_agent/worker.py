"""``nasctl-agent worker``: serve one device key of a fleet (Celery + Redis).

The worker consumes the queue of its device key (``nasctl.<device id>``), one job at a time
(concurrency 1, prefetch 1, the solo pool: the measurement runs in the worker's own process),
acknowledges a job after measuring it, and announces itself (device, device id, fingerprint,
protocol version, the job in hand) in Redis under a key that its heartbeat renews five times
per lease (``--lease-s``). A worker that dies stops renewing; the
host sees the job's lease lapse and sends the job again (same task id). A job already answered,
or held by another live worker, is not measured twice.

Needs the ``worker`` extra (``pip install './agent[worker]'``: celery and redis).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from typing import Any

from nasctl_agent import fleet_protocol as fp
from nasctl_agent._version import __version__
from nasctl_agent.request import PROTOCOL_VERSION as AGENT_PROTOCOL


class WorkerError(Exception):
    """A worker cannot start (bad device, broker unreachable): one line for the user."""


class DeviceServer:
    """What a worker measures with: ``device_id``, ``fingerprint`` and ``measure``.

    An agent device (cpu, t4, xavier, jetson, cuda-trt) measures through
    :func:`nasctl_agent.measure_json`; ``replay:<table>/<column>`` answers from a table.
    ``options`` are the worker's own backend options (``dla_core``...), laid over each job's."""

    def __init__(self, device: str, precision: str, options: dict[str, Any]) -> None:
        from nasctl_agent.replay import ReplayTable, split_device

        self.device, self.precision = device, precision
        self.emulate_time = bool(options.pop("emulate_time", False))
        data_dir = options.pop("data_dir", None)
        self.options = dict(options)
        kind, spec = split_device(device)
        self.replay: ReplayTable | None = None
        if kind == "replay":
            data_dir = data_dir or os.environ.get("NASCTL_DATA_DIR") or "."
            try:
                self.replay = ReplayTable(spec or "", str(data_dir))
            except ValueError as e:
                raise WorkerError(str(e)) from None
            self.device_id = self.replay.device_id
            self.fingerprint = self.replay.fingerprint()
            return
        from nasctl_agent import AgentError, Request
        from nasctl_agent.catalog import get_device

        try:
            dev = get_device(device)
            req = Request(device=device, precision=precision, options=dict(self.options))
            dev.prepare(req)
            self.device_id = dev.device_id(req)
            self.fingerprint = dev.fingerprint(req)
        except AgentError as e:
            raise WorkerError(" ".join(str(e).split())) from None

    def measure(
        self, request: dict[str, Any], job: dict[str, Any], onnx: bytes | str
    ) -> dict[str, Any]:
        """The agent's Result dict for ``request``; a request this worker cannot serve raises
        ``AgentError`` (the host reports it in one line)."""
        if self.replay is not None:
            return self.replay.measure(request, job, self.emulate_time)
        from nasctl_agent import measure_json

        request = dict(request)
        if request.get("device") != self.device or request.get("precision") != self.precision:
            raise ValueError(
                f"job for {request.get('device')} ({request.get('precision')}) reached a worker "
                f"of {self.device} ({self.precision})"
            )
        request["options"] = {**(request.get("options") or {}), **self.options}
        return measure_json(onnx, request)


class Announcer:
    """The worker's announcement and the lease of the job in hand, renewed by a thread."""

    def __init__(self, redis: Any, info: dict[str, Any], lease_s: float = fp.LEASE_TTL_S) -> None:
        self.redis, self.info = redis, info
        self.lease_ms = int(lease_s * 1000)
        self.every_s = lease_s / 5
        self.key = fp.key("worker", info["name"])
        self.job: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nasctl-heartbeat", daemon=True)

    def start(self) -> None:
        self.beat()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        try:
            self.redis.delete(self.key)
        except Exception:
            pass

    def beat(self, started: str | None = None, chunks: list[str] | None = None) -> Any:
        """Renew the announcement and the job's lease (and record who ``started`` a job); with
        ``chunks``, fetch those keys in the same round trip and return them."""
        self.info["job"] = self.job
        self.info["seen"] = time.time()
        pipe = self.redis.pipeline()
        pipe.set(self.key, json.dumps(self.info), px=self.lease_ms)
        if self.job:
            pipe.set(fp.key("running", self.job), self.info["name"], px=self.lease_ms)
        if started:
            pipe.set(fp.key("started", started), self.info["name"], ex=fp.KEEP_S)
        if chunks:
            pipe.mget(chunks)
        out = pipe.execute()
        return out[-1] if chunks else None

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.beat()
            except Exception:  # Redis away: Celery reconnects; the next beat tries again
                pass


def make_app(url: str, server: DeviceServer, announcer_box: list[Announcer]) -> Any:
    """The Celery app with the ``nasctl.measure`` task bound to ``server``."""
    from celery import Celery
    from celery.exceptions import Ignore

    app = Celery("nasctl_agent")
    app.conf.update(fp.celery_config(url))

    @app.task(name=fp.TASK_NAME, bind=True)
    def measure(self: Any, msg: dict[str, Any]) -> dict[str, Any]:
        ann = announcer_box[0]
        tid = self.request.id
        if not isinstance(msg, dict) or msg.get("protocol") != fp.PROTOCOL_VERSION:
            got = msg.get("protocol") if isinstance(msg, dict) else type(msg).__name__
            return _error_result(
                f"job speaks fleet protocol {got}; this worker speaks {fp.PROTOCOL_VERSION} "
                "(install the nasctl-agent that matches the host's nasctl)",
                ann.info,
            )
        r, me = ann.redis, ann.info["name"]
        lease = fp.key("running", tid)
        pipe = r.pipeline(transaction=False)  # one round trip: answered before? leased?
        pipe.get(app.backend.get_key_for_task(tid))
        pipe.set(lease, me, nx=True, px=ann.lease_ms)
        pipe.get(lease)
        raw, _, owner = pipe.execute()
        meta = app.backend.decode_result(raw) if raw else {}
        if meta.get("status") == "SUCCESS" and isinstance(meta.get("result"), dict):
            return meta["result"]  # answered before (a re-sent job): not measured twice
        if owner is not None and owner.decode() != me:
            raise Ignore()  # a live worker holds it; it answers
        ann.job = tid
        try:
            payload = msg.get("payload") or {}
            chunks = fp.chunk_keys(payload) if payload.get("kind") == "chunks" else None
            try:  # the lease, the announcement and the model's chunks: one round trip
                parts = ann.beat(started=tid, chunks=chunks)
                onnx = fp.read_payload(payload, r, parts)
            except (ValueError, OSError, KeyError) as e:
                res = _failed(msg.get("request") or {}, server, f"model not received: {e}")
            else:
                try:
                    res = server.measure(msg["request"], msg.get("job") or {}, onnx)
                except Exception as e:  # the request, not the model: the host says it in a line
                    return _error_result(" ".join(str(e).split())[:500], ann.info)
            ann.info["jobs_done"] = ann.info.get("jobs_done", 0) + 1
        finally:
            ann.job = None
        return {"protocol": fp.PROTOCOL_VERSION, "result": res, "worker": _public(ann.info)}

    return app


def _public(info: dict[str, Any]) -> dict[str, Any]:
    keys = ("name", "hostname", "device", "device_id", "protocol", "agent_protocol")
    keys += ("agent_version", "fingerprint_digest")
    return {k: info.get(k) for k in keys}


def _error_result(error: str, info: dict[str, Any]) -> dict[str, Any]:
    return {"protocol": fp.PROTOCOL_VERSION, "error": error, "worker": _public(info)}


def _failed(request: dict[str, Any], server: DeviceServer, error: str) -> dict[str, Any]:
    """A failed agent Result for a job whose model could not be read."""
    from nasctl_agent.replay import result_dict

    return result_dict(request, server.device, server.device_id, "failed", error=error)


def redis_client(url: str) -> Any:
    """A Redis client for ``url``, checked with a PING (one-line ``WorkerError`` otherwise)."""
    import redis

    try:
        kw: dict[str, Any] = {"socket_connect_timeout": 5.0, "socket_timeout": 30.0}
        client = redis.Redis.from_url(url, **kw)
        client.ping()
    except redis.AuthenticationError:
        raise WorkerError(f"Redis at {fp.mask_url(url)} refused the password") from None
    except (redis.ConnectionError, redis.TimeoutError, OSError) as e:
        raise WorkerError(f"cannot reach the broker at {fp.mask_url(url)}: {e}") from None
    except redis.ResponseError as e:
        raise WorkerError(f"Redis at {fp.mask_url(url)}: {e}") from None
    return client


def serve(
    url: str,
    device: str,
    precision: str = "fp32",
    name: str | None = None,
    options: dict[str, Any] | None = None,
    loglevel: str = "WARNING",
    lease_s: float = fp.LEASE_TTL_S,
    no_local_paths: bool = False,
) -> None:
    """Serve ``device`` on the fleet at ``url`` until stopped (SIGTERM/Ctrl-C: warm shutdown).
    ``no_local_paths``: take every model through Redis, even from a host on this machine."""
    server = DeviceServer(device, precision, options or {})
    r = redis_client(url)
    host = socket.gethostname()
    name = name or f"{device}@{host}:{os.getpid()}"
    info: dict[str, Any] = {
        "name": name,
        "hostname": host,
        "pid": os.getpid(),
        "device": device,
        "precision": precision,
        "device_id": server.device_id,
        "queue": fp.queue_name(server.device_id),
        "protocol": fp.PROTOCOL_VERSION,
        "agent_protocol": AGENT_PROTOCOL,
        "agent_version": __version__,
        "fingerprint": server.fingerprint,
        "fingerprint_digest": fp.fingerprint_digest(server.fingerprint),
        "started": time.time(),
        "jobs_done": 0,
        # same view as the host: it may send the path of a model instead of its bytes
        "fs_view": None if no_local_paths else fp.filesystem_view(),
    }
    ann = Announcer(r, info, lease_s)
    app = make_app(url, server, [ann])
    ann.start()
    try:
        worker = app.Worker(
            hostname=name,
            queues=[info["queue"]],
            concurrency=1,
            pool="solo",
            prefetch_multiplier=1,
            loglevel=loglevel,
            without_gossip=True,
            without_mingle=True,
            task_events=True,
        )
        worker.start()
    finally:
        ann.stop()


def add_parser(sub: Any) -> None:
    """The ``worker`` subcommand of ``nasctl-agent`` (an argparse subparsers object)."""
    p = sub.add_parser("worker", help="serve one device key of a fleet (Celery + Redis)")
    p.add_argument("--broker", required=True, help="redis://[:PASSWORD@]HOST:PORT/DB or rediss://")
    p.add_argument("--device", required=True, help="cpu, t4, xavier, replay:<table>/<column>...")
    p.add_argument("--precision", default="fp32", help="fp32, fp16 or int8")
    p.add_argument("--dla-core", type=int, default=None, help="DLA core (xavier)")
    p.add_argument("--name", default=None, help="worker name (default device@host:pid)")
    p.add_argument("--data-dir", default=None, help="tables for replay devices")
    p.add_argument(
        "--emulate-time",
        action="store_true",
        help="replay: sleep for the recorded latency x runs (a device-bound stand-in)",
    )
    p.add_argument(
        "--lease-s",
        type=float,
        default=fp.LEASE_TTL_S,
        help="seconds after which the host re-sends the job of a worker that stopped beating",
    )
    p.add_argument(
        "--no-local-paths",
        action="store_true",
        help="take every model through Redis, even from a host on this machine (by default a "
        "host that sees the same files sends a model's path)",
    )
    p.add_argument("--loglevel", default="WARNING")
    p.set_defaults(func=run_cli)


def run_cli(args: Any) -> int:
    options: dict[str, Any] = {"emulate_time": args.emulate_time}
    if args.data_dir:
        options["data_dir"] = args.data_dir
    if args.dla_core is not None:
        options["dla_core"] = args.dla_core
    try:
        serve(
            args.broker,
            args.device,
            args.precision,
            args.name,
            options,
            args.loglevel,
            args.lease_s,
            args.no_local_paths,
        )
    except WorkerError as e:
        sys.stderr.write(f"error: {e}\n")
        return 1
    except ImportError as e:
        sys.stderr.write(
            f"error: {e}; the worker needs the worker extra: pip install './agent[worker]'\n"
        )
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="nasctl-agent")
    sub = parser.add_subparsers(dest="command")
    add_parser(sub)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
