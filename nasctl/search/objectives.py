"""Objectives and constraints of a search, and the candidate record they are judged on.

Two objectives: accuracy (from an estimator, maximized; its unit is the estimator's, e.g. test
accuracy in percent for ``nb201:*``) and latency in ms (minimized), predicted with a central
prediction interval ``[low_ms, high_ms]`` at the configured confidence, or measured.

Constraints:

* ``latency_budget_ms``: a candidate is *predicted feasible* when ``high_ms <= budget`` (the upper
  bound of the interval at ``confidence``, so it meets the budget with probability >= about
  ``(1 + confidence) / 2`` if the interval is calibrated), *possibly feasible* when
  ``low_ms <= budget < high_ms`` (the interval straddles the budget: worth a measurement) and
  *infeasible* when ``low_ms > budget``. A measured candidate is feasible when its measured median
  latency is ``<= budget``; the reported best always rests on measured latency.
* ``min_accuracy``: with it, the question is "the fastest network reaching this accuracy".
* ``max_params`` (count): a hard constraint computed from the graph.
* ``max_memory_mb`` (MiB): the model's peak memory on the device, *predicted* with an interval
  (:mod:`nasctl.search.memory`: the memory model ``train-predictor`` learns, else the analytic
  bound) and judged like latency: infeasible when the interval's lower end is over the limit
  (such candidates are never measured), feasible when its upper end is within it; a *measured*
  candidate is judged on its measured peak (:func:`memory_status`), so the answer's memory is
  validated on the device.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from nasctl.errors import SearchError


@dataclass
class Constraints:
    """What a search must respect. ``None`` disables a constraint."""

    latency_budget_ms: float | None = None
    confidence: float = 0.9
    min_accuracy: float | None = None
    max_params: int | None = None
    max_memory_mb: float | None = None

    def __post_init__(self) -> None:
        if self.latency_budget_ms is not None and not self.latency_budget_ms > 0:
            raise SearchError(f"latency_budget_ms must be > 0 ms; got {self.latency_budget_ms}")
        if not 0.5 <= self.confidence < 1.0:
            raise SearchError(f"confidence must be in [0.5, 1); got {self.confidence}")
        if self.max_params is not None and self.max_params <= 0:
            raise SearchError(f"max_params must be > 0; got {self.max_params}")
        if self.max_memory_mb is not None and not self.max_memory_mb > 0:
            raise SearchError(f"max_memory_mb must be > 0; got {self.max_memory_mb}")

    @property
    def needs_costs(self) -> bool:
        """Whether graph costs (params, memory) must be computed for each candidate."""
        return self.max_params is not None or self.max_memory_mb is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Candidate:
    """One scored architecture.

    Attributes:
        genotype: the space's genotype string.
        generation: the generation that first produced it (-1: bootstrap sample).
        accuracy: estimator value, None when the estimator failed (then ``error`` says why).
        mean_ms, low_ms, high_ms: latest predicted latency and interval (ms).
        measured_ms: measured median latency on the device (ms), None if not measured.
        params: parameter count; None if not computed.
        memory_mb, memory_low_mb, memory_high_mb: predicted peak memory and its interval (MiB;
            the analytic bound, low = high, without a memory model); None if not computed.
        measured_memory_mb: the device's measured peak memory (MiB), None if not measured.
        precision: the precision it is measured and scored at (``fp32``, ``fp16``, ``int8``,
            ``dla``; issue #15.3): a candidate is an (architecture, precision) pair.
    """

    genotype: str
    generation: int = 0
    accuracy: float | None = None
    error: str | None = None
    mean_ms: float | None = None
    low_ms: float | None = None
    high_ms: float | None = None
    measured_ms: float | None = None
    params: int | None = None
    memory_mb: float | None = None
    memory_low_mb: float | None = None
    memory_high_mb: float | None = None
    measured_memory_mb: float | None = None
    precision: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.accuracy is None

    @property
    def latency_ms(self) -> float | None:
        """Measured latency when there is one, else the predicted mean."""
        return self.measured_ms if self.measured_ms is not None else self.mean_ms

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("extra")
        return d


def meets_static(c: Candidate, cons: Constraints) -> bool:
    """Accuracy/params/memory constraints (everything but latency)."""
    if c.failed:
        return False
    if cons.min_accuracy is not None and (c.accuracy or -math.inf) < cons.min_accuracy:
        return False
    if cons.max_params is not None and (c.params is None or c.params > cons.max_params):
        return False
    return memory_status(c, cons) in ("feasible", "possible")


def memory_status(c: Candidate, cons: Constraints) -> str:
    """``"feasible"``, ``"possible"`` (the predicted interval straddles ``max_memory_mb``),
    ``"infeasible"`` or ``"unknown"`` (not predicted). A measured peak decides when present;
    a candidate measured without one is judged on its prediction."""
    limit = cons.max_memory_mb
    if limit is None:
        return "feasible"
    if c.measured_memory_mb is not None:
        return "feasible" if c.measured_memory_mb <= limit else "infeasible"
    low = c.memory_low_mb if c.memory_low_mb is not None else c.memory_mb
    high = c.memory_high_mb if c.memory_high_mb is not None else c.memory_mb
    if low is None or high is None:
        return "unknown"
    if high <= limit:
        return "feasible"
    return "possible" if low <= limit else "infeasible"


def latency_status(c: Candidate, cons: Constraints) -> str:
    """``"feasible"``, ``"possible"`` (interval straddles the budget), ``"infeasible"`` or
    ``"unknown"`` (no prediction yet). Measured latency decides when present."""
    budget = cons.latency_budget_ms
    if budget is None:
        return "feasible"
    if c.measured_ms is not None:
        return "feasible" if c.measured_ms <= budget else "infeasible"
    if c.high_ms is None or c.low_ms is None:
        return "unknown"
    if c.high_ms <= budget:
        return "feasible"
    return "possible" if c.low_ms <= budget else "infeasible"


def measured_feasible(c: Candidate, cons: Constraints) -> bool:
    """Meets every constraint with its measured latency (and its measured memory; a candidate
    whose memory was not measured only when its predicted interval is within the limit)."""
    if c.measured_ms is None or not meets_static(c, cons):
        return False
    if memory_status(c, cons) != "feasible":
        return False
    return cons.latency_budget_ms is None or c.measured_ms <= cons.latency_budget_ms


def best_measured(cands: list[Candidate], cons: Constraints) -> Candidate | None:
    """The answer of the search: among measured candidates meeting every constraint, the most
    accurate (with ``min_accuracy``: the fastest), ties broken by lower latency."""
    ok = [c for c in cands if measured_feasible(c, cons)]
    if not ok:
        return None
    if cons.min_accuracy is not None:
        return min(ok, key=lambda c: (c.measured_ms, -(c.accuracy or 0.0)))
    return max(ok, key=lambda c: (c.accuracy or 0.0, -(c.measured_ms or 0.0)))


def fastest_measured(cands: list[Candidate]) -> Candidate | None:
    """The fastest measured candidate (reported when nothing meets the budget)."""
    ms = [c for c in cands if c.measured_ms is not None]
    return min(ms, key=lambda c: c.measured_ms or 0.0) if ms else None


def graph_cost_fields(graph: Any) -> tuple[int, float]:
    """(params, memory MiB) of a graph via :func:`nasctl.arch.costs.graph_costs`."""
    try:
        from nasctl.arch.costs import graph_costs
    except ImportError as e:  # pragma: no cover - costs module missing
        raise SearchError(f"max_params and max_memory_mb need nasctl.arch.costs: {e}") from e
    tot = graph_costs(graph).total
    mem = float(tot.get("weight_bytes", 0)) + float(tot.get("act_write_bytes", 0))
    return int(tot.get("params", 0)), mem / 2**20
