"""Choose the per-kernel model's default (issue 16, kernel-units-v5/v6) without any aside set.

Arms of :func:`nasctl.predictor.kernel_model.fit_from_examples`: the per-run cost off the
samples' labels (``run_cost``) and the in-network correction learned from the space graphs'
per-layer profiles (``innet``), each on or off; the answer is ``KernelModel.predict_ms`` (the
kernel sum with the default per-graph term and, with ``run_cost``, one per-run cost). Scored on

* (a) 5-fold CV over the training dbs' whole graphs (search-space architectures): the model fit
  on every kernel row and 4 folds of graphs (their profiles train the correction), scored on
  the 5th fold's graphs;
* (b) the tuning set of bench/zoo_tune.py: the model fit on all training rows.

    PYTHONPATH=. .venv/bin/python bench/bench_kernel_default.py --train runs/u/kernels.db \\
        runs/u/kernels_u1.db runs/u/cpu.db --tune runs/u/tune.db --out runs/u2/kernel_default
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
from nasctl.predictor.kernel_model import fit_from_examples  # noqa: E402
from nasctl.predictor.kernel_units import unit_rows  # noqa: E402

ARMS: dict[str, dict[str, Any]] = {
    "plain (v4 default)": {"run_cost": False, "innet": False},
    "run cost": {"run_cost": True, "innet": False},
    "in-network x0.5": {"run_cost": False, "innet": True, "shrink": 0.5},
    "run cost + in-network x0.5 (default since 2026-12-03)": {
        "run_cost": True,
        "innet": True,
        "shrink": 0.5,
    },
    "run cost + in-network x0.75, no range gate (v5 default)": {
        "run_cost": True,
        "innet": True,
        "shrink": 0.75,
        "gate": False,
    },
    "run cost + in-network x0.75 (v6 first default)": {
        "run_cost": True,
        "innet": True,
        "shrink": 0.75,
    },
    "run cost + in-network x1": {"run_cost": True, "innet": True, "shrink": 1.0},
}


def _fit(ex: list[Any], y: np.ndarray, seed: int, kw: dict[str, Any]) -> Any:
    """fit_from_examples with the arm's switches; ``shrink`` replaces the correction's shrink;
    ``gate`` False widens its fitted ranges to everything (v5: the correction extrapolates)."""
    km = fit_from_examples(ex, y, seed=seed, run_cost=kw["run_cost"], innet=kw["innet"])
    assert km is not None
    if "shrink" in kw:
        km.meta["innet_shrink"] = kw["shrink"]
    if not kw.get("gate", True):
        km.meta["innet_ranges"] = {
            t: {k: [-np.inf, np.inf] for k in r} for t, r in km.meta.get("innet_ranges", {}).items()
        }
    return km


def run(args: argparse.Namespace) -> dict[str, Any]:
    _, rows = load(args.train, args.device)
    _, tune = load(args.tune, args.device)
    ex = training.featurize_rows(rows, lambda stage, i, n: None)
    y = np.array([r.latency_ms for r in rows])
    w = np.array([i for i, e in enumerate(ex) if not e.single_layer and e.units is not None])
    single = np.array([i for i, e in enumerate(ex) if e.single_layer])
    spaces = np.array([str(ex[i].space) for i in w])
    folds = np.random.default_rng(args.seed).permutation(len(w)) % 5
    tu = [unit_rows(r.graph) for r in tune]
    yt = np.array([r.latency_ms for r in tune])
    log(f"{len(rows)} rows, {len(w)} whole graphs, {len(tune)} tuning models")
    out: dict[str, Any] = {
        "tune_models": [str(r.model).removesuffix(".onnx") for r in tune],
        "tune_ms": yt.tolist(),
        "arms": {},
    }
    for arm, kw in ARMS.items():
        cv = np.zeros(len(w))
        for f in range(5):
            keep = np.r_[single, w[folds != f]]
            km = _fit([ex[i] for i in keep], y[keep], args.seed, kw)
            test = w[folds == f]
            cv[folds == f] = km.predict_ms([ex[i].units for i in test])
        km = _fit(ex, y, args.seed, kw)
        pt = km.predict_ms(tu)
        yw = y[w]
        out["arms"][arm] = {
            "cv": _summary(yw, cv),
            "cv_per_space": {s: _summary(yw[spaces == s], cv[spaces == s]) for s in set(spaces)},
            "tune": _summary(yt, pt),
            "tune_pred": pt.tolist(),
            "run_ms": km.meta["run_ms"],
            "innet_units": km.meta.get("innet_units", 0),
        }
        log(f"{arm}: CV {out['arms'][arm]['cv']['mape']:.1f} %, tune {_summary(yt, pt)}")
    return out


def markdown(res: dict[str, Any]) -> str:
    names = res["tune_models"]
    head = "| arm | run ms | CV MAPE % | CV mbconv / resnet | CV worst % | tune MAPE % | "
    head += "tune worst % | "
    lines = [head + " | ".join(names) + " |", "|---" * (7 + len(names)) + "|"]
    for arm, r in res["arms"].items():
        per = r["cv_per_space"]
        sp = " / ".join(f"{per[s]['mape']:.1f}" for s in sorted(per))
        errs = [
            f"{100 * (p / t - 1):+.1f}" for p, t in zip(r["tune_pred"], res["tune_ms"], strict=True)
        ]
        lines.append(
            f"| {arm} | {1000 * r['run_ms']:.1f} us | {r['cv']['mape']:.1f} | {sp} | "
            f"{r['cv']['worst']:+.1f} | {r['tune']['mape']:.1f} | {r['tune']['worst']:+.1f} | "
            + " | ".join(errs)
            + " |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=Path, nargs="+", required=True)
    ap.add_argument("--tune", type=Path, nargs="+", required=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("runs/u2/kernel_default"))
    args = ap.parse_args(argv)
    write_report(args.out, run(args), markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
