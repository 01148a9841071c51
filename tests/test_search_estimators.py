"""Accuracy estimators, the latency model and constraints: real tables, real torch, real GP."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from nasctl.errors import SearchError
from nasctl.search.accuracy import get_estimator
from nasctl.search.latency.models import SurrogateLatencyModel
from nasctl.search.loop import SearchConfig, run_search
from nasctl.search.objectives import Constraints
from nasctl.spaces import get_space

CONVS = (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|"
    "nor_conv_3x3~2|"
)
SKIPS = "|skip_connect~0|+|skip_connect~0|none~1|+|skip_connect~0|none~1|none~2|"


@pytest.fixture(autouse=True)
def _data_dir(shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NASCTL_DATA_DIR", str(shared_data))


def test_nb201_table_estimator_reads_the_real_table() -> None:
    space = get_space("nb201")
    est = get_estimator("nb201:cifar10")
    first = (
        "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|"
        "skip_connect~2|"
    )  # nb201_index 0
    assert est.estimate(first, None, space) == pytest.approx(85.8633)
    with pytest.raises(SearchError, match="unknown nb201 dataset"):
        get_estimator("nb201:mnist")
    with pytest.raises(SearchError, match="nb201 space only"):
        est.check_space(get_space("mbconv"))


def test_synflow_prefers_a_conv_cell_to_a_skip_cell() -> None:
    space = get_space("nb201")
    est = get_estimator("proxy:synflow")
    conv = est.estimate(CONVS, space.to_graph(CONVS), space)
    skip = est.estimate(SKIPS, space.to_graph(SKIPS), space)
    assert conv > skip
    assert est.estimate(CONVS, space.to_graph(CONVS), space) == conv  # deterministic


def test_python_estimator_loading_errors() -> None:
    with pytest.raises(SearchError, match="package.module:function"):
        get_estimator("python:nomodule")
    with pytest.raises(SearchError, match="cannot load"):
        get_estimator("python:nasctl.nothing_here:f")


def test_surrogate_beats_the_mean_on_real_latencies(shared_data: Path) -> None:
    import csv

    with (shared_data / "nb201" / "latency_ms.csv").open() as f:
        lat = {r["arch"]: float(r["fpga"]) for r in csv.DictReader(f)}
    space = get_space("nb201")
    cells = sorted(lat)
    rng = random.Random(0)
    train = rng.sample(cells, 40)
    test = [g for g in rng.sample(cells, 400) if g not in train]
    model = SurrogateLatencyModel(space, confidence=0.9)
    model.update({g: lat[g] for g in train})
    mean, low, high = model.predict(test)
    y = np.array([lat[g] for g in test])
    mape = np.mean(np.abs(mean - y) / y)
    base = np.mean(np.abs(np.mean([lat[g] for g in train]) - y) / y)
    assert mape < 0.5 * base
    assert np.mean((low <= y) & (y <= high)) > 0.75  # roughly its stated 90% coverage


def _search_fpga(
    out: Path, constraints: Constraints, budget: int, generations: int, population: int, boot: int
):
    """A seeded NB201 search on the replayed FPGA column with the table's CIFAR-10 accuracy."""
    cfg = SearchConfig(
        space="nb201",
        device="replay:nb201/fpga",
        accuracy="nb201:cifar10",
        out=out,
        constraints=constraints,
        device_budget=budget,
        generations=generations,
        population=population,
        seed=0,
        bootstrap=boot,
        validate_every=1,
    )
    return run_search(cfg)


def test_max_params_constraint_is_respected(tmp_path: Path) -> None:
    res = _search_fpga(tmp_path, Constraints(max_params=400_000), 10, 2, 10, 5)
    assert res.best is not None and res.best.params is not None
    assert res.best.params <= 400_000


def test_min_accuracy_finds_the_fastest_qualifying_net(tmp_path: Path) -> None:
    res = _search_fpga(tmp_path, Constraints(min_accuracy=93.0), 14, 3, 12, 6)
    qualifying = [
        c for c in res.candidates if c.measured_ms is not None and (c.accuracy or 0) >= 93.0
    ]
    assert res.best is not None and res.best.accuracy >= 93.0
    assert res.best.measured_ms == min(c.measured_ms for c in qualifying)


def test_reference_models_for_t4_and_xavier_plots() -> None:
    from nasctl.search.report import _references

    t4 = _references("t4")
    assert any(name == "resnet50" and ms == pytest.approx(1.03) for name, _, ms in t4)
    assert len(_references("xavier")) >= 8 and _references("cpu") == []
