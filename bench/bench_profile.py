"""Benchmark `nasctl profile` on the cpu device: throughput, overhead, repeatability.

Targets (issue 3): mbconv at 128-160 px, >= 30 architectures per minute on 2 cores, with the time
outside the timed runs (ONNX writing, session creation, storage) under 20% of the total; and the
spread of medians of one architecture profiled in 5 separate runs.

    .venv/bin/python bench/bench_profile.py --json            # defaults: 30 archs, 5 repeats
    .venv/bin/python bench/bench_profile.py --num 10 --repeat-runs 3

Runs the same library path as ``nasctl profile`` (``nasctl.datasets.collect.collect`` into a fresh
SQLite store) and reads each measurement's own phase timings (``extra.timing_s``) back from the
store. Timings on a shared machine are noisy; say so when quoting them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from nasctl.datasets.collect import collect, space_jobs
from nasctl.datasets.store import Store
from nasctl.profiler import get_device
from nasctl.records import MeasurementRequest
from nasctl.spaces.mbconv import MBConvSpace

PHASES = ("load", "session_create", "warmup", "timed", "per_layer")


def throughput(db: Path, num: int, seed: int, resolutions: list[int], per_layer: bool) -> dict:
    """Profile ``num`` mbconv architectures; archs/minute and where the wall time went (s)."""
    space = MBConvSpace(resolutions=resolutions)
    dev = get_device("cpu")
    with Store(db) as store:
        t0, c0 = time.perf_counter(), time.process_time()
        summary = collect(store, dev, space_jobs(store, space, num, seed), num, per_layer=per_layer)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        phases = dict.fromkeys(PHASES, 0.0)
        for row in store.iter_measurements():
            timing = json.loads(row["extra_json"]).get("timing_s", {})
            for p in PHASES:
                phases[p] += float(timing.get(p) or 0.0)
    timed = phases["warmup"] + phases["timed"]
    rest = wall - sum(phases.values())  # sampling, graph building, hashing, storage
    return {
        "archs": summary.measured,
        "ok": summary.ok,
        "noisy": summary.noisy,
        "failed": summary.failed,
        "wall_s": round(wall, 2),
        # CPU seconds this process got: far below wall_s means other load shared the cores
        "process_cpu_s": round(cpu, 2),
        "archs_per_min": round(60 * summary.measured / wall, 1),
        "phases_s": {
            **{p: round(v, 2) for p, v in phases.items()},
            "store_and_sampling": round(rest, 2),
        },
        # the target metric: ONNX writing + session creation + storage, per-layer run excluded
        "overhead_fraction": round((wall - timed - phases["per_layer"]) / wall, 3),
        # everything outside warm-up and timed runs, the separate per-layer profiled run included
        "outside_timed_fraction": round((wall - timed) / wall, 3),
    }


def repeatability(runs: int, seed: int, resolutions: list[int]) -> dict:
    """One architecture measured in ``runs`` separate runs (fresh session each); spread (ms)."""
    from nasctl.datasets.store import graph_hash

    space = MBConvSpace(resolutions=resolutions)
    genotype = space.sample(__import__("random").Random(seed))
    graph = space.to_graph(genotype)
    dev = get_device("cpu")
    req = MeasurementRequest(
        arch_hash=graph_hash(graph), device="cpu", graph_json=graph.to_json(), per_layer=False
    )
    medians, cvs = [], []
    for _ in range(runs):
        m = dev.measure(req)
        if m.median_ms is None:
            raise SystemExit(f"repeatability run failed: {m.error}")
        medians.append(m.median_ms)
        cvs.append(m.cv)
    mid = statistics.median(medians)
    return {
        "genotype": genotype,
        "medians_ms": [round(x, 3) for x in medians],
        "median_of_medians_ms": round(mid, 3),
        "spread_fraction": round((max(medians) - min(medians)) / mid, 4),
        "std_of_medians_fraction": round(statistics.pstdev(medians) / mid, 4),
        "cv_within_runs": [round(c, 4) for c in cvs],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--num", type=int, default=30, help="architectures to profile (default 30)")
    ap.add_argument("--repeat-runs", type=int, default=5, help="separate runs of one arch")
    ap.add_argument("--resolutions", default="128,144,160", help="mbconv input sizes (px)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-layers", action="store_true", help="skip the per-layer profiled run")
    ap.add_argument("--db", type=Path, help="store to write (default: a temporary file)")
    ap.add_argument("--json", action="store_true", help="print JSON")
    a = ap.parse_args(argv)
    res = [int(r) for r in a.resolutions.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        db = a.db or Path(tmp) / "bench.db"
        out: dict[str, Any] = {
            "device": get_device("cpu").device_id,
            "space": f"mbconv r{res[0]}-{res[-1]}",
            "throughput": throughput(db, a.num, a.seed, res, not a.no_layers),
            "repeatability": repeatability(a.repeat_runs, a.seed + 1, res),
            "targets": {"archs_per_min": ">= 30", "overhead_fraction": "< 0.20"},
        }
    if a.json:
        print(json.dumps(out, indent=2))
    else:
        t, r = out["throughput"], out["repeatability"]
        print(
            f"{out['device']} {out['space']}: {t['archs']} archs in {t['wall_s']} s = "
            f"{t['archs_per_min']}/min; overhead {t['overhead_fraction']:.1%} "
            f"(outside timed runs incl. per-layer run {t['outside_timed_fraction']:.1%})"
        )
        print(f"  phases (s): {t['phases_s']}")
        print(
            f"  repeatability over {len(r['medians_ms'])} runs: medians {r['medians_ms']} ms, "
            f"spread {r['spread_fraction']:.1%}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
