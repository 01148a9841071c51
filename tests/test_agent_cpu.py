"""nasctl-agent on the cpu device: the API, the JSON wire format, failures as failed results,
requests the device cannot serve, and the console script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")

import nasctl_agent  # noqa: E402
from agent_helpers import conv_model, save  # noqa: E402
from nasctl_agent import PROTOCOL_VERSION, Request, RequestError, Result  # noqa: E402

FAST = {"warmup": 2, "repeats": 5, "min_time_s": 0.0, "max_attempts": 1}


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save(conv_model(batch="N"), tmp_path_factory.mktemp("agent") / "conv.onnx")


def test_measure_returns_json_with_engine_layer_names(model: Path) -> None:
    r = nasctl_agent.measure(model, {"device": "cpu", "batch": 2, "timing": FAST})
    d = json.loads(json.dumps(r.to_dict()))  # JSON-serialisable as is
    assert d["protocol"] == PROTOCOL_VERSION and d["status"] in ("ok", "noisy")
    assert d["device_id"].startswith("cpu-ort") and d["device_id"].endswith("-fp32-t1")
    t = d["timing"]
    assert 0 < t["median_ms"] <= t["p90_ms"] and t["runs"] >= 5
    names = [la["name"] for la in d["layers"]]
    assert names and all(la["time_ms"] >= 0 for la in d["layers"])
    graph = d["engine_graph"]
    assert graph["format"] == "ort-optimized-nodes"
    assert set(names) <= {n["name"] for n in graph["data"]}  # names as ORT's optimized graph
    assert d["memory"]["peak_rss_bytes"] > 0
    assert d["fingerprint"]["threads"] == 1 and "onnxruntime" in d["fingerprint"]["libs"]
    assert Result.from_dict(d).timing == t


def test_bytes_and_path_give_the_same_device_id(model: Path) -> None:
    req = {"device": "cpu", "per_layer": False, "timing": FAST}
    a = nasctl_agent.measure(model.read_bytes(), req)
    b = nasctl_agent.measure(str(model), req)
    assert a.device_id == b.device_id and a.status != "failed" and b.layers == []


def test_failed_models_are_failed_results(tmp_path: Path, model: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage that is not a model")
    r = nasctl_agent.measure(bad, {"device": "cpu", "timing": FAST})
    assert r.status == "failed" and r.error and r.timing is None
    fixed = save(conv_model(batch=1), tmp_path / "fixed.onnx")
    r = nasctl_agent.measure(fixed, {"device": "cpu", "batch": 4, "timing": FAST})
    assert r.status == "failed" and "fixed batch of 1" in r.error and r.batch == 4
    r = nasctl_agent.measure(tmp_path / "missing.onnx", {"device": "cpu"})
    assert r.status == "failed" and "does not exist" in r.error


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ({"device": "cpu", "precision": "fp16"}, "measures precisions fp32"),
        ({"device": "tpu"}, "unknown device"),
        ({"device": "cpu", "batch": 0}, "batch must be"),
        ({"device": "cpu", "options": {"thread": 2}}, "unknown option"),
        ({"device": "cpu", "timing": {"repeats": 0}}, "repeats must be"),
        ({"device": "cpu", "protocol": 99}, "protocol 99"),
        ({"device": "cpu", "colour": "red"}, "unknown request field"),
    ],
)
def test_requests_the_device_cannot_serve_raise(model: Path, request_: dict, message: str) -> None:
    with pytest.raises(RequestError, match=message):
        nasctl_agent.measure(model, request_)


def test_request_round_trips() -> None:
    req = Request(device="cpu", batch=3, shapes={"x": [3, 3, 8, 8]}, timing=FAST)
    assert Request.from_dict(json.loads(json.dumps(req.to_dict()))) == req


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nasctl_agent", *args], capture_output=True, text=True, timeout=120
    )


def test_cli_measure_and_info(model: Path, tmp_path: Path) -> None:
    r = _cli(
        "measure",
        str(model),
        "--batch",
        "2",
        "--repeats",
        "5",
        "--min-time-s",
        "0",
        "--warmup",
        "1",
        "--json",
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["batch"] == 2 and out["timing"]["runs"] >= 5
    r = _cli("measure", str(model), "--precision", "fp16")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"nope")
    r = _cli("measure", str(bad), "--json")
    assert r.returncode == 1 and json.loads(r.stdout)["status"] == "failed"
    r = _cli("info", "--json")
    assert r.returncode == 0
    info = json.loads(r.stdout)
    cpu = next(d for d in info["devices"] if d["name"] == "cpu")
    assert cpu["available"] and cpu["device_id_fp32"].startswith("cpu-ort")
    assert info["protocol"] == PROTOCOL_VERSION and "python" in info["fingerprint"]
