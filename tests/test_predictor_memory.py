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
