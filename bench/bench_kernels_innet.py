"""Experiment (issue 16, not the predictor's default): correct each kernel's alone-measured time
to its in-network time, learned from the search-space graphs' own per-layer profiles.

A kernel sample is timed alone (its weights and input warm in cache over repeated runs); inside a
network it may run slower (cold weights of a large FC layer) or faster. The spaces' whole-graph
rows carry ORT's per-layer times: mapped to the graph's units (:mod:`kernel_units`), they give
in-network times of thousands of units. Here a LightGBM on the unit features learns
``log(in-network time / kernel model's alone prediction)`` per unit (reorders excluded: their
profile entries cannot be told apart), shrunk by ``--shrink`` and clipped to +-``--clip`` in log
space; a type without in-network rows keeps ratio 1. Scored, never on the aside set, by

* (a) 5-fold CV over the space graphs (the correction fit on 4 folds' units, the graph latency
  of the 5th predicted as the sum of corrected kernels), and
* (b) the tuning set of bench/zoo_tune.py (correction fit on all space graphs).

    PYTHONPATH=. .venv/bin/python bench/bench_kernels_innet.py --train runs/u/kernels.db \\
        runs/u/kernels_u1.db runs/u/cpu.db --tune runs/u/tune.db --out runs/u/innet
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_kernels_unseen import _summary, load, log, write_report  # noqa: E402

from nasctl.predictor import training  # noqa: E402
from nasctl.predictor.kernel_model import PARAMS, _roof, fit_from_examples  # noqa: E402
from nasctl.predictor.kernel_units import TYPES, graph_units, unit_rows  # noqa: E402

_REORDER_OPS = ("ReorderInput", "ReorderOutput")


def unit_times(row: Any) -> tuple[np.ndarray, list[str], np.ndarray] | None:
    """A measured graph's unit rows, types and in-network times (ms; per-layer profile scaled to
    the measured latency; reorders and unmapped kernels get 0); None without a profile."""
    layers = [la for la in (row.layers or []) if float(la.time_ms) > 0]
    total = sum(float(la.time_ms) for la in layers)
    if not layers or total <= 0:
        return None
    g = row.graph
    units = graph_units(g)
    rows, types = unit_rows(g, units)
    owner = {g.nodes[i].id: k for k, u in enumerate(units) for i in u.nodes}
    t = np.zeros(len(types))
    for la in layers:
        if str((la.extra or {}).get("op", "")) in _REORDER_OPS:
            continue
        ks = [owner[n] for n in la.nodes if n in owner]
        if ks:
            t[ks[0]] += float(la.time_ms) * row.latency_ms / total
    return rows, types, t


class Correction:
    """In-network / alone ratio per unit (module docstring)."""

    def __init__(self, km: Any, shrink: float, clip: float, seed: int = 0) -> None:
        self.km, self.shrink, self.clip, self.seed = km, shrink, clip, seed
        self.booster: Any = None
        self.types: set[str] = set()

    def _x(self, rows: np.ndarray, types: list[str]) -> np.ndarray:
        xr, _ = _roof(rows, self.km.meta["peak_macs_per_ms"], self.km.meta["bytes_per_ms"])
        code = np.array([TYPES.index(t) for t in types], dtype=float)
        return np.column_stack([xr, code])

    def fit(self, graphs: list[tuple[np.ndarray, list[str], np.ndarray]]) -> Correction:
        import lightgbm as lgb

        xs, ys, ts = [], [], []
        for rows, types, t in graphs:
            alone = self.km.unit_ms(rows, types)
            m = (t > 0) & (alone > 0) & (np.array(types) != "reorder")
            if m.any():
                xs.append(self._x(rows[m], [ty for ty, k in zip(types, m, strict=True) if k]))
                ys.append(np.log(t[m] / alone[m]))
                ts += [ty for ty, k in zip(types, m, strict=True) if k]
        x, y = np.vstack(xs), np.concatenate(ys)
        params = {**PARAMS, "seed": self.seed, "min_data_in_leaf": 20}
        self.booster = lgb.train(params, lgb.Dataset(x, y), 200)
        self.types = set(ts)
        return self

    def predict(self, rows: np.ndarray, types: list[str]) -> float:
        alone = self.km.unit_ms(rows, types)
        r = np.clip(self.booster.predict(self._x(rows, types)), -self.clip, self.clip)
        known = np.array([t in self.types for t in types])
        return float((alone * np.exp(np.where(known, self.shrink * r, 0.0))).sum())


def run(args: argparse.Namespace) -> dict[str, Any]:
    _, rows = load(args.train, args.device)
    _, tune = load(args.tune, args.device)
    ex = training.featurize_rows(rows, lambda stage, i, n: None)
    y_all = np.array([r.latency_ms for r in rows])
    run_ms = 0.0
    if args.run_overhead:  # as bench_graph_term.py --run-overhead: the per-run cost off the
        single = np.array([bool(r.single_layer) for r in rows])  # samples, once per graph
        run_ms = float(np.percentile(y_all[single], 1))
        y_all = np.where(single, np.maximum(y_all - run_ms, 1e-4), y_all)
    km = fit_from_examples(ex, y_all, seed=args.seed, run_cost=False, innet=False)
    whole = [r for r in rows if not r.single_layer]
    ut = [unit_times(r) for r in whole]
    keep = [i for i, u in enumerate(ut) if u is not None]
    whole, ut = [whole[i] for i in keep], [ut[i] for i in keep]
    y = np.array([r.latency_ms for r in whole])
    spaces = np.array([str(r.space) for r in whole])
    log(f"{len(whole)} space graphs with profiles, {sum(len(u[1]) for u in ut)} units")
    plain = np.array([km.unit_ms(u[0], u[1]).sum() for u in ut]) + run_ms
    tu = [unit_rows(r.graph) for r in tune]
    yt = np.array([r.latency_ms for r in tune])
    names = [str(r.model).removesuffix(".onnx") for r in tune]
    out: dict[str, Any] = {"tune_models": names, "tune_ms": yt.tolist(), "arms": {}}
    out["arms"]["plain"] = {
        "cv": _summary(y, plain),
        "cv_per_space": {s: _summary(y[spaces == s], plain[spaces == s]) for s in set(spaces)},
        "tune_pred": [float(km.unit_ms(*u).sum()) + run_ms for u in tu],
    }
    out["run_ms"] = run_ms
    folds = np.random.default_rng(args.seed).permutation(len(whole)) % 5
    for shrink in args.shrinks:
        cv = np.zeros(len(whole))
        for f in range(5):
            c = Correction(km, shrink, args.clip, args.seed)
            c.fit([ut[i] for i in np.flatnonzero(folds != f)])
            for i in np.flatnonzero(folds == f):
                cv[i] = c.predict(ut[i][0], ut[i][1]) + run_ms
        c = Correction(km, shrink, args.clip, args.seed).fit(ut)
        out["arms"][f"innet x{shrink:g}"] = {
            "cv": _summary(y, cv),
            "cv_per_space": {s: _summary(y[spaces == s], cv[spaces == s]) for s in set(spaces)},
            "tune_pred": [c.predict(*u) + run_ms for u in tu],
        }
    for a in out["arms"].values():
        a["tune"] = _summary(yt, np.array(a["tune_pred"]))
    return out


def markdown(res: dict[str, Any]) -> str:
    names = res["tune_models"]
    head = "| arm | CV MAPE % | CV mbconv / resnet | CV worst % | tune MAPE % | tune worst % | "
    lines = [head + " | ".join(names) + " |", "|---" * (6 + len(names)) + "|"]
    for arm, r in res["arms"].items():
        per = r["cv_per_space"]
        sp = " / ".join(f"{per[s]['mape']:.1f}" for s in sorted(per))
        errs = [
            f"{100 * (p / t - 1):+.1f}" for p, t in zip(r["tune_pred"], res["tune_ms"], strict=True)
        ]
        lines.append(
            f"| {arm} | {r['cv']['mape']:.1f} | {sp} | {r['cv']['worst']:+.1f} | "
            f"{r['tune']['mape']:.1f} | {r['tune']['worst']:+.1f} | " + " | ".join(errs) + " |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=Path, nargs="+", required=True)
    ap.add_argument("--tune", type=Path, nargs="+", required=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shrinks", type=float, nargs="+", default=[0.5, 1.0])
    ap.add_argument("--clip", type=float, default=1.0, help="max |log ratio| (default: e^1)")
    ap.add_argument(
        "--run-overhead",
        action="store_true",
        help="take the per-run cost (1st percentile of the samples' latencies) off every "
        "sample's label and add it once per graph",
    )
    ap.add_argument("--out", type=Path, default=Path("runs/u/innet"))
    args = ap.parse_args(argv)
    write_report(args.out, run(args), markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
