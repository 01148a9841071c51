"""A made-up device with per-layer times, shared by the predictor tests."""

from __future__ import annotations

import numpy as np

from nasctl.records import LayerTiming


def device_ms(f, rng: np.random.Generator) -> tuple[list[LayerTiming], float]:  # noqa: ANN001
    """Per fused group of features ``f``: max(MACs / 2e6, bytes / 4e6) + 4 us (ms), +-3 % noise;
    whole graph = layers + 0.05 ms. Returns (layer timings, whole-graph ms)."""
    layers, total = [], 0.05
    for k in range(f.x.shape[0]):
        members = np.flatnonzero(f.group == k)
        macs, nbytes = f.costs[members, 0].sum(), f.costs[members, 1:].sum()
        t = (max(macs / 2e6, nbytes / 4e6) + 0.004) * float(rng.uniform(0.97, 1.03))
        layers.append(LayerTiming(name=f"l{k}", time_ms=t, nodes=[f.node_ids[i] for i in members]))
        total += t
    return layers, total
