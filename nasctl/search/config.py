"""Settings and result of one search (:class:`SearchConfig`, :class:`SearchResult`)."""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from nasctl.search.objectives import Candidate, Constraints


@dataclass
class SearchConfig:
    """Settings of one search (see the CLI help for each)."""

    space: str
    device: str
    accuracy: str
    out: Path
    constraints: Constraints = field(default_factory=Constraints)
    device_budget: int = 50
    generations: int = 20
    population: int = 50
    seed: int = 0
    strategy: str = "nsga2"
    use_predictor: bool = True
    predictor_dir: str | None = None
    validate_every: int = 5
    bootstrap: int | None = None
    validation_share: float = 0.5
    refine_top: int = 10
    refine_cap: int = 300
    reuse_stored: bool = True
    score_all: bool | None = None  # None: auto (see SearchLoop.score_all)
    secure: int | None = None  # last measurements on the safest improvements; None: n_secure()
    focus: bool = True  # latency model fit focused on measurements near the latency budget
    bootstrap_model: str = "gp"  # without predictor_dir: "gp" or "gp+nasctl" (see selftrained)
    db: Path | None = None
    #: the precision measured and scored (``nasctl.search.precisions``); a search over several
    #: runs one loop per precision (``nasctl.search.multiprecision``)
    precision: str = "fp32"
    device_opts: dict[str, Any] = field(default_factory=dict)

    def settings(self) -> dict[str, Any]:
        extra = {"precision": self.precision} if self.precision != "fp32" else {}
        return {
            **extra,
            "space": self.space,
            "device": self.device,
            "accuracy": self.accuracy,
            "seed": self.seed,
            "strategy": self.strategy,
            "population": self.population,
            "use_predictor": self.use_predictor,
            "predictor_dir": self.predictor_dir,
            "bootstrap_model": self.bootstrap_model,
            "constraints": self.constraints.to_dict(),
        }

    def n_secure(self) -> int:
        """The last device measurements spent on the safest improvements (``_secure``): as
        configured, else 20% of the device budget (10 of 50). Chosen by a sweep on the NB201
        replay devices (docs/benchmarks.md, issue 17): with 5, pixel3 at p25 ended 0.03 below
        the optimum in 5 of 10 seeds; with 10 in none."""
        if self.secure is not None:
            return max(0, min(self.secure, self.device_budget))
        return round(0.2 * self.device_budget)

    def n_bootstrap(self) -> int:
        if self.bootstrap is not None:
            return max(0, min(self.bootstrap, self.device_budget))
        return max(3, min(20, round(0.2 * self.device_budget)))


def config_defaults() -> dict[str, Any]:
    """Every :class:`SearchConfig` field with a default -> that default (the one source of the
    CLI's defaults and the search benchmark's settings)."""
    out: dict[str, Any] = {}
    for f in fields(SearchConfig):
        if f.default is not MISSING:
            out[f.name] = f.default
        elif f.default_factory is not MISSING:
            out[f.name] = f.default_factory()
    return out


@dataclass
class SearchResult:
    """What a search found. ``best`` rests on measured latency; ``frontier`` holds measured
    candidates only (non-dominated on measured latency), and ``unverified`` the candidates
    predicted to extend or beat it that the device budget did not reach (never presented as
    front points; :mod:`nasctl.search.frontier`); ``stopped`` is set when the device failed
    mid-search (everything measured is kept; run again to resume)."""

    best: Candidate | None
    fastest: Candidate | None
    frontier: list[Candidate]
    candidates: list[Candidate]
    device_measurements: int
    predictor_queries: int
    candidates_scored: int
    scoring_s: float
    elapsed_s: float
    message: str = ""
    stopped: str | None = None
    resumed: bool = False
    measurements: list[dict[str, Any]] = field(default_factory=list)
    unverified: list[Candidate] = field(default_factory=list)
