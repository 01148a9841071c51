"""Other processes' CPU use during `nasctl profile` on the cpu device (real /proc/stat, a real
busy process)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nasctl.cli.main import app
from nasctl.profiler import contention
from nasctl.profiler.contention import CpuWatch, contention_warning

linux = pytest.mark.skipif(not Path("/proc/stat").exists(), reason="reads /proc/stat (Linux)")
BUSY = "import time\nt = time.time()\nwhile time.time() - t < 30: pass\n"


@linux
def test_a_busy_process_is_counted_and_our_own_work_is_not() -> None:
    watch = CpuWatch()
    t = time.monotonic()
    while time.monotonic() - t < 1.2:  # this process's own work: not "others"
        pass
    own_only = watch.other_cpus()
    assert own_only is not None and own_only < 0.8, own_only
    other = subprocess.Popen([sys.executable, "-c", BUSY])
    try:
        watch = CpuWatch()
        time.sleep(1.5)
        busy = watch.other_cpus()
    finally:
        other.kill()
        other.wait()
    # the busy loop keeps one CPU busy (the sleeping test process none): ~1 on an idle machine
    assert busy is not None and busy >= 0.6, busy


def test_too_short_or_unreadable_answers_none(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert CpuWatch().other_cpus() is None  # under a second: too few clock ticks
    monkeypatch.setattr(contention, "_STAT", tmp_path / "missing")
    watch = CpuWatch()
    assert watch.other_cpus(min_wall_s=0.0) is None


def test_the_warning_threshold_and_its_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NASCTL_WARN_OTHER_CPUS", raising=False)
    assert contention_warning(None) is None
    assert contention_warning(0.1) is None
    msg = contention_warning(1.4)
    assert msg is not None and "1.40 of" in msg and "quiet machine" in msg
    monkeypatch.setenv("NASCTL_WARN_OTHER_CPUS", "2")
    assert contention_warning(1.4) is None
    monkeypatch.setenv("NASCTL_WARN_OTHER_CPUS", "off")
    assert contention_warning(5.0) is None


@linux
def test_profile_reports_others_cpu_use_and_warns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A profile run of > 1 s with a busy process beside it: `other_cpus` in the JSON and the
    warning in its list (threshold lowered so a loaded CI machine cannot make it flaky)."""
    monkeypatch.setenv("NASCTL_WARN_OTHER_CPUS", "0.3")
    other = subprocess.Popen([sys.executable, "-c", BUSY])
    try:
        res = CliRunner().invoke(
            app,
            ["profile", "--device", "cpu", "--space", "nb201", "--num", "2", "--db",
             str(tmp_path / "d.db"), "--no-layers", "--option", "min_time_s=0.7",
             "--option", "max_attempts=1", "--option", "median_ci=0", "--option", "memory=off",
             "--json"],
        )  # fmt: skip
    finally:
        other.kill()
        other.wait()
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["measured"] == 2
    assert out["other_cpus"] is not None and out["other_cpus"] >= 0.3, json.dumps(out)
    assert any("other processes kept" in w for w in out["warnings"])
