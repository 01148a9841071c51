"""Search outputs: ``frontier.csv``, ``unverified.csv``, ``frontier.json``, ``frontier.png`` and
the JSON summary.

The frontier is the non-dominated set of the *measured* candidates (accuracy up, measured
latency down): every point of it ran on the device. Candidates the latency model predicts would
extend or beat it but that the device budget did not reach are never shown as front points:
they are listed apart as **unverified** (``unverified.csv``, ``frontier.json``'s ``unverified``,
``unverified_size`` in the summary, hollow markers on the plot) with their predicted latency and
interval. Rows carry the predicted latency and interval, the measured latency (empty when not
measured), whether it meets the constraints and, over several precisions, why that precision is
there (``precision_choice``). The plot draws every scored candidate (predicted, grey), the
frontier through measured points, measured points as filled markers (a search over several
precisions marks each precision: FP16 triangles, INT8 dots, FP32 squares, DLA diamonds), the
unverified candidates hollow, the budget, the best measured architecture, and for
``t4``/``xavier`` the reference classifiers of
``shared/data/reference/classification_t4_xaviernx.csv`` (ImageNet top-1 vs TensorRT FP16 batch-1
latency; a different task and scale from most search spaces, drawn for orientation as in the
DeciNets plots).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from nasctl.search.config import SearchResult
from nasctl.search.objectives import (
    Candidate,
    Constraints,
    latency_status,
    meets_static,
    memory_status,
)
from nasctl.search.precisions import MARKERS

FIELDS = (
    "genotype",
    "precision",
    "accuracy",
    "predicted_ms",
    "low_ms",
    "high_ms",
    "measured_ms",
    "latency_ms",
    "status",
    "params",
    "memory_mb",
    "memory_low_mb",
    "memory_high_mb",
    "measured_memory_mb",
    "memory_status",
    "generation",
    "precision_choice",
)


def _xy(cands: list[Candidate], attr: str) -> tuple[np.ndarray, np.ndarray]:
    return (
        np.array([getattr(c, attr) for c in cands], dtype=float),
        np.array([c.accuracy for c in cands], dtype=float),
    )


def candidate_row(c: Candidate, cons: Constraints) -> dict[str, Any]:
    status = latency_status(c, cons) if meets_static(c, cons) else "infeasible"
    return {
        "genotype": c.genotype,
        "precision": c.precision,
        "accuracy": c.accuracy,
        "predicted_ms": c.mean_ms,
        "low_ms": c.low_ms,
        "high_ms": c.high_ms,
        "measured_ms": c.measured_ms,
        "latency_ms": c.latency_ms,
        "status": status,
        "params": c.params,
        "memory_mb": c.memory_mb,
        "memory_low_mb": c.memory_low_mb,
        "memory_high_mb": c.memory_high_mb,
        "measured_memory_mb": c.measured_memory_mb,
        "memory_status": memory_status(c, cons) if cons.max_memory_mb is not None else None,
        "generation": c.generation,
        "precision_choice": c.extra.get("precision_choice"),
    }


def _brief(c: Candidate | None) -> dict[str, Any] | None:
    if c is None:
        return None
    return {
        "genotype": c.genotype,
        "precision": c.precision,
        "accuracy": c.accuracy,
        "latency_ms": c.mean_ms,
        "low_ms": c.low_ms,
        "high_ms": c.high_ms,
        "measured_latency_ms": c.measured_ms,
        "memory_mb": c.memory_mb,
        "measured_memory_mb": c.measured_memory_mb,
    }


def prediction_log_stats(measurements: list[dict[str, Any]], confidence: float) -> dict[str, Any]:
    """Predicted vs measured over the measurements that had a prediction when taken."""
    pairs = [
        (m["pred_ms"], m["measured_ms"], m["low_ms"], m["high_ms"])
        for m in measurements
        if m.get("pred_ms") is not None and m.get("measured_ms") is not None
    ]
    if not pairs:
        return {"n": 0}
    p, y, lo, hi = (np.array(v, dtype=float) for v in zip(*pairs, strict=False))
    return {
        "n": len(pairs),
        "mape_pct": float(np.mean(np.abs(p - y) / y) * 100),
        "interval_coverage": float(np.mean((lo <= y) & (y <= hi))),
        "confidence": confidence,
    }


def summary(result: SearchResult, cons: Constraints, settings: dict[str, Any]) -> dict[str, Any]:
    """The ``--json`` document (also written as ``summary.json``)."""
    front = result.frontier
    measured_front = sum(c.measured_ms is not None for c in front)
    return {
        "best": _brief(result.best),
        "fastest_measured": _brief(result.fastest),
        "device_measurements": result.device_measurements,
        "predictor_queries": result.predictor_queries,
        "candidates_scored": result.candidates_scored,
        "unique_candidates": len(result.candidates),
        "failed_candidates": sum(c.failed for c in result.candidates),
        "scored_per_min": (result.candidates_scored / result.scoring_s * 60)
        if result.scoring_s > 0
        else None,
        "frontier_size": len(front),
        "frontier_measured": measured_front,
        # predicted to extend or beat the frontier, not measured (the device budget ended)
        "unverified_size": len(result.unverified),
        "prediction_log": prediction_log_stats(result.measurements, cons.confidence),
        "elapsed_s": round(result.elapsed_s, 2),
        "message": result.message,
        "stopped": result.stopped,
        "resumed": result.resumed,
        "settings": settings,
    }


def write_outputs(
    result: SearchResult,
    out: Path,
    cons: Constraints,
    device: str,
    settings: dict[str, Any],
    accuracy_label: str = "accuracy",
) -> dict[str, Any]:
    """Write frontier.csv, unverified.csv, frontier.json/png and summary.json into ``out``;
    returns the summary."""
    out.mkdir(parents=True, exist_ok=True)
    rows = [candidate_row(c, cons) for c in result.frontier]
    pending = [candidate_row(c, cons) for c in result.unverified]
    for name, table in (("frontier.csv", rows), ("unverified.csv", pending)):
        with (out / name).open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=FIELDS)
            w.writeheader()
            w.writerows(table)
    doc = summary(result, cons, settings)
    (out / "frontier.json").write_text(
        json.dumps({"frontier": rows, "unverified": pending, **doc}, indent=2, default=str)
    )
    (out / "summary.json").write_text(json.dumps(doc, indent=2, default=str))
    plot_frontier(result, out / "frontier.png", cons, device, accuracy_label)
    return doc


def _references(device: str) -> list[tuple[str, float, float]]:
    """(model, top1, latency ms) of the reference classifiers for t4/xavier, else []."""
    col = {"t4": "t4_trt_fp16_compute_ms", "xavier": "xaviernx_trt_fp16_compute_ms"}.get(
        device.split(":")[0]
    )
    if col is None:
        return []
    from nasctl.profiler.backends.replay import default_data_dir

    path = default_data_dir() / "reference" / "classification_t4_xaviernx.csv"
    if not path.is_file():
        return []
    out = []
    with path.open(newline="") as f:
        for r in csv.DictReader(f):
            if r.get(col) and r.get("top1"):
                out.append((r["model"], float(r["top1"]), float(r[col])))
    return out


def _by_precision(cands: list[Candidate]) -> dict[str | None, list[Candidate]]:
    out: dict[str | None, list[Candidate]] = {}
    for c in cands:
        out.setdefault(c.precision, []).append(c)
    return out


def plot_frontier(
    result: SearchResult,
    path: Path,
    cons: Constraints,
    device: str,
    accuracy_label: str = "accuracy",
) -> None:
    """Accuracy vs latency: scored (grey), measured (filled) points, the measured front, the
    unverified candidates (hollow: predicted only, not measured), budget."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5), dpi=110)
    pred = [c for c in result.candidates if not c.failed and c.mean_ms is not None]
    if pred:
        ax.scatter(
            *_xy(pred, "mean_ms"), s=6, c="#bbbbbb", label="scored (predicted latency)", zorder=1
        )
    meas = [c for c in result.candidates if not c.failed and c.measured_ms is not None]
    front = sorted(result.frontier, key=lambda c: c.measured_ms or 0.0)
    if front:
        ax.plot(
            *_xy(front, "measured_ms"), "-", c="#ff7f0e", lw=1.2, label="frontier (measured)",
            zorder=2,
        )  # fmt: skip
    # one marker per precision when the search weighed several (FP16 triangles, INT8 dots)
    several = len({c.precision for c in result.candidates}) > 1
    for prec, group in _by_precision(meas).items():
        tag = f", {str(prec).upper()}" if several else ""
        mk = MARKERS.get(str(prec), "o") if several else "o"
        ax.scatter(
            *_xy(group, "measured_ms"), s=18, marker=mk, c="#1f77b4", zorder=3,
            label=f"measured on device{tag}",
        )  # fmt: skip
    for prec, group in _by_precision(result.unverified).items():
        tag = f", {str(prec).upper()}" if several else ""
        ax.scatter(
            *_xy(group, "mean_ms"), s=30, marker=MARKERS.get(str(prec), "o") if several else "o",
            facecolors="none", edgecolors="#7f7f7f",
            label=f"unverified: predicted only, not measured{tag}", zorder=4,
        )  # fmt: skip
    if result.best is not None:
        ax.scatter(
            *_xy([result.best], "measured_ms"),
            marker="*",
            s=160,
            c="#d62728",
            label="best (measured)",
            zorder=5,
        )
    if cons.latency_budget_ms is not None:
        ax.axvline(cons.latency_budget_ms, ls="--", c="k", lw=0.8, label="latency budget")
    refs = _references(device)
    if refs:
        ax2 = ax.twinx()
        ax2.scatter([r[2] for r in refs], [r[1] for r in refs], marker="s", c="#2ca02c", s=22)
        for name, top1, ms in refs:
            ax2.annotate(name, (ms, top1), fontsize=6, xytext=(2, 2), textcoords="offset points")
        ax2.set_ylabel("reference ImageNet top-1 (%)", color="#2ca02c")
    ax.set_xlabel(f"latency on {device} (ms)")
    ax.set_ylabel(accuracy_label)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
