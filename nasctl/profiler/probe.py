"""The reference probe: one fixed architecture timed between measurements, so that each label
can be read against the device's speed at that moment (drift correction) and the device's
repeatability can be measured (the noise gate, :mod:`nasctl.profiler.gate`).

The probe is a mid-size ``mbconv`` network (128 px, width 1.0, 17 blocks), of the size the
``mbconv`` space measures. It is measured through the device like any request, without per-layer
times, so it sees the same session options, clock and thread count as the labels.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from nasctl.errors import DeviceError
from nasctl.profiler.gate import NoiseGate, derive_gate, load_gate, save_gate
from nasctl.records import MeasurementRequest

#: The reference architecture (a genotype of the ``mbconv`` space).
PROBE_SPACE = "mbconv"
PROBE_GENOTYPE = (
    "r128-w1.0|relu6:k3e1|relu6:k3e4,k3e4|swish:k5e4,k5e4|swish:k3e4,k3e4,k3e4|"
    "swish:k5e6,k5e6|swish:k5e6,k5e6,k5e6|swish:k3e6"
)
#: A probe's own protocol: short, one attempt (its CV is what calibration measures), always
#: ``min_time_s`` of timed runs (no early stop: every probe equally long).
PROBE_TIMING = {
    "warmup": 5, "warmup_s": 0.1, "repeats": 10, "min_time_s": 0.3, "max_attempts": 1,
    "median_ci": 0.0, "memory": "off",
}  # fmt: skip
#: Probe runs of a calibration (``nasctl devices --calibrate``'s default, and the automatic one).
CALIBRATION_RUNS = 10
#: A probe slower or faster than this factor of the device's typical probe time stops a run.
TOLERANCE = 1.5


@dataclass
class ProbeTime:
    """One probe measurement (ms; ``cv`` a fraction)."""

    median_ms: float
    cv: float
    status: str

    def to_dict(self) -> dict[str, Any]:
        return {"median_ms": self.median_ms, "cv": self.cv, "status": self.status}


def probe_request(device: Any, timing: dict[str, Any] | None = None) -> MeasurementRequest:
    """The request that measures the reference architecture on ``device``."""
    from nasctl.arch.hashing import graph_hash
    from nasctl.spaces import get_space

    graph = get_space(PROBE_SPACE).to_graph(PROBE_GENOTYPE)
    return MeasurementRequest(
        arch_hash=graph_hash(graph),
        device=device.name,
        graph_json=graph.to_json(),
        space=PROBE_SPACE,
        genotype=PROBE_GENOTYPE,
        per_layer=False,
        options={**PROBE_TIMING, **(timing or {})},
    )


def measure_probe(device: Any, request: MeasurementRequest | None = None) -> ProbeTime:
    """Time the probe once; a probe that fails raises :class:`DeviceError` (nothing is wrong
    with the architecture, so the device or the machine is)."""
    req = request or probe_request(device)
    m = device.measure(req)
    if m.status == "failed" or m.median_ms is None:
        raise DeviceError(
            f"the reference probe failed on {device.device_id}: {m.error or 'no timing'}; "
            "the device cannot be trusted now (nothing more is measured)"
        )
    return ProbeTime(float(m.median_ms), float(m.cv or 0.0), m.status)


def calibrate(
    device: Any,
    runs: int = CALIBRATION_RUNS,
    progress: Any = None,
    source: str = "devices --calibrate",
) -> NoiseGate:
    """Measure the probe ``runs`` times (one attempt each) and derive the device's gate."""
    req = probe_request(device)
    cvs, medians = [], []
    load0 = _load_1min()
    for i in range(runs):
        p = measure_probe(device, req)
        cvs.append(p.cv)
        medians.append(p.median_ms)
        if progress:
            progress(i + 1, runs, "probe")
    gate = derive_gate(device.device_id, cvs, medians, probe_genotype=PROBE_GENOTYPE)
    gate.source = source
    gate.load_avg = [x for x in (load0, _load_1min()) if x is not None]
    return gate


def gate_for(
    device: Any,
    user_options: dict[str, Any],
    *,
    auto: bool = True,
    runs: int = CALIBRATION_RUNS,
    progress: Any = None,
) -> tuple[NoiseGate | None, bool]:
    """The device's stored gate; when it has none, ``auto`` is on, the device calibrates
    itself cheaply (``auto_calibrate``) and the user did not set the gate
    (``cv_threshold`` and ``max_attempts`` both), calibrate it now with :func:`calibrate` (the
    rule of ``nasctl devices --calibrate``), store it and return it. Returns the gate (None:
    the protocol's fixed defaults apply) and whether it was calibrated by this call."""
    gate = load_gate(device.device_id)
    if gate is not None or not auto or not getattr(device, "auto_calibrate", False):
        return gate, False
    if "cv_threshold" in user_options and "max_attempts" in user_options:
        return None, False
    gate = calibrate(device, runs, progress=progress, source="auto: first profile")
    save_gate(gate)
    return gate, True


def _load_1min() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def check_probe(
    probe_ms: float, typical_ms: float | None, device_id: str, tolerance: float = TOLERANCE
) -> None:
    """Raise :class:`DeviceError` when the probe is more than ``tolerance`` times off the
    device's typical probe time (the machine changed: load, clock, thermal state)."""
    if typical_ms is None or typical_ms <= 0:
        return
    ratio = probe_ms / typical_ms
    if ratio > tolerance or ratio < 1.0 / tolerance:
        raise DeviceError(
            f"the reference probe took {probe_ms:.2f} ms on {device_id}, {ratio:.2f}x its usual "
            f"{typical_ms:.2f} ms (allowed 1/{tolerance:g}x-{tolerance:g}x): the machine changed "
            "(load, clock or thermal state); stopped, every measurement so far is kept. Rerun "
            "when it is quiet, or calibrate the device again (devices with calibrate=DEVICE) if "
            "this is its new normal"
        )
