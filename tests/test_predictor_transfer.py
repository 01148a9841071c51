"""Few-shot transfer (issue 13): a made-up device that is a known function of two others is
recovered from 10 rows on architectures no source measured; only the new device's rows in the
store are read; bad input is one line and exit code 1."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from scipy.stats import spearmanr
from typer.testing import CliRunner

from nasctl.cli.main import app
from nasctl.predictor import transfer
from nasctl.spaces import get_space

runner = CliRunner()
OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NEW = "made-up-new"


def _genotypes(n: int, seed: int = 0) -> list[str]:
    sp, rng, out = get_space("nb201"), random.Random(seed), {}
    while len(out) < n:
        out[sp.sample(rng)] = None
    return list(out)


def _onehot(g: str) -> np.ndarray:
    v = np.zeros(30)
    for i, t in enumerate(re.findall(r"([a-z_0-9x]+)~\d", g)):
        v[5 * i + OPS.index(t)] = 1.0
    return v


def _devices() -> dict[str, np.ndarray]:
    """Per-(edge, op) costs (ms) of two made-up source devices."""
    rng = np.random.default_rng(3)
    return {"src-a": rng.uniform(0.1, 2.0, 30), "src-b": rng.uniform(0.1, 2.0, 30)}


def _ms(dev: str, g: str) -> float:
    costs = _devices()
    if dev == NEW:  # a known function of the sources
        a, b = _ms("src-a", g), _ms("src-b", g)
        return float(np.exp(0.2 + 0.7 * np.log(a) + 0.3 * np.log(b)))
    return float(0.5 + _onehot(g) @ costs[dev])


def _rows(dev: str, genos: list[str]) -> list[SimpleNamespace]:
    return [
        SimpleNamespace(
            arch_hash=g, latency_ms=_ms(dev, g), space="nb201", genotype=g, precision="fp32"
        )
        for g in genos
    ]


GENOS = _genotypes(560)
SRC, TGT, TEST = GENOS[:300], GENOS[300:310], GENOS[360:560]  # disjoint sets


@pytest.fixture(scope="module")
def sources() -> transfer.Sources:
    shared = transfer.shared_sources({d: _rows(d, SRC) for d in _devices()}, {"nb201"}, NEW)
    return transfer.fit_sources(shared, seed=0)


def test_recovers_a_device_that_is_a_function_of_the_sources(sources) -> None:  # noqa: ANN001
    """10 rows of the new device, on architectures no source measured; tested on 200 others."""
    pred, report = transfer.fit_transfer(_rows(NEW, TGT), device_id=NEW, sources=sources)
    sp = get_space("nb201")
    got = pred.predict_genotypes("nb201", TEST, sp.to_graph, arrays=sp.graph_arrays)
    y = np.array([_ms(NEW, g) for g in TEST])
    p = np.array([q.latency_ms for q in got])
    assert spearmanr(p, y).statistic > 0.95
    assert np.median(np.abs(np.log(p / y))) < 0.06
    lo, hi = np.array([q.low_ms for q in got]), np.array([q.high_ms for q in got])
    assert np.mean((lo <= y) & (y <= hi)) >= 0.8  # the 90 % interval roughly holds
    assert report["weights"]["src-a"] > report["weights"]["src-b"] > 0  # 0.7 vs 0.3


def test_latent_model_alone_recovers_the_device(sources) -> None:  # noqa: ANN001
    """The latent half of the ensemble (MLP + device embedding fit from the 10 rows), on its
    own, orders the 200 unseen architectures of the made-up device; the ensemble is a weighted
    mean of it and the ridge head."""
    from nasctl.predictor.transfer_latent import latent_log

    pred, _ = transfer.fit_transfer(_rows(NEW, TGT), device_id=NEW, sources=sources)
    test = _rows(NEW, TEST)
    X = sources.design(transfer.row_features(test), test)
    y = np.log([r.latency_ms for r in test])
    lat = latent_log(sources.latent, pred.meta["latent"]["fit"], X)
    assert spearmanr(lat, y).statistic > 0.9
    assert np.median(np.abs(lat - y)) < 0.15
    both = pred.log_ms(X)
    w = pred.meta["latent"]["w_ridge"]  # the ridge head's weight, chosen by leave-one-out
    assert w in (0.25, 0.5, 0.75)
    assert np.allclose(both, w * pred.head_log(sources.logs_of(X)) + (1 - w) * lat)
    # without the latent model the transfer is the ridge head alone
    plain = transfer.Sources(**{**sources.__dict__, "latent": None})
    ridge, _ = transfer.fit_transfer(_rows(NEW, TGT), device_id=NEW, sources=plain)
    assert ridge.meta["latent"] is None
    assert np.allclose(ridge.log_ms(X), ridge.head_log(sources.logs_of(X)))


def test_a_row_the_sources_cannot_explain_does_not_pull_the_latent_fit(
    sources,
    monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
) -> None:
    """One of the 10 rows runs 1000x faster than the sources say (a cell whose output is cut
    off, ~0.01 ms on some devices): the latent half's Huber fit still orders the unseen
    architectures; a plain least-squares fit (the Huber threshold made infinite) does worse."""
    from nasctl.predictor import transfer_latent as tl

    rows = _rows(NEW, TGT)
    rows[0].latency_ms /= 1000.0
    X_t = sources.design(transfer.row_features(rows), rows)
    y_t = np.log([r.latency_ms for r in rows])
    test = _rows(NEW, TEST)
    X = sources.design(transfer.row_features(test), test)
    y = np.log([r.latency_ms for r in test])

    def rho() -> float:
        fit = tl.fit_embedding(sources.latent, X_t, y_t)
        return float(spearmanr(tl.latent_log(sources.latent, fit, X), y).statistic)

    robust = rho()
    monkeypatch.setattr(tl, "HUBER", float("inf"))
    assert robust > 0.85 and robust > rho() + 0.02


def test_intervals_widen_where_the_two_halves_disagree(sources) -> None:  # noqa: ANN001
    """Log half-width = calibrated q + half the ridge/latent disagreement, per architecture."""
    from nasctl.predictor.transfer_latent import latent_log

    pred, _ = transfer.fit_transfer(_rows(NEW, TGT), device_id=NEW, sources=sources)
    test = _rows(NEW, TEST)
    X = sources.design(transfer.row_features(test), test)
    logs, half = pred.log_ms_half(X)
    gap = np.abs(
        pred.head_log(sources.logs_of(X))
        - latent_log(sources.latent, pred.meta["latent"]["fit"], X)
    )
    assert np.allclose(half, pred.meta["q"] + 0.5 * gap)
    assert np.ptp(half) > 0 and half.min() >= pred.meta["q"]
    sp = get_space("nb201")
    got = pred.predict_genotypes("nb201", TEST, sp.to_graph, arrays=sp.graph_arrays)
    assert np.allclose(np.log([g.high_ms / g.latency_ms for g in got]), half, atol=1e-6)


def test_informative_picks_spread_over_the_sources(sources) -> None:  # noqa: ANN001
    """D-optimal picks span the sources' latency range wider than a random draw does."""
    cands = _rows(NEW, GENOS[310:560])
    S = sources.logs(transfer.row_features(cands), cands)
    picks = transfer.informative(S, 10)
    assert len(set(picks)) == 10
    spread = np.ptp(S[picks].mean(1))
    rnd = np.mean(
        [np.ptp(S[random.Random(s).sample(range(len(S)), 10)].mean(1)) for s in range(20)]
    )
    assert spread > rnd


# -- through the store and the CLI ---------------------------------------------------------------
def _store(path: Path, devices: dict[str, list[str]], space: str = "nb201") -> None:
    from nasctl.datasets.store import Store
    from nasctl.records import Measurement

    sp = get_space(space)
    with Store(path) as st:
        for dev, genos in devices.items():
            for g in genos:
                h = st.add_architecture(sp.to_graph(g))
                ms = _ms(dev if dev in (*_devices(), NEW) else "src-a", g)
                st.add_measurement(Measurement(h, dev, "fp32", 1, "ok", median_ms=ms))


def _train(db: Path, out: Path, *extra: str) -> tuple[int, str]:
    res = runner.invoke(
        app,
        [
            "train-predictor",
            "--db",
            str(db),
            "--device",
            NEW,
            "--transfer",
            "--out",
            str(out),
            "--json",
            *extra,
        ],
    )
    return res.exit_code, res.output


@pytest.mark.slow
def test_cli_reads_only_the_new_devices_rows(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """Same store, same answer, whatever else exists about the new device (another store with
    more of its rows; no public tables reachable)."""
    monkeypatch.setenv("NASCTL_DATA_DIR", str(tmp_path / "nothing-here"))
    db = tmp_path / "a.db"
    _store(db, {"src-a": SRC[:150], "src-b": SRC[:150], NEW: TGT})
    code, out = _train(db, tmp_path / "p1")
    assert code == 0, out
    _store(tmp_path / "unused.db", {NEW: GENOS[310:400]})  # more NEW rows, elsewhere
    code, out = _train(db, tmp_path / "p2")
    assert code == 0, out
    m1 = json.loads((tmp_path / "p1" / "meta.json").read_text())
    m2 = json.loads((tmp_path / "p2" / "meta.json").read_text())
    assert m1["head"] == m2["head"] and m1["q"] == m2["q"] and m1["n_target"] == 10
    assert m1["latent"]["emb"] == m2["latent"]["emb"] and m1["latent"]["fit"]["e"]
    # float32 Adam steps: equal up to rounding (torch's CPU kernels may sum in another order
    # from run to run, ~1e-7 relative per step, which 200 steps amplify)
    f1, f2 = m1["latent"]["fit"], m2["latent"]["fit"]
    v1, v2 = f1["e"] + [f1["a"], f1["b"]], f2["e"] + [f2["a"], f2["b"]]
    assert np.allclose(v1, v2, rtol=1e-4, atol=1e-5)
    genos = tmp_path / "g.txt"
    genos.write_text("\n".join(TEST[:20]) + "\n")
    res = runner.invoke(
        app,
        [
            "predict",
            "--predictor",
            str(tmp_path / "p1"),
            "--space",
            "nb201",
            "--genotypes-file",
            str(genos),
            "--device",
            NEW,
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "latency_ms" in res.output


def test_cli_bad_input_is_one_line(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    _store(db, {"src-a": SRC[:40], NEW: TGT[:5]})
    # a new device with no rows: says how many are needed
    res = runner.invoke(
        app,
        [
            "train-predictor",
            "--db",
            str(db),
            "--device",
            "other-new",
            "--transfer",
            "--out",
            str(tmp_path / "x"),
        ],
    )
    assert res.exit_code == 1 and "at least 3" in res.output
    assert len(res.output.strip().splitlines()) == 1 and "Traceback" not in res.output
    # a --from device not in the store
    code, out = _train(db, tmp_path / "y", "--from", "src-a,no-such-device")
    assert code == 1 and "no-such-device" in out and len(out.strip().splitlines()) == 1
    # sources that share no search space with the new device
    db2 = tmp_path / "c.db"
    _store(db2, {NEW: TGT[:5]})
    mb = get_space("mbconv")
    rng = random.Random(0)
    _store_other(db2, "src-a", [mb.sample(rng) for _ in range(30)])
    code, out = _train(db2, tmp_path / "z")
    assert code == 1 and "search space" in out and len(out.strip().splitlines()) == 1


def _store_other(path: Path, dev: str, genos: list[str]) -> None:
    from nasctl.datasets.store import Store
    from nasctl.records import Measurement

    sp = get_space("mbconv")
    with Store(path) as st:
        for i, g in enumerate(genos):
            h = st.add_architecture(sp.to_graph(g))
            st.add_measurement(Measurement(h, dev, "fp32", 1, "ok", median_ms=1.0 + i))


@pytest.mark.slow
def test_search_starts_from_informative_picks_and_a_transfer(
    tmp_path: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new device in a store with other devices: the bootstrap measures the informative
    picks (within --device-budget) and the latency model's prior is the transferred predictor."""
    from nasctl.datasets.store import Store
    from nasctl.datasets.transfer_data import informative_genotypes
    from nasctl.profiler import get_device
    from nasctl.search.loop import SearchConfig, SearchLoop
    from nasctl.search.objectives import Constraints

    monkeypatch.setenv("NASCTL_DATA_DIR", str(shared_data))
    db = tmp_path / "s.db"
    _store(db, {"src-a": SRC[:120], "src-b": SRC[:120]})
    dev = get_device("replay:nb201/fpga")
    with Store(db) as st:
        picks = informative_genotypes(st, get_space("nb201"), 5, device_id=dev.device_id, seed=1)
    cfg = SearchConfig(
        space="nb201",
        device="replay:nb201/fpga",
        accuracy="nb201:cifar10",
        out=tmp_path / "o",
        constraints=Constraints(latency_budget_ms=3.5),
        device_budget=12,
        generations=2,
        population=12,
        seed=1,
        validate_every=1,
        bootstrap=5,
        db=str(db),
    )
    loop = SearchLoop(cfg, device=dev)
    res = loop.run()
    log = [json.loads(x) for x in (tmp_path / "o" / "measurements.jsonl").read_text().splitlines()]
    assert [r["genotype"] for r in log if r["phase"] == "bootstrap"] == picks
    assert res.device_measurements <= 12
    assert type(loop.model.prior.predictor).__name__ == "TransferPredictor"
    assert all(r["predicted_ms"] is not None for r in log if r["phase"] != "bootstrap")
