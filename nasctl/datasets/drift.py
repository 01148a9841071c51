"""Drift-corrected labels: each measurement read against the reference probe timed beside it.

A device's speed drifts (a shared machine's load, clocks, thermal state); the drift is mostly
common to every architecture measured at a given moment, and the reference probe
(:mod:`nasctl.profiler.probe`, ``nasctl profile --probe-every K``) measures it. A label is
scaled to the device's typical speed::

    corrected_ms = latency_ms * typical_probe_ms / probe_ms_at_measurement

where ``typical_probe_ms`` is the median over the dataset's probes. Per-layer times and the
std are scaled by the same factor (the CV is unchanged). A predictor trained on corrected
labels predicts milliseconds at the device's typical speed.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Sequence
from typing import Any

from nasctl.datasets.rows import TrainingRow
from nasctl.errors import StoreError


def drift_factors(probes_ms: Sequence[float], typical_ms: float | None = None) -> list[float]:
    """``typical / probe`` for each probe time (``typical`` defaults to their median)."""
    if not probes_ms:
        return []
    if any(not p > 0 for p in probes_ms):
        raise StoreError("probe times must be > 0 ms")
    typical = statistics.median(probes_ms) if typical_ms is None else typical_ms
    return [typical / p for p in probes_ms]


def drift_correct(rows: Sequence[TrainingRow]) -> tuple[list[TrainingRow], dict[str, Any]]:
    """Rows with drift-corrected labels, and what was done (typical probe, factor range).

    Every row must carry its probe time: a row without one would mix two speeds silently, so
    :class:`StoreError` names how many lack it and how to get them."""
    missing = [r for r in rows if r.probe_ms is None]
    if missing:
        raise StoreError(
            f"{len(missing)} of {len(rows)} measurements have no reference probe time (measured "
            "without a probe); re-measure them with a probe (profile with probe_every=K) into a "
            "new store, or train without drift_correct"
        )
    probes = [float(r.probe_ms) for r in rows]  # type: ignore[arg-type]
    factors = drift_factors(probes)
    out = []
    for r, f in zip(rows, factors, strict=True):
        out.append(
            dataclasses.replace(
                r,
                latency_ms=r.latency_ms * f,
                std_ms=None if r.std_ms is None else r.std_ms * f,
                layers=[dataclasses.replace(la, time_ms=la.time_ms * f) for la in r.layers],
                _graph=r._graph,
            )
        )
    info = {
        "typical_probe_ms": statistics.median(probes) if probes else None,
        "factor_min": min(factors) if factors else None,
        "factor_max": max(factors) if factors else None,
        "rows": len(out),
    }
    return out, info
