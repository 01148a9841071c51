"""Precision written into the model (issue #15): FP16 and Q/DQ INT8 ONNX from ONNX Runtime's
tools, the INT8 model run by ONNX Runtime against FP32, and `nasctl profile --precision int8`
on the cpu device storing real int8 rows whose kernels map to graph nodes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from typer.testing import CliRunner

from nasctl.arch.graph import Graph, GraphBuilder
from nasctl.arch.onnx_io import to_onnx
from nasctl.arch.precision import needs_reduce_range, to_fp16, to_int8, with_precision
from nasctl.cli.main import app
from nasctl.datasets.store import Store
from nasctl.errors import GraphError

#: INT8 vs FP32 tolerance on the small net, calibrated on the inputs' distribution: the largest
#: output difference is at most 8 % of the largest FP32 output, the correlation >= 0.99.
INT8_MAX_REL = 0.08
FP16_MAX_REL = 0.01


def small_net() -> Graph:
    b = GraphBuilder("small", (1, 3, 16, 16))
    x = b.act(b.batchnorm(b.conv(b.input, 16, 3, id="/c1"), id="/bn1"), "relu", id="/r1")
    y = b.act(b.conv(x, 16, 3, id="/c2"), "relu", id="/r2")
    y = b.conv(y, 16, 3, groups=16, id="/dw")
    x = b.add([x, y], id="/add")
    x = b.flatten(b.global_pool(x, id="/gap"), id="/flat")
    return b.build([b.linear(x, 10, id="/fc")])


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]  # type: ignore[no-any-return]


def _calib(folder: Path, n: int = 4, seed: int = 1) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        np.save(folder / f"b{i}.npy", rng.standard_normal((2, 3, 16, 16)).astype(np.float32))
    return folder


def test_int8_qdq_runs_in_ort_and_matches_fp32(tmp_path: Path) -> None:
    fp32 = to_onnx(small_net())
    q, calib = to_int8(fp32, _calib(tmp_path / "calib"))
    ops = {n.op_type for n in q.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert calib.source == "npy" and calib.batches == 8 and len(calib.files) == 4
    # symmetric: every zero point is 0; per-channel: the conv weights' scales are vectors
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in q.graph.initializer}
    zps = [v for k, v in inits.items() if k.endswith("_zero_point")]
    assert zps and all(np.all(z == 0) for z in zps)  # biases' int32 zero points too
    assert {z.dtype for z in zps} <= {np.dtype(np.int8), np.dtype(np.int32)}
    assert inits["/c2.weight_scale"].shape == (16,)
    names = {n.name for n in q.graph.node}
    assert {"/c2", "/dw", "/fc"} <= names  # original node names survive
    assert not calib.reduce_range  # TensorRT's form: full-range weights
    # ORT's cpu form (uint8 activations, 7-bit weights where the host lacks VNNI) runs here and
    # matches FP32; the symmetric model is TensorRT's and matches only where ORT's kernels do
    # not saturate (a VNNI host), so it is checked there
    u, ucalib = to_int8(fp32, _calib(tmp_path / "calib"), activations="uint8")
    assert ucalib.reduce_range == needs_reduce_range()
    x = np.random.default_rng(2).standard_normal((1, 3, 16, 16)).astype(np.float32)
    a = _run(fp32, x)
    for model in (u, q) if not needs_reduce_range() else (u,):
        b = _run(model, x)
        assert np.abs(a - b).max() <= INT8_MAX_REL * np.abs(a).max()
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] >= 0.99
        assert not np.array_equal(a, b)  # really quantized


def test_reduce_range_follows_the_host_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import platform

    from nasctl.arch import precision

    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    assert precision.needs_reduce_range() is False
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    flags = {"vnni": "flags : fpu avx2 avx512f avx512_vnni", "avx2": "flags : fpu avx2 fma"}
    for name, want in (("vnni", False), ("avx2", True)):
        monkeypatch.setattr(precision.Path, "read_text", lambda self, t=flags[name]: t)
        assert precision.needs_reduce_range() is want
    cal = precision.Calibration(source="random", batches=1, reduce_range=True)
    assert "7-bit" in cal.to_dict()["weights"]


def test_fp16_and_random_calibration_is_stated() -> None:
    fp32 = to_onnx(small_net())
    h = to_fp16(fp32)
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in h.graph.initializer)
    x = np.random.default_rng(3).standard_normal((1, 3, 16, 16)).astype(np.float32)
    a, b = _run(fp32, x), _run(h, x)
    assert np.abs(a - b).max() <= FP16_MAX_REL * np.abs(a).max()
    _, calib = with_precision(fp32, "int8")
    assert calib is not None and calib.source == "random"
    assert "random" in calib.to_dict()["note"]


def test_bad_calibration_data_is_one_line(tmp_path: Path) -> None:
    fp32 = to_onnx(small_net())
    bad = tmp_path / "bad"
    bad.mkdir()
    np.save(bad / "x.npy", np.zeros((2, 3, 8, 8), np.float32))
    with pytest.raises(GraphError, match=r"shape \(2, 3, 8, 8\).*\(1, 3, 16, 16\)"):
        to_int8(fp32, bad)
    with pytest.raises(GraphError, match="no .npy"):
        to_int8(fp32, tmp_path)
    with pytest.raises(GraphError, match="precision must be one of"):
        with_precision(fp32, "int4")


FAST = ["--option", "min_time_s=0.02", "--option", "repeats=5", "--option", "max_attempts=1"]


@pytest.mark.slow
def test_profile_int8_stores_int8_rows_mapped_to_nodes(tmp_path: Path) -> None:
    runner = CliRunner()
    db = tmp_path / "m.db"
    calib = _calib(tmp_path / "calib")
    from nasctl.arch.onnx_io import save_onnx

    model = save_onnx(small_net(), tmp_path / "small.onnx")
    args = ["profile", "--device", "cpu", "--db", str(db), "--json", *FAST]
    res = runner.invoke(app, [*args, "--precision", "int8", "--calib-data", str(calib), str(model)])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["device_id"].startswith("cpu-ort") and out["device_id"].endswith("-int8-t1")
    assert out["measured"] == 1 and out["failed"] == 0
    res = runner.invoke(
        app,
        [
            "profile",
            "--device",
            "cpu",
            "--db",
            str(db),
            "--precision",
            "int8",
            "--space",
            "resnet",
            "--num",
            "1",
            "--json",
            *FAST,
        ],
    )
    assert res.exit_code == 0, res.output
    with Store(db, readonly=True) as s:
        rows = s.training_rows(out["device_id"])
        assert len(rows) == 2 and all(r.precision == "int8" for r in rows)
        space_row = next(r for r in rows if r.space == "resnet")
        ids = {n.id for n in space_row.graph.nodes}
        ops = {lt.extra.get("op") for lt in space_row.layers}
        assert "QLinearConv" in ops  # ORT's int8 kernels ran
        placed = [lt for lt in space_row.layers if lt.nodes]
        # graph nodes, or the Q/DQ of the graph input (no graph node holds that tensor)
        outside = {n for lt in placed for n in lt.nodes} - ids
        assert outside <= {"input_QuantizeLinear", "input_DequantizeLinear"}, outside
        # every kernel but ORT's layout Transposes lands on graph nodes
        assert all(lt.nodes for lt in space_row.layers if lt.extra.get("op") != "Transpose")
        recs = list(s.iter_measurements())
        notes = [json.loads(r["extra_json"]).get("precision_written") for r in recs]
        assert {n["calibration"]["source"] for n in notes} == {"npy", "random"}
    # a bad calibration folder: one line, exit 1
    res = runner.invoke(app, [*args, "--precision", "int8", "--calib-data", str(tmp_path / "no")])
    assert res.exit_code == 1 and len(res.output.strip().splitlines()) == 1


def test_int8_uint8_activations_for_ort_cpu(tmp_path: Path) -> None:
    """The cpu device's form: uint8 asymmetric activations (ORT's U8S8 path), weights still
    int8 symmetric per-channel; same tolerance against FP32."""
    fp32 = to_onnx(small_net())
    q, calib = to_int8(fp32, _calib(tmp_path / "calib"), activations="uint8")
    assert calib.to_dict()["activations"] == "uint8 asymmetric"
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in q.graph.initializer}
    assert inits["/c2.weight_zero_point"].dtype == np.int8
    assert any(v.dtype == np.uint8 for k, v in inits.items() if k.endswith("_zero_point"))
    x = np.random.default_rng(2).standard_normal((1, 3, 16, 16)).astype(np.float32)
    a, b = _run(fp32, x), _run(q, x)
    assert np.abs(a - b).max() <= INT8_MAX_REL * np.abs(a).max()
    with pytest.raises(GraphError, match="activations must be one of"):
        to_int8(fp32, activations="int4")


def test_agent_cpu_measures_only_the_precision_written(tmp_path: Path) -> None:
    """The agent's cpu device times a Q/DQ model as int8 (its own device id) and refuses, as a
    failed result, an FP32 model asked as int8 or a Q/DQ model asked as fp32."""
    import nasctl_agent

    fp32 = to_onnx(small_net())
    q, _ = to_int8(fp32, activations="uint8")
    timing = {"warmup": 1, "repeats": 3, "min_time_s": 0.0, "max_attempts": 1}
    req = {"device": "cpu", "precision": "int8", "timing": timing, "per_layer": False}
    ok = nasctl_agent.measure(q.SerializeToString(), req)
    assert ok.status in ("ok", "noisy") and ok.device_id.endswith("-int8-t1")
    bad = nasctl_agent.measure(fp32.SerializeToString(), req)
    assert bad.status == "failed" and "the model is fp32" in (bad.error or "")
    bad = nasctl_agent.measure(q.SerializeToString(), {**req, "precision": "fp32"})
    assert bad.status == "failed" and "the model is int8" in (bad.error or "")


def test_int8_accuracy_of_a_trained_net_on_digits() -> None:
    """FP32 and Q/DQ INT8 accuracy of a trained net, both run by ONNX Runtime, on held-out
    digits: INT8 stays within 5 points here (a trained linear-ish net), and both beat chance."""
    import torch
    from sklearn.datasets import load_digits

    from nasctl.search.accuracy.quantized import int8_accuracy

    d = load_digits()
    x = (d.images[:, None].astype(np.float32) / 8.0 - 1.0).repeat(3, axis=1)
    y = d.target
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(),
        torch.nn.Linear(8 * 64, 10),
    )  # fmt: skip
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    xt, yt = torch.from_numpy(x[:1000]), torch.from_numpy(y[:1000])
    for _ in range(3):
        for i in range(0, 1000, 50):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(xt[i : i + 50]), yt[i : i + 50]).backward()
            opt.step()
    f, q = int8_accuracy(net, x[:256], x[1000:], y[1000:])
    assert f > 80 and q > 80 and abs(f - q) <= 5.0
    with pytest.raises(Exception, match="one shape"):
        int8_accuracy(net, x[:4, :, :4], x[1000:], y[1000:])


def test_arch_export_writes_the_precision(tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["arch", "export", "--space", "resnet", "--seed", "3", "--json"]
    res = runner.invoke(app, [*base, "--precision", "fp16", "--out", str(tmp_path / "h.onnx")])
    assert res.exit_code == 0, res.output
    m = onnx.load(str(tmp_path / "h.onnx"))
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in m.graph.initializer)
    res = runner.invoke(app, [*base, "--precision", "int4", "--out", str(tmp_path / "x.onnx")])
    assert res.exit_code == 1 and "--precision must be one of" in res.output
    assert not (tmp_path / "x.onnx").exists()


def test_train_digits_network_at_int8() -> None:
    """train:digits' own trained network (its boundary: ``train`` -> TrainedNet), scored at FP32
    and as Q/DQ INT8 by ONNX Runtime on its held-out digits: both learn, INT8 within 5 points."""
    from nasctl.search.accuracy.quantized import trained_int8_accuracy
    from nasctl.search.accuracy.training import DigitsEstimator
    from nasctl.spaces import get_space

    est = DigitsEstimator(steps=40, val_size=300)
    space = get_space("nb201")
    trained = est.train(space.sample(__import__("random").Random(0)), space)
    f, q = trained_int8_accuracy(est, trained)
    assert abs(f - trained.accuracy) <= 1.0  # the ONNX scores what the torch net scored
    assert f > 50 and abs(f - q) <= 5.0
