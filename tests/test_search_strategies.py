"""Strategies: seeded reproducibility, exact replay for resume, Pareto helpers."""

from __future__ import annotations

import random

import numpy as np
import pytest

from nasctl.errors import SearchError
from nasctl.search.pareto import crowding_distance, front_of, non_dominated_sort, pareto_mask
from nasctl.search.strategies import Told, categorical_encoding, make_strategy
from nasctl.spaces import get_space


def _objectives(g: str) -> tuple[float, float]:
    """A deterministic stand-in objective for strategy mechanics: accuracy grows with convs,
    latency with convs and pools (the shape of NB201's real trade-off)."""
    return float(g.count("conv_3x3") * 2 + g.count("conv_1x1")), float(
        1 + g.count("conv_3x3") * 3 + g.count("conv_1x1") + g.count("pool") * 0.5
    )


def _run(name: str, seed: int, gens: int = 4, start: int = 0, strategy=None):
    s = strategy or make_strategy(name, get_space("nb201"), 12, seed=seed)
    hist = []
    for gen in range(start, gens):
        asked = s.ask(gen)
        told = [Told(g, _objectives(g), max(0.0, _objectives(g)[1] - 8)) for g in asked]
        s.tell(gen, told)
        hist.append((gen, told))
    return s, hist


def _genotypes(hist):
    return [[t.genotype for t in told] for _, told in hist]


@pytest.mark.parametrize("name", ["nsga2", "nsga2-plain", "random"])
def test_same_seed_same_search_other_seed_differs(name: str) -> None:
    _, a = _run(name, seed=7)
    _, b = _run(name, seed=7)
    _, c = _run(name, seed=8)
    assert _genotypes(a) == _genotypes(b)
    assert _genotypes(a) != _genotypes(c)
    space = get_space("nb201")
    assert all(space.validate(g) == g for gens in _genotypes(a) for g in gens)


@pytest.mark.parametrize("name", ["nsga2", "nsga2-plain", "random"])
def test_restore_continues_like_an_uninterrupted_run(name: str) -> None:
    _, full = _run(name, seed=3, gens=5)
    s = make_strategy(name, get_space("nb201"), 12, seed=3)
    s.restore(full[:3])
    _, rest = _run(name, seed=3, gens=5, start=3, strategy=s)
    assert _genotypes(rest) == _genotypes(full[3:])


def test_restore_refuses_a_foreign_history() -> None:
    _, hist = _run("nsga2-plain", seed=1, gens=2)
    s = make_strategy("nsga2-plain", get_space("nb201"), 12, seed=2)
    with pytest.raises(SearchError, match="cannot resume"):
        s.restore(hist)


def test_nsga2_improves_the_front_over_random_sampling() -> None:
    _, hist = _run("nsga2", seed=0, gens=6)
    first = max(t.values[0] for t in hist[0][1] if t.violation == 0)
    last = max(t.values[0] for t in hist[-1][1] if t.violation == 0)
    assert last >= first


def test_structured_space_uses_plain_nsga2_and_unknown_strategy_fails() -> None:
    mb = get_space("mbconv")
    assert categorical_encoding(mb) is None
    s = make_strategy("nsga2", mb, 4, seed=0)
    assert s.name == "nsga2-plain"
    assert len(s.ask(0)) == 4
    with pytest.raises(SearchError, match="unknown strategy"):
        make_strategy("cmaes", mb, 4)
    with pytest.raises(SearchError, match="population"):
        make_strategy("random", mb, 1)


def test_encoding_round_trips_nb201() -> None:
    space = get_space("nb201")
    enc = categorical_encoding(space)
    g = space.sample(random.Random(0))
    assert enc.genotype(enc.values(g)) == g
    oh = enc.one_hot([g])
    assert oh.shape == (1, 30) and oh.sum() == 6


def test_pareto_front_and_crowding() -> None:
    pts = [(90, 5), (91, 6), (89, 4), (90, 7), (91, 6), (88, 4.5), (92, 10)]
    mask = pareto_mask(pts)
    assert mask.tolist() == [True, True, True, False, True, False, True]
    fronts = non_dominated_sort(pts)
    assert sorted(fronts[0].tolist()) == [0, 1, 2, 4, 6] and sorted(fronts[1].tolist()) == [3, 5]
    assert front_of([p[0] for p in pts], [p[1] for p in pts]).tolist() == [2, 0, 1, 4, 6]
    cd = crowding_distance([pts[i] for i in fronts[0]])
    assert np.isinf(cd).sum() == 2 and np.all(cd > 0)
