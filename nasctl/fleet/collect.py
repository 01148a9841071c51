"""``nasctl profile --fleet``: the collection run with every worker of a key busy at once.

Same resume rule and the same rows as :func:`nasctl.datasets.collect.collect`: architectures
already stored (ok or noisy) are skipped, the others are sent to the fleet, and each answer is
checked and committed on its own as it comes back, through the one store path
(:func:`nasctl.datasets.measure.store_result`; the host is the store's only writer).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from nasctl.datasets.collect import Job, Summary, request_for
from nasctl.datasets.measure import store_result
from nasctl.datasets.store import Store
from nasctl.fleet.remote import RemoteDevice
from nasctl.records import MeasurementRequest


def collect_fleet(
    store: Store,
    device: RemoteDevice,
    jobs: Iterable[Job],
    total: int,
    *,
    precision: str = "fp32",
    batch: int = 1,
    per_layer: bool = True,
    options: dict[str, Any] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> Summary:
    """Measure every job not yet stored through ``device``'s workers, committing each answer
    as it arrives. A FleetError stops the run; what was committed stays."""
    device_id = device.device_id
    summary = Summary(device=device.name, device_id=device_id, requested=total)
    sent: dict[str, tuple[Job, MeasurementRequest]] = {}
    done = 0
    t0 = time.perf_counter()

    def tick(label: str) -> None:
        nonlocal done
        done += 1
        if progress:
            progress(done, total, label)

    def requests() -> Iterator[MeasurementRequest]:
        for job in jobs:
            if store.has_measurement(job.arch_hash, device_id, precision, batch):
                summary.skipped += 1
                tick(job.label)
                continue
            req = request_for(device, job, precision, batch, per_layer, options)
            sent[job.arch_hash] = (job, req)
            yield req

    for m in device.measure_many(requests()):
        job, req = sent.pop(m.arch_hash)
        out = store_result(store, req, m, device_id=device_id)
        if out.journal is not None:  # the store stayed locked: kept in its journal
            summary.journaled += 1
            summary.journal = str(out.journal)
        summary.measured += 1
        setattr(summary, m.status, getattr(summary, m.status) + 1)
        if m.status == "failed":
            summary.failures.append({"arch": job.label, "error": m.error or ""})
        tick(job.label)
    summary.seconds = round(time.perf_counter() - t0, 3)
    summary.measure_seconds = summary.seconds
    return summary
