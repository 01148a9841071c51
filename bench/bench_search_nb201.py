"""NB201 search benchmark on replay devices: regret vs the true optimum, device measurements used,
against random search and against search without the predictor, same device budget.

For each column (a device in ``shared/data/nb201/latency_ms.csv``) and each budget (the 25th and
50th percentile of that column's latencies) and each seed, three searches run with
``--device-budget`` measurements:

* ``predictor``: ``nasctl search --use-predictor`` (NSGA-II drives the proposals, the loop's own
  latency model, a Gaussian process on op counts fit near the budget, bootstraps from 20% of the
  budget, validation every K generations, final expected-improvement measurements);
  With a cheap estimator on a small enumerable space (here) ``--score-all`` is on by default:
  before the final measurements the latency model scores all 15,625 cells;
* ``predictor-evo``: the same with ``--no-score-all``: only cells the evolution (and the
  loop's neighbourhood refinement) proposed are candidates;
* ``predictor-all``: ``--score-all`` given explicitly (same as ``predictor`` here);
* ``predictor-nasctl``: ``predictor`` with ``--bootstrap-model gp+nasctl``: once 20 cells are
  measured the loop trains nasctl's own GNN + GBDT predictor on them (again every 10 more) and
  the GP models its residual (:mod:`nasctl.search.latency.selftrained`);
* ``no-predictor``: NSGA-II where every proposed candidate is measured;
* ``random``: random genotypes, every one measured.

The true optimum is the highest CIFAR-10 accuracy among cells whose table latency is <= budget;
regret = optimum - accuracy of the best *measured* feasible architecture found (accuracy points).
Also measured: predictor-scored candidates per minute (loop scoring: strategy ask/tell, accuracy
lookup, latency model) and the raw latency-model rate over all 15,625 cells.

    python bench/bench_search_nb201.py --columns titan_rtx_1,fpga --seeds 10 --out docs/x.md
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("NASCTL_DATA_DIR", REPO.parent / "shared" / "data"))


def tables(column: str) -> tuple[dict[str, float], dict[str, float]]:
    with (DATA / "nb201" / "latency_ms.csv").open(newline="") as f:
        lat = {r["arch"]: float(r[column]) for r in csv.DictReader(f) if r[column] != ""}
    with (DATA / "nb201" / "accuracy.csv").open(newline="") as f:
        acc = {r["arch"]: float(r["cifar10_test_acc"]) for r in csv.DictReader(f)}
    return lat, acc


def one_run(variant: str, column: str, budget_ms: float, seed: int, args, tmp: Path):  # noqa: ANN001
    from nasctl.search.loop import SearchConfig, run_search
    from nasctl.search.objectives import Constraints

    out = tmp / f"{column}-{budget_ms:.4f}-{seed}-{variant}"
    shutil.rmtree(out, ignore_errors=True)
    cfg = SearchConfig(
        space="nb201",
        device=f"replay:nb201/{column}",
        accuracy="nb201:cifar10",
        out=out,
        constraints=Constraints(latency_budget_ms=budget_ms),
        device_budget=args.device_budget,
        seed=seed,
        validate_every=args.validate_every,
        strategy="random" if variant == "random" else "nsga2",
        use_predictor=variant.startswith("predictor"),
        score_all={"predictor-all": True, "predictor-evo": False}.get(variant),
        bootstrap_model="gp+nasctl" if variant == "predictor-nasctl" else "gp",
        generations=args.generations if variant.startswith("predictor") else 10_000,
        population=args.population if variant.startswith("predictor") else args.population_measured,
        reuse_stored=False,  # the table answers per genotype; isomorphic cells differ in it
    )
    res = run_search(cfg)
    shutil.rmtree(out, ignore_errors=True)
    return res


def model_rate(column: str) -> float:
    """Latency-model predictions per minute over all NB201 cells (features included)."""
    from nasctl.search.latency.models import SurrogateLatencyModel
    from nasctl.spaces import get_space

    space = get_space("nb201")
    lat, _ = tables(column)
    cells = space.enumerate()
    rng = np.random.default_rng(0)
    train = {g: lat[g] for g in rng.choice(cells, 50, replace=False) if g in lat}
    model = SurrogateLatencyModel(space)
    model.update(train)
    t = time.perf_counter()
    model.predict(cells)
    return len(cells) / (time.perf_counter() - t) * 60


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--columns", default="titan_rtx_1,fpga")
    ap.add_argument("--quantiles", default="25,50")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--device-budget", type=int, default=50)
    ap.add_argument("--generations", type=int, default=20)
    ap.add_argument("--population", type=int, default=100)
    ap.add_argument("--population-measured", type=int, default=10)
    ap.add_argument("--validate-every", type=int, default=5)
    ap.add_argument("--variants", default="predictor,predictor-all,no-predictor,random")
    ap.add_argument("--out", type=Path, default=None, help="Markdown file (default: stdout).")
    args = ap.parse_args()
    os.environ.setdefault("NASCTL_DATA_DIR", str(DATA))
    variants = args.variants.split(",")
    lines = [
        f"Device budget {args.device_budget} measurements; predictor variant: "
        f"{args.generations} generations x {args.population} (NSGA-II, Optuna), "
        f"validation every {args.validate_every}; measured variants: population "
        f"{args.population_measured}. Regret in CIFAR-10 accuracy points "
        "(0 = the true optimum). Every genotype is asked from the replay table "
        "(`reuse_stored=False`: the table lists isomorphic cells with different latencies, "
        "up to 15% apart on titan_rtx_1, and the optimum is defined per genotype). "
        "Timings on a shared 2-core machine.",
        "",
    ]
    rates: list[float] = []
    tmp = Path(tempfile.mkdtemp(prefix="bench_search_"))
    for column in args.columns.split(","):
        lat, acc = tables(column)
        for q in (float(x) for x in args.quantiles.split(",")):
            budget = float(np.percentile(list(lat.values()), q))
            opt = max(acc[a] for a, v in lat.items() if v <= budget)
            lines += [
                f"### {column}, budget p{q:g} = {budget:.4g} ms (optimum {opt:.2f}%)",
                "",
                "| seed | " + " | ".join(f"regret {v} | used {v}" for v in variants) + " |",
                "|---" * (1 + 2 * len(variants)) + "|",
            ]
            regrets: dict[str, list[float]] = {v: [] for v in variants}
            for seed in range(args.seeds):
                cells = []
                for v in variants:
                    t = time.perf_counter()
                    res = one_run(v, column, budget, seed, args, tmp)
                    reg = opt - res.best.accuracy if res.best else float("nan")
                    regrets[v].append(reg)
                    cells += [f"{reg:.2f}" if res.best else "none", str(res.device_measurements)]
                    if v == "predictor" and res.scoring_s > 0:  # evolution-driven scoring
                        rates.append(res.candidates_scored / res.scoring_s * 60)
                    print(
                        f"{column} p{q:g} seed {seed} {v}: regret {reg:.2f} used "
                        f"{res.device_measurements} scored {res.candidates_scored} "
                        f"({time.perf_counter() - t:.0f} s)",
                        file=sys.stderr,
                        flush=True,
                    )
                lines.append(f"| {seed} | " + " | ".join(cells) + " |")
            summ = []
            for v in variants:
                r = np.array(regrets[v])
                hits = int(np.sum(r <= 1e-9))
                summ += [
                    f"optimum {hits}/{len(r)}, max {np.nanmax(r):.2f}, mean {np.nanmean(r):.2f}",
                    "",
                ]
            lines += ["| **summary** | " + " | ".join(summ) + " |", ""]
    if "predictor" in variants:
        mr = model_rate(args.columns.split(",")[0])
        lines += [
            f"Throughput: {np.median(rates):,.0f} predictor-scored candidates/min in the "
            f"loop (median over runs; NSGA-II ask/tell + accuracy + latency model), "
            f"{mr:,.0f}/min for the latency model alone (15,625 cells, one batch).",
            "",
        ]
    text = "\n".join(lines)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
