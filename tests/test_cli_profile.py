"""`nasctl profile` and `nasctl devices`: real ONNX Runtime runs into a real store; bad input."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper
from typer.testing import CliRunner

from nasctl.arch.graph import GraphBuilder
from nasctl.cli.main import app
from nasctl.datasets.store import Store

runner = CliRunner()
#: A short timing protocol: these tests check the plumbing, not the numbers.
FAST = [
    "--option",
    "min_time_s=0.02",
    "--option",
    "warmup_s=0.01",
    "--option",
    "repeats=5",
    "--option",
    "max_attempts=1",
]


def _run(*args: object) -> tuple[int, str]:
    res = runner.invoke(app, [str(a) for a in args])
    return res.exit_code, res.output


def _ok_onnx(path: Path) -> Path:
    from nasctl.arch.onnx_io import save_onnx

    b = GraphBuilder("tiny", (1, 3, 16, 16))
    x = b.act(b.conv(b.input, 8, 3, id="/c"), "relu", id="/r")
    return save_onnx(b.build([x]), path)


def _unrunnable_onnx(path: Path) -> Path:
    """Valid ONNX that ONNX Runtime cannot run (an op of an unknown domain)."""
    nodes = [
        helper.make_node("Relu", ["input"], ["y"], name="r"),
        helper.make_node("FancyOp", ["y"], ["z"], name="f", domain="com.example"),
    ]
    g = helper.make_graph(
        nodes,
        "norun",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 3, 8, 8])],
    )
    onnx.save(
        helper.make_model(
            g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)]
        ),
        path,
    )
    return path


def test_onnx_models_failed_one_is_recorded_and_run_goes_on(tmp_path: Path) -> None:
    db = tmp_path / "o.db"
    files = [_unrunnable_onnx(tmp_path / "norun.onnx"), _ok_onnx(tmp_path / "tiny.onnx")]
    args = ["profile", "--device", "cpu", "--db", db, "--json", *FAST]
    for f in files:
        args += ["--onnx", f]
    code, out = _run(*args)
    assert code == 0, out
    res = json.loads(out)
    assert (res["measured"], res["failed"], res["ok"] + res["noisy"]) == (2, 1, 1)
    assert res["failures"][0]["arch"] == "norun.onnx"
    assert "FancyOp" in res["failures"][0]["error"]
    # rerun: the ok one is skipped, the failed one retried (and fails again), no duplicates
    res2 = json.loads(_run(*args)[1])
    assert (res2["skipped"], res2["measured"], res2["failed"]) == (1, 1, 1)
    code, out = _run(
        "dataset", "export", "--db", db, "--format", "csv", "--out", tmp_path / "x.csv"
    )
    with (tmp_path / "x.csv").open(newline="") as f:
        rows = {r["model"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"norun.onnx", "tiny.onnx"}
    assert rows["norun.onnx"]["status"] == "failed" and "FancyOp" in rows["norun.onnx"]["error"]
    assert float(rows["tiny.onnx"]["median_ms"]) > 0
    with Store(db, readonly=True) as s:
        (row,) = s.training_rows("cpu")
        assert row.model == "tiny.onnx" and row.layers
        ids = {n.id for n in row.graph.nodes}
        assert all(set(lt.nodes) <= ids for lt in row.layers)


def test_mbconv_resume_and_training_rows(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    base = [
        "profile",
        "--device",
        "cpu",
        "--space",
        "mbconv",
        "--seed",
        "7",
        "--db",
        db,
        "--json",
        *FAST,
    ]
    code, out = _run(*base, "--num", "2")
    assert code == 0, out
    assert json.loads(out)["measured"] == 2
    res = json.loads(_run(*base, "--num", "3")[1])
    assert (res["skipped"], res["measured"], res["requested"]) == (2, 1, 3)
    with Store(db, readonly=True) as s:
        rows = s.training_rows("cpu")
        assert len(rows) == 3 and all(r.space == "mbconv" and r.latency_ms > 0 for r in rows)
        assert rows[0].graph.meta["genotype"] == rows[0].genotype
        ids = {n.id for n in rows[0].graph.nodes}
        assert rows[0].layers and all(set(lt.nodes) <= ids for lt in rows[0].layers)


def test_kernels_single_layers(tmp_path: Path) -> None:
    db = tmp_path / "k.db"
    code, out = _run("profile", "--device", "cpu", "--kernels", "3", "--db", db, "--json", *FAST)
    assert code == 0, out
    assert json.loads(out)["measured"] == 3
    with Store(db, readonly=True) as s:
        rows = s.training_rows("cpu", space="kernels")
    assert len(rows) == 3
    ops = {
        "dconv": "conv",
        "gap": "globalavgpool",
        "se": "mul",
        "act": r"\w+",
        "shuffle": "transpose",
    }
    for r in rows:
        kind = r.genotype.split("-")[0]
        assert re.fullmatch(ops.get(kind, kind), r.graph.node("/layer").op)
        assert r.latency_ms > 0 and len(r.graph.nodes) <= (6 if kind == "se" else 3)


def test_kernels_space_contract() -> None:
    import random

    from nasctl.errors import SpaceError
    from nasctl.spaces.kernels import MAX_MACS, KernelsSpace, _macs

    space = KernelsSpace()
    a = [space.sample(random.Random(5)) for _ in range(2)]
    assert a[0] == a[1]
    rng = random.Random(1)
    for g in (space.sample(rng) for _ in range(40)):
        assert space.validate(g) == g
        graph = space.to_graph(g)
        assert graph.meta == {"space": "kernels", "genotype": g} and _macs(graph) <= MAX_MACS
        assert space.validate(space.mutate(g, rng))
    g = space.to_graph("gconv-i64-o128-g4-k3-s2-h28-swish")
    assert g.node("/layer").attrs["groups"] == 4 and g.node("/layer").out_shape == (1, 128, 14, 14)
    assert g.node("/act").op == "swish"
    for bad in (
        "conv-i32-k3",
        "gconv-i30-o64-g4-k3-s1-h8",
        "maxpool-i8-k3-s1-h8-relu",
        "conv-i32-o64-k3-s1-h9999",
        "softmax-i3",
    ):
        with pytest.raises(SpaceError):
            space.parse(bad)


def test_replay_device_answers_from_the_table(tmp_path: Path, shared_data: Path) -> None:
    from nasctl.datasets.importers import replay_device_id

    db = tmp_path / "r.db"
    code, out = _run(
        "profile",
        "--device",
        "replay:nb201/titan_rtx_1",
        "--space",
        "nb201",
        "--num",
        "5",
        "--db",
        db,
        "--data-dir",
        shared_data,
        "--json",
    )
    assert code == 0, out
    assert json.loads(out)["device_id"] == replay_device_id("nb201", "titan_rtx_1")
    with (shared_data / "nb201" / "latency_ms.csv").open(newline="") as f:
        table = {r["arch"]: float(r["titan_rtx_1"]) for r in csv.DictReader(f)}
    with Store(db, readonly=True) as s:
        rows = s.training_rows("replay:nb201/titan_rtx_1")
    assert len(rows) == 5 and all(r.latency_ms == table[r.genotype] for r in rows)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--space", "mbconv", "--num", "0"], "--num must be >= 1; got 0"),
        (["--space", "mbconv", "--num", "-3"], "--num must be >= 1; got -3"),
        (["--space", "mbconv"], "--space needs --num"),
        ([], "nothing to measure"),
        (["--space", "nosuchspace", "--num", "2"], "unknown search space 'nosuchspace'"),
        (["--space", "nb201", "--num", "20000"], "only 15625 architectures"),
        (["--device", "tpu", "--space", "mbconv", "--num", "2"], "unknown device 'tpu'"),
        (["--space", "mbconv", "--num", "2", "--option", "repeats"], "KEY=VALUE"),
        (["--space", "mbconv", "--num", "2", "--precision", "fp16"], "precisions fp32, int8"),
    ],
)
def test_bad_input_exits_1_and_creates_nothing(
    tmp_path: Path, args: list[str], message: str
) -> None:
    db = tmp_path / "never.db"
    full = ["profile", "--db", db, *args]
    if "--device" not in args:
        full += ["--device", "cpu"]
    code, out = _run(*full)
    assert code == 1 and message in out, out
    assert "Traceback" not in out and len(out.strip().splitlines()) == 1
    assert not db.exists()


def test_corrupt_onnx_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage, not a protobuf" * 3)
    db = tmp_path / "o.db"
    code, out = _run(
        "profile",
        "--device",
        "cpu",
        "--onnx",
        _ok_onnx(tmp_path / "ok.onnx"),
        "--onnx",
        bad,
        "--db",
        db,
    )
    assert code == 1 and "bad.onnx" in out and not db.exists()
    code, out = _run("profile", "--device", "cpu", "--onnx", tmp_path / "missing.onnx", "--db", db)
    assert code == 1 and "missing.onnx" in out


def test_xavier_elsewhere_says_how_to_measure_there(tmp_path: Path) -> None:
    from nasctl.profiler import get_device

    if get_device("xavier").available()[0]:
        pytest.skip("TensorRT is available here")
    code, out = _run(
        "profile",
        "--device",
        "xavier",
        "--space",
        "mbconv",
        "--num",
        "2",
        "--db",
        tmp_path / "x.db",
    )
    assert code == 1 and "Jetson" in out and "nasctl-agent measure" in out and "--fleet" in out
    assert len(out.strip().splitlines()) == 1 and not (tmp_path / "x.db").exists()


def test_devices_lists_cpu_usable_with_its_id() -> None:
    code, out = _run("devices", "--json")
    assert code == 0, out
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["cpu"]["usable"] is True and rows["cpu"]["device_id"].startswith("cpu-ort")
    assert {"t4", "xavier"} <= set(rows)
    assert all(r["reason"] for r in rows.values())
    code, out = _run("devices")
    assert code == 0 and "cpu" in out and "usable" in out


def test_onnx_files_as_arguments_like_predict(tmp_path: Path) -> None:
    """`nasctl profile --device cpu --db DB a.onnx b.onnx`: positional files (a shell glob), real
    ONNX Runtime runs; --onnx adds to them; the same files again are skipped as stored."""
    from nasctl.arch.onnx_io import save_onnx

    b = GraphBuilder("wider", (1, 3, 16, 16))
    wider = b.build([b.act(b.conv(b.input, 16, 3, id="/c"), "relu", id="/r")])
    a, c = _ok_onnx(tmp_path / "a.onnx"), save_onnx(wider, tmp_path / "b.onnx")
    db = tmp_path / "pos.db"
    code, out = _run("profile", "--device", "cpu", "--db", db, *FAST, a, c, "--json")
    assert code == 0, out
    res = json.loads(out)
    assert res["measured"] == 2 and res["ok"] + res["noisy"] == 2 and res["failed"] == 0
    with Store(db, readonly=True) as store:
        rows = {r.model: r for r in store.training_rows("cpu")}
    assert set(rows) == {"a.onnx", "b.onnx"} and all(r.latency_ms > 0 for r in rows.values())
    code, out = _run("profile", "--device", "cpu", "--db", db, *FAST, a, "--onnx", c, "--json")
    assert code == 0 and json.loads(out)["skipped"] == 2, out
    code, out = _run("profile", "--device", "cpu", "--db", db, a, "--space", "mbconv", "--num", 1)
    assert code == 1 and "not both" in out


def test_devices_names_the_trtexec_flag() -> None:
    """The profiler says ``trtexec=PATH`` (a keyword); `nasctl devices` says ``--trtexec PATH``."""
    code, out = _run("devices")
    assert code == 0 and "trtexec=" not in out
    if "TensorRT Python module not found" in out:
        assert "--trtexec PATH" in out
