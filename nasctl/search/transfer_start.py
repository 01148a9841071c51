"""Start a search on a new device from the other devices in the store (issue 13).

When the device has fewer than ``FEW`` measurements in the space and other devices measured that
space (each at least :data:`nasctl.predictor.transfer.MIN_SOURCE_ROWS` times), the loop's
bootstrap measures the *informative* picks (:func:`nasctl.datasets.transfer_data.
informative_genotypes`) instead of random genotypes, on its device budget, and its latency model
starts from the transferred predictor (:func:`nasctl.predictor.transfer.fit_transfer`) with that
predictor's calibrated intervals. The loop calls :func:`transfer_start` in one place.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from nasctl.errors import NasctlError
from nasctl.search.latency.models import PredictorPrior

FEW = 20  # below this many own rows the search starts from a transfer


def transfer_start(
    store: Any,
    space: Any,
    device_id: str,
    *,
    want: int,
    have: dict[str, float],
    seed: int,
    measure: Callable[[str], float | None],
    budget_left: Callable[[], int],
    progress: Callable[..., None] | None = None,
) -> PredictorPrior | None:
    """Measure up to ``want`` informative picks (fewer when ``have``, this device's measured
    genotype -> ms, already holds some, or the budget ends), fit the transfer on all of this
    device's rows, and return it as the latency model's prior; None (nothing measured) when the
    device has ``FEW`` rows or more, or no other device measured the space."""
    from nasctl.datasets.transfer_data import informative_genotypes, source_rows
    from nasctl.predictor import transfer

    if len(have) >= FEW:
        return None
    try:
        src = source_rows(store, device_id, None, space=space.name)
        shared = transfer.shared_sources(src, {space.name}, device_id)
    except NasctlError:
        return None  # nothing to transfer from: the usual random bootstrap
    say = progress or (lambda *a, **k: None)
    say("phase", name="transfer: source models", total=len(shared))
    sources = transfer.fit_sources(shared, seed=seed)
    n = max(0, want - len(have))
    if n:
        say("phase", name="informative picks", total=n)
        picks = informative_genotypes(
            store, space, n, device_id=device_id, seed=seed, fitted=sources
        )
        for g in picks:
            if budget_left() <= 0:
                break
            ms = measure(g)
            if ms is not None and ms > 0:
                have[g] = ms
    if len(have) < transfer.MIN_TARGET_ROWS:
        return None
    rows = [
        SimpleNamespace(
            arch_hash=g, latency_ms=ms, space=space.name, genotype=g, graph=space.to_graph(g)
        )
        for g, ms in have.items()
    ]
    pred, _ = transfer.fit_transfer(rows, device_id=device_id, seed=seed, sources=sources)
    return PredictorPrior(None, space, device_id, predictor=pred)
