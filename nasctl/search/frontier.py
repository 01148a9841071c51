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

One measurement of each twin is not enough when they are close: on the shared cpu the same
twin drifts 1.3-1.6x between separate runs (docs/benchmarks.md), more than most FP32/INT8 gaps
of an mbconv architecture. Twins whose measured latencies lie within :func:`pair_band` of each
other (1.5x, or 3x the device's spread where that is wider) are re-measured by the merged phase
in :data:`PAIRS` alternating rounds (``extra["paired_ms"]``: each twin's runs in round order),
and the choice is then decided on the median of the per-round ratios (:func:`paired_ratios`):
a slow drift of the machine falls on both twins of a round alike and cancels in their ratio.
The median ratio ties within ``spread`` (the run-to-run spread of one measurement, which a
round's ratio of two adjacent runs does not exceed).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable

from nasctl.search.objectives import Candidate
from nasctl.search.pareto import front_of
from nasctl.search.precisions import PRECISIONS

#: alternating rounds a close precision choice is re-measured in, and the fewest that decide it
#: (fewer are run when the device budget is short; below MIN_PAIRS the choice stays on one
#: measurement each and says so)
PAIRS, MIN_PAIRS = 3, 2
#: measured twins closer than this ratio are re-measured in pairs: the drift between separate
#: runs of one twin on the shared cpu (1.3-1.6x, docs/benchmarks.md; a 1.38x single-run gap was
#: reversed by a paired re-measure), so a gap inside it says nothing on one measurement each
PAIR_RATIO = 1.5

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
    ratios = paired_ratios(p, q)
    if ratios is not None:  # p / q per round: q is faster when the median is above 1
        return statistics.median(ratios) > 1.0 and d >= -b
    return float(lat(q)) < float(lat(p)) and d >= -b  # type: ignore[arg-type]


def paired_ratios(a: Candidate, b: Candidate) -> list[float] | None:
    """``a``'s latency over ``b``'s in each alternating round both ran in (``extra["paired_ms"]``,
    rounds in order; a failed run leaves its round out), or None with fewer than
    :data:`MIN_PAIRS` rounds: the choice then rests on one measurement each."""
    pa, pb = a.extra.get("paired_ms") or [], b.extra.get("paired_ms") or []
    r = [x / y for x, y in zip(pa, pb, strict=False) if x and y and x > 0 and y > 0]
    return r if len(r) >= MIN_PAIRS else None


def pair_band(spread: float | None) -> float:
    """The ``|ln(a/b)|`` below which two measured twins are re-measured in pairs:
    ln :data:`PAIR_RATIO`, or 3x the device's run-to-run spread where that is wider."""
    return max(math.log(PAIR_RATIO), 3.0 * (spread or 0.0))


def needs_pairs(
    a: Candidate,
    b: Candidate,
    spread: float | None,
    band: Band | None = None,
    *,
    trade_off: bool = False,
) -> bool:
    """The choice between twins ``a`` and ``b`` rests on latency (as accurate within ``band``;
    or ``trade_off``: both stand on the front as trade-offs, the less accurate one only for
    being faster), and their one measurement each cannot make it: both measured, not yet
    decided in pairs, and within :func:`pair_band` of each other."""
    if a.measured_ms is None or b.measured_ms is None or paired_ratios(a, b) is not None:
        return False
    if not trade_off and abs((a.accuracy or 0.0) - (b.accuracy or 0.0)) > _band(band, a, b):
        return False  # decided by accuracy: one twin is more accurate beyond the noise
    if a.measured_ms <= 0 or b.measured_ms <= 0:
        return False
    return abs(math.log(a.measured_ms / b.measured_ms)) <= pair_band(spread)


def latency_tie(a: Candidate, b: Candidate, spread: float | None) -> bool:
    """Both measured, and as fast as each other within the device's run-to-run spread
    (``|ln r| <= spread``): ``r`` the median of their per-round ratios when they were
    re-measured in alternating pairs (:func:`paired_ratios`), else the ratio of their one
    measurement each, which cannot tell which is faster."""
    if not spread or a.measured_ms is None or b.measured_ms is None:
        return False
    ratios = paired_ratios(a, b)
    if ratios is not None:
        return abs(math.log(statistics.median(ratios))) <= spread
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
        ratios = paired_ratios(c, q)
        if ratios is not None:  # decided on the median of alternating pairs
            med = statistics.median(ratios)
            lc, lq = med, 1.0  # c's latency relative to q's, for "faster" below
            speed = (f"{len(ratios)} alternating pairs, {c.precision}/{q.precision} ratios "
                     + ", ".join(f"{r:.2f}" for r in ratios)
                     + f", median {med:.2f}x; medians {c.measured_ms:.3g} vs "
                     f"{q.measured_ms:.3g} ms")  # fmt: skip
        elif both and needs_pairs(c, q, spread, band):  # the budget did not reach pairs
            why = c.extra.get("pairing_short") or "not re-measured in pairs: device budget spent"
            speed += (f"; within the {math.exp(pair_band(spread)):.2f}x pairing band, ONE "
                      f"measurement each ({why})")  # fmt: skip
        if abs(d) <= b:
            acc = f"as accurate within noise ({d:+.2f}, band {b:.2f})"
        elif d > 0:
            acc = f"more accurate by {d:.2f} (beyond band {b:.2f})"
        else:
            acc = f"{-d:.2f} less accurate (beyond band {b:.2f})"
        if latency_tie(c, q, spread):
            tie = (f"as fast within run-to-run spread ({speed}, ratio {lq / lc:.2f}x, band "
                   f"{math.exp(spread or 0.0):.2f}x)")  # fmt: skip
            if ratios is not None:
                tie = (f"as fast within run-to-run spread ({speed}, band "
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
    elif any(paired_ratios(c, q) is not None for q in others):
        parts.append("decided on measured latencies, re-measured in alternating pairs")
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
