"""`nasctl search` end to end on a replay device (real NB201 latencies, real accuracies)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nasctl.cli.main import app

runner = CliRunner()
BASE = [
    "search",
    "--device",
    "replay:nb201/eyeriss",
    "--space",
    "nb201",
    "--accuracy",
    "nb201:cifar10",
    "--generations",
    "4",
    "--population",
    "12",
    "--validate-every",
    "2",
    "--seed",
    "3",
]


@pytest.fixture(autouse=True)
def _data_dir(shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NASCTL_DATA_DIR", str(shared_data))


def test_search_with_predictor_writes_outputs_and_json(tmp_path: Path) -> None:
    out = tmp_path / "run"
    r = runner.invoke(
        app,
        [
            *BASE,
            "--use-predictor",
            "--latency-budget",
            "4.8",
            "--device-budget",
            "14",
            "--out",
            str(out),
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert set(doc["best"]) >= {"genotype", "accuracy", "latency_ms", "measured_latency_ms"}
    assert doc["best"]["measured_latency_ms"] <= 4.8
    assert 0 < doc["device_measurements"] <= 14
    assert doc["predictor_queries"] > doc["device_measurements"]
    for name in ("frontier.csv", "frontier.json", "frontier.png", "measurements.jsonl"):
        assert (out / name).stat().st_size > 0
    lines = (out / "measurements.jsonl").read_text().splitlines()
    assert len(lines) == doc["device_measurements"]
    rows = json.loads((out / "frontier.json").read_text())["frontier"]
    assert rows and {
        "genotype",
        "accuracy",
        "predicted_ms",
        "low_ms",
        "high_ms",
        "measured_ms",
    } <= set(rows[0])
    # running it again resumes a finished search: nothing new is measured
    r2 = runner.invoke(
        app,
        [
            *BASE,
            "--use-predictor",
            "--latency-budget",
            "4.8",
            "--device-budget",
            "14",
            "--out",
            str(out),
            "--json",
        ],
    )
    assert r2.exit_code == 0, r2.output
    assert json.loads(r2.stdout)["device_measurements"] == doc["device_measurements"]
    assert len((out / "measurements.jsonl").read_text().splitlines()) == len(lines)


def test_search_without_predictor_measures_every_candidate(tmp_path: Path) -> None:
    r = runner.invoke(
        app,
        [
            *BASE,
            "--no-predictor",
            "--latency-budget",
            "4.8",
            "--device-budget",
            "10",
            "--out",
            str(tmp_path),
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["device_measurements"] == 10 and doc["predictor_queries"] == 0


def test_impossible_budget_says_so_and_shows_fastest(tmp_path: Path) -> None:
    r = runner.invoke(
        app,
        [
            *BASE,
            "--use-predictor",
            "--latency-budget",
            "0.001",
            "--device-budget",
            "8",
            "--out",
            str(tmp_path),
            "--json",
        ],
    )
    assert r.exit_code == 0
    doc = json.loads(r.stdout)
    assert doc["best"] is None and doc["fastest_measured"]["measured_latency_ms"] > 0.001
    assert "no measured architecture meets the latency budget" in r.stderr


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--accuracy", "oracle:x"], "unknown accuracy estimator"),
        (["--device", "quantum"], "unknown device"),
        (["--latency-budget", "-3"], "--latency-budget must be > 0"),
        (["--space", "nope"], "unknown search space"),
        # library errors name keywords (population, validate_every); the CLI names the flags
        (["--population", "1"], "--population must be >= 2; got 1"),
        (["--validate-every", "0"], "--generations must be >= 0 and --validate-every >= 1"),
        (["--bootstrap-model", "svm"], "--bootstrap-model must be one of"),
    ],
)
def test_bad_input_is_one_line_exit_1(tmp_path: Path, extra: list[str], message: str) -> None:
    r = runner.invoke(app, [*BASE, "--device-budget", "5", "--out", str(tmp_path), *extra])
    assert r.exit_code == 1
    assert message in r.stderr and "Traceback" not in r.output
    assert len(r.stderr.strip().splitlines()) == 1
