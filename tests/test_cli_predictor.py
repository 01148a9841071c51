"""`nasctl train-predictor` / `nasctl predict` end to end on a small store, and bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from conftest import SHARED_DATA
from typer.testing import CliRunner

from nasctl.cli.main import app

DATA = SHARED_DATA / "nb201" / "latency_ms.csv"
DEVICE = "replay-nb201-fpga"
runner = CliRunner()
pytestmark = pytest.mark.slow  # every test shares a trained predictor (~10 s)


def _store(path: Path, n: int) -> list[str]:
    """A store with ``n`` NB201 cells measured on one (replayed) device; returns genotypes."""
    from nasctl.datasets.store import Store
    from nasctl.records import Measurement
    from nasctl.spaces import get_space

    with open(DATA, newline="") as f:
        rows = list(csv.DictReader(f))[:n]
    sp = get_space("nb201")
    with Store(path) as st:
        for r in rows:
            h = st.add_architecture(sp.to_graph(r["arch"]))
            st.add_measurement(
                Measurement(
                    arch_hash=h,
                    device_id=DEVICE,
                    precision="fp32",
                    batch=1,
                    status="ok",
                    median_ms=float(r["fpga"]),
                )
            )
    return [r["arch"] for r in rows]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[str]]:
    if not DATA.exists():
        pytest.skip(f"{DATA} not present")
    d = tmp_path_factory.mktemp("cli")
    genos = _store(d / "m.db", 80)
    out = d / "pred"
    res = runner.invoke(
        app,
        [
            "train-predictor",
            "--db",
            str(d / "m.db"),
            "--device",
            "replay:nb201/fpga",
            "--out",
            str(out),
            "--seed",
            "1",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    return d, out, genos


def test_train_writes_artifact_and_metrics(trained) -> None:
    _, out, _ = trained
    m = json.loads((out / "metrics.json").read_text())
    for name in ("gnn", "gbdt", "ensemble"):
        assert {"mape", "rmspe", "acc5", "acc10", "spearman", "kendall", "coverage", "n"} <= set(
            m[name]
        )
        assert m[name]["n"] == m["split"]["test"] == 12
    assert m["device_id"] == DEVICE and m["ensemble"]["mape"] < 10
    assert {"meta.json", "manifest.json", "gbdt.txt", "gnn.pt"} <= {p.name for p in out.iterdir()}


def test_predict_genotypes_json(trained, tmp_path: Path) -> None:
    _, out, genos = trained
    f = tmp_path / "g.txt"
    f.write_text("\n".join(genos[:5]) + "\n")
    res = runner.invoke(
        app,
        [
            "predict",
            "--predictor",
            str(out),
            "--space",
            "nb201",
            "--genotypes-file",
            str(f),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert [r["genotype"] for r in rows] == genos[:5]
    assert all(0 < r["low_ms"] <= r["latency_ms"] <= r["high_ms"] for r in rows)


def test_predict_onnx_and_bad_onnx(trained, tmp_path: Path) -> None:
    from nasctl.arch.onnx_io import save_onnx
    from nasctl.spaces import get_space

    _, out, genos = trained
    p = save_onnx(get_space("nb201").to_graph(genos[0]), tmp_path / "a.onnx")
    res = runner.invoke(app, ["predict", "--predictor", str(out), str(p), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)[0]["model"] == "a.onnx"
    bad = tmp_path / "bad.onnx"
    bad.write_text("not onnx")
    res = runner.invoke(app, ["predict", "--predictor", str(out), str(bad)])
    assert res.exit_code == 1 and "error:" in res.output and "Traceback" not in res.output


def test_predict_refuses_other_device_and_tampering(trained, tmp_path: Path) -> None:
    import shutil

    _, out, genos = trained
    f = tmp_path / "g.txt"
    f.write_text(genos[0] + "\n")
    args = ["predict", "--predictor", str(out), "--space", "nb201", "--genotypes-file", str(f)]
    res = runner.invoke(app, [*args, "--device", "cpu-ort-fp32-t1"])
    assert res.exit_code == 1 and f"trained for device '{DEVICE}'" in res.output
    bad = tmp_path / "p2"
    shutil.copytree(out, bad)
    (bad / "gbdt.txt").write_text((bad / "gbdt.txt").read_text() + "\n")
    res = runner.invoke(app, ["predict", "--predictor", str(bad), *args[3:]])
    assert res.exit_code == 1 and "SHA-256" in res.output


def test_train_bad_input(trained, tmp_path: Path) -> None:
    d, _, _ = trained
    res = runner.invoke(
        app,
        [
            "train-predictor",
            "--db",
            str(d / "m.db"),
            "--device",
            "t4",
            "--out",
            str(tmp_path / "x"),
        ],
    )
    assert res.exit_code == 1 and DEVICE in res.output  # lists the stored ids
    _store(tmp_path / "few.db", 12)
    res = runner.invoke(
        app,
        [
            "train-predictor",
            "--db",
            str(tmp_path / "few.db"),
            "--device",
            DEVICE,
            "--out",
            str(tmp_path / "x"),
        ],
    )
    assert res.exit_code == 1 and "at least 20" in res.output
    from nasctl.datasets.store import Store

    Store(tmp_path / "empty.db").close()
    res = runner.invoke(
        app,
        [
            "train-predictor",
            "--db",
            str(tmp_path / "empty.db"),
            "--device",
            "cpu",
            "--out",
            str(tmp_path / "x"),
        ],
    )
    assert res.exit_code == 1 and "no measurements" in res.output
    assert "Traceback" not in res.output


def test_predict_onnx_reports_memory_with_its_interval(trained, tmp_path: Path) -> None:
    import random
    import shutil

    from nasctl.arch.onnx_io import save_onnx
    from nasctl.predictor.memory import MemoryModel, analytic_mb
    from nasctl.spaces import get_space

    _, out, genos = trained
    pred = tmp_path / "pred"
    shutil.copytree(out, pred)
    sp = get_space("nb201")
    rng = random.Random(0)
    graphs = [sp.to_graph(sp.sample(rng)) for _ in range(30)]
    model, _ = MemoryModel.fit(graphs, [30 + 0.5 * analytic_mb(g) for g in graphs], seed=0)
    model.save(pred)
    p = save_onnx(sp.to_graph(genos[0]), tmp_path / "a.onnx")
    res = runner.invoke(app, ["predict", "--predictor", str(pred), str(p), str(p), "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert len(rows) == 2 and rows[0]["memory_mb"] == rows[1]["memory_mb"]
    r = rows[0]
    assert 0 < r["memory_low_mb"] <= r["memory_mb"] <= r["memory_high_mb"]
    res = runner.invoke(app, ["predict", "--predictor", str(out), str(p), "--json"])
    assert "memory_mb" not in json.loads(res.stdout)[0]  # no memory model: no memory field


def test_train_on_several_stores_counts_each_architecture_once(trained, tmp_path: Path) -> None:
    """`--db` repeated: rows of every store, an architecture in two stores once; stores of two
    different devices are refused with one line."""
    d, _, _ = trained
    _store(tmp_path / "few.db", 12)  # the same first 12 cells as m.db's 80
    out = tmp_path / "two"
    args = ["train-predictor", "--db", tmp_path / "few.db", "--db", d / "m.db", "--device",
            DEVICE, "--out", out, "--seed", "1", "--json"]  # fmt: skip
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    m = json.loads((out / "metrics.json").read_text())
    assert m["dbs"] == [str(tmp_path / "few.db"), str(d / "m.db")]
    assert m["split"]["train"] + m["split"]["val"] + m["split"]["test"] == 80
    from nasctl.datasets.store import Store
    from nasctl.records import Measurement

    with Store(tmp_path / "other.db") as st, Store(d / "m.db", readonly=True) as src:
        row = src.training_rows(DEVICE)[0]
        h = st.add_architecture(row.graph)
        st.add_measurement(
            Measurement(
                arch_hash=h,
                device_id="replay-nb201-titan_rtx_1",
                precision="fp32",
                batch=1,
                status="ok",
                median_ms=1.0,
            )  # fmt: skip
        )
    args = ["train-predictor", "--db", d / "m.db", "--db", tmp_path / "other.db", "--device",
            "replay-nb201", "--out", tmp_path / "x"]  # fmt: skip
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == 1 and "different devices" in res.output, res.output
    assert "Traceback" not in res.output
