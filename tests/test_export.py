"""`nasctl export` (issue #15.4): a search run's winner as ONNX at its precision, a PyTorch module
computing the same outputs, the TensorRT build command for the target's version, and a card."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from typer.testing import CliRunner

from nasctl.cli.main import app
from nasctl.datasets.store import Store

runner = CliRunner()
FLAGS = Path(__file__).parent / "data" / "trtexec_flags"
FAST = ["--option", "min_time_s=0.02", "--option", "repeats=5", "--option", "max_attempts=1"]


def _run(*args: object) -> tuple[int, str]:
    res = runner.invoke(app, [str(a) for a in args])
    return res.exit_code, res.output


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder as `nasctl search --out` leaves it: two architectures really measured on the
    cpu device into its measurements.db, and a frontier.json naming them."""
    run = tmp_path_factory.mktemp("run")
    db = run / "measurements.db"
    code, out = _run(
        "profile",
        "--device",
        "cpu",
        "--space",
        "mbconv",
        "--num",
        "2",
        "--seed",
        "3",
        "--db",
        db,
        "--json",
        *FAST,
    )
    assert code == 0, out
    with Store(db, readonly=True) as s:
        rows = s.training_rows("cpu")
    frontier = [
        {
            "genotype": r.genotype,
            "accuracy": 0.9 - 0.1 * i,
            "predicted_ms": None,
            "measured_ms": r.latency_ms,
            "memory_mb": 3.0,
            "params": None,
        }
        for i, r in enumerate(rows)
    ]
    settings = {
        "space": "mbconv",
        "device": "cpu",
        "accuracy": "proxy:synflow",
        "seed": 0,
        "strategy": "nsga2",
        "population": 4,
        "use_predictor": False,
        "constraints": {"latency_budget_ms": 5.0},
    }
    (run / "frontier.json").write_text(json.dumps({"frontier": frontier, "settings": settings}))
    return run


def _load_model_py(folder: Path) -> torch.nn.Module:
    spec = importlib.util.spec_from_file_location("exported_model", folder / "model.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.build().eval()  # type: ignore[no-any-return]


@pytest.mark.slow
def test_export_fp32_torch_equals_onnx_and_card(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "winner"
    code, text = _run("export", "--run", run_dir, "--rank", "1", "--out", out, "--json")
    assert code == 0, text
    card = json.loads((out / "card.json").read_text())
    front = json.loads((run_dir / "frontier.json").read_text())["frontier"]
    assert card["genotype"] == front[0]["genotype"] and card["rank"] == 1
    assert card["accuracy"] == 0.9 and card["precision"] == "fp32"
    assert card["latency_ms"]["measured"] == front[0]["measured_ms"] > 0
    assert card["device_id"].startswith("cpu-ort") and card["fingerprint"]["cpu_count"] >= 1
    assert card["device_memory"]["peak_rss_bytes"] > 0 and card["memory_mb"] == 3.0
    assert card["params"] > 0 and card["macs"] > 0
    assert card["found_by"].startswith("nasctl search --space mbconv --device cpu")
    assert "--latency-budget 5.0" in card["found_by"]
    assert card["tensorrt"]["build"] == "trtexec --onnx=model.onnx --saveEngine=model.plan"
    readme = (out / "README.md").read_text()
    assert card["genotype"] in readme and "Device fingerprint" in readme
    # the PyTorch module and the ONNX compute the same outputs
    net = _load_model_py(out)
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    x = np.random.default_rng(0).standard_normal(inp.shape).astype(np.float32)
    with torch.no_grad():
        a = net(torch.from_numpy(x)).numpy()
    b = sess.run(None, {inp.name: x})[0]
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(np.abs(b).max()))
    assert not list(tmp_path.glob(".winner.*"))  # no temp folder left


@pytest.mark.slow
@pytest.mark.parametrize(
    ("trt", "flags"), [("8.5", ["--int8", "--fp16"]), ("10.13", ["--stronglyTyped"]), ("11.1", [])]
)
def test_export_int8_trtexec_flags_exist_in_that_version(
    run_dir: Path, tmp_path: Path, trt: str, flags: list[str]
) -> None:
    out = tmp_path / "q"
    code, text = _run(
        "export",
        "--run",
        run_dir,
        "--rank",
        "2",
        "--precision",
        "int8",
        "--trt-version",
        trt,
        "--out",
        out,
        "--json",
    )
    assert code == 0, text
    card = json.loads((out / "card.json").read_text())
    build = card["tensorrt"]["build"].split()
    assert build[0] == "trtexec" and build[2:-1] == flags
    # a cpu run: model.onnx in ORT's fast form (uint8 activations), TensorRT's symmetric one
    assert build[1] == "--onnx=model_tensorrt.onnx" and (out / "model_tensorrt.onnx").is_file()
    assert card["calibration"]["activations"] == "uint8 asymmetric"
    known = {
        ln.split()[0]
        for ln in (FLAGS / f"trtexec-{trt}.txt").read_text().splitlines()
        if ln.startswith("--")
    }
    assert {b.split("=")[0] for b in build[1:]} <= known
    assert card["calibration"]["source"] == "random"
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].name  # the Q/DQ model loads


def test_bad_rank_and_existing_out_are_one_line(run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "x"
    code, text = _run("export", "--run", run_dir, "--rank", "7", "--out", out)
    assert code == 1 and text.strip().splitlines() == [
        "error: --rank must be between 1 and 2: the run's frontier has 2 points"
    ]
    assert not out.exists() and not list(tmp_path.iterdir())
    code, text = _run("export", "--run", tmp_path, "--out", out)
    assert code == 1 and "no frontier.json" in text and len(text.strip().splitlines()) == 1
    out.mkdir()
    code, text = _run("export", "--run", run_dir, "--out", out)
    assert code == 1 and "exists" in text
