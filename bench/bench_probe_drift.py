"""Issue 14: does the reference probe remove the cpu device's drift?

Part 1, spread (the protocol of docs/benchmarks.md's ``spread_1-7``, with the probe beside each
measurement): ``--archs`` mbconv architectures (seed ``--seed``) are measured in ``--rounds``
rounds, ``--gap-s`` seconds apart; in each round every architecture is measured right after the
reference probe (``nasctl.profiler.probe``), default protocol, no per-layer pass. For each
architecture the spread of its medians over the rounds is

    spread MAPE = mean over (architecture, round) of |median - mean| / mean

on raw medians and on drift-corrected ones (median x typical probe / probe before it; typical =
median of all probes). Reported over all architectures and split at the median latency (small
vs large nets). The issue's target needs a window of >= 1 hour (e.g. ``--rounds 7 --gap-s 600``)
on a quiet machine.

Part 2 (``--train-db DB``): an own-measurement predictor trained on the device's rows of a
store collected with ``nasctl profile --probe-every K``, on raw labels and on drift-corrected
labels (same split and seed); test MAPE of each, against its own labels.

    .venv/bin/python bench/bench_probe_drift.py --archs 5 --rounds 7 --gap-s 600 \
        [--clock thread] [--train-db runs/probe/cpu.db] --out runs/probe/drift

Writes OUT.json (raw numbers, the load average at each round) and OUT.md (tables).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from pathlib import Path
from typing import Any


def spread_mape(series: list[list[float]]) -> float:
    """Mean over (architecture, round) of |x - mean| / mean, in percent."""
    errs = []
    for xs in series:
        mu = statistics.fmean(xs)
        errs += [abs(x - mu) / mu for x in xs]
    return 100 * statistics.fmean(errs) if errs else float("nan")


def measure_rounds(args: argparse.Namespace) -> dict[str, Any]:
    from nasctl.arch.hashing import graph_hash
    from nasctl.datasets.collect import sample_architectures
    from nasctl.profiler import get_device
    from nasctl.profiler.probe import measure_probe, probe_request
    from nasctl.records import MeasurementRequest
    from nasctl.spaces import get_space

    opts: dict[str, Any] = {"clock": args.clock} if args.clock != "wall" else {}
    dev = get_device("cpu", **opts)
    space = get_space("mbconv")
    archs = [(g, graph) for g, graph in sample_architectures(space, args.archs, args.seed)]
    preq = probe_request(dev)
    rounds: list[dict[str, Any]] = []
    for r in range(args.rounds):
        if r:
            time.sleep(args.gap_s)
        rec: dict[str, Any] = {"t": time.time(), "loadavg": os.getloadavg(), "archs": []}
        for genotype, graph in archs:
            p = measure_probe(dev, preq)
            req = MeasurementRequest(
                arch_hash=graph_hash(graph),
                device="cpu",
                graph_json=graph.to_json(),
                per_layer=False,
            )
            m = dev.measure(req)
            rec["archs"].append(
                {"genotype": genotype, "median_ms": m.median_ms, "cv": m.cv,
                 "status": m.status, "probe_ms": p.median_ms, "probe_cv": p.cv}
            )  # fmt: skip
        rounds.append(rec)
        print(f"round {r + 1}/{args.rounds} load {rec['loadavg'][0]:.1f}", flush=True)
    return {"device_id": dev.device_id, "clock": args.clock, "rounds": rounds}


def analyse(raw: dict[str, Any]) -> dict[str, Any]:
    rounds = raw["rounds"]
    n = len(rounds[0]["archs"])
    probes = [a["probe_ms"] for r in rounds for a in r["archs"]]
    typical = statistics.median(probes)
    med = [[r["archs"][i]["median_ms"] for r in rounds] for i in range(n)]
    cor = [[r["archs"][i]["median_ms"] * typical / r["archs"][i]["probe_ms"] for r in rounds]
           for i in range(n)]  # fmt: skip
    size = [statistics.median(xs) for xs in med]
    cut = statistics.median(size)
    small = [i for i in range(n) if size[i] <= cut]
    large = [i for i in range(n) if size[i] > cut]
    out: dict[str, Any] = {"typical_probe_ms": typical, "archs": n, "rounds": len(rounds)}
    for name, idx in (("all", list(range(n))), ("small", small), ("large", large)):
        raw_s = spread_mape([med[i] for i in idx])
        cor_s = spread_mape([cor[i] for i in idx])
        out[name] = {"n": len(idx), "raw_spread_mape": raw_s, "corrected_spread_mape": cor_s,
                     "reduction_pct": 100 * (1 - cor_s / raw_s) if raw_s else None}  # fmt: skip
    out["probe_spread_mape"] = spread_mape([[a["probe_ms"] for r in rounds for a in r["archs"]]])
    out["window_s"] = rounds[-1]["t"] - rounds[0]["t"]
    out["loadavg"] = [r["loadavg"][0] for r in rounds]
    return out


def train_both(db: Path, seed: int) -> dict[str, Any]:
    from nasctl.datasets.drift import drift_correct
    from nasctl.datasets.store import Store
    from nasctl.predictor.training import train

    with Store(db, readonly=True) as store:
        dev = store.device_ids()[0]
        rows = store.reader.training_rows(dev)
    fixed, info = drift_correct(rows)
    res: dict[str, Any] = {"device_id": dev, "rows": len(rows), "drift": info}
    for name, rs in (("raw", rows), ("corrected", fixed)):
        _, m = train(rs, dev, seed=seed)
        ens = m.get("ensemble") or {}
        res[name] = {k: ens.get(k) for k in ("mape", "rmspe", "spearman", "kendall")}
    return res


def markdown(res: dict[str, Any], cmd: str) -> str:
    a = res["analysis"]
    load = f"{min(a['loadavg']):.1f}-{max(a['loadavg']):.1f}"
    lines = [
        f"`{cmd}` ({res['device_id']}, clock {res['clock']}, window "
        f"{a['window_s'] / 60:.1f} min, load {load})",
        "",
        "| nets | n | raw spread MAPE % | corrected % | reduction % |",
        "|---|---|---|---|---|",
    ]
    for k in ("all", "small", "large"):
        s = a[k]
        red = "" if s["reduction_pct"] is None else f"{s['reduction_pct']:.1f}"
        lines.append(f"| {k} | {s['n']} | {s['raw_spread_mape']:.2f} | "
                     f"{s['corrected_spread_mape']:.2f} | {red} |")  # fmt: skip
    lines.append(f"\nprobe: typical {a['typical_probe_ms']:.3f} ms, its own spread "
                 f"{a['probe_spread_mape']:.2f} %")  # fmt: skip
    if "train" in res:
        t = res["train"]
        lines += ["", f"predictor ({t['rows']} rows of {t['device_id']}):", "",
                  "| labels | MAPE % | Spearman |", "|---|---|---|"]  # fmt: skip
        for k in ("raw", "corrected"):
            lines.append(f"| {k} | {t[k]['mape']} | {t[k]['spearman']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--archs", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--gap-s", type=float, default=600.0)
    ap.add_argument("--clock", choices=("wall", "thread"), default="wall")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-db", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=Path("runs/probe/drift"))
    args = ap.parse_args()
    if args.rounds < 2 or args.archs < 2:
        raise SystemExit("--rounds and --archs must be >= 2")
    random.seed(args.seed)
    res = measure_rounds(args)
    res["analysis"] = analyse(res)
    if args.train_db is not None:
        res["train"] = train_both(args.train_db, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(res, indent=1))
    cmd = "python bench/bench_probe_drift.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None
    )
    md = markdown(res, cmd)
    args.out.with_suffix(".md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
