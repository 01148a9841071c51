"""Additive cost model (the base of the whole-graph learners) and its use in the predictor."""

from __future__ import annotations

import hashlib
import json
import random

import numpy as np
import pytest

from nasctl.errors import PredictorError
from nasctl.predictor import inference, training
from nasctl.predictor.cost_base import AdditiveModel
from nasctl.predictor.features import featurize
from nasctl.spaces import get_space


@pytest.fixture(scope="module")
def mbconv_feats() -> list:
    """Features of 60 random mbconv graphs (various kernels, strides, activations, SE)."""
    sp, rng = get_space("mbconv"), random.Random(3)
    return [featurize(sp.to_graph(g)) for g in dict.fromkeys(sp.sample(rng) for _ in range(60))]


def _truth(model: AdditiveModel, feats: list, seed: int = 0) -> np.ndarray:
    """Latencies (ms) that are exactly additive in the model's own columns (random coefficients
    >= 0), so a correct fit reproduces them."""
    A = model.design(feats)
    coef = np.random.default_rng(seed).uniform(0.0, 1.0, A.shape[1]) / np.maximum(A.mean(0), 1e-9)
    return A @ coef / A.shape[1] + 0.05


def test_recovers_an_additive_device(mbconv_feats) -> None:
    probe = AdditiveModel.fit(mbconv_feats, np.ones(len(mbconv_feats)))
    y = _truth(probe, mbconv_feats)
    model = AdditiveModel.fit(mbconv_feats[:45], y[:45], ridge=1e-8)
    rel = np.abs(model.predict_ms(mbconv_feats[45:]) / y[45:] - 1)
    assert rel.max() < 0.02, rel
    assert (model.coef >= 0).all() and len(model.codes) > 5


def test_unseen_bucket_borrows_the_nearest(mbconv_feats) -> None:
    model = AdditiveModel.fit(mbconv_feats, np.linspace(1.0, 3.0, len(mbconv_feats)))
    seen = model.codes
    # a graph with an op/kernel the training never had: every group still gets a bucket
    sp = get_space("resnet")
    f = featurize(sp.to_graph(sp.sample(random.Random(1))))
    A = model.design([f])
    k = len(seen)
    assert A[0, 1 + 2 * k : 1 + 3 * k].sum() == pytest.approx(f.x.shape[0], abs=f.x.shape[0] * 0.2)
    assert model.predict_ms([f])[0] > 0
    assert model._nearest(int(seen[0])) == 0  # a seen code is its own nearest


def test_round_trip_and_tamper(mbconv_feats) -> None:
    model = AdditiveModel.fit(mbconv_feats, np.linspace(1.0, 3.0, len(mbconv_feats)))
    back = AdditiveModel.from_dict(model.to_dict())
    assert np.array_equal(back.predict_ms(mbconv_feats), model.predict_ms(mbconv_feats))
    d = model.to_dict()
    d["coef"] = d["coef"][:-1]
    with pytest.raises(ValueError, match="coefficients"):
        AdditiveModel.from_dict(d)


def test_predictor_learns_the_ratio_to_the_base(mbconv_feats, tmp_path) -> None:
    """fit() stores the base; members add it back; a broken base is a clear PredictorError."""
    probe = AdditiveModel.fit(mbconv_feats, np.ones(len(mbconv_feats)))
    y = _truth(probe, mbconv_feats, seed=1) * np.random.default_rng(2).uniform(
        0.97, 1.03, len(mbconv_feats)
    )
    ex = [inference.Example(f, "other", None) for f in mbconv_feats]
    pred = training.fit(ex[:30], y[:30], ex[30:45], y[30:45], device_id="synth", gnn_steps=10)
    assert pred.base is not None
    logs = pred.member_logs(ex[45:])
    base = inference.base_log(pred, ex[45:])
    X = pred.design(ex[45:])
    assert np.allclose(logs["gbdt"], pred.gbdt.predict_log(X) + base)
    mape = float(np.mean(np.abs(np.exp(logs["ensemble"]) / y[45:] - 1)))
    assert mape < 0.08, mape
    assert abs(sum(pred.meta["weights"].values()) - 1) < 1e-9
    out = pred.save(tmp_path / "p")
    meta = json.loads((out / "meta.json").read_text())
    meta["additive"] = {"codes": [1], "coef": [1.0]}
    (out / "meta.json").write_text(json.dumps(meta))
    manifest = json.loads((out / "manifest.json").read_text())  # a consistent, wrong artifact
    manifest["files"]["meta.json"] = hashlib.sha256((out / "meta.json").read_bytes()).hexdigest()
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(PredictorError, match="additive"):
        inference.Predictor.load(out)


def test_boosting_rounds_follow_the_signal() -> None:
    """Cross-validated rounds: a handful on pure noise (the ridge base alone), many on a
    nonlinear signal."""
    from nasctl.predictor.gbdt import GBDTModel

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 5))
    noise = GBDTModel.fit(X, 0.5 * X[:, 0] + rng.normal(size=200) * 0.3)
    signal = GBDTModel.fit(X, np.sin(3 * X[:, 0]) + X[:, 1] ** 2)
    assert noise.booster.num_trees() < 20 < signal.booster.num_trees()
    assert GBDTModel.fit(X, X[:, 0], rounds=7).booster.num_trees() == 7


def test_ood_blend_starts_after_validation_graphs() -> None:
    """A graph with no more features outside the training ranges than validation graphs had
    keeps the learned answer; beyond that it moves toward the roofline."""
    from types import SimpleNamespace

    from nasctl.predictor import ood

    check = {**ood.fit_ranges(np.array([[0.0] * 6, [1.0] * 6])), "start": 1, "full": 3}
    check["ms_per_node"] = 0.0
    feats = [
        SimpleNamespace(g=np.array([2.0] * k + [0.5] * (6 - k)), costs=np.ones((1, 4)))
        for k in (0, 1, 2, 4, 6)
    ]
    ex = [SimpleNamespace(feats=f) for f in feats]
    lw = SimpleNamespace(roofline_ms=lambda fs: np.full(len(fs), np.e))  # log roofline = 1
    logs = {"ensemble": np.zeros(5)}
    ood.toward_roofline(logs, ex, check, lw)
    assert logs["ood_w"].tolist() == pytest.approx([0, 0, 1 / 3, 1, 1])
    assert logs["ensemble"].tolist() == pytest.approx([0, 0, 1 / 3, 1, 1])


def test_base_is_kept_only_where_it_helps(mbconv_feats) -> None:
    """base_helps compares the GBDT on the log-ratio to the base with a plain GBDT on the
    validation rows: the better one wins (the base is kept within BASE_MARGIN)."""
    from nasctl.predictor.gbdt import GBDTModel

    probe = AdditiveModel.fit(mbconv_feats, np.ones(len(mbconv_feats)))
    y = _truth(probe, mbconv_feats, seed=1)
    ex = [inference.Example(f, "other", None) for f in mbconv_feats]
    pred = training.fit(ex[:30], y[:30], ex[30:], y[30:], device_id="synth", gnn_steps=10)
    assert pred.base is not None  # additive device: the base is kept
    val, y_log = ex[30:], np.log(y[30:])
    X = pred.design(val)
    exact = GBDTModel.fit(X, y_log, rounds=200)  # plain model fit on the validation rows
    noise = np.random.default_rng(0).normal(0.0, 1.0, len(val))
    pred.gbdt = GBDTModel.fit(X, noise, rounds=200)  # a ratio model that is far off
    assert not training.base_helps(pred, exact, val, y_log)
    pred.gbdt = GBDTModel.fit(X, y_log - inference.base_log(pred, val), rounds=200)
    assert training.base_helps(pred, GBDTModel.fit(X, noise, rounds=200), val, y_log)
