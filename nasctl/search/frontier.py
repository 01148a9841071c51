"""The frontier a search reports, and the one it is still working on.

Two fronts over (accuracy up, latency down):

* the **working front** (:func:`working_front`): every scored candidate, its latency measured
  where measured, else predicted. It is what the loop's final phase measures
  (:meth:`~nasctl.search.budget.DeviceBudget.measure_front`) and what it reserves device runs
  for.
* the **reported front** (:func:`measured_front`): measured candidates only. A point the device
  never ran is never on it: a predicted-only candidate the working front holds is reported
  apart, as **unverified** (:func:`unverified`: not measured, the device budget did not reach
  it), in ``frontier.json``'s ``unverified`` list, ``unverified.csv`` and hollow markers on the
  plot.

Over several precisions (``nasctl search --precision fp32,int8``) a candidate is an
(architecture, precision) pair, and each architecture first keeps its better precision
(:func:`choose_precisions`): a pair is dropped when the same architecture at another precision
is faster and its accuracy is not lower by more than the estimator's noise (``band``, e.g. one
binomial standard error of the held-out accuracy); an accuracy difference beyond the noise keeps
both pairs as trade-offs of their own. Latency has a tie band too (``spread``: the device's
run-to-run spread, :func:`~nasctl.profiler.gate.run_spread`): two *measured* twins whose latencies
differ by no more than it (``|ln(a/b)| <= spread``) are as fast as each other; then the one more
accurate beyond the noise is kept, and a tie in both keeps one point, the higher precision
(:func:`higher`: fp32 before fp16 before int8 before dla; no quantization risk at a speed one
measurement cannot tell apart). Latency is measured where measured, else predicted; the
merged phase of :mod:`nasctl.search.multiprecision` measures the front architectures' twins so
that the choice rests on measured latencies, and :func:`explain_precision` says when it could
not.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from nasctl.search.objectives import Candidate
from nasctl.search.pareto import front_of
from nasctl.search.precisions import PRECISIONS

#: ``band(accuracy_a, accuracy_b)`` -> the accuracy difference (estimator units) within which two
#: precisions of one architecture count as equally accurate
Band = Callable[[float, float], float]


def usable(c: Candidate) -> bool:
    """Scored, and not refused by the device (``extra["device_error"]``: it could not run it)."""
    return not c.failed and "device_error" not in c.extra


def _pareto(cands: list[Candidate], measured_only: bool) -> list[Candidate]:
    ok = [c for c in cands if usable(c)]
    ok = [c for c in ok if (c.measured_ms if measured_only else c.latency_ms) is not None]
    lat = [(c.measured_ms if measured_only else c.latency_ms) or 0.0 for c in ok]
    idx = front_of([c.accuracy or 0.0 for c in ok], lat)
    return [ok[i] for i in idx]


def choose_precisions(
    cands: list[Candidate],
    band: Band | None = None,
    *,
    measured_only: bool = False,
    spread: float | None = None,
) -> list[Candidate]:
    """``cands`` without the pairs their own architecture beats at another precision.

    A pair ``p`` is dropped when a pair ``q`` of the same genotype (another precision) is
    strictly faster and ``acc(q) >= acc(p) - band``: ``q`` is at least as accurate within the
    estimator's noise. When both are measured and their latencies tie within ``spread``
    (:func:`latency_tie`), ``p`` is dropped when ``q`` is more accurate beyond the band, or
    as accurate within it and of the higher precision (:func:`higher`): a tie in both keeps one
    point. Latency is measured where measured, else predicted (``measured_only``: only measured
    pairs take part, and are compared on measured latency). With one precision per genotype (a
    plain search) nothing is dropped."""
    lat = (lambda c: c.measured_ms) if measured_only else (lambda c: c.latency_ms)
    by_arch: dict[str, list[Candidate]] = {}
    for c in (c for c in cands if usable(c) and lat(c) is not None):
        by_arch.setdefault(c.genotype, []).append(c)
    kept: list[Candidate] = []
    for twins in by_arch.values():
        if len(twins) == 1:
            kept.append(twins[0])
            continue
        for p in twins:
            if not any(_beats(q, p, lat, band, spread) for q in twins if q is not p):
                kept.append(p)
    return kept


def _beats(
    q: Candidate, p: Candidate, lat: Callable[[Candidate], float | None], band: Band | None,
    spread: float | None,
) -> bool:  # fmt: skip
    d = (q.accuracy or 0.0) - (p.accuracy or 0.0)
    b = _band(band, p, q)
    if latency_tie(p, q, spread):
        return d > b or (abs(d) <= b and higher(q, p))
    return float(lat(q)) < float(lat(p)) and d >= -b  # type: ignore[arg-type]


def latency_tie(a: Candidate, b: Candidate, spread: float | None) -> bool:
    """Both measured, and their medians differ by no more than the device's run-to-run spread
    (``|ln(a/b)| <= spread``): one measurement each cannot tell which is faster."""
    if not spread or a.measured_ms is None or b.measured_ms is None:
        return False
    if a.measured_ms <= 0 or b.measured_ms <= 0:
        return False
    return abs(math.log(a.measured_ms / b.measured_ms)) <= spread


def higher(a: Candidate, b: Candidate) -> bool:
    """``a``'s precision is higher than ``b``'s (fp32 > fp16 > int8 > dla)."""

    def rank(c: Candidate) -> int:
        return PRECISIONS.index(c.precision) if c.precision in PRECISIONS else len(PRECISIONS)

    return rank(a) < rank(b)


def _band(band: Band | None, a: Candidate, b: Candidate) -> float:
    return max(0.0, float(band(a.accuracy or 0.0, b.accuracy or 0.0))) if band else 0.0


def explain_precision(
    c: Candidate, cands: list[Candidate], band: Band | None = None, spread: float | None = None
) -> str | None:
    """Why ``c`` is kept beside, or instead of, its architecture at the other precisions of
    ``cands`` (one clause per twin; latency measured where both are measured, else as the
    working front sees it; a latency within ``spread`` of its twin's is a tie, and a tie in
    both says which point was kept and why), ending in whether the choice was decided on
    measured latencies of every twin or on a prediction (``DECIDED ON PREDICTED LATENCY (fp32
    not measured)``: the device budget did not reach that twin); None without scored twins."""
    others = [
        q
        for q in cands
        if q.genotype == c.genotype and q is not c and usable(q) and q.latency_ms is not None
    ]
    if not others:
        return None
    parts = []
    for q in others:
        both = c.measured_ms is not None and q.measured_ms is not None
        lat = (lambda x: x.measured_ms) if both else (lambda x: x.latency_ms)
        d = (c.accuracy or 0.0) - (q.accuracy or 0.0)
        b = _band(band, c, q)
        lc, lq = float(lat(c) or 0.0), float(lat(q) or 0.0)
        speed = f"{lc:.3g} ms {_source(c)} vs {lq:.3g} ms {_source(q)}"
        if abs(d) <= b:
            acc = f"as accurate within noise ({d:+.2f}, band {b:.2f})"
        elif d > 0:
            acc = f"more accurate by {d:.2f} (beyond band {b:.2f})"
        else:
            acc = f"{-d:.2f} less accurate (beyond band {b:.2f})"
        if latency_tie(c, q, spread):
            tie = (f"as fast within run-to-run spread ({speed}, ratio {lq / lc:.2f}x, band "
                   f"{math.exp(spread or 0.0):.2f}x)")  # fmt: skip
            if abs(d) <= b:
                keep = c if higher(c, q) else q
                tie += f": a tie in both keeps the higher precision, {keep.precision}"
            parts.append(f"vs {q.precision}: {acc} and {tie}")
        elif abs(d) <= b:
            how = "faster" if lc < lq else "not faster"
            parts.append(f"vs {q.precision}: {acc} and {how} ({speed})")
        else:
            parts.append(f"vs {q.precision}: {acc}; {speed}")
    unmeasured = [x for x in (c, *others) if x.measured_ms is None]
    if unmeasured:  # the choice rests on a prediction, not on two measured latencies
        which = ", ".join(f"{x.precision}" for x in unmeasured)
        parts.append(f"DECIDED ON PREDICTED LATENCY ({which} not measured)")
    else:
        parts.append("decided on measured latencies")
    return f"{c.precision} " + "; ".join(parts)


def _source(c: Candidate) -> str:
    return "measured" if c.measured_ms is not None else "predicted"


def working_front(
    cands: list[Candidate], band: Band | None = None, spread: float | None = None
) -> list[Candidate]:
    """Non-dominated candidates, latency measured where measured, else predicted (fastest
    first), after each architecture keeps its better precision."""
    return _pareto(choose_precisions(cands, band, spread=spread), measured_only=False)


def measured_front(
    cands: list[Candidate], band: Band | None = None, spread: float | None = None
) -> list[Candidate]:
    """The reported front: non-dominated among the *measured* candidates, on measured latency
    (fastest first); every point of it ran on the device."""
    kept = choose_precisions(cands, band, measured_only=True, spread=spread)
    return _pareto(kept, measured_only=True)


def unverified(
    cands: list[Candidate], band: Band | None = None, spread: float | None = None
) -> list[Candidate]:
    """Members of the working front with no measurement (fastest first): predicted to extend
    or beat the reported front, never run on the device."""
    return [c for c in working_front(cands, band, spread) if c.measured_ms is None]
