"""The loop's last measurements (``secure``) go to the safest improvement of the answer."""

from __future__ import annotations

from nasctl.search.config import SearchConfig
from nasctl.search.latency.models import z_of
from nasctl.search.objectives import Candidate, Constraints
from nasctl.search.selection import feasible_probability, secure_choice

CONS = Constraints(latency_budget_ms=10.0, confidence=0.9)
Z = z_of(0.9)


def _c(g: str, acc: float, mean: float, low: float, high: float) -> Candidate:
    return Candidate(g, accuracy=acc, mean_ms=mean, low_ms=low, high_ms=high)


def test_most_accurate_predicted_feasible_wins_when_there_is_one() -> None:
    pool = [
        _c("sure-but-weak", 91.0, 5.0, 4.5, 5.5),
        _c("safe-and-best", 92.0, 8.0, 7.0, 9.5),  # upper end within the budget
        _c("gamble", 94.0, 11.0, 6.0, 20.0),  # more accurate, probably over the budget
    ]
    assert pool[secure_choice(pool, CONS, Z)].genotype == "safe-and-best"


def test_without_a_safe_candidate_the_most_likely_feasible_wins() -> None:
    # the phone case: the model is ~25 % off, no interval ends within the budget
    pool = [
        _c("far-and-accurate", 93.3, 13.0, 8.0, 21.0),
        _c("near-optimum", 92.14, 10.5, 8.5, 13.0),
        _c("near-but-less", 92.12, 10.5, 8.5, 13.0),
    ]
    p = feasible_probability(pool, CONS, Z)
    assert p[1] > p[0] and 0 < p[1] < (1 + CONS.confidence) / 2
    assert pool[secure_choice(pool, CONS, Z)].genotype == "near-optimum"  # ties: more accurate
    assert secure_choice([], CONS, Z) is None


def test_secure_share_defaults_to_a_fifth_of_the_device_budget() -> None:
    cfg = SearchConfig("nb201", "cpu", "nb201:cifar10", out=".", device_budget=50)  # type: ignore[arg-type]
    assert cfg.n_secure() == 10
    assert SearchConfig("nb201", "cpu", "x", out=".", device_budget=12).n_secure() == 2  # type: ignore[arg-type]
    assert SearchConfig("nb201", "cpu", "x", out=".", secure=3).n_secure() == 3  # type: ignore[arg-type]
