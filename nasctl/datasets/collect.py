"""Collecting measurements into the store: the resumable loop behind ``nasctl profile``.

The loop never times anything itself and does not import the profiler: it is handed a device
(anything with ``.device_id``, ``.name`` and ``.measure(MeasurementRequest) -> Measurement``).

Resume rule: a space run samples genotypes from ``random.Random(seed)`` and keeps the first
``num`` distinct architectures (by graph hash), so the same command asks for the same ``num``
architectures every time; those already measured (ok or noisy) are skipped, failed ones retried.
Each measurement is committed on its own as it comes back (one at a time on a local device; as
the workers finish on a fleet, the device's ``measure_many``).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nasctl.arch.graph import Graph
from nasctl.datasets.measure import measure, store_result
from nasctl.datasets.store import Store, graph_hash
from nasctl.errors import NasctlError, SpaceError
from nasctl.records import Measurement, MeasurementRequest

#: Give up sampling after this many draws per requested architecture (tiny or degenerate spaces).
MAX_DRAWS_PER_ARCH = 50


@dataclass
class Job:
    """One architecture to measure (its graph is already in the store)."""

    arch_hash: str
    graph: Graph
    label: str  # genotype or file name, for progress and errors
    onnx_path: str | None = None
    model: str | None = None


@dataclass
class Summary:
    """What a collection run did. Times in seconds."""

    device: str
    device_id: str
    requested: int = 0
    measured: int = 0
    skipped: int = 0
    ok: int = 0
    noisy: int = 0
    failed: int = 0
    seconds: float = 0.0
    measure_seconds: float = 0.0  # measuring and storing
    failures: list[dict[str, str]] = field(default_factory=list)
    journaled: int = 0  # kept in the store's journal (store locked); replayed on its next open
    journal: str | None = None
    probes: int = 0  # reference probe measurements taken (``probe_every``)
    #: where the time went, seconds summed over measured jobs: the device's own stages
    #: (``load``, ``session_create``, ``warmup``, ``timed``, ``per_layer``, ``total``), plus
    #: ``probe`` and ``store`` (writing to the store) and ``other`` (seconds - those)
    stages: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["archs_per_min"] = round(60 * self.measured / self.seconds, 2) if self.seconds else None
        return d


def check_num(space: Any, num: int) -> None:
    """Raise :class:`SpaceError` unless ``1 <= num <= space.size()``."""
    if num < 1:
        raise SpaceError(f"num must be >= 1; got {num}")
    size = space.size()
    if size is not None and size < num:
        raise SpaceError(f"space {space.name!r} has only {size} architectures; asked for {num}")


def sample_architectures(space: Any, num: int, seed: int) -> Iterator[tuple[str, Graph]]:
    """The first ``num`` distinct architectures (by hash) that ``space`` samples from ``seed``:
    yields ``(genotype, graph)``; the same arguments give the same sequence."""
    check_num(space, num)
    rng = random.Random(seed)
    seen: set[str] = set()
    draws = 0
    while len(seen) < num:
        draws += 1
        if draws > MAX_DRAWS_PER_ARCH * num + 100:
            raise SpaceError(
                f"space {space.name!r} gave only {len(seen)} distinct architectures in "
                f"{draws - 1} draws; ask for fewer (num=N)"
            )
        genotype = space.sample(rng)
        graph = space.to_graph(genotype)
        graph.meta.setdefault("space", space.name)
        graph.meta.setdefault("genotype", genotype)
        h = graph_hash(graph)
        if h in seen:
            continue
        seen.add(h)
        graph.meta["arch_hash"] = h
        yield genotype, graph


def space_jobs(store: Store, space: Any, num: int, seed: int) -> Iterator[Job]:
    """Jobs for ``num`` sampled architectures, each recorded in the store as it is drawn."""
    for genotype, graph in sample_architectures(space, num, seed):
        h = store.add_architecture(graph, arch_hash=graph.meta.pop("arch_hash"))
        yield Job(h, graph, genotype)


def read_onnx(files: list[Path]) -> list[tuple[Path, Graph]]:
    """Read every user ONNX file into a graph; a missing or corrupt one raises before anything
    is measured or stored."""
    from nasctl.arch.onnx_io import from_onnx

    out = []
    for f in files:
        if not Path(f).is_file():
            raise NasctlError(f"no ONNX file at {f}")
        out.append((Path(f), from_onnx(str(f))))
    return out


def onnx_jobs(store: Store, models: list[tuple[Path, Graph]]) -> list[Job]:
    """Jobs for users' ONNX models (from :func:`read_onnx`); records keep the file name as
    ``model``."""
    jobs = []
    for path, graph in models:
        h = store.add_architecture(graph, model=path.name)
        jobs.append(Job(h, graph, path.name, onnx_path=str(path.resolve()), model=path.name))
    return jobs


def collect(
    store: Store,
    device: Any,
    jobs: Iterable[Job],
    total: int,
    *,
    precision: str = "fp32",
    batch: int = 1,
    per_layer: bool = True,
    options: dict[str, Any] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    probe: Callable[[], dict[str, Any]] | None = None,
    probe_every: int = 1,
) -> Summary:
    """Measure every job not yet stored, committing each answer on its own as it comes
    (:func:`~nasctl.datasets.measure.store_result`). A model that fails is stored as failed and
    the run goes on; a :class:`DeviceError` stops the run (what was committed stays). A
    measurement the locked store could not take is kept in its journal (counted in
    ``journaled``). ``progress(done, total, label)`` is called after each job.

    A device measures one request at a time (``measure``), or, when it has
    ``measure_many(requests)`` (a fleet of workers), is handed the stream of requests and yields
    the answers in the order they finish: the same loop, the same rows.

    ``probe``: times the device's reference architecture (a dict with ``median_ms``, ``cv``,
    ``status``); called before the first measurement and then before every ``probe_every``-th,
    each measurement keeping the latest probe in ``extra["probe"]`` (drift correction). A probe
    that raises (failed, or far off its usual time) stops the run like a ``DeviceError``:
    everything committed stays."""
    device_id = device.device_id
    summary = Summary(device=device.name, device_id=device_id, requested=total)
    stages = summary.stages
    t0 = time.perf_counter()
    sent: dict[str, tuple[Job, MeasurementRequest, dict[str, Any] | None]] = {}
    busy = _Busy()  # wall time with a job in hand: ``measure_seconds``
    done = 0
    last_probe: dict[str, Any] | None = None
    since_probe = 0

    def tick(label: str) -> None:
        nonlocal done
        done += 1
        if progress:
            progress(done, total, label)

    def requests() -> Iterator[MeasurementRequest]:
        nonlocal last_probe, since_probe
        for job in jobs:
            if store.has_measurement(job.arch_hash, device_id, precision, batch):
                summary.skipped += 1
                tick(job.label)
                continue
            busy.start()
            if probe is not None and (last_probe is None or since_probe >= max(1, probe_every)):
                tp = time.perf_counter()
                last_probe = dict(probe())
                stages["probe"] = stages.get("probe", 0.0) + time.perf_counter() - tp
                summary.probes += 1
                since_probe = 0
            req = request_for(device, job, precision, batch, per_layer, options)
            seen = None if last_probe is None else {**last_probe, "measurements_since": since_probe}
            sent[job.arch_hash] = (job, req, seen)
            since_probe += 1
            yield req

    for m in _answers(device, requests()):
        job, req, seen = sent.pop(m.arch_hash)
        if seen is not None and m.status != "failed":
            m.extra["probe"] = seen
        _add_stages(stages, m.extra.get("timing_s"))
        ts = time.perf_counter()
        out = store_result(store, req, m, device_id=device_id)
        stages["store"] = stages.get("store", 0.0) + time.perf_counter() - ts
        busy.stop(len(sent))
        if out.journal is not None:  # the store stayed locked: kept in its journal
            summary.journaled += 1
            summary.journal = str(out.journal)
        summary.measured += 1
        setattr(summary, m.status, getattr(summary, m.status) + 1)
        if m.status == "failed":
            summary.failures.append({"arch": job.label, "error": m.error or ""})
        tick(job.label)
    summary.seconds = round(time.perf_counter() - t0, 3)
    summary.measure_seconds = round(busy.total, 3)
    known = sum(v for k, v in stages.items() if k in ("total", "probe", "store"))
    stages["other"] = summary.seconds - known
    summary.stages = {k: round(v, 3) for k, v in stages.items()}
    return summary


def _answers(device: Any, requests: Iterator[MeasurementRequest]) -> Iterator[Measurement]:
    """The device's answers to ``requests``: as they finish (``measure_many``), else one by
    one through :func:`~nasctl.datasets.measure.measure`."""
    many = getattr(device, "measure_many", None)
    if many is not None:
        yield from many(requests)
        return
    for req in requests:
        yield measure(device, req)


class _Busy:
    """Wall time during which at least one job is in hand (measured, not yet stored)."""

    def __init__(self) -> None:
        self.total = 0.0
        self._since: float | None = None

    def start(self) -> None:
        if self._since is None:
            self._since = time.perf_counter()

    def stop(self, still_in_hand: int) -> None:
        if not still_in_hand and self._since is not None:
            self.total += time.perf_counter() - self._since
            self._since = None


def _add_stages(stages: dict[str, float], timing_s: Any) -> None:
    if isinstance(timing_s, dict):
        for k, v in timing_s.items():
            if isinstance(v, (int, float)):
                stages[k] = stages.get(k, 0.0) + float(v)


def request_for(
    device: Any,
    job: Job,
    precision: str,
    batch: int,
    per_layer: bool,
    options: dict[str, Any] | None,
) -> MeasurementRequest:
    """The request that measures ``job`` on ``device``."""
    return MeasurementRequest(
        arch_hash=job.arch_hash,
        device=device.name,
        precision=precision,
        batch=batch,
        graph_json=None if job.onnx_path else job.graph.to_json(),
        onnx_path=job.onnx_path,
        model=job.model,
        space=job.graph.meta.get("space"),
        genotype=job.graph.meta.get("genotype"),
        per_layer=per_layer,
        options=dict(options or {}),
    )
