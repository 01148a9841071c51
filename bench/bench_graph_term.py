"""Choose the per-kernel model's per-graph term without the aside set (issue 16).

The per-kernel model answers ``predict`` for graphs outside the training ranges with the sum of
its kernels' predicted times plus a per-graph term fitted on the spaces' whole-graph rows
(:data:`nasctl.predictor.kernel_model.TERM_RULES`). This bench compares the rules on data that
is NOT the aside evaluation set of bench/zoo.py + bench/zoo_more.py:

* (a) 5-fold cross-validation over the training dbs' whole graphs (search-space architectures):
  the kernel regressors are fit on the kernel rows only, the term on 4 folds, scored on the 5th;
* (b) a tuning set of other families (bench/zoo_tune.py, measured with ``nasctl profile``): the
  term fit on all whole graphs, scored on each tuning model.

    PYTHONPATH=. .venv/bin/python bench/bench_graph_term.py --train runs/u/kernels.db \\
        runs/u/kernels_u1.db runs/u/cpu.db --tune runs/u/tune.db --out runs/u/graph_term

Prints, per rule: CV MAPE per space and overall, worst CV error, tuning MAPE / worst / within
+-10 %, and the tuning models' errors; writes <out>.json and <out>.md.
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
from nasctl.predictor.kernel_model import TERM_RULES, fit_from_examples, fit_term  # noqa: E402
from nasctl.predictor.kernel_units import unit_rows  # noqa: E402


def _predict(K: np.ndarray, n: np.ndarray, theta: tuple) -> np.ndarray:  # noqa: N803
    scale, per_unit, const = theta
    return np.maximum(K @ scale + per_unit * n + const, 0.5 * K.sum(1))


def run(args: argparse.Namespace) -> dict[str, Any]:
    _, rows = load(args.train, args.device)
    _, tune = load(args.tune, args.device)
    ex = training.featurize_rows(rows, lambda stage, i, n: None)
    y = np.array([r.latency_ms for r in rows])
    run_ms = 0.0
    if args.run_overhead:  # each sample pays the per-run cost once; a network pays it once too
        single = np.array([bool(r.single_layer) for r in rows])
        run_ms = float(np.percentile(y[single], 1))
        y = np.where(single, np.maximum(y - run_ms, 1e-4), y)
    km = fit_from_examples(ex, y, seed=args.seed, run_cost=False, innet=False)  # arms below
    if km is None:
        raise SystemExit("error: too few kernel rows in --train")
    w = [i for i, e in enumerate(ex) if not e.single_layer and e.units is not None]
    log(f"{len(rows)} rows, {len(w)} whole graphs, {len(tune)} tuning models")
    Kw, yw = km.type_sums([ex[i].units for i in w]), y[w] - run_ms  # noqa: N806
    nw = np.array([len(ex[i].units[1]) for i in w], dtype=float)
    spaces = np.array([str(ex[i].space) for i in w])
    tu = [unit_rows(r.graph) for r in tune]
    Kt, yt = km.type_sums(tu), np.array([r.latency_ms for r in tune]) - run_ms  # noqa: N806
    nt = np.array([len(t) for _, t in tu], dtype=float)
    names = [str(r.model or r.genotype).removesuffix(".onnx") for r in tune]
    folds = np.random.default_rng(args.seed).permutation(len(w)) % 5
    out: dict[str, Any] = {
        "rules": {},
        "tune_models": names,
        "tune_ms": (yt + run_ms).tolist(),
        "run_ms": run_ms,
    }
    yw, yt = yw + run_ms, yt + run_ms
    for rule in TERM_RULES:
        cv = np.zeros(len(w))
        for f in range(5):
            tr, te = folds != f, folds == f
            theta = fit_term(Kw[tr], nw[tr], yw[tr] - run_ms, rule)
            cv[te] = _predict(Kw[te], nw[te], theta) + run_ms
        theta = fit_term(Kw, nw, yw - run_ms, rule)
        pt = _predict(Kt, nt, theta) + run_ms
        res = {
            "cv": _summary(yw, cv),
            "cv_per_space": {s: _summary(yw[spaces == s], cv[spaces == s]) for s in set(spaces)},
            "tune": _summary(yt, pt),
            "tune_pred": pt.tolist(),
            "theta": {
                "scale": dict(zip(km.meta["graph_term"]["scale"], theta[0].tolist(), strict=True)),
                "per_unit_ms": theta[1],
                "const_ms": theta[2],
            },
        }
        out["rules"][rule] = res
    out["choice"] = choose(out["rules"])
    return out


def choose(rules: dict[str, Any]) -> str:
    """The pre-registered pick: smallest worst |error| on the tuning set among rules whose CV
    MAPE is within 2 points of the best; worst within 1 point: lower tuning MAPE, then plain."""
    best_cv = min(r["cv"]["mape"] for r in rules.values())
    ok = {k: r for k, r in rules.items() if r["cv"]["mape"] <= best_cv + 2.0}
    least = min(abs(r["tune"]["worst"]) for r in ok.values())
    near = {k: r for k, r in ok.items() if abs(r["tune"]["worst"]) <= least + 1.0}
    return min(near, key=lambda k: (round(near[k]["tune"]["mape"], 1), k != "plain"))


def markdown(res: dict[str, Any]) -> str:
    names = res["tune_models"]
    head = "| rule | CV MAPE % | CV mbconv / resnet | CV worst % | tune MAPE % | tune worst % | "
    lines = [head + " | ".join(names) + " |", "|---" * (6 + len(names)) + "|"]
    for rule, r in res["rules"].items():
        per = r["cv_per_space"]
        sp = " / ".join(f"{per[s]['mape']:.1f}" for s in sorted(per))
        errs = [
            f"{100 * (p / t - 1):+.1f}" for p, t in zip(r["tune_pred"], res["tune_ms"], strict=True)
        ]
        lines.append(
            f"| {rule} | {r['cv']['mape']:.1f} | {sp} | {r['cv']['worst']:+.1f} | "
            f"{r['tune']['mape']:.1f} | {r['tune']['worst']:+.1f} | " + " | ".join(errs) + " |"
        )
    lines.append(
        f"\nmeasured ms: {dict(zip(names, [round(t, 2) for t in res['tune_ms']], strict=True))}"
    )
    lines.append(f"per-run cost taken off the samples: {1e3 * res['run_ms']:.1f} us")
    lines.append(f"choice (pre-registered rule): **{res['choice']}**")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=Path, nargs="+", required=True, help="kernels + spaces dbs")
    ap.add_argument("--tune", type=Path, nargs="+", required=True, help="tuning-set dbs")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--run-overhead",
        action="store_true",
        help="experiment: take the per-run cost (1st percentile of the samples' latencies) off "
        "every kernel sample's label and add it once per graph",
    )
    ap.add_argument("--out", type=Path, default=Path("runs/u/graph_term"))
    args = ap.parse_args(argv)
    write_report(args.out, run(args), markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
