"""The timing protocol, owned by one base class: warm-up, repeated runs, statistics, quality gate.

A backend is a :class:`Runner` (Polygraphy style): the public methods ``activate``/``measure``/
``deactivate`` do the bookkeeping, subclasses override only ``activate_impl`` (build or load,
allocate inputs), ``step_impl`` (one inference) and ``deactivate_impl``. A backend that times
itself on the device (CUDA events) overrides ``timed_step_ms`` instead of relying on the host
clock.

:meth:`Runner.measure` runs the protocol:

1. warm-up: runs until ``warmup`` runs are done or ``warmup_s`` seconds passed (at least one);
2. timed runs: at least ``repeats`` runs *and* at least ``min_time_s`` seconds of timed runs
   (capped by ``max_repeats``); with ``median_ci`` > 0 the runs may stop before ``min_time_s``
   (never before ``repeats``) once the median is known to within ``median_ci``: the
   distribution-free 95 % confidence interval of the median (order statistics) is at most
   ``2 x median_ci x median`` wide. Stable nets stop early, noisy ones run to ``min_time_s``;
3. statistics in milliseconds: median, mean, p90, std, CV = std / mean;
4. quality gate: if CV > ``cv_threshold`` (default 0.025, nasctl's own default: trtexec only
   warns, from about 1 % CV; the host can derive a device's own threshold), re-measure, up to
   ``max_attempts`` attempts in all; the attempt with the lowest CV is kept and flagged
   ``"noisy"`` if it still fails the gate.

Standard library only (Python >= 3.8).
"""

from __future__ import annotations

import bisect
import math
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, fields
from typing import Any

from nasctl_agent.errors import RequestError


@dataclass
class TimingConfig:
    """Knobs of the protocol (the request's ``timing`` object).

    Attributes:
        warmup: warm-up runs (stops earlier once ``warmup_s`` seconds have passed).
        warmup_s: warm-up time budget in seconds.
        repeats: minimum number of timed runs.
        min_time_s: minimum total timed-run time in seconds (runs continue until reached).
        max_repeats: hard cap on timed runs per attempt.
        cv_threshold: quality gate on the coefficient of variation (std / mean).
        max_attempts: timed attempts in all (1 = no re-measuring).
        median_ci: stop timed runs before ``min_time_s`` once the median's 95 % confidence
            interval is within +- this fraction of it (0 = off: always run ``min_time_s``).
    """

    warmup: int = 10
    warmup_s: float = 0.2
    repeats: int = 20
    min_time_s: float = 1.0
    max_repeats: int = 10_000
    cv_threshold: float = 0.025
    max_attempts: int = 3
    median_ci: float = 0.0

    @classmethod
    def from_options(cls, *sources: dict[str, Any] | None) -> TimingConfig:
        """Build from option dicts, later ones winning; unknown keys are ignored."""
        names = {f.name for f in fields(cls)}
        cfg = cls()
        for src in sources:
            for key, value in (src or {}).items():
                if key in names and value is not None:
                    setattr(cfg, key, _coerce(key, value, getattr(cfg, key)))
        cfg.check()
        return cfg

    def check(self) -> None:
        """Raise :class:`RequestError` on values that make no sense."""
        if self.repeats < 1 or self.max_repeats < self.repeats:
            raise RequestError(
                f"repeats must be >= 1 and <= max_repeats ({self.max_repeats}); got {self.repeats}"
            )
        if self.warmup < 0 or self.warmup_s < 0 or self.min_time_s < 0 or self.median_ci < 0:
            raise RequestError("warmup, warmup_s, min_time_s and median_ci must be >= 0")
        if self.max_attempts < 1:
            raise RequestError(f"max_attempts must be >= 1; got {self.max_attempts}")
        if not self.cv_threshold > 0:
            raise RequestError(f"cv_threshold must be > 0; got {self.cv_threshold}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _coerce(key: str, value: Any, default: Any) -> Any:
    try:
        return type(default)(value)
    except (TypeError, ValueError):
        kind = "an integer" if isinstance(default, int) else "a number"
        raise RequestError(f"option {key}={value!r} must be {kind}") from None


@dataclass
class TimingStats:
    """Statistics of one attempt's timed runs, in milliseconds."""

    median_ms: float
    mean_ms: float
    p90_ms: float
    std_ms: float
    cv: float
    runs: int

    @classmethod
    def from_samples(cls, samples_ms: list[float]) -> TimingStats:
        """Median, mean, p90 (linear interpolation), population std and CV of ``samples_ms``."""
        if not samples_ms:
            raise ValueError("no samples")
        xs = sorted(samples_ms)
        n = len(xs)
        mean = sum(xs) / n
        std = math.sqrt(sum((x - mean) ** 2 for x in xs) / n)
        return cls(
            median_ms=percentile(xs, 50.0),
            mean_ms=mean,
            p90_ms=percentile(xs, 90.0),
            std_ms=std,
            cv=std / mean if mean > 0 else 0.0,
            runs=n,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def median_ci_halfwidth(sorted_xs: list[float]) -> float:
    """Half the width of the median's distribution-free 95 % confidence interval, relative to
    the median: order statistics ``j = floor(n/2 - 0.98 sqrt(n))`` and ``k = ceil(1 + n/2 + 0.98
    sqrt(n))`` (1-based, clamped to 1..n); ``inf`` for fewer than 6 samples or a median <= 0."""
    n = len(sorted_xs)
    med = percentile(sorted_xs, 50.0) if n else 0.0
    if n < 6 or med <= 0:
        return math.inf
    half = 0.98 * math.sqrt(n)
    j = max(1, math.floor(n / 2 - half))
    k = min(n, math.ceil(1 + n / 2 + half))
    return (sorted_xs[k - 1] - sorted_xs[j - 1]) / (2 * med)


def percentile(sorted_xs: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of an ascending list, linear interpolation (numpy's)."""
    if not sorted_xs:
        raise ValueError("no samples")
    pos = (len(sorted_xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_xs) - 1)
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * (pos - lo)


@dataclass
class TimingResult:
    """Outcome of a timing protocol: the kept attempt's statistics and the protocol facts.

    Every backend ends here (the trtexec backend too, from trtexec's per-iteration times), and
    the host builds its record from it (``nasctl.profiler.records_from``)."""

    stats: TimingStats
    status: str  # "ok" | "noisy"
    attempts: int
    warmup_runs: int
    cvs: list[float]  # CV of every attempt, in order
    warmup_s: float  # wall time spent warming up
    timed_s: float  # wall time spent in timed runs, all attempts

    @classmethod
    def from_attempts(
        cls,
        attempts: list[TimingStats],
        cv_threshold: float,
        *,
        warmup_runs: int = 0,
        warmup_s: float = 0.0,
        timed_s: float = 0.0,
    ) -> TimingResult:
        """The attempt with the lowest CV, ``noisy`` when it still fails the gate."""
        if not attempts:
            raise ValueError("no attempts")
        best = min(attempts, key=lambda s: s.cv)
        return cls(
            stats=best,
            status="ok" if best.cv <= cv_threshold else "noisy",
            attempts=len(attempts),
            warmup_runs=warmup_runs,
            cvs=[s.cv for s in attempts],
            warmup_s=warmup_s,
            timed_s=timed_s,
        )

    def to_dict(self) -> dict[str, Any]:
        """The result's ``timing`` object (JSON): statistics plus protocol facts."""
        d = self.stats.to_dict()
        d.update(
            status=self.status,
            attempts=self.attempts,
            warmup_runs=self.warmup_runs,
            cvs=list(self.cvs),
            warmup_s=self.warmup_s,
            timed_s=self.timed_s,
        )
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TimingResult:
        return cls(
            stats=TimingStats(
                median_ms=float(d["median_ms"]),
                mean_ms=float(d["mean_ms"]),
                p90_ms=float(d["p90_ms"]),
                std_ms=float(d["std_ms"]),
                cv=float(d["cv"]),
                runs=int(d["runs"]),
            ),
            status=str(d["status"]),
            attempts=int(d["attempts"]),
            warmup_runs=int(d.get("warmup_runs", 0)),
            cvs=[float(c) for c in d.get("cvs", [])],
            warmup_s=float(d.get("warmup_s", 0.0)),
            timed_s=float(d.get("timed_s", 0.0)),
        )


class Runner(ABC):
    """Base of every timing backend. Use as a context manager or call activate/deactivate."""

    def __init__(self) -> None:
        self.is_active = False

    # -- lifecycle -----------------------------------------------------------------------------
    def activate(self) -> None:
        if not self.is_active:
            self.activate_impl()
            self.is_active = True

    def deactivate(self) -> None:
        if self.is_active:
            self.is_active = False
            self.deactivate_impl()

    def __enter__(self) -> Runner:
        self.activate()
        return self

    def __exit__(self, *exc: object) -> None:
        self.deactivate()

    def activate_impl(self) -> None:  # noqa: B027 - optional hook
        """Build/load the model and allocate inputs."""

    def deactivate_impl(self) -> None:  # noqa: B027 - optional hook
        """Release what ``activate_impl`` took."""

    @abstractmethod
    def step_impl(self) -> None:
        """Run one inference, synchronously (return only when the result is ready)."""

    def timed_step_ms(self) -> float:
        """One inference and its latency in ms. Default: host clock around :meth:`step_impl`."""
        t0 = time.perf_counter_ns()
        self.step_impl()
        return (time.perf_counter_ns() - t0) / 1e6

    # -- protocol ------------------------------------------------------------------------------
    def warm_up(self, cfg: TimingConfig) -> int:
        """Run warm-up steps; return how many ran."""
        deadline = time.perf_counter() + cfg.warmup_s
        n = 0
        while n < max(cfg.warmup, 1):
            self.step_impl()
            n += 1
            if time.perf_counter() >= deadline:
                break
        return n

    def timed_runs(self, cfg: TimingConfig) -> list[float]:
        """Timed steps until both ``repeats`` and ``min_time_s`` are reached (ms each), or,
        with ``median_ci``, ``repeats`` and a median known to within ``median_ci``."""
        samples: list[float] = []
        ordered: list[float] = []
        total_ms = 0.0
        min_ms = cfg.min_time_s * 1e3
        while len(samples) < cfg.max_repeats and (len(samples) < cfg.repeats or total_ms < min_ms):
            dt = self.timed_step_ms()
            samples.append(dt)
            total_ms += dt
            if cfg.median_ci > 0:
                bisect.insort(ordered, dt)
                if len(samples) >= cfg.repeats and median_ci_halfwidth(ordered) <= cfg.median_ci:
                    break
        return samples

    def measure(self, cfg: TimingConfig | None = None) -> TimingResult:
        """Run the whole protocol (activating first if needed) and return the kept attempt."""
        cfg = cfg or TimingConfig()
        self.activate()
        t0 = time.perf_counter()
        warm = self.warm_up(cfg) if cfg.warmup > 0 and cfg.warmup_s > 0 else 0
        t1 = time.perf_counter()
        attempts: list[TimingStats] = []
        for _ in range(cfg.max_attempts):
            stats = TimingStats.from_samples(self.timed_runs(cfg))
            attempts.append(stats)
            if stats.cv <= cfg.cv_threshold:
                break
        return TimingResult.from_attempts(
            attempts,
            cfg.cv_threshold,
            warmup_runs=warm,
            warmup_s=t1 - t0,
            timed_s=time.perf_counter() - t1,
        )
