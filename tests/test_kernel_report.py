"""Training with single kernels: the per-kernel model answers single kernels and graphs outside
the training ranges; the report scores whole graphs per space and kernels apart (issue 16)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nasctl.arch.costs import graph_costs
from nasctl.arch.graph import Graph, GraphBuilder
from nasctl.predictor.inference import Predictor
from nasctl.predictor.kernel_units import unit_rows
from nasctl.predictor.training import train
from nasctl.spaces import get_space


@dataclass
class Row:
    graph: Graph
    latency_ms: float
    space: str
    genotype: str | None
    single_layer: bool = False
    precision: str = "fp32"
    layers: list[Any] = field(default_factory=list)


def _ms(g: Graph) -> float:
    """A made-up device: 2 GMAC/s, 4 GB/s, 5 us per node."""
    t = graph_costs(g).total
    nbytes = t["act_read_bytes"] + t["act_write_bytes"] + t["weight_bytes"]
    return t["macs"] / 2e6 + nbytes / 4e6 + 0.005 * len(g.nodes)


def _rows() -> list[Row]:
    rng = random.Random(0)
    out = []
    for name, n, single in (("kernels", 160, True), ("resnet", 70, False)):
        sp = get_space(name)
        for geno in {sp.sample(rng) for _ in range(n)}:
            g = sp.to_graph(geno)
            out.append(Row(g, _ms(g), name, geno, single))
    return out


def _vgg_like() -> Graph:
    """Unlike every training graph: plain 3x3 convs at 224 px and a large FC head."""
    b = GraphBuilder("vgg-like", (1, 3, 224, 224))
    x = b.input
    for i, c in enumerate((64, 128, 256)):
        x = b.act(b.conv(x, c, 3, id=f"c{i}"), "relu", id=f"r{i}")
        x = b.pool(x, "max", 2, stride=2, pads=[0, 0, 0, 0], id=f"p{i}")
    x = b.flatten(x, id="flat")
    return b.build([b.linear(b.act(b.linear(x, 1024, id="fc1"), "relu", id="r9"), 10, id="fc2")])


@pytest.fixture(scope="module")
def trained() -> tuple[Predictor, dict[str, Any]]:
    return train(_rows(), "cpu-test", seed=0, gnn_steps=10)


def test_report_scores_whole_graphs_and_kernels_apart(trained: Any) -> None:
    pred, metrics = trained
    parts = {p["part"]: p for p in metrics["parts"]}
    assert set(parts) == {"whole graphs: resnet", "single kernels"}
    assert parts["single kernels"]["answered_by"] == "per-kernel model"
    assert parts["whole graphs: resnet"]["answered_by"].startswith("ensemble")
    for p in parts.values():
        assert p["n"] > 0 and p["coverage"] is not None and p["mape"] is not None
    assert metrics["ensemble"]["n"] == parts["whole graphs: resnet"]["n"]  # main table: graphs
    assert pred.kernels is not None and pred.kernels.meta["q_unit"] > 0


def test_graph_outside_the_ranges_is_answered_by_the_kernel_model(
    trained: Any, tmp_path: Path
) -> None:
    pred, _ = trained
    g = _vgg_like()
    [p] = pred.predict([g])
    expected = float(pred.kernels.predict_ms([unit_rows(g)])[0])
    assert p.latency_ms == pytest.approx(expected, rel=1e-6)
    assert p.low_ms < p.latency_ms < p.high_ms
    assert p.latency_ms == pytest.approx(_ms(g), rel=0.5)  # the made-up device, roughly
    again = Predictor.load(pred.save(tmp_path / "pred"))
    assert again.predict([g])[0].latency_ms == pytest.approx(p.latency_ms, rel=1e-9)
    assert np.isfinite(again.predict([g])[0].high_ms)
