"""Out-of-distribution check of the predictor: graphs unlike the training set are answered from
the device roofline (plus a per-node overhead) with its calibrated interval."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from predictor_helpers import device_ms

from nasctl.predictor import api, ood
from nasctl.predictor.features import featurize
from nasctl.spaces import get_space


def test_ranges_count_features_outside() -> None:
    G = np.array([[0.0, 1.0, 5.0], [2.0, 3.0, 5.0]])
    r = ood.fit_ranges(G)
    inside = np.array([[1.0, 2.0, 5.0], [2.05, 0.95, 5.0]])  # within the 5 % margin
    outside = np.array([[3.0, 2.0, 5.0], [-1.0, 9.0, 6.0]])
    assert ood.n_outside(inside, r).tolist() == [0, 0]
    assert ood.n_outside(outside, r).tolist() == [1, 3]
    assert ood.n_outside(np.zeros((2, 4)), r).tolist() == [0, 0]  # other schema: no verdict


@pytest.fixture(scope="module")
def nb201_trained() -> tuple[api.Predictor, list[api.Example], np.ndarray]:
    """A predictor fit on 80 NB201 cells (+30 validation) of the made-up device; 20 test cells."""
    sp, rng, pyrng = get_space("nb201"), np.random.default_rng(0), random.Random(0)
    ex, y = [], []
    for geno in dict.fromkeys(sp.sample(pyrng) for _ in range(130)):
        f = featurize(sp.to_graph(geno), keep_raw=True)
        layers, total = device_ms(f, rng)
        ex.append(api.Example(f, "nb201", geno, layers))
        y.append(total)
    y_arr = np.array(y)
    pred = api.fit(ex[:80], y_arr[:80], ex[80:110], y_arr[80:110], device_id="synth", gnn_steps=20)
    return pred, ex[110:], y_arr[110:]


@pytest.mark.slow
def test_unseen_family_answered_from_roofline(nb201_trained, tmp_path: Path) -> None:
    pred, test_ex, _ = nb201_trained
    check = pred.meta["ood"]
    assert check is not None and check["q"] > 0 and check["ms_per_node"] >= 0
    # in distribution: NB201 cells are (almost all) inside and keep the learned answer
    logs = pred.member_logs(test_ex)
    assert np.mean(logs["ood_w"] == 0) >= 0.8
    # an unseen family: a ResNet-18-like network, far larger than any NB201 cell
    g = get_space("resnet").to_graph("r224-basic|64x2|128x2|256x2|512x2")
    f = featurize(g, keep_raw=True)
    _, truth = device_ms(f, np.random.default_rng(1))
    ex = api.examples_from_graphs([g])
    logs = pred.member_logs(ex)
    assert logs["ood_w"][0] == 1.0
    assert np.isclose(logs["ensemble"][0], ood.roofline_log(ex, check, pred.layerwise)[0])
    (p,) = pred.predict([g])
    assert abs(p.latency_ms / truth - 1) < 0.35
    assert p.low_ms < p.latency_ms < p.high_ms
    assert np.isclose(np.log(p.high_ms / p.latency_ms), check["q"])
    pred.save(tmp_path / "p")
    assert api.Predictor.load(tmp_path / "p").predict([g]) == [p]
