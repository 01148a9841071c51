"""Issue 18 item 3: models with external data (the > 2 GB case) are measured from their folder,
by the agent and through ``nasctl profile``, with the path checks intact: a location that leaves
the model's folder (``..``, absolute, a symlink out) or a missing data file is a failed record,
never a read outside the folder."""

from __future__ import annotations

import os
from pathlib import Path

import nasctl_agent
import onnx
import pytest
from agent_helpers import conv_model, save
from typer.testing import CliRunner

pytest.importorskip("onnxruntime")
FAST = {"warmup": 1, "repeats": 3, "min_time_s": 0.0, "max_attempts": 1}


def _relocate(model: Path, location: str) -> Path:
    """Rewrite every external-data location of ``model`` to ``location`` (what a hostile or
    broken model file would say)."""
    m = onnx.load(str(model), load_external_data=False)
    for t in m.graph.initializer:
        for kv in t.external_data:
            if kv.key == "location":
                kv.value = location
    onnx.save(m, str(model))
    return model


@pytest.fixture
def big(tmp_path: Path) -> Path:
    path = save(conv_model(batch=1), tmp_path / "big" / "model.onnx", external=True)
    assert (path.parent / "model.data").stat().st_size > 1000
    assert path.stat().st_size < 1000  # the weights live outside the .onnx
    return path


def test_agent_measures_external_data_from_the_folder(big: Path) -> None:
    r = nasctl_agent.measure(big, {"device": "cpu", "timing": FAST})
    assert r.status in ("ok", "noisy"), r.error
    assert r.layers and r.engine_graph
    r = nasctl_agent.measure(big.parent, {"device": "cpu", "timing": FAST, "per_layer": False})
    assert r.status != "failed", r.error


def test_bytes_with_external_data_files(big: Path) -> None:
    data = {"model.data": (big.parent / "model.data").read_bytes()}
    r = nasctl_agent.measure(big.read_bytes(), {"device": "cpu", "timing": FAST}, data)
    assert r.status != "failed", r.error
    r = nasctl_agent.measure(big.read_bytes(), {"device": "cpu", "timing": FAST}, {"../x": b"1"})
    assert r.status == "failed" and "leaves the model's folder" in r.error


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("../outside.data", "leaves the model's folder"),
        ("/etc/passwd", "not a relative path"),
        ("missing.data", "is missing"),
        ("link.data", "resolves outside the model's folder"),
    ],
)
def test_external_data_outside_the_folder_is_refused(
    big: Path, tmp_path: Path, location: str, message: str
) -> None:
    secret = tmp_path / "outside.data"
    secret.write_bytes((big.parent / "model.data").read_bytes())
    os.symlink(secret, big.parent / "link.data")
    _relocate(big, location)
    r = nasctl_agent.measure(big, {"device": "cpu", "timing": FAST})
    assert r.status == "failed" and message in r.error, r.error


def test_nasctl_profile_cpu_measures_an_external_data_model(big: Path, tmp_path: Path) -> None:
    from nasctl.cli.main import app
    from nasctl.profiler import MeasurementRequest, get_device

    m = get_device("cpu").measure(
        MeasurementRequest(arch_hash="h", device="cpu", onnx_path=str(big), options=dict(FAST))
    )
    assert m.status in ("ok", "noisy"), m.error
    assert {"/conv", "/act"} <= {n for la in m.layers for n in la.nodes}
    db = tmp_path / "x.db"
    res = CliRunner().invoke(
        app,
        [
            "profile",
            "--device",
            "cpu",
            "--onnx",
            str(big),
            "--db",
            str(db),
            "--option",
            "min_time_s=0",
            "--option",
            "repeats=3",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    import sqlite3

    rows = sqlite3.connect(db).execute("SELECT status FROM measurements").fetchall()
    assert rows and rows[0][0] in ("ok", "noisy")
    _relocate(big, "../outside.data")
    m = get_device("cpu").measure(
        MeasurementRequest(arch_hash="h", device="cpu", onnx_path=str(big), options=dict(FAST))
    )
    assert m.status == "failed" and "leaves the model's folder" in m.error
