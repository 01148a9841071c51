"""The noise gate derived from the device's repeatability, and the reference probe's checks."""

from __future__ import annotations

import math

import pytest

from nasctl.errors import DeviceError
from nasctl.profiler.gate import (
    attempts_for,
    derive_gate,
    gate_options,
    load_gate,
    save_gate,
)
from nasctl.profiler.probe import check_probe


def test_threshold_is_margin_times_p90_of_probe_cvs() -> None:
    cvs = [0.01 * i for i in range(1, 11)]  # 1 % .. 10 %
    g = derive_gate("cpu-x", cvs, [5.0] * 10)
    p90 = 0.09 + 0.1 * 0.01  # numpy-style interpolation at position 8.1: 9.1 %
    assert g.cv_threshold == pytest.approx(1.25 * p90)
    # no probe run fails 11.375 %: smoothed fail rate 0.5 / 11, one attempt suffices
    assert g.fail_rate == pytest.approx(round(0.5 / 11, 4))
    assert g.max_attempts == 1
    assert g.probe_ms == 5.0 and g.probe_spread == 0.0


def test_floor_and_cap() -> None:
    assert derive_gate("d", [0.0001] * 5, [1.0] * 5).cv_threshold == 0.005
    assert derive_gate("d", [3.0] * 5, [1.0] * 5).cv_threshold == 2.0


def test_attempts_follow_the_observed_fail_rate() -> None:
    # 4 of 10 probe CVs above the threshold (cap makes the threshold 2 %: margin x p90 > cap)
    cvs = [0.01] * 6 + [0.05] * 4
    g = derive_gate("d", cvs, [1.0] * 10, cap=0.02)
    rate = (4 + 0.5) / 11
    assert g.fail_rate == pytest.approx(round(rate, 4))
    assert g.max_attempts == math.ceil(math.log(0.05) / math.log(rate))  # 4
    assert g.max_attempts == 4
    assert attempts_for(0.0) == 1
    assert attempts_for(1.0) == 5
    assert attempts_for(0.05) == 1
    assert attempts_for(0.5) == 5  # 0.5^5 = 3 % <= 5 %; 0.5^4 = 6 %


def test_typical_speed_and_spread() -> None:
    g = derive_gate("d", [0.01, 0.02, 0.03], [10.0, 12.0, 11.0])
    assert g.probe_ms == 11.0
    assert g.probe_spread == pytest.approx(2.0 / 11.0)


def test_bad_calibration_input() -> None:
    with pytest.raises(DeviceError, match="at least 3"):
        derive_gate("d", [0.01, 0.02], [1.0, 1.0])
    with pytest.raises(DeviceError, match="finite"):
        derive_gate("d", [0.01, float("nan"), 0.02], [1.0, 1.0, 1.0])
    with pytest.raises(DeviceError, match="finite"):
        derive_gate("d", [0.01, 0.01, 0.02], [1.0, 0.0, 1.0])


def test_gate_round_trip_and_user_options_win(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("NASCTL_CACHE_DIR", str(tmp_path))
    assert load_gate("cpu-ort1.0-fp32-t1") is None
    g = derive_gate("cpu-ort1.0-fp32-t1", [0.02, 0.03, 0.04], [3.0, 3.1, 2.9])
    path = save_gate(g)
    assert path.parent == tmp_path / "devices"
    back = load_gate("cpu-ort1.0-fp32-t1")
    assert back == g
    # 3 runs, none failing: fail rate 0.5 / 4 = 12.5 % > 5 %, so one retry
    assert gate_options(back, {}) == {"cv_threshold": g.cv_threshold, "max_attempts": 2}
    assert gate_options(back, {"cv_threshold": "0.1"})["cv_threshold"] == "0.1"
    assert gate_options(None, {"repeats": 5}) == {"repeats": 5}
    path.write_text("{not json")
    with pytest.raises(DeviceError, match="corrupt"):
        load_gate("cpu-ort1.0-fp32-t1")


def test_probe_far_off_stops() -> None:
    check_probe(10.0, None, "d")  # nothing to compare with yet
    check_probe(14.9, 10.0, "d")
    check_probe(6.7, 10.0, "d")
    with pytest.raises(DeviceError, match=r"1\.60x its usual 10\.00 ms.*every measurement"):
        check_probe(16.0, 10.0, "d")
    with pytest.raises(DeviceError, match="machine changed"):
        check_probe(6.0, 10.0, "d")


def test_rule_shows_its_numbers_and_ignores_the_measured_nets() -> None:
    g = derive_gate("d", [0.02, 0.04, 0.03, 0.05], [2.0] * 4)
    assert "(0.0470)" in g.rule and "= 0.0587" in g.rule  # p90 = 0.047, x 1.25
    assert g.source == "" and g.load_avg == []


class _Dev:
    device_id = "cpu-fake"
    auto_calibrate = False


def test_gate_for_calibrates_only_where_it_may(tmp_path, monkeypatch) -> None:
    from nasctl.profiler.probe import gate_for

    monkeypatch.setenv("NASCTL_CACHE_DIR", str(tmp_path))
    assert gate_for(_Dev(), {}) == (None, False)  # a device that does not calibrate itself
    dev = _Dev()
    dev.auto_calibrate = True
    assert gate_for(dev, {}, auto=False) == (None, False)
    assert gate_for(dev, {"cv_threshold": 0.1, "max_attempts": 2}) == (None, False)
    stored = derive_gate("cpu-fake", [0.02, 0.03, 0.04], [3.0, 3.1, 2.9])
    save_gate(stored)
    assert gate_for(dev, {}) == (stored, False)  # a stored gate is never recalibrated
