"""The replay device: answers from recorded tables in shared/data."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import pytest
from conftest import SHARED_DATA

from nasctl.errors import DeviceError
from nasctl.profiler import MeasurementRequest, get_device

DATA = SHARED_DATA
needs_data = pytest.mark.skipif(
    not (DATA / "nb201" / "latency_ms.csv").is_file(),
    reason="shared/data not beside the repository",
)


def _rows(table: str, n: int) -> list[dict[str, str]]:
    with open(DATA / table / "latency_ms.csv", newline="") as f:
        reader = csv.DictReader(f)
        return [next(reader) for _ in range(n)]


def _req(genotype: str | None, device: str = "replay:nb201/titan_rtx_1") -> MeasurementRequest:
    return MeasurementRequest(arch_hash="h", device=device, genotype=genotype)


@needs_data
def test_replay_answers_from_the_table() -> None:
    dev = get_device("replay:nb201/titan_rtx_1", data_dir=str(DATA))
    assert dev.device_id == "replay-nb201-titan_rtx_1"
    for row in _rows("nb201", 3):
        m = dev.measure(_req(row["arch"]))
        assert m.status == "ok"
        assert m.median_ms == pytest.approx(float(row["titan_rtx_1"]))
        assert m.device_id == "replay-nb201-titan_rtx_1" and m.runs == 1
    fb = _rows("fbnet", 1)[0]
    m = get_device("replay:fbnet/raspi4", data_dir=str(DATA)).measure(
        _req(fb["arch"], "replay:fbnet/raspi4")
    )
    assert m.median_ms == pytest.approx(float(fb["raspi4"]))


@needs_data
def test_replay_genotype_from_graph_meta_and_unknown_genotype() -> None:
    dev = get_device("replay:nb201/raspi4", data_dir=str(DATA))
    row = _rows("nb201", 1)[0]
    graph_json = json.dumps({"meta": {"genotype": row["arch"]}, "nodes": []})
    m = dev.measure(MeasurementRequest(arch_hash="h", device="x", graph_json=graph_json))
    assert m.median_ms == pytest.approx(float(row["raspi4"]))
    m = dev.measure(_req("|not_an_op~0|+|"))
    assert m.status == "failed" and "not in table nb201" in m.error
    assert dev.measure(_req(None)).status == "failed"


@needs_data
def test_replay_bad_names() -> None:
    with pytest.raises(DeviceError, match="columns: .*titan_rtx_1"):
        get_device("replay:nb201/titan_rtx_2", data_dir=str(DATA))
    with pytest.raises(DeviceError, match="tables in .*nb201"):
        get_device("replay:nope/x", data_dir=str(DATA))
    with pytest.raises(DeviceError, match="replay:<table>/<column>"):
        get_device("replay:nb201", data_dir=str(DATA))


@needs_data
@pytest.mark.slow
def test_replay_is_fast() -> None:
    rows = [r["arch"] for r in _rows("nb201", 2000)]
    dev = get_device("replay:nb201/gold_6226", data_dir=str(DATA))
    dev.measure(_req(rows[0]))  # table loaded once
    t0 = time.perf_counter()
    ms = [dev.measure(_req(g)).median_ms for g in rows]
    assert time.perf_counter() - t0 < 1.0
    assert all(x is not None and x > 0 for x in ms)


def test_replay_any_csv_and_missing_cells(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "latency_ms.csv").write_text("arch,dev_a,dev_b\nA-B,1.5,\nC-D,2.5,3\n")
    dev = get_device("replay:mine/dev_b", data_dir=str(tmp_path))
    assert dev.measure(_req("C-D", "replay:mine/dev_b")).median_ms == 3.0
    m = dev.measure(_req("A-B", "replay:mine/dev_b"))
    assert m.status == "failed" and "no dev_b value" in m.error
