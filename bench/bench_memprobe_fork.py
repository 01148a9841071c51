"""Issue 14.3: the forked memory probe (``memory=forked``) against a new Python process per model
(``memory=fresh``, the cpu device's default), side by side on space networks. (Results written
before the rename name the forked probe ``fresh`` and the new process ``spawn``.)

``--archs`` architectures of ``--space`` (seed ``--seed``) are measured through the cpu device
twice each, alternating which way goes first (with ``--spawn-twice`` a second new-process
measurement: how much the new-process probe disagrees with itself); the timing protocol is
short (memory does not depend on it). Per net: both ``model_peak_bytes``, their ratio, and
each probe's CPU seconds (``memory.probe_cpu_s``: the child's user + system CPU; for
``spawn`` the whole new process) and wall seconds (``timing_s.memory``).

    PYTHONPATH=$PWD:$PWD/agent nice -n 19 .venv/bin/python bench/bench_memprobe_fork.py \\
        --space mbconv --archs 20 --out runs/memprobe_fork.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

SHORT = {"warmup": 1, "warmup_s": 0.01, "repeats": 3, "min_time_s": 0.0, "max_attempts": 1}


def measure(dev: Any, graph: Any, memory: str) -> dict[str, Any]:
    from nasctl.arch.hashing import graph_hash
    from nasctl.records import MeasurementRequest

    req = MeasurementRequest(
        arch_hash=graph_hash(graph), device="cpu", graph_json=graph.to_json(), per_layer=False,
        options={**SHORT, "memory": memory},
    )  # fmt: skip
    m = dev.measure(req)
    mem = m.extra.get("memory") or {}
    return {
        "model_peak_mb": (mem.get("model_peak_bytes") or 0) / 1e6 or None,
        "probe_cpu_s": mem.get("probe_cpu_s"),
        "wall_s": (m.extra.get("timing_s") or {}).get("memory"),
        "process": mem.get("probe_process"),
        "missing": mem.get("missing"),
    }


def main() -> None:
    from nasctl.datasets.collect import sample_architectures
    from nasctl.profiler import get_device
    from nasctl.spaces import get_space

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--space", default="mbconv")
    ap.add_argument("--archs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("runs/memprobe_fork.json"))
    ap.add_argument("--spawn-twice", action="store_true")
    args = ap.parse_args()
    dev = get_device("cpu")
    rows = []
    for i, (genotype, graph) in enumerate(
        sample_architectures(get_space(args.space), args.archs, args.seed)
    ):
        order = ("forked", "fresh") if i % 2 == 0 else ("fresh", "forked")
        row: dict[str, Any] = {"genotype": genotype}
        for memory in order:
            row[memory] = measure(dev, graph, memory)
        f, s = row["forked"]["model_peak_mb"], row["fresh"]["model_peak_mb"]
        row["ratio"] = f / s if f and s else None
        if args.spawn_twice:
            s2 = measure(dev, graph, "fresh")["model_peak_mb"]
            row["spawn_again_mb"] = s2
            row["spawn_ratio"] = s2 / s if s and s2 else None
        rows.append(row)
        print(f"{i + 1}/{args.archs} forked {f} MB, new process {s} MB", flush=True)
    both = [r for r in rows if r["ratio"]]
    ratios = [r["ratio"] for r in both]
    out = {
        "archs": len(rows),
        "compared": len(ratios),
        "ratio_median": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "abs_diff_mb_max": max(
            abs(r["forked"]["model_peak_mb"] - r["fresh"]["model_peak_mb"]) for r in both
        ),
        "model_mb_median": statistics.median(r["fresh"]["model_peak_mb"] for r in both),
    }
    again = [r["spawn_ratio"] for r in rows if r.get("spawn_ratio")]
    if again:
        out["fresh_vs_fresh"] = {
            "ratio_median": statistics.median(again), "ratio_min": min(again),
            "ratio_max": max(again),
            "abs_diff_mb_max": max(
                abs(r["spawn_again_mb"] - r["fresh"]["model_peak_mb"]) for r in rows
                if r.get("spawn_ratio")
            ),
        }  # fmt: skip
        out["within_pct"] = {
            f"{p}%": {
                "forked_vs_fresh": sum(abs(x - 1) <= p / 100 for x in ratios) / len(ratios),
                "fresh_vs_fresh": sum(abs(x - 1) <= p / 100 for x in again) / len(again),
            }
            for p in (2, 5, 10)
        }
    for name in ("forked", "fresh"):
        out[name] = {
            "probe_cpu_s_mean": statistics.fmean(r[name]["probe_cpu_s"] for r in rows),
            "wall_s_mean": statistics.fmean(r[name]["wall_s"] for r in rows),
            "process": sorted({str(r[name]["process"]) for r in rows}),
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"summary": out, "rows": rows}, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
