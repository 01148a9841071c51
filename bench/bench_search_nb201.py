"""NB201 search benchmark on replay devices: regret vs the true optimum, device measurements used,
against random search and against search without the predictor, same device budget.

Every search runs ``nasctl search``'s defaults, read from the same object the CLI reads them from
(:func:`nasctl.search.config.config_defaults`, i.e. :class:`~nasctl.search.config.SearchConfig`);
``--set KEY=VALUE`` changes one for the predictor variants (sweeps), and the table header prints
every setting that matters and what was changed.

For each column (a device in ``shared/data/nb201/latency_ms.csv``) and each budget (the 25th and
50th percentile of that column's latencies) and each seed, one search per variant runs with
``--device-budget`` measurements:

* ``predictor``: ``nasctl search`` as a user runs it (the defaults: NSGA-II proposals, the loop's
  own latency model, a Gaussian process on op counts fit near the budget, bootstrap from 20% of
  the device budget, validation rounds, the whole space scored before the final expected-
  improvement measurements, the last ``secure`` ones on the safest improvements);
* ``predictor-evo``: the same with ``--no-score-all``: only cells the evolution (and the
  loop's neighbourhood refinement) proposed are candidates;
* ``predictor-all``: ``--score-all`` given explicitly (same as ``predictor`` here);
* ``predictor-nasctl``: ``predictor`` with ``--bootstrap-model gp+nasctl``: once 20 cells are
  measured the loop trains nasctl's own GNN + GBDT predictor on them (again every 10 more) and
  the GP models its residual (:mod:`nasctl.search.latency.selftrained`);
* ``no-predictor``: ``--no-predictor --population 10``: NSGA-II where every proposed candidate
  is measured;
* ``random``: ``--no-predictor --strategy random --population 10``: every one measured.

Replay devices answer every genotype from its own row (``Device.reuses_by_hash`` is False for
them): the table lists isomorphic cells with different latencies, and the optimum is defined
per genotype.

The true optimum is the highest CIFAR-10 accuracy among cells whose table latency is <= budget;
regret = optimum - accuracy of the best *measured* feasible architecture found (accuracy points).
Also measured: predictor-scored candidates per minute (loop scoring: strategy ask/tell, accuracy
lookup, latency model) and the raw latency-model rate over all 15,625 cells.

    python bench/bench_search_nb201.py --columns titan_rtx_1,fpga --seeds 10 --out docs/x.md
    python bench/bench_search_nb201.py --columns pixel3 --quantiles 25 --variants predictor \
        --set secure=10 --seeds 5          # a sweep point: one default changed
"""

from __future__ import annotations

import argparse
import csv
import json
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


#: the SearchConfig fields a reader needs to know to reproduce a table (printed in its header)
SHOWN = (
    "population",
    "generations",
    "validate_every",
    "validation_share",
    "bootstrap",
    "refine_top",
    "refine_cap",
    "secure",
    "score_all",
    "reuse_stored",
    "bootstrap_model",
    "focus",
)


def overrides(pairs: list[str]) -> dict[str, object]:
    """``KEY=VALUE`` pairs -> SearchConfig field values (typed by the field's default)."""
    from nasctl.search.config import config_defaults

    defaults = config_defaults()
    out: dict[str, object] = {}
    for pair in pairs:
        key, _, text = pair.partition("=")
        if key not in defaults:
            raise SystemExit(
                f"--set {pair}: no SearchConfig field {key!r}; known: {sorted(defaults)}"
            )
        d = defaults[key]
        if text.lower() in ("none", "auto"):
            out[key] = None
        elif isinstance(d, bool) or text.lower() in ("true", "false"):
            out[key] = text.lower() in ("1", "true", "yes", "on")
        elif isinstance(d, int):
            out[key] = int(text)
        elif isinstance(d, float):
            out[key] = float(text)
        else:
            out[key] = text
    return out


#: what each variant changes from the CLI's defaults (the predictor variant changes nothing)
VARIANTS: dict[str, dict[str, object]] = {
    "predictor": {},
    "predictor-evo": {"score_all": False},
    "predictor-all": {"score_all": True},
    "predictor-nasctl": {"bootstrap_model": "gp+nasctl"},
    "no-predictor": {"use_predictor": False, "generations": 10_000, "population": 10},
    "random": {
        "use_predictor": False,
        "strategy": "random",
        "generations": 10_000,
        "population": 10,
    },
}


def replay_config(
    column: str, budget_ms: float, seed: int, device_budget: int, out: Path, sets: dict
):  # noqa: ANN201 - SearchConfig, imported late
    """The search the benchmark runs: NB201 on the replay column at the CLI's defaults
    (``SearchConfig``'s) except ``sets``; ``out`` is emptied first."""
    from nasctl.search.loop import SearchConfig
    from nasctl.search.objectives import Constraints

    shutil.rmtree(out, ignore_errors=True)
    return SearchConfig(
        space="nb201",
        device=f"replay:nb201/{column}",
        accuracy="nb201:cifar10",
        out=out,
        constraints=Constraints(latency_budget_ms=budget_ms),
        device_budget=device_budget,
        seed=seed,
        **sets,
    )


def one_run(variant: str, column: str, budget_ms: float, seed: int, args, tmp: Path):  # noqa: ANN001
    """One search at the CLI's defaults (``SearchConfig``'s), changed only by the variant and
    ``--set``; the device, accuracy, budget, device budget and seed are the command's."""
    from nasctl.search.loop import run_search

    out = tmp / f"{column}-{budget_ms:.4f}-{seed}-{variant}"
    sets = {**VARIANTS[variant], **(args.overrides if variant.startswith("predictor") else {})}
    res = run_search(replay_config(column, budget_ms, seed, args.device_budget, out, sets))
    shutil.rmtree(out, ignore_errors=True)
    return res


def header(args) -> str:  # noqa: ANN001
    """The settings every table below ran with: the defaults, and what differs from them."""
    from nasctl.search.config import SearchConfig, config_defaults

    d = config_defaults()
    vals = {k: args.overrides.get(k, d[k]) for k in SHOWN}
    probe = SearchConfig(
        "nb201", "replay", "nb201:cifar10", Path("."), device_budget=args.device_budget, **vals
    )
    resolved = {
        "bootstrap": probe.n_bootstrap(),
        "secure": probe.n_secure(),
        "score_all": "on here: table estimator, 15,625 cells",
    }
    shown = ", ".join(
        f"{k}={v}" if v is not None else f"{k}=auto ({resolved[k]})" for k, v in vals.items()
    )
    changed = ", ".join(f"{k}={v}" for k, v in args.overrides.items())
    text = (
        f"Device budget {args.device_budget} measurements. Predictor variants run `nasctl "
        f"search`'s defaults (`SearchConfig`): {shown}"
        + (f"; **changed from the defaults: {changed}**" if changed else " (no setting changed)")
        + "".join(f". {v}: {VARIANTS[v]}" for v in args.variants if VARIANTS[v])
        + ". Regret in CIFAR-10 accuracy points (0 = the true optimum, per genotype). Replay "
        "devices answer every genotype from its own row (`Device.reuses_by_hash` is False). "
        "Timings on a shared 2-core machine."
    )
    return text


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
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--device-budget", type=int, default=50)
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Change a SearchConfig default for the predictor variants (sweeps); printed.",
    )
    ap.add_argument("--variants", default="predictor,no-predictor,random")
    ap.add_argument("--jsonl", type=Path, default=None, help="Append one JSON line per run.")
    ap.add_argument("--out", type=Path, default=None, help="Markdown file (default: stdout).")
    args = ap.parse_args()
    os.environ.setdefault("NASCTL_DATA_DIR", str(DATA))
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    args.variants = variants
    args.overrides = overrides(args.set)
    lines = [header(args), ""]
    rates: list[float] = []
    walls: list[float] = []
    summary: list[str] = []
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
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                cells = []
                for v in variants:
                    t = time.perf_counter()
                    res = one_run(v, column, budget, seed, args, tmp)
                    reg = opt - res.best.accuracy if res.best else float("nan")
                    wall = time.perf_counter() - t
                    walls.append(wall)
                    if args.jsonl:
                        with args.jsonl.open("a") as f:
                            rec = {
                                "column": column,
                                "quantile": q,
                                "budget_ms": budget,
                                "seed": seed,
                                "variant": v,
                                "set": args.set,
                                "regret": reg,
                                "used": res.device_measurements,
                                "wall_s": round(wall, 1),
                            }
                            f.write(json.dumps(rec) + "\n")
                    regrets[v].append(reg)
                    cells += [f"{reg:.2f}" if res.best else "none", str(res.device_measurements)]
                    if v == "predictor" and res.scoring_s > 0:  # evolution-driven scoring
                        rates.append(res.candidates_scored / res.scoring_s * 60)
                    print(
                        f"{column} p{q:g} seed {seed} {v}: regret {reg:.2f} used "
                        f"{res.device_measurements} scored {res.candidates_scored} "
                        f"({wall:.0f} s)",
                        file=sys.stderr,
                        flush=True,
                    )
                lines.append(f"| {seed} | " + " | ".join(cells) + " |")
            summ = []
            for v in variants:
                r = np.array(regrets[v])
                hits = int(np.sum(r <= 1e-9))
                summary.append(
                    f"| {column}, p{q:g} ({budget:.4g} ms) | {v} | {hits}/{len(r)} | "
                    f"{np.nanmax(r):.2f} | {np.nanmean(r):.3f} | {int(np.isnan(r).sum())} |"
                )
                summ += [
                    f"optimum {hits}/{len(r)}, max {np.nanmax(r):.2f}, mean {np.nanmean(r):.2f}",
                    "",
                ]
            lines += ["| **summary** | " + " | ".join(summ) + " |", ""]
    lines = [
        lines[0],
        "",
        "| column, budget | variant | optimum found | max regret | mean regret | no answer |",
        "|---|---|---|---|---|---|",
        *summary,
        "",
        f"{len(walls)} runs, {np.median(walls):.0f} s median, {max(walls):.0f} s max per run "
        f"(wall clock, shared machine).",
        "",
        *lines[1:],
    ]
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
