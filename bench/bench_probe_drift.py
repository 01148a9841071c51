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

``--clock both`` measures each architecture with the thread-CPU clock and then with the wall
clock (each after its own probe) in every round, so both clocks share one window without two
processes competing for the core.

Part 2 (``--train-db DB``): labels collected over the same window. In every gap between rounds
the script measures new ``mbconv`` architectures (seed ``--seed + 1``) into DB the way
``nasctl profile --device cpu --space mbconv --probe-every K [--option clock=thread]`` does (its
defaults: per-layer times on, the device's stored noise gate, probe before the first and every
``--probe-every``-th measurement; first clock of ``--clock``) until the gap is over; then an
own-measurement predictor is trained on the device's rows of DB on raw labels and on
drift-corrected labels (same split and seed); test MAPE of each, against its own labels.
``--no-collect`` trains on DB as it is (a store collected earlier by ``nasctl profile``).

    .venv/bin/python bench/bench_probe_drift.py --archs 5 --rounds 7 --gap-s 600 \
        [--clock thread|wall|both] [--train-db runs/probe/cpu.db] --out runs/probe/drift

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


CLOCKS = {"wall": ("wall",), "thread": ("thread",), "both": ("thread", "wall")}


def _device(clock: str) -> Any:
    from nasctl.profiler import get_device

    return get_device("cpu", **({"clock": clock} if clock != "wall" else {}))


class Collector:
    """Measures new architectures into ``db`` until a deadline, as ``nasctl profile --space
    mbconv --probe-every K`` does (one store, one job stream over the whole window)."""

    def __init__(self, db: Path, clock: str, seed: int, probe_every: int) -> None:
        from nasctl.datasets.collect import space_jobs
        from nasctl.datasets.store import Store
        from nasctl.profiler.gate import gate_options, load_gate
        from nasctl.profiler.probe import probe_request
        from nasctl.spaces import get_space

        self.dev = _device(clock)
        self.options = gate_options(load_gate(self.dev.device_id), {})
        self.store = Store(db)
        self.jobs = space_jobs(self.store, get_space("mbconv"), 100_000, seed)
        self.preq = probe_request(self.dev)
        self.probe_every = probe_every
        self.summaries: list[dict[str, Any]] = []

    def probe(self) -> dict[str, Any]:
        from nasctl.profiler.probe import measure_probe

        return measure_probe(self.dev, self.preq).to_dict()

    def until(self, deadline: float) -> None:
        from nasctl.datasets.collect import collect

        def jobs() -> Any:
            while time.time() < deadline:
                job = next(self.jobs, None)
                if job is None:
                    return
                yield job

        s = collect(self.store, self.dev, jobs(), 0, per_layer=True, options=self.options,
                    probe=self.probe, probe_every=self.probe_every)  # fmt: skip
        keys = ("measured", "ok", "noisy", "failed", "seconds")
        self.summaries.append({"t": time.time(), **{k: getattr(s, k) for k in keys}})
        print(f"  collected {s.measured} ({s.ok} ok, {s.noisy} noisy) in {s.seconds:.0f} s",
              flush=True)  # fmt: skip


def measure_rounds(args: argparse.Namespace) -> dict[str, Any]:
    from nasctl.arch.hashing import graph_hash
    from nasctl.datasets.collect import sample_architectures
    from nasctl.profiler.probe import measure_probe, probe_request
    from nasctl.records import MeasurementRequest
    from nasctl.spaces import get_space

    clocks = CLOCKS[args.clock]
    devs = {c: _device(c) for c in clocks}
    space = get_space("mbconv")
    archs = [(g, graph) for g, graph in sample_architectures(space, args.archs, args.seed)]
    preqs = {c: probe_request(d) for c, d in devs.items()}
    collector = None
    if args.train_db is not None and args.collect:
        collector = Collector(args.train_db, clocks[0], args.seed + 1, args.probe_every)
    rounds: list[dict[str, Any]] = []
    t_next = time.time()
    for r in range(args.rounds):
        if r:
            t_next += args.gap_s
            if collector is not None:
                collector.until(t_next)
            time.sleep(max(0.0, t_next - time.time()))
        rec: dict[str, Any] = {"t": time.time(), "loadavg": os.getloadavg(),
                               "by_clock": {c: [] for c in clocks}}  # fmt: skip
        for genotype, graph in archs:
            for c, dev in devs.items():
                p = measure_probe(dev, preqs[c])
                req = MeasurementRequest(
                    arch_hash=graph_hash(graph),
                    device="cpu",
                    graph_json=graph.to_json(),
                    per_layer=False,
                )
                m = dev.measure(req)
                rec["by_clock"][c].append(
                    {"genotype": genotype, "median_ms": m.median_ms, "cv": m.cv,
                     "status": m.status, "probe_ms": p.median_ms, "probe_cv": p.cv}
                )  # fmt: skip
        rounds.append(rec)
        print(f"round {r + 1}/{args.rounds} load {rec['loadavg'][0]:.1f}", flush=True)
    out: dict[str, Any] = {
        "device_ids": {c: d.device_id for c, d in devs.items()},
        "clocks": list(clocks),
        "rounds": rounds,
    }
    if collector is not None:
        out["collected"] = collector.summaries
        collector.store.close()
    return out


def analyse(raw: dict[str, Any], clock: str) -> dict[str, Any]:
    rounds = [{**r, "archs": r["by_clock"][clock]} for r in raw["rounds"]]
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
    lines = [f"`{cmd}`"]
    for clock in res["clocks"]:
        lines += _spread_table(res["analysis"][clock], res["device_ids"][clock], clock)
    if "train" in res:
        t = res["train"]
        lines += ["", f"predictor ({t['rows']} rows of {t['device_id']}):", "",
                  "| labels | MAPE % | Spearman |", "|---|---|---|"]  # fmt: skip
        for k in ("raw", "corrected"):
            lines.append(f"| {k} | {t[k]['mape']} | {t[k]['spearman']} |")
    return "\n".join(lines) + "\n"


def _spread_table(a: dict[str, Any], device_id: str, clock: str) -> list[str]:
    load = f"{min(a['loadavg']):.1f}-{max(a['loadavg']):.1f}"
    lines = [
        "",
        f"{device_id}, clock {clock}, window {a['window_s'] / 60:.1f} min, load {load}:",
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
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--archs", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--gap-s", type=float, default=600.0)
    ap.add_argument("--clock", choices=tuple(CLOCKS), default="wall")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-db", type=Path, default=None)
    ap.add_argument("--collect", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--probe-every", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("runs/probe/drift"))
    args = ap.parse_args()
    if args.rounds < 2 or args.archs < 2:
        raise SystemExit("--rounds and --archs must be >= 2")
    random.seed(args.seed)
    res = measure_rounds(args)
    res["analysis"] = {c: analyse(res, c) for c in res["clocks"]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(res, indent=1))
    if args.train_db is not None:
        res["train"] = train_both(args.train_db, args.seed)
    args.out.with_suffix(".json").write_text(json.dumps(res, indent=1))
    cmd = "python bench/bench_probe_drift.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None
    )
    md = markdown(res, cmd)
    args.out.with_suffix(".md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
