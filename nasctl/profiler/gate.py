"""A noise gate that fits the device: the CV threshold and number of attempts derived from the
device's own measured repeatability, not a constant borrowed from another tool.

Calibration (:func:`nasctl.profiler.probe.calibrate`) measures the reference probe ``n`` times
with one attempt each; every attempt gives a within-run CV (std / mean of its timed runs). From
those CVs:

* ``cv_threshold = clamp(margin * p90(cvs), floor, cap)`` (defaults margin 1.25, floor 0.5 %,
  cap 200 %: a heavy-tailed host clock under load can exceed 100 %): a measurement flagged
  ``noisy`` is noisier than 90 % of this device's probe runs, with a 25 % margin, i.e. "worse
  than this device usually is";
* ``max_attempts``: the fewest attempts whose chance of all failing the gate is at most
  ``target_fail`` (5 %) when each fails with the probe's observed rate, smoothed as
  ``(fails + 0.5) / (n + 1)`` so that a short calibration is never trusted as "never fails";
  capped at ``max_attempts_cap`` (5).

A device is calibrated by ``nasctl devices --calibrate NAME``, or automatically the first time
``nasctl profile`` measures on it (devices with ``auto_calibrate``: the local ``cpu``; the same
10 probe runs and the same rule, :func:`nasctl.profiler.probe.gate_for`). The rule never looks
at the architectures being measured: the threshold comes from the fixed reference probe alone,
so calibrating cannot loosen the gate until the measurements pass. ``source`` and
``load_avg`` (the 1-minute load average before and after the probe runs) say how and under
what load it was made: a gate calibrated on a busy machine is loose, and ``nasctl devices
--calibrate`` on a quiet one replaces it.

The gate is kept per device id in a small JSON file under the user's cache
(``$NASCTL_CACHE_DIR`` or ``$XDG_CACHE_HOME/nasctl`` or ``~/.cache/nasctl``, then
``devices/<device_id>.json``) and shown by ``nasctl devices --json``. It also holds the probe's
typical time, which ``nasctl profile --probe-every K`` compares each probe against.
"""

from __future__ import annotations

import json
import math
import os
import re
import statistics
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from nasctl.errors import DeviceError

#: Calibration defaults (see the module doc).
MARGIN = 1.25
QUANTILE = 90.0
FLOOR = 0.005
CAP = 2.0
TARGET_FAIL = 0.05
MAX_ATTEMPTS_CAP = 5
MIN_PROBES = 3


@dataclass
class NoiseGate:
    """A device's derived gate and the calibration it came from (times in ms, CVs fractions)."""

    device_id: str
    cv_threshold: float
    max_attempts: int
    probe_ms: float  # median of the calibration probes' medians: the device's typical speed
    probe_spread: float  # (max - min) / median of the calibration probes' medians
    probe_cvs: list[float] = field(default_factory=list)
    probe_medians_ms: list[float] = field(default_factory=list)
    fail_rate: float = 0.0  # smoothed chance that one attempt fails the gate
    probe_genotype: str = ""
    created_at: str = ""
    rule: str = ""
    source: str = ""  # "devices --calibrate" or "auto: first profile"
    load_avg: list[float] = field(default_factory=list)  # 1-min load before, after

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NoiseGate:
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in names})


def _percentile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    pos = (len(s) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def attempts_for(
    fail_rate: float, target_fail: float = TARGET_FAIL, cap: int = MAX_ATTEMPTS_CAP
) -> int:
    """Fewest attempts ``n`` with ``fail_rate ** n <= target_fail`` (1 .. ``cap``)."""
    if fail_rate <= 0.0:
        return 1
    if fail_rate >= 1.0:
        return cap
    n = math.ceil(math.log(target_fail) / math.log(fail_rate) - 1e-9)
    return max(1, min(cap, n))


def derive_gate(
    device_id: str,
    cvs: list[float],
    medians_ms: list[float],
    *,
    margin: float = MARGIN,
    quantile: float = QUANTILE,
    floor: float = FLOOR,
    cap: float = CAP,
    target_fail: float = TARGET_FAIL,
    max_attempts_cap: int = MAX_ATTEMPTS_CAP,
    probe_genotype: str = "",
) -> NoiseGate:
    """The gate of a device from its probe calibration (see the module doc)."""
    if len(cvs) < MIN_PROBES or len(medians_ms) != len(cvs):
        raise DeviceError(
            f"a noise gate needs at least {MIN_PROBES} probe runs with one CV and one median "
            f"each; got {len(cvs)} CVs and {len(medians_ms)} medians"
        )
    if any(not (c >= 0 and math.isfinite(c)) for c in cvs) or any(
        not (m > 0 and math.isfinite(m)) for m in medians_ms
    ):
        raise DeviceError("probe CVs must be finite and >= 0, medians finite and > 0")
    pq = _percentile(cvs, quantile)
    threshold = min(cap, max(floor, margin * pq))
    fails = sum(1 for c in cvs if c > threshold)
    fail_rate = (fails + 0.5) / (len(cvs) + 1)
    attempts = attempts_for(fail_rate, target_fail, max_attempts_cap)
    typical = statistics.median(medians_ms)
    return NoiseGate(
        device_id=device_id,
        cv_threshold=round(threshold, 6),
        max_attempts=attempts,
        probe_ms=typical,
        probe_spread=(max(medians_ms) - min(medians_ms)) / typical,
        probe_cvs=list(cvs),
        probe_medians_ms=list(medians_ms),
        fail_rate=round(fail_rate, 4),
        probe_genotype=probe_genotype,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        rule=(
            f"cv_threshold = clamp({margin} x p{quantile:g} of {len(cvs)} probe CVs "
            f"({pq:.4f}), {floor}, {cap}) = {threshold:.4f}; "
            f"max_attempts = fewest n with fail_rate^n <= {target_fail} "
            f"(fail_rate = (fails + 0.5) / (runs + 1) = {fail_rate:.3f}), at most "
            f"{max_attempts_cap}"
        ),
    )


def cache_dir() -> Path:
    """Where device gates live (``$NASCTL_CACHE_DIR``, else the XDG cache, ``nasctl/devices``)."""
    base = os.environ.get("NASCTL_CACHE_DIR")
    if base:
        return Path(base) / "devices"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "nasctl" / "devices"


def _path(device_id: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", device_id)
    return cache_dir() / f"{safe}.json"


def save_gate(gate: NoiseGate) -> Path:
    """Write ``gate`` (atomically: a temp file renamed) and return its path."""
    path = _path(gate.device_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(gate.to_dict(), indent=1, sort_keys=True))
    tmp.replace(path)
    return path


def run_spread(gate: NoiseGate | None) -> float | None:
    """The device's run-to-run spread of one measurement, as a robust standard deviation of the
    log of its calibration probes' medians (``1.4826 x MAD`` of ``ln(median)``: the same probe
    architecture measured again and again; one outlier probe, as happens on a shared machine,
    does not widen it the way ``probe_spread``'s range does). Two medians of one speed differ
    by about this in ``ln`` from run to run. None without a gate or with fewer than
    ``MIN_PROBES`` positive probe medians."""
    meds = [m for m in (gate.probe_medians_ms if gate else []) if m > 0 and math.isfinite(m)]
    if len(meds) < MIN_PROBES:
        return None
    logs = [math.log(m) for m in meds]
    mid = statistics.median(logs)
    return 1.4826 * statistics.median(abs(x - mid) for x in logs)


def load_gate(device_id: str) -> NoiseGate | None:
    """The stored gate of ``device_id``; None when never calibrated. A corrupt file raises."""
    path = _path(device_id)
    if not path.is_file():
        return None
    try:
        return NoiseGate.from_dict(json.loads(path.read_text()))
    except (ValueError, TypeError) as e:
        raise DeviceError(
            f"the noise gate file {path} is corrupt ({e}); delete it and calibrate the device "
            "again (devices with calibrate=DEVICE)"
        ) from None


def gate_options(gate: NoiseGate | None, user: dict[str, Any]) -> dict[str, Any]:
    """Timing options with the gate's threshold and attempts, the user's own options winning."""
    out: dict[str, Any] = {}
    if gate is not None:
        out = {"cv_threshold": gate.cv_threshold, "max_attempts": gate.max_attempts}
    out.update(user)
    return out
