"""Issue 14.3: does the cpu device's early stop (``median_ci``) keep the labels' quality?

``--archs`` mbconv architectures (seed ``--seed``) are measured ``--pairs`` times with each of
two protocols, alternating (slow, fast, slow, fast, ...): *slow* = the timed phase always runs
``min_time_s`` (``median_ci=0``, the protocol before), *fast* = the cpu device's default (stop once
the median's 95 % confidence interval is within +-``--median-ci``; ``--fast-min-time-s`` also
shortens its minimum time). Both use the same clock and
gate options. Per architecture, with ``s1, s2`` the slow medians and ``f1, f2`` the fast ones:

    slow vs slow   |s1 - s2| / mean(s)         how much the slow protocol disagrees with itself
    fast vs slow   |f_i - s_i| / s_i           (mean over pairs)
    fast vs fast   |f1 - f2| / mean(f)

If *fast vs slow* is no larger than *slow vs slow*, the early stop adds no error beyond what the
slower protocol already has. ``--slow-options`` / ``--fast-options`` (JSON) override either
protocol's options, e.g. to compare an uncalibrated device's gate (2.5 %, 3 attempts) with a
calibrated one at the same timed runs. Also reported: timed-phase CPU seconds per measurement (the
thread clock's ``timed_s`` is wall time; the per-process CPU time is read around each
measurement), runs, CV and the share of measurements passing the device's gate.

    .venv/bin/python bench/bench_protocol_quality.py --archs 12 --pairs 2 --clock thread
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any


def measure_all(args: argparse.Namespace) -> list[dict[str, Any]]:
    from nasctl.arch.hashing import graph_hash
    from nasctl.datasets.collect import sample_architectures
    from nasctl.profiler import get_device
    from nasctl.profiler.gate import gate_options, load_gate
    from nasctl.records import MeasurementRequest
    from nasctl.spaces import get_space

    dev = get_device("cpu", memory="off", **({"clock": args.clock} if args.clock != "wall" else {}))
    gate = gate_options(load_gate(dev.device_id), {})
    fast = {**gate, "median_ci": args.median_ci}
    if args.fast_min_time_s is not None:
        fast["min_time_s"] = args.fast_min_time_s
    protocols = {
        "slow": {**gate, "median_ci": 0.0, **json.loads(args.slow_options)},
        "fast": {**fast, **json.loads(args.fast_options)},
    }
    print(json.dumps(protocols), flush=True)
    rows = []
    for genotype, graph in sample_architectures(get_space("mbconv"), args.archs, args.seed):
        row: dict[str, Any] = {"genotype": genotype, "slow": [], "fast": []}
        for _ in range(args.pairs):
            for name, opts in protocols.items():
                req = MeasurementRequest(
                    arch_hash=graph_hash(graph), device="cpu", graph_json=graph.to_json(),
                    per_layer=False, options=opts,
                )  # fmt: skip
                c0 = time.process_time()
                m = dev.measure(req)
                cpu_s = time.process_time() - c0
                timed_s = (m.extra.get("timing_s") or {}).get("timed")
                row[name].append(
                    {"median_ms": m.median_ms, "cv": m.cv, "runs": m.runs,
                     "status": m.status, "cpu_s": cpu_s, "timed_s": timed_s,
                     "attempts": m.attempts}
                )  # fmt: skip
        rows.append(row)
        if args.out is not None:  # what is measured so far survives a time limit
            args.out.with_suffix(".partial.json").write_text(json.dumps(rows))
        print(f"{len(rows)}/{args.archs} {row['slow'][0]['median_ms']:.2f} ms", flush=True)
    return rows


def _rel(a: float, b: float) -> float:
    return abs(a - b) / ((a + b) / 2)


def analyse(rows: list[dict[str, Any]]) -> dict[str, Any]:
    ss, fs, fsl = [], [], []
    for r in rows:
        s = [x["median_ms"] for x in r["slow"]]
        f = [x["median_ms"] for x in r["fast"]]
        ss.append(_rel(s[0], s[1]))
        fs.append(_rel(f[0], f[1]))
        fsl.append(statistics.fmean(abs(a - b) / b for a, b in zip(f, s, strict=True)))
    out: dict[str, Any] = {
        "archs": len(rows),
        "slow_vs_slow_pct": 100 * statistics.fmean(ss),
        "fast_vs_fast_pct": 100 * statistics.fmean(fs),
        "fast_vs_slow_pct": 100 * statistics.fmean(fsl),
        "latency_ms": [min(x["median_ms"] for x in r["slow"]) for r in rows],
    }
    for name in ("slow", "fast"):
        ms = [x for r in rows for x in r[name]]
        out[name] = {
            "cpu_s_per_measurement": statistics.fmean(x["cpu_s"] for x in ms),
            "runs_median": statistics.median(x["runs"] for x in ms),
            "cv_median_pct": 100 * statistics.median(x["cv"] for x in ms),
            "gate_pass_rate": sum(x["status"] == "ok" for x in ms) / len(ms),
            "attempts_mean": statistics.fmean(x.get("attempts", 1) for x in ms),
            "timed_s_mean": statistics.fmean(x["timed_s"] or 0.0 for x in ms),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--archs", type=int, default=12)
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--clock", choices=("wall", "thread"), default="thread")
    ap.add_argument("--median-ci", type=float, default=0.01)
    ap.add_argument("--fast-min-time-s", type=float, default=None, help="default: the device's")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--slow-options", default="{}", help="JSON options over the slow protocol")
    ap.add_argument("--fast-options", default="{}", help="JSON options over the fast protocol")
    ap.add_argument("--out", type=Path, default=Path("runs/protocol_quality.json"))
    args = ap.parse_args()
    if args.pairs < 2:
        raise SystemExit("--pairs must be >= 2")
    rows = measure_all(args)
    res = {"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows,
           "analysis": analyse(rows)}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1))
    print(json.dumps(res["analysis"], indent=1))


if __name__ == "__main__":
    main()
