"""The timing protocol: statistics, adaptive repeats, warm-up, and the quality gate."""

from __future__ import annotations

import random
import time

import numpy as np
import pytest

from nasctl.errors import DeviceError
from nasctl.profiler.protocol import Runner, TimingConfig, TimingStats


class ScriptedRunner(Runner):
    """Returns scripted step times (ms) in a cycle: protocol logic without a clock."""

    def __init__(self, times_ms: list[float]) -> None:
        super().__init__()
        self.times = times_ms
        self.i = 0
        self.steps = 0
        self.activated = 0

    def activate_impl(self) -> None:
        self.activated += 1

    def step_impl(self) -> None:
        self.steps += 1

    def timed_step_ms(self) -> float:
        self.step_impl()
        t = self.times[self.i % len(self.times)]
        self.i += 1
        return t


class SleepyRunner(Runner):
    """A real noisy step: sleeps a random 0.2-3 ms (host clock timing of the base class)."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.rng = random.Random(seed)

    def step_impl(self) -> None:
        time.sleep(self.rng.uniform(0.0002, 0.003))


def test_stats_match_numpy() -> None:
    xs = [3.0, 1.0, 2.0, 10.0, 4.0, 5.5]
    s = TimingStats.from_samples(xs)
    assert s.median_ms == pytest.approx(np.median(xs))
    assert s.mean_ms == pytest.approx(np.mean(xs))
    assert s.p90_ms == pytest.approx(np.percentile(xs, 90))
    assert s.std_ms == pytest.approx(np.std(xs))
    assert s.cv == pytest.approx(np.std(xs) / np.mean(xs))
    assert s.runs == 6


def test_repeats_and_min_time_both_respected() -> None:
    # 1 ms steps: 20 repeats would be 20 ms, but min_time 0.05 s needs 50 runs
    r = ScriptedRunner([1.0])
    res = r.measure(TimingConfig(warmup=3, warmup_s=10, repeats=20, min_time_s=0.05))
    assert res.stats.runs == 50
    assert res.warmup_runs == 3
    assert res.status == "ok" and res.attempts == 1
    # slow steps: the repeat count binds
    r = ScriptedRunner([10.0])
    assert r.measure(TimingConfig(repeats=7, min_time_s=0.01)).stats.runs == 7
    # max_repeats caps a tiny model
    r = ScriptedRunner([0.001])
    assert r.measure(TimingConfig(repeats=5, min_time_s=1.0, max_repeats=100)).stats.runs == 100


def test_stable_step_passes_the_gate_first_time() -> None:
    r = ScriptedRunner([1.00, 1.01, 0.99, 1.00])
    res = r.measure(TimingConfig(repeats=20, min_time_s=0, cv_threshold=0.025, max_attempts=3))
    assert res.status == "ok"
    assert res.attempts == 1
    assert res.stats.median_ms == pytest.approx(1.0)
    assert r.activated == 1


def test_noisy_sleeping_step_is_remeasured_and_flagged() -> None:
    r = SleepyRunner(seed=1)
    res = r.measure(
        TimingConfig(warmup=2, repeats=15, min_time_s=0, cv_threshold=0.025, max_attempts=3)
    )
    assert res.status == "noisy"
    assert res.attempts == 3
    assert len(res.cvs) == 3 and all(cv > 0.025 for cv in res.cvs)
    assert res.stats.cv == min(res.cvs)  # the steadiest attempt is kept
    assert 0.2 < res.stats.median_ms < 20


def test_noisy_then_quiet_recovers() -> None:
    # first attempt (10 runs) has one big outlier, the second is flat
    times = [1.0] * 9 + [30.0] + [1.0] * 10
    r = ScriptedRunner(times)
    res = r.measure(TimingConfig(repeats=10, min_time_s=0, max_attempts=3))
    assert res.attempts == 2
    assert res.status == "ok"
    assert res.cvs[0] > 0.025 and res.cvs[1] == 0.0


def test_config_from_options_and_bad_values() -> None:
    cfg = TimingConfig.from_options({"repeats": "30", "threads": 4}, {"cv_threshold": 0.05})
    assert cfg.repeats == 30 and cfg.cv_threshold == 0.05
    with pytest.raises(DeviceError, match="repeats"):
        TimingConfig.from_options({"repeats": 0})
    with pytest.raises(DeviceError, match="must be an integer"):
        TimingConfig.from_options({"max_attempts": "many"})


def test_median_ci_halfwidth_is_the_order_statistics_interval() -> None:
    from nasctl_agent.protocol import median_ci_halfwidth

    # n = 25: j = floor(12.5 - 4.9) = 7, k = ceil(1 + 12.5 + 4.9) = 19 (1-based)
    xs = [float(i) for i in range(1, 26)]  # median 13
    assert median_ci_halfwidth(xs) == pytest.approx((19 - 7) / (2 * 13))
    assert median_ci_halfwidth([1.0, 2.0, 3.0]) == float("inf")  # too few to say
    assert median_ci_halfwidth([0.0] * 10) == float("inf")
    # its coverage on real draws: the interval holds the true median ~95 % of the time
    rng = random.Random(0)
    hits = 0
    for _ in range(400):
        s = sorted(rng.gauss(10.0, 1.0) for _ in range(40))
        med = (s[19] + s[20]) / 2
        hits += abs(med - 10.0) <= median_ci_halfwidth(s) * med
    assert 0.9 <= hits / 400 <= 1.0


def test_median_ci_stops_a_stable_net_early_and_not_a_noisy_one() -> None:
    # 1 ms steps +-0.5 %: the median is known to 1 % long before min_time_s (1000 runs)
    stable = ScriptedRunner([1.0, 1.005, 0.995, 1.002, 0.998])
    res = stable.measure(TimingConfig(repeats=20, min_time_s=1.0, median_ci=0.01))
    assert res.stats.runs == 20  # stopped at the repeat floor
    off = ScriptedRunner([1.0, 1.005, 0.995, 1.002, 0.998])
    assert off.measure(TimingConfig(repeats=20, min_time_s=1.0)).stats.runs == 1000
    # a bimodal net (1 ms / 2 ms alternating): the median is not pinned, runs to min_time_s
    noisy = ScriptedRunner([1.0, 2.0])
    assert noisy.measure(TimingConfig(repeats=20, min_time_s=0.3, median_ci=0.01)).stats.runs == 200
    with pytest.raises(DeviceError, match="median_ci"):
        TimingConfig.from_options({"median_ci": -0.1})


def test_cpu_device_defaults_to_the_early_stop_and_the_probe_does_not() -> None:
    from nasctl.profiler import get_device
    from nasctl.profiler.probe import PROBE_TIMING

    dev = get_device("cpu")
    assert TimingConfig.from_options(dev.timing_defaults, {}).median_ci == 0.01
    assert TimingConfig.from_options(dev.timing_defaults, {"median_ci": "0"}).median_ci == 0.0
    assert PROBE_TIMING["median_ci"] == 0.0  # every probe runs its full min_time_s
