"""`nasctl devices --calibrate`, `profile --probe-every`, `train-predictor --drift-correct`:
real ONNX Runtime runs with a short protocol; bad input exits 1 with one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nasctl.cli.main import app
from nasctl.datasets.store import Store

runner = CliRunner()
FAST = ["--option", "min_time_s=0.02", "--option", "warmup_s=0.01", "--option", "repeats=5"]


def _run(*args: object) -> tuple[int, str]:
    res = runner.invoke(app, [str(a) for a in args])
    return res.exit_code, res.output


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NASCTL_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.slow
def test_calibrate_then_devices_json_then_profile_with_probe(tmp_path: Path) -> None:
    code, out = _run("devices", "--calibrate", "cpu", "--runs", "3", "--json")
    assert code == 0, out
    gate = json.loads(out)
    assert gate["device_id"].startswith("cpu-ort") and len(gate["probe_cvs"]) == 3
    assert gate["max_attempts"] >= 1 and gate["cv_threshold"] >= 0.005
    code, out = _run("devices", "--json")
    row = next(r for r in json.loads(out) if r["name"] == "cpu")
    assert row["noise_gate"]["cv_threshold"] == gate["cv_threshold"]
    assert "noisier than this device usually is" in row["noise_gate_note"]
    db = tmp_path / "p.db"
    # tolerance 100x: this checks the plumbing on a loaded machine, not its stability
    code, out = _run(
        "profile", "--device", "cpu", "--space", "mbconv", "--num", "3", "--probe-every", "2",
        "--probe-tolerance", "100", "--no-layers", "--db", db, "--json", *FAST,
    )  # fmt: skip
    assert code == 0, out
    res = json.loads(out)
    assert res["probes"] == 2 and res["noise_gate"]["cv_threshold"] == gate["cv_threshold"]
    assert res["stages"]["probe"] > 0 and res["stages"]["timed"] > 0
    with Store(db, readonly=True) as s:
        rows = s.reader.training_rows(res["device_id"])
    assert len(rows) == 3 and all(r.probe_ms and r.probe_ms > 0 for r in rows)
    assert all(r.memory_mb and r.memory_mb > 0 for r in rows)


def test_bad_probe_input_exits_1(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    code, out = _run("profile", "--device", "cpu", "--space", "mbconv", "--num", "1",
                     "--probe-every", "-1", "--db", db)  # fmt: skip
    assert code == 1 and "--probe-every must be >= 0" in out and not db.exists()
    code, out = _run("devices", "--calibrate", "cpu", "--runs", "2")
    assert code == 1 and "--runs must be >= 3" in out
    code, out = _run("train-predictor", "--db", db, "--device", "cpu", "--out", tmp_path / "o",
                     "--drift-correct", "--transfer")  # fmt: skip
    assert code == 1 and "does not combine with --transfer" in out


def test_corrupt_gate_file_is_named(_cache: Path) -> None:
    code, out = _run("devices", "--json")
    dev_id = next(r for r in json.loads(out) if r["name"] == "cpu")["device_id"]
    (_cache / "devices").mkdir(parents=True)
    (_cache / "devices" / f"{dev_id}.json").write_text("{oops")
    code, out = _run("devices", "--json")
    row = next(r for r in json.loads(out) if r["name"] == "cpu")
    assert row["noise_gate"] is None and "corrupt" in row["noise_gate_error"]


@pytest.mark.slow
def test_first_profile_calibrates_the_gate_once(
    tmp_path: Path, _cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default: a device without a gate is calibrated by its first profile (the probe's 10
    runs, stored with source 'auto'); the next profile uses the stored gate."""
    monkeypatch.setenv("NASCTL_AUTO_CALIBRATE", "1")
    db = tmp_path / "a.db"

    def args(num: int) -> list[object]:
        return ["profile", "--device", "cpu", "--space", "mbconv", "--num", num, "--no-layers",
                "--db", db, "--json", *FAST, "--option", "memory=off"]  # fmt: skip

    code, out = _run(*args(1))
    assert code == 0, out
    res = json.loads(out[out.index("{") :])
    gate = res["noise_gate"]
    assert gate["calibrated_now"] and gate["source"] == "auto: first profile"
    assert res["calibration_seconds"] > 0
    code, out = _run("devices", "--json")
    row = next(r for r in json.loads(out) if r["name"] == "cpu")
    stored = row["noise_gate"]
    assert stored["device_id"] == res["device_id"] and len(stored["probe_cvs"]) == 10
    assert stored["cv_threshold"] == gate["cv_threshold"] and len(stored["load_avg"]) == 2
    assert "p90 of 10 probe CVs" in stored["rule"] and "first profile" in row["noise_gate_note"]
    with Store(db, readonly=True) as s:
        m = s.reader.training_rows(res["device_id"])
    assert len(m) == 1
    code, out = _run(*args(2))  # one more net, same store
    assert code == 0, out
    res2 = json.loads(out)
    assert res2["noise_gate"]["calibrated_now"] is False and res2["calibration_seconds"] is None
    assert res2["noise_gate"]["cv_threshold"] == gate["cv_threshold"]


def test_no_auto_calibrate_and_a_user_gate_keep_the_fixed_defaults(
    tmp_path: Path, _cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NASCTL_AUTO_CALIBRATE", "1")
    base = ["profile", "--device", "cpu", "--space", "mbconv", "--num", "1", "--no-layers",
            "--json", *FAST, "--option", "memory=off"]  # fmt: skip
    code, out = _run(*base, "--db", tmp_path / "n.db", "--no-auto-calibrate")
    assert code == 0, out
    assert json.loads(out)["noise_gate"] is None and not (_cache / "devices").exists()
    code, out = _run(*base, "--db", tmp_path / "u.db", "--option", "cv_threshold=0.5",
                     "--option", "max_attempts=1")  # fmt: skip
    assert code == 0, out
    assert json.loads(out)["noise_gate"] is None and not (_cache / "devices").exists()
