"""The timing protocol lives in the agent (:mod:`nasctl_agent.protocol`: one implementation for
the host and the device); this module re-exports it with the host's error class, and builds the
host's record from a :class:`TimingResult`.

See :mod:`nasctl_agent.protocol` for the protocol itself (warm-up, repeats, min time, CV gate).
"""

from __future__ import annotations

from typing import Any

from nasctl_agent.errors import RequestError
from nasctl_agent.protocol import Runner, TimingResult, TimingStats, percentile
from nasctl_agent.protocol import TimingConfig as _AgentTimingConfig

from nasctl.errors import DeviceError
from nasctl.records import LayerTiming, Measurement, MeasurementRequest

__all__ = [
    "Runner",
    "TimingConfig",
    "TimingResult",
    "TimingStats",
    "measurement_from_timing",
    "percentile",
]


class TimingConfig(_AgentTimingConfig):
    """:class:`nasctl_agent.protocol.TimingConfig` raising :class:`DeviceError` (the host's)."""

    @classmethod
    def from_options(cls, *sources: dict[str, Any] | None) -> TimingConfig:
        try:
            return super().from_options(*sources)  # type: ignore[return-value]
        except RequestError as e:
            raise DeviceError(str(e)) from None

    def check(self) -> None:
        try:
            super().check()
        except RequestError as e:
            raise DeviceError(str(e)) from None


def measurement_from_timing(
    res: TimingResult,
    request: MeasurementRequest,
    device_id: str,
    *,
    fingerprint: dict[str, Any],
    layers: list[LayerTiming] | None = None,
    extra: dict[str, Any] | None = None,
) -> Measurement:
    """The stored record of a timing result (every device builds its record here)."""
    st = res.stats
    return Measurement(
        arch_hash=request.arch_hash,
        device_id=device_id,
        precision=request.precision,
        batch=request.batch,
        status=res.status,
        median_ms=st.median_ms,
        mean_ms=st.mean_ms,
        p90_ms=st.p90_ms,
        std_ms=st.std_ms,
        cv=st.cv,
        runs=st.runs,
        warmup=res.warmup_runs,
        attempts=res.attempts,
        layers=list(layers or []),
        fingerprint=fingerprint,
        extra=dict(extra or {}),
    )
