"""Why an NB201 replay search misses the optimum: one line per run, at the CLI's defaults.

For each run (column, budget quantile, seed) the best feasible cells of the table (the optimum's
accuracy class) are followed through the search and the miss is classified:

* ``hit``: the answer is the optimum;
* ``never scored``: the optimum never became a candidate (no estimate);
* ``predicted over``: scored but never measured; its predicted interval (at each phase's start
  and at the end) is printed, with ``P(latency <= budget)`` under the model;
* ``measured over``: measured above the budget (a replay table: not possible unless noisy);
* ``lost``: measured within the budget but not reported (the budget accounting).

    python bench/diag_search_nb201.py --columns raspi4 --quantiles 25 --seeds 10
    python bench/diag_search_nb201.py --columns gold_6240 --quantiles 25 --seeds 5 --set secure=5
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_search_nb201 import DATA, overrides, replay_config, tables  # noqa: E402


def p_feasible(mean: float, low: float, high: float, budget: float, z: float) -> float:
    from scipy.special import ndtr

    sigma = max((math.log(high) - math.log(low)) / (2 * z), 1e-6)
    return float(ndtr((math.log(budget) - math.log(mean)) / sigma))


def diagnose(  # noqa: PLR0913
    column: str, q: float, seed: int, sets: dict, budget_n: int, tmp: Path, dump: Path | None
) -> str:
    from nasctl.search.loop import SearchLoop
    from nasctl.search.objectives import Candidate

    lat, acc = tables(column)
    budget = float(np.percentile(list(lat.values()), q))
    opt = max(acc[a] for a, v in lat.items() if v <= budget)
    winners = [a for a, v in lat.items() if v <= budget and acc[a] >= opt - 1e-9]
    cfg = replay_config(column, budget, seed, budget_n, tmp / f"{column}-{q}-{seed}", sets)
    loop = SearchLoop(cfg)
    seen: list[str] = []

    def at_phase(event: str, **info) -> None:  # noqa: ANN003
        if event != "phase" or info.get("name") not in ("validate", "final", "secure"):
            return
        if loop.latency.model is None or getattr(loop.latency.model, "n_train", 0) < 3:
            return
        w = winners[0]
        if loop.archive.get(w) is not None and loop.archive[w].measured_ms is not None:
            return
        c = Candidate(w)
        loop.latency.predict([c])
        pf = p_feasible(c.mean_ms, c.low_ms, c.high_ms, budget, loop.latency.z)
        seen.append(
            f"{info['name'][:3]}@{loop.used}:{c.mean_ms:.3g}[{c.low_ms:.3g},"
            f"{c.high_ms:.3g}]p{pf:.2f}"
        )

    loop.progress = at_phase
    t = time.perf_counter()
    res = loop.run()
    wall = time.perf_counter() - t
    if dump is not None:  # the measured latencies, to refit the model offline
        rows = {m["genotype"]: m["measured_ms"] for m in res.measurements}
        dump.write_text(json.dumps({"budget": budget, "optimum": winners[0], "measured": rows}))
    shutil.rmtree(cfg.out, ignore_errors=True)
    reg = opt - res.best.accuracy if res.best else float("nan")
    by_g = {c.genotype: c for c in res.candidates}
    phases = {m["genotype"]: m["phase"] for m in res.measurements}
    kinds = []
    for w in winners:
        c = by_g.get(w)
        if c is None or c.accuracy is None:
            kinds.append("never scored")
        elif c.measured_ms is None:
            pf = (
                p_feasible(c.mean_ms, c.low_ms, c.high_ms, budget, loop.latency.z)
                if c.mean_ms
                else float("nan")
            )
            kinds.append(
                f"predicted over: end {c.mean_ms:.3g} [{c.low_ms:.3g}, {c.high_ms:.3g}] p{pf:.2f}"
            )
        elif c.measured_ms > budget:
            kinds.append(f"measured over ({c.measured_ms:.4g} ms, {phases.get(w)})")
        elif reg > 1e-9:
            kinds.append(f"lost (measured {c.measured_ms:.4g} ms, {phases.get(w)})")
        else:
            kinds.append(f"hit ({phases.get(w)})")
    n_phase: dict[str, int] = {}
    for m in res.measurements:
        n_phase[m["phase"]] = n_phase.get(m["phase"], 0) + 1
    best = res.best
    return (
        f"{column} p{q:g} ({budget:.4g} ms, opt {opt:.2f}) seed {seed}: regret {reg:.2f} "
        f"(best {best.accuracy:.2f} at {best.measured_ms:.4g} ms) used {res.device_measurements} "
        f"{n_phase} wall {wall:.1f} s\n    optimum {winners[0]} ({lat[winners[0]]:.4g} ms): "
        f"{kinds[0]}"
        + (f"; {len(winners) - 1} more of its class" if len(winners) > 1 else "")
        + ("\n    before phases: " + " ".join(seen) if seen and reg > 1e-9 else "")
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--columns", default="raspi4")
    ap.add_argument("--quantiles", default="25")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--only", default="", help="Comma-separated seeds (instead of a range).")
    ap.add_argument("--device-budget", type=int, default=50)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--dump", type=Path, default=None, help="Folder: measured latencies per run.")
    args = ap.parse_args()
    os.environ.setdefault("NASCTL_DATA_DIR", str(DATA))
    sets = overrides(args.set)
    seeds = (
        [int(s) for s in args.only.split(",")]
        if args.only
        else list(range(args.first_seed, args.first_seed + args.seeds))
    )
    tmp = Path(tempfile.mkdtemp(prefix="diag_search_"))
    for column in args.columns.split(","):
        for q in (float(x) for x in args.quantiles.split(",")):
            for seed in seeds:
                dump = None
                if args.dump is not None:
                    args.dump.mkdir(parents=True, exist_ok=True)
                    dump = args.dump / f"{column}-p{q:g}-{seed}.json"
                line = diagnose(column, q, seed, sets, args.device_budget, tmp, dump)
                print(line, flush=True)
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
