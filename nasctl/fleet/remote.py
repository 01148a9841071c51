"""The fleet as a device: :class:`RemoteDevice` measures through the workers of one device key.

It looks like any device to the collector and the search loop (``name``, ``device_id``,
``available()``, ``measure(request)``), and adds ``measure_many(requests)``, which keeps every
worker of the key busy and yields measurements as they come back.

What it guarantees: a job is sent once per task id (a marker in Redis); a job whose worker died
(its lease lapsed without an answer) is sent again under the same id; an answer is checked
before it is yielded, and a malformed one stops the run with nothing of it stored.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from nasctl.fleet.connect import BrokerDown, Fleet, FleetError, mask
from nasctl.fleet.jobs import Prepared, prepare, read_result
from nasctl.fleet.registry import WorkerInfo, check_agree, serving
from nasctl.records import Measurement, MeasurementRequest


class RemoteDevice:
    """``device`` at ``precision`` on the fleet at ``url``.

    ``wait_s`` bounds every wait: for a worker of the key to show up (at start and whenever none
    is alive) and for the broker to come back. ``shared_dir`` is a folder host and workers see
    at the same path (user ONNX under it travel by path). ``host_opts``: how the host writes
    each model before sending it (``calib_data``, ``seed`` of an INT8 model's calibration)."""

    description = "a device key served by a fleet of nasctl-agent workers"

    def __init__(
        self,
        url: str,
        device: str,
        precision: str = "fp32",
        *,
        wait_s: float = 60.0,
        shared_dir: Path | None = None,
        host_opts: dict[str, Any] | None = None,
        poll_s: float = 0.25,
        watch_s: float = 0.5,
    ) -> None:
        self.fleet = Fleet(url)
        self.proto = self.fleet.proto
        self.name = self.asked = device
        self.precision = precision
        self.wait_s, self.shared_dir = wait_s, shared_dir
        self.host_opts = dict(host_opts or {})  # how the host writes models (calib_data, seed)
        self.poll_s, self.watch_s = poll_s, watch_s
        ws = self._wait_for_workers()
        check_agree(ws, self.proto.PROTOCOL_VERSION)
        self.device_id, self.queue = ws[0].device_id, ws[0].queue
        self.name = ws[0].device  # the agent's name for it (``--device`` may give the id)
        # a replay table answers per genotype (isomorphic cells differ), as the local device does
        self.reuses_by_hash = not str(self.name).startswith("replay")
        self.digest = ws[0].fingerprint_digest
        self.workers = len(ws)
        self.same_files = _same_files(ws, self.proto.filesystem_view())
        self.resent = 0
        self._trash: list[str] = []  # chunks of answered jobs, deleted with the next call
        self._pubsub: Any = None
        self._subscribed: set[str] = set()
        self._idle_watches = 0
        self._stuck_since: float | None = None

    # -- the device interface -------------------------------------------------------------------
    def available(self) -> tuple[bool, str]:
        return True, f"{self.workers} worker(s) on {mask(self.fleet.url)}"

    def device_id_for(self, precision: str) -> str:
        return self.device_id

    def measure(self, request: MeasurementRequest) -> Measurement:
        """One measurement (sent, waited for, checked)."""
        for m in self.measure_many([request]):
            return m
        raise FleetError("the fleet returned nothing")  # unreachable: one request, one answer

    def measure_many(self, requests: Iterable[MeasurementRequest]) -> Iterator[Measurement]:
        """Measurements of ``requests`` in the order they finish; at most two jobs per live
        worker are in the queue at once (so a restart re-sends little)."""
        try:
            yield from self._gather(iter(requests))
        finally:
            self._empty_trash()

    def _gather(self, it: Iterator[MeasurementRequest]) -> Iterator[Measurement]:
        pending: dict[str, Prepared] = {}
        more, check = True, False
        next_watch = time.monotonic() + self.watch_s
        while True:
            while more and len(pending) < max(2, 2 * self.workers):
                req = next(it, None)
                if req is None:
                    more = False
                    break
                job = prepare(
                    self.fleet,
                    req,
                    self.name,
                    self.device_id,
                    self.shared_dir,
                    self.host_opts,
                    self.same_files,
                )
                if job.tid not in pending:
                    # listening before it is sent: its answer is not missed, and no read is
                    # needed until one is published
                    self._subscribe([*pending, job.tid])
                    check |= self._submit(job)
                pending[job.tid] = job
            if not pending:
                return
            done: list[str] = []
            if check:
                self._subscribe(list(pending))
                metas = self._metas(list(pending))
                done = [t for t, m in metas.items() if m.get("status") in ("SUCCESS", "FAILURE")]
            for tid in done:
                job = pending.pop(tid)
                self._trash += job.chunks
                try:
                    m, worker = read_result(
                        metas[tid], job, self.device_id, self.proto.PROTOCOL_VERSION
                    )
                    self._check_worker(worker)
                except FleetError:
                    self._forget(tid)  # a rerun sends the job again
                    raise
                if m.status == "failed":
                    self._forget(tid)  # failed jobs are retried by the next run, as locally
                yield m
            if time.monotonic() >= next_watch:
                self._watch(pending)
                next_watch = time.monotonic() + self.watch_s
            check = bool(done)
            if not done:
                self._wait_for_news()
                check = True

    # -- sending and watching -------------------------------------------------------------------
    def _submit(self, job: Prepared) -> bool:
        """Send ``job`` unless it was sent before (its answer or its message is in Redis); True
        when its answer is already there. Its chunks, the check and the marker: one round
        trip."""
        r = self.fleet.redis
        sent = self._key("sent", job.tid)

        def store_and_mark() -> list[Any]:
            pipe = r.pipeline(transaction=False)
            if self._trash:
                pipe.unlink(*self._trash)
            for k, v in job.chunks.items():  # before the marker: a marked job has its model
                pipe.set(k, v, ex=self.proto.KEEP_S)
            pipe.get(self.fleet.app.backend.get_key_for_task(job.tid))
            pipe.set(sent, str(time.time()), nx=True, ex=self.proto.KEEP_S)
            return list(pipe.execute()[-2:])

        raw, first = self._call(store_and_mark)
        self._trash = []
        meta = self._decode(raw)
        if meta.get("status") == "SUCCESS":
            res = meta.get("result")
            ok = isinstance(res, dict) and (res.get("measurement") or {}).get("status") != "failed"
            if ok:
                return True  # answered before this run: picked up, not measured again
        if meta.get("status") in ("SUCCESS", "FAILURE"):
            self._forget(job.tid)
            first = self._call(r.set, sent, str(time.time()), nx=True, ex=self.proto.KEEP_S)
        if first:
            self._send(job)
        return False

    def _send(self, job: Prepared) -> None:
        r = job.request
        self._call(
            self.fleet.app.send_task,
            self.proto.TASK_NAME,
            args=[job.message],
            task_id=job.tid,
            queue=self.queue,
            # what Flower shows for the job; given, so Celery does not repr the whole message
            argsrepr=repr(r.model or r.genotype or r.arch_hash[:12]),
            kwargsrepr="{}",
        )

    def _watch(self, pending: dict[str, Prepared]) -> None:
        """Stop when no worker serves the key for ``wait_s``; re-send jobs whose worker died,
        and jobs that are nowhere (not queued, not started, every worker idle: a message a
        worker had taken when the broker went away waits in Redis' unacknowledged set for the
        visibility timeout, an hour)."""
        ws = self._wait_for_workers()
        check_agree(ws, self.proto.PROTOCOL_VERSION)
        self.workers = len(ws)
        self.same_files = _same_files(ws, self.proto.filesystem_view())
        tids = list(pending)
        r = self.fleet.redis
        started = self._call(r.mget, [self._key("started", t) for t in tids])
        leases = self._call(r.mget, [self._key("running", t) for t in tids])
        lost = [t for t, s, lease in zip(tids, started, leases, strict=True) if s and not lease]
        waiting = [t for t, s in zip(tids, started, strict=True) if not s]
        idle = all(w.job is None for w in ws) and self._call(r.llen, self.queue) == 0
        self._idle_watches = self._idle_watches + 1 if waiting and idle else 0
        if self._idle_watches >= 2:  # twice in a row: not a job between queue and start
            lost += waiting
            self._idle_watches = 0
            self._check_stuck(ws)
        elif not idle:
            self._stuck_since = None
        if not lost:
            return
        metas = self._metas(lost)
        for tid in lost:
            if metas[tid].get("status") in ("SUCCESS", "FAILURE"):
                continue  # answered just now
            self._call(r.delete, self._key("started", tid))
            self._send(pending[tid])  # same task id: a copy that turns up later is not measured
            self.resent += 1

    def _check_stuck(self, ws: list[WorkerInfo]) -> None:
        """Stop when live workers have taken none of the jobs sent again for ``wait_s``."""
        now = time.monotonic()
        if self._stuck_since is None:
            self._stuck_since = now
        elif now - self._stuck_since > self.wait_s:
            names = ", ".join(w.name for w in ws)
            raise FleetError(
                f"workers {names} of {self.device_id} are alive but took no job for "
                f"{self.wait_s:g} s (their broker connection may be stuck): restart them, then "
                "rerun the same command (stored results are kept)"
            )

    def _wait_for_workers(self) -> list[WorkerInfo]:
        deadline = time.monotonic() + self.wait_s
        while True:
            ws = self.fleet.retrying(
                serving, self.fleet, self.asked, self.precision, wait_s=self.wait_s
            )
            if ws:
                return ws
            if time.monotonic() >= deadline:
                raise FleetError(
                    f"no worker serves device {self.asked!r} ({self.precision}) on "
                    f"{mask(self.fleet.url)} after {self.wait_s:g} s; start one on the device: "
                    f"nasctl-agent worker --broker {mask(self.fleet.url)} --device {self.asked} "
                    f"--precision {self.precision} (then rerun; stored results are kept)"
                )
            time.sleep(min(0.5, self.wait_s / 10 or 0.1))

    def _check_worker(self, worker: dict[str, Any]) -> None:
        digest = worker.get("fingerprint_digest")
        if digest and digest != self.digest:
            raise FleetError(
                f"worker {worker.get('name')} answered with fingerprint {digest}, other workers "
                f"of {self.device_id} have {self.digest}; not mixing them (nothing of it stored): "
                "align their software or stop it"
            )

    # -- Redis ----------------------------------------------------------------------------------
    def _key(self, kind: str, tid: str) -> str:
        return str(self.proto.key(kind, tid))

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return self.fleet.retrying(fn, *args, wait_s=self.wait_s, **kwargs)

    def _metas(self, tids: list[str]) -> dict[str, dict[str, Any]]:
        """Celery's stored state of each task (``{}`` when unknown)."""
        backend = self.fleet.app.backend
        raws = self._call(self.fleet.redis.mget, [backend.get_key_for_task(t) for t in tids])
        return {t: self._decode(raw) for t, raw in zip(tids, raws, strict=True)}

    def _decode(self, raw: bytes | None) -> dict[str, Any]:
        if raw is None:
            return {}
        try:
            meta = self.fleet.app.backend.decode_result(raw)
        except Exception as e:  # not JSON: treated as a malformed answer
            meta = {"status": "SUCCESS", "result": f"undecodable ({type(e).__name__})"}
        return meta if isinstance(meta, dict) else {"status": "SUCCESS", "result": meta}

    def _subscribe(self, tids: list[str]) -> None:
        """Listen on the channels where Celery's Redis backend publishes the answers of
        ``tids``."""
        import redis

        backend = self.fleet.app.backend
        want = {backend.get_key_for_task(t) for t in tids}
        try:
            if self._pubsub is None:
                self._pubsub = self.fleet.redis.pubsub(ignore_subscribe_messages=True)
                self._subscribed = set()
            if want - self._subscribed:
                self._pubsub.subscribe(*(want - self._subscribed))
            if self._subscribed - want:
                self._pubsub.unsubscribe(*(self._subscribed - want))
            self._subscribed = want
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            self._pubsub = None  # Redis away: the next MGET waits for it

    def _wait_for_news(self) -> None:
        """Sleep until an answer is published or ``poll_s`` passes, whichever is first."""
        import redis

        if self._pubsub is None:
            time.sleep(min(self.poll_s, 0.2))
            return
        try:
            msg = self._pubsub.get_message(timeout=self.poll_s)
            while msg is not None:  # drain: one MGET reads them all
                msg = self._pubsub.get_message(timeout=0.0)
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            self._pubsub = None
            time.sleep(min(self.poll_s, 0.2))

    def _forget(self, tid: str) -> None:
        backend = self.fleet.app.backend
        keys = [backend.get_key_for_task(tid), self._key("sent", tid), self._key("started", tid)]
        try:
            self._call(self.fleet.redis.delete, *keys)
        except BrokerDown:
            pass  # the rerun finds the stale answer and checks it again

    def _empty_trash(self) -> None:
        """Delete the chunks of answered jobs (they would otherwise expire in ``KEEP_S``)."""
        if self._trash:
            try:
                self.fleet.call(self.fleet.redis.unlink, *self._trash)
            except FleetError:
                return  # Redis away: they expire
            self._trash = []

    def close(self) -> None:
        self._empty_trash()
        if self._pubsub is not None:
            try:
                self._pubsub.close()
            except Exception:
                pass
        self.fleet.close()


def _same_files(ws: list[WorkerInfo], here: str | None) -> bool:
    """Whether every worker sees this host's files (same machine, mount namespace and user)."""
    return here is not None and all(w.fs_view == here for w in ws)
