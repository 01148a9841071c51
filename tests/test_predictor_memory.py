"""Measured memory as a second target: LightGBM with a conformal interval, saved as text."""

from __future__ import annotations

import random

import pytest

from nasctl.errors import PredictorError
from nasctl.predictor.memory import MemoryModel, analytic_mb
from nasctl.spaces import get_space


def test_memory_model_learns_a_known_relation(tmp_path) -> None:
    space = get_space("mbconv")
    rng = random.Random(0)
    graphs = [space.to_graph(space.sample(rng)) for _ in range(60)]
    # a stand-in for measured memory with a known law: 20 MB runtime + 0.6 x the bound, +-3 %
    noise = random.Random(1)
    y = [(20 + 0.6 * analytic_mb(g)) * (1 + noise.uniform(-0.03, 0.03)) for g in graphs]
    model, m = MemoryModel.fit(graphs[:50], y[:50], seed=0)
    assert m["rows"] == 50 and m["mape"] < 15
    model.save(tmp_path)
    back = MemoryModel.load(tmp_path)
    preds = back.predict(graphs[50:])
    errs = [abs(p - t) / t for (p, _, _), t in zip(preds, y[50:], strict=True)]
    assert sum(errs) / len(errs) < 0.15
    assert all(lo <= p <= hi for p, lo, hi in preds)


def test_too_few_rows_and_missing_model(tmp_path) -> None:
    space = get_space("mbconv")
    g = space.to_graph(space.sample(random.Random(0)))
    with pytest.raises(PredictorError, match="at least 20 rows"):
        MemoryModel.fit([g] * 5, [10.0] * 5)
    with pytest.raises(PredictorError, match="no memory model"):
        MemoryModel.load(tmp_path)


def _net(bn: bool):
    """conv -> [bn] -> relu -> conv -> [bn] -> add -> flatten -> linear; with ``bn`` False the
    convs carry a bias instead (the batch norms folded, as torch's exporter writes them)."""
    from nasctl.arch.graph import GraphBuilder

    b = GraphBuilder("net", (1, 16, 32, 32))
    x = b.conv(b.input, 64, 3, pads=[1, 1, 1, 1], id="/c1", bias=not bn)
    x = b.batchnorm(x, id="/bn1") if bn else x
    x = b.act(x, "relu", id="/r1")
    y = b.conv(x, 64, 3, pads=[1, 1, 1, 1], id="/c2", bias=not bn)
    y = b.batchnorm(y, id="/bn2") if bn else y
    z = b.add([x, y], id="/add")
    return b.build([b.linear(b.flatten(z, id="/f"), 10, id="/fc")])


def test_batch_norms_are_counted_folded() -> None:
    from nasctl.predictor.memory import memory_terms

    with_bn, folded = memory_terms(_net(True)), memory_terms(_net(False))
    w1, w2 = 64 * 16 * 9 * 4 / 1e6, 64 * 64 * 9 * 4 / 1e6
    # the folded batch norms write no activation and hold no weights of their own
    assert with_bn["activations"] == pytest.approx(folded["activations"])
    assert with_bn["live_peak"] == pytest.approx(folded["live_peak"])
    assert with_bn["linear_weights"] == pytest.approx(64 * 32 * 32 * 10 * 4 / 1e6, rel=1e-3)
    # the convs' weights (folded: their bias too) and, with batch norms, the folded ones again
    assert with_bn["conv_weights"] == pytest.approx(w1 + w2)
    assert folded["conv_weights"] == pytest.approx(w1 + w2 + 2 * 64 * 4 / 1e6)
    assert with_bn["folded_conv_weights"] == pytest.approx(w1 + w2)
    assert folded["folded_conv_weights"] == 0
    # live at once at most: the add's inputs x and y and its output z
    assert folded["live_peak"] == pytest.approx(4 * 32 * 32 * 3 * 64 / 1e6)


def _family_rows(n: int, seed: int):
    space = get_space("mbconv")
    rng = random.Random(seed)
    return [space.to_graph(space.sample(rng)) for _ in range(n)]


def test_interval_is_calibrated_on_families_left_out() -> None:
    from nasctl.predictor.memory import memory_terms

    def law(g, scale: float) -> float:
        t = memory_terms(g)
        return scale * (
            8 + 2.9 * t["conv_weights"] + 2 * t["linear_weights"] + 1.5 * t["live_peak"]
        )

    graphs = _family_rows(60, 0)
    # three families whose memory differs by a family factor the terms do not show
    scales = [0.8, 1.0, 1.25]
    fam = [f"f{i % 3}" for i in range(60)]
    y = [law(g, scales[i % 3]) for i, g in enumerate(graphs)]
    _, by_family = MemoryModel.fit(graphs, y, seed=0, groups=fam)
    _, split = MemoryModel.fit(graphs, y, seed=0)
    assert "families left out: 3" in by_family["split"]["interval"]
    assert "val" in split["split"] and "interval" not in split["split"]
    # a family left out is off by its factor: the interval must stretch that far
    assert by_family["interval_factor"] >= 1.2
    # rows of no family (None) are cross-validated in folds, and a single family is not enough
    _, loose = MemoryModel.fit(graphs, y, seed=0, groups=[None] * 30 + ["f0"] * 30)
    assert "val" in loose["split"]
    with pytest.raises(PredictorError, match="families for"):
        MemoryModel.fit(graphs, y, groups=["f0"] * 3)


def test_families_of_rows() -> None:
    from types import SimpleNamespace

    from nasctl.predictor.memory import families

    rows = [
        SimpleNamespace(space="mbconv", single_layer=False),
        SimpleNamespace(space="kernels", single_layer=True),
        SimpleNamespace(space=None, single_layer=False),
    ]
    assert families(rows) == ["mbconv", None, None]


def test_a_model_of_other_terms_is_refused(tmp_path) -> None:
    import json

    graphs = _family_rows(30, 2)
    model, _ = MemoryModel.fit(graphs, [10 + analytic_mb(g) for g in graphs], seed=0)
    d = model.save(tmp_path)
    meta = json.loads((d / "memory.json").read_text())
    meta["base_terms"] = ["const", "conv_weights", "linear_weights"]
    (d / "memory.json").write_text(json.dumps(meta))
    with pytest.raises(PredictorError, match="train the predictor again"):
        MemoryModel.load(tmp_path)
