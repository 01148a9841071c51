"""The store's side of few-shot transfer (:mod:`nasctl.predictor.transfer`): the rows of a new
device and of the source devices, and the architectures worth measuring first on the new one.

Only the new device's own rows are read about it: the sources are the other devices (or the
ones named), and informative picks depend on the sources alone.
"""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

from nasctl.datasets.collect import Job
from nasctl.datasets.rows import TrainingRow
from nasctl.datasets.store import Store, graph_hash
from nasctl.errors import PredictorError, StoreError

CANDIDATES = 2000  # random architectures the informative picks are chosen from


def resolve(store: Store, name: str) -> str:
    """A stored device id for ``name`` (:meth:`Store.resolve_device_id`, else the one id ending
    in ``-name``, so that ``pixel3`` finds ``replay-nb201-pixel3``); StoreError otherwise."""
    try:
        return store.resolve_device_id(name)
    except StoreError:
        key = "-" + name.replace(":", "-").replace("/", "-")
        ends = [i for i in store.device_ids() if i.endswith(key)]
        if len(ends) == 1:
            return ends[0]
        raise


def target_rows(store: Store, device: str) -> tuple[str, list[TrainingRow]]:
    """(device id, its rows); a device without rows raises, saying how many are needed."""
    from nasctl.predictor.transfer import MIN_TARGET_ROWS

    try:
        dev = resolve(store, device)
    except StoreError:
        raise PredictorError(
            f"device {device!r} has no measurements in {store.path}; transfer needs at least "
            f"{MIN_TARGET_ROWS} (10 recommended): measure them first on that device, e.g. with "
            "`nasctl profile` picking informative architectures (pick=informative, num=10)"
        ) from None
    return dev, store.training_rows(dev)


def source_rows(
    store: Store, exclude: str, sources: list[str] | None = None, space: str | None = None
) -> dict[str, list[TrainingRow]]:
    """Rows of each source device (``sources``: names or ids, each must be stored; None: every
    stored device but ``exclude``), of ``space`` only when given."""
    ids = store.device_ids()
    if sources:
        names = []
        for s in sources:
            try:
                names.append(resolve(store, s))
            except StoreError:
                raise PredictorError(
                    f"source device {s!r} has no measurements in {store.path}; stored devices: "
                    f"{', '.join(ids) or 'none'}"
                ) from None
    else:
        names = [d for d in ids if d != exclude]
    names = [d for d in dict.fromkeys(names) if d != exclude]
    if not names:
        raise PredictorError(
            f"{store.path} holds no device besides {exclude!r} to transfer from; import or "
            "measure other devices first"
        )
    return {d: store.training_rows(d, space=space) for d in names}


def informative_genotypes(
    store: Store,
    space: Any,
    num: int,
    *,
    device_id: str,
    seed: int = 0,
    sources: list[str] | None = None,
    candidates: int = CANDIDATES,
    fitted: Any = None,
) -> list[str]:
    """``num`` genotypes of ``space`` to measure first on ``device_id``: from ``candidates``
    random ones not yet measured there, the D-optimal picks for the transfer head on the source
    devices' predicted latencies (:func:`nasctl.predictor.transfer.informative`); ``fitted``:
    :class:`~nasctl.predictor.transfer.Sources` already fit on the store's other devices."""
    from nasctl.predictor import transfer

    src = fitted  # source models already fit on this store (the search's start), else fit here
    if src is None:
        src_rows = source_rows(store, device_id, sources, space=space.name)
        shared = transfer.shared_sources(src_rows, {space.name}, device_id)
        src = transfer.fit_sources(shared, seed=seed, latent=False)
    done: set[str] = set()
    hashes: set[str] = set()
    if device_id in store.device_ids():
        mine = store.training_rows(device_id, space=space.name)
        done = {str(r.genotype) for r in mine}
        hashes = {r.arch_hash for r in mine}
    rng = random.Random(seed)
    cands: dict[str, None] = {}
    size = space.size()
    limit = min(candidates, (size - len(done)) if size is not None else candidates)
    draws = 0
    while len(cands) < limit and draws < 50 * candidates:
        draws += 1
        g = space.sample(rng)
        if g not in done:
            cands[g] = None
    genos = list(cands)
    rows = [SimpleNamespace(space=space.name, genotype=g, arch_hash=g) for g in genos]
    S = src.logs(transfer.row_features(rows), rows)
    out: list[str] = []
    for i in transfer.informative(S, min(len(genos), 3 * num)):  # greedy: a prefix is the same
        h = graph_hash(space.to_graph(genos[i]))
        if h not in hashes:  # isomorphic cells are one architecture
            hashes.add(h)
            out.append(genos[i])
        if len(out) == num:
            break
    return out


def genotype_jobs(store: Store, space: Any, genotypes: list[str]) -> list[Job]:
    """Jobs for the given genotypes, each recorded in the store."""
    jobs = []
    for g in genotypes:
        graph = space.to_graph(g)
        graph.meta.setdefault("space", space.name)
        graph.meta.setdefault("genotype", g)
        jobs.append(Job(store.add_architecture(graph), graph, g))
    return jobs
