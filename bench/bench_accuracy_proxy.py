"""Quality and cost of the CPU training estimator (issue 19, targets "train:digits").

For ``--n`` architectures sampled (fixed seed) from each ``--space``:

* ``default``: the default training estimator (``train:digits``: the candidate at its space's
  proxy-training size, ``TrainingEstimator`` defaults), its score, its CPU time (process clock:
  what one free core would take; the machine is shared) and wall time;
* ``long``: the same candidate, same data, trained ``--long-factor`` (10) x as many steps;
* ``synflow`` / ``naswot``: the training-free proxies on the candidate's full graph, as
  ``--accuracy proxy:synflow|naswot`` computes them in a search.

Then the Spearman rank correlation of each of ``default``, ``synflow``, ``naswot`` with ``long``
over the same candidates, with a 95 % bootstrap interval (2,000 resamples of the candidates),
and the share of default scores clearly above chance (> 2 x chance).

Each candidate's row is appended to ``<out>/<space>.jsonl`` as it completes (a rerun skips what
is there), so one space per process can run in the background::

    for s in mbconv resnet; do for i in 0 1; do
      nohup .venv/bin/python bench/bench_accuracy_proxy.py --space $s --shard $i/2 \\
        > runs/acc_$s_$i.log &
    done; done
    .venv/bin/python bench/bench_accuracy_proxy.py --space mbconv --space resnet --report

Cost per candidate on one core (``--timing``): only the default estimate of each of the ``--n``
architectures plus the space's heaviest genotypes (:func:`heaviest`), CPU and wall seconds per
candidate, rows in ``<out>/<space>.timing.jsonl``; run it pinned to a locked core::

    flock /work/notes/cpu0.lock taskset -c 0 .venv/bin/python bench/bench_accuracy_proxy.py \
        --space mbconv --timing --isolate

Peak memory: ``ru_maxrss`` of the process after each candidate (the peak over everything the
process did so far, so an upper bound for one candidate's peak), and ``peak_default_mb``, the
peak of a fresh subprocess that scores only that candidate's default run (``--isolate``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def spearman(a: list[float], b: list[float]) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def bootstrap_ci(
    a: list[float], b: list[float], n: int = 2000, seed: int = 0
) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    x, y = np.asarray(a), np.asarray(b)
    vals = []
    for _ in range(n):
        i = rng.integers(0, len(x), len(x))
        if len(set(x[i])) > 1 and len(set(y[i])) > 1:
            vals.append(spearman(list(x[i]), list(y[i])))
    if not vals:
        return float("nan"), float("nan")
    return float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))


def peak_mb() -> float:
    """This process's peak RSS (MiB): VmHWM (Linux), else ru_maxrss. (ru_maxrss of a child
    started by fork+exec includes its parent's peak at the fork, VmHWM does not.)"""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def isolated_peak_mb(space: str, genotype: str) -> float:
    """Peak RSS (MiB) of a fresh interpreter that imports nasctl and scores one default run."""
    code = (
        "import sys;from nasctl.spaces import get_space;"
        "from nasctl.search.accuracy import get_estimator;"
        f"get_estimator('train:digits').estimate(sys.argv[1], None, get_space({space!r}));"
        "from bench_accuracy_proxy import peak_mb;print(peak_mb())"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    out = subprocess.run(
        [sys.executable, "-c", code, genotype], capture_output=True, text=True, env=env
    )
    return float(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else float("nan")


def timed(fn: Any) -> tuple[Any, float, float]:
    c0, w0 = time.process_time(), time.perf_counter()
    value = fn()
    return value, time.process_time() - c0, time.perf_counter() - w0


def heaviest(space_name: str, samples: int = 2000) -> list[str]:
    """The space's heaviest genotypes for the proxy trainer: every choice at its maximum, and of
    ``samples`` sampled genotypes (seed 1) the one whose *bounded* proxy graph has the most
    MACs and the one with the most nodes."""
    from nasctl.arch.costs import graph_costs
    from nasctl.spaces import get_space

    space = get_space(space_name)
    out = {
        "mbconv": ["r224-w1.25|" + "|".join(["swish:" + ",".join(["k7e6s"] * 4)] * 7)],
        "resnet": [
            "r224-bottleneck|96x6|192x6|384x6|768x6",
            "r224-basic|96x6|192x6|384x6|768x6",
        ],
    }.get(space_name, [])
    rng = random.Random(1)
    graphs = {g: space.proxy_graph(g, 10) for g in (space.sample(rng) for _ in range(samples))}
    if graphs and next(iter(graphs.values())) is not None:
        macs = {g: graph_costs(gr).total["macs"] for g, gr in graphs.items()}
        out += [max(macs, key=macs.__getitem__)]
        out += [max(graphs, key=lambda g: len(graphs[g].nodes))]
    return list(dict.fromkeys(out))


def run_timing(space_name: str, n: int, out: Path, isolate: bool, shard: tuple[int, int]) -> None:
    """Default estimates only: :func:`heaviest`, then the ``n`` sampled architectures."""
    from nasctl.search.accuracy import get_estimator
    from nasctl.spaces import get_space

    space = get_space(space_name)
    rng = random.Random(0)
    genotypes = list(dict.fromkeys(space.sample(rng) for _ in range(n * 2)))[:n]
    todo = [(g, "heaviest") for g in heaviest(space_name)] + [(g, "sample") for g in genotypes]
    path = out / f"{space_name}.timing.jsonl"
    done = {json.loads(line)["genotype"] for line in path.open()} if path.exists() else set()
    est = get_estimator("train:digits")
    est.data  # noqa: B018 - the images are read once, before any candidate's clock starts
    for k, (g, kind) in enumerate(todo):
        if g in done or k % shard[1] != shard[0]:
            continue
        row: dict[str, Any] = {"space": space_name, "genotype": g, "kind": kind}
        row["default"], row["cpu_s"], row["wall_s"] = timed(
            lambda g=g: est.estimate(g, None, space)
        )
        graph = space.proxy_graph(g, 10)
        row["proxy_scale"] = graph.meta.get("channel_scale") if graph is not None else None
        row["loadavg"] = os.getloadavg()[0]
        if isolate and kind == "heaviest":
            row["peak_default_mb"] = isolated_peak_mb(space_name, g)
        with path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(
            f"[{k + 1}/{len(todo)}] {space_name} {kind} {row['default']:.1f}% "
            f"cpu {row['cpu_s']:.2f} s wall {row['wall_s']:.2f} s load {row['loadavg']:.1f}",
            flush=True,
        )


def timing_report(spaces: list[str], out: Path) -> str:
    lines = [
        "| space | candidates | CPU s: median / p90 / max | wall s: median / max | "
        "> 10 s CPU | > 20 % (2x chance) | heaviest: CPU s (proxy scale), fresh-process peak MiB |",
        "|---|---|---|---|---|---|---|",
    ]
    nan = float("nan")
    for s in spaces:
        path = out / f"{s}.timing.jsonl"
        rows = [json.loads(line) for line in path.open()] if path.exists() else []
        rows = list({r["genotype"]: r for r in rows}.values())
        if not rows:
            continue
        cpu, wall = [r["cpu_s"] for r in rows], [r["wall_s"] for r in rows]
        sampled = [r for r in rows if r["kind"] == "sample"]
        heavy = "; ".join(
            f"{r['cpu_s']:.1f} ({r['proxy_scale']:.3g}), {r.get('peak_default_mb', nan):.0f}"
            for r in rows
            if r["kind"] == "heaviest"
        )
        lines.append(
            f"| {s} | {len(sampled)} sampled + {len(rows) - len(sampled)} heaviest | "
            f"{np.median(cpu):.1f} / {np.percentile(cpu, 90):.1f} / {max(cpu):.1f} | "
            f"{np.median(wall):.1f} / {max(wall):.1f} | {sum(v > 10 for v in cpu)}/{len(cpu)} | "
            f"{sum(r['default'] > 20 for r in sampled)}/{len(sampled)} | {heavy} |"
        )
    return "\n".join(lines)


def run_space(
    space_name: str,
    n: int,
    factor: int,
    out: Path,
    isolate: bool,
    shard: tuple[int, int],
    reverse: bool = False,
) -> None:
    from nasctl.search.accuracy import get_estimator
    from nasctl.search.accuracy.proxies import naswot, synflow
    from nasctl.search.accuracy.training import DigitsEstimator
    from nasctl.spaces import get_space

    space = get_space(space_name)
    rng = random.Random(0)
    genotypes = list(dict.fromkeys(space.sample(rng) for _ in range(n * 2)))[:n]
    path = out / f"{space_name}.jsonl"
    done = {json.loads(line)["genotype"] for line in path.open()} if path.exists() else set()
    default = get_estimator("train:digits")
    assert isinstance(default, DigitsEstimator)
    long = DigitsEstimator(steps=default.steps * factor)
    order = list(enumerate(genotypes))
    for k, g in reversed(order) if reverse else order:
        if g in done or k % shard[1] != shard[0]:
            continue
        row: dict[str, Any] = {"space": space_name, "genotype": g}
        row["default"], row["default_cpu_s"], row["default_wall_s"] = timed(
            lambda g=g: default.estimate(g, None, space)
        )
        row["peak_rss_mb"] = peak_mb()
        graph = space.to_graph(g)
        for name, fn in (("synflow", synflow), ("naswot", naswot)):
            try:
                row[name], row[f"{name}_cpu_s"], _ = timed(lambda fn=fn, graph=graph: fn(graph))
            except Exception as e:  # noqa: BLE001 - a failed proxy is a row without it
                row[name], row[f"{name}_error"] = None, str(e)
        row["long"], row["long_cpu_s"], row["long_wall_s"] = timed(
            lambda g=g: long.estimate(g, None, space)
        )
        if isolate:
            row["peak_default_mb"] = isolated_peak_mb(space_name, g)
        with path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(
            f"[{k + 1}/{n}] {space_name} default {row['default']:.1f}% "
            f"({row['default_cpu_s']:.1f} s cpu) long {row['long']:.1f}% "
            f"({row['long_cpu_s']:.1f} s cpu) rss {row['peak_rss_mb']:.0f} MiB",
            flush=True,
        )


def report(spaces: list[str], out: Path) -> str:
    lines = [
        "| space | n | scorer | Spearman vs 10x training | 95 % bootstrap interval |",
        "|---|---|---|---|---|",
    ]
    cost = [
        "| space | n | default score: median (min-max) | > 20 % (2x chance) | "
        "CPU s per candidate: median / max | 10x run: median % | bench process peak RSS (MiB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in spaces:
        path = out / f"{s}.jsonl"
        rows = [json.loads(line) for line in path.open()] if path.exists() else []
        rows = list({r["genotype"]: r for r in rows}.values())  # one row per genotype
        if not rows:
            continue
        long = [r["long"] for r in rows]
        for name in ("default", "synflow", "naswot"):
            ok = [r for r in rows if r.get(name) is not None]
            a, b = [r[name] for r in ok], [r["long"] for r in ok]
            rho = spearman(a, b)
            lo, hi = bootstrap_ci(a, b)
            lines.append(f"| {s} | {len(ok)} | {name} | {rho:.2f} | [{lo:.2f}, {hi:.2f}] |")
        d = [r["default"] for r in rows]
        cpu = [r["default_cpu_s"] for r in rows]
        # with --isolate: a fresh process per default run; else the bench process's own peak,
        # which includes synflow/naswot on the full-size graphs
        peak = max(r.get("peak_default_mb", r["peak_rss_mb"]) for r in rows)
        cost.append(
            f"| {s} | {len(rows)} | {np.median(d):.1f} ({min(d):.1f}-{max(d):.1f}) | "
            f"{sum(v > 20 for v in d)}/{len(d)} | {np.median(cpu):.1f} / {max(cpu):.1f} | "
            f"{np.median(long):.1f} | {peak:.0f} |"
        )
    return "\n".join(lines + [""] + cost)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--space", action="append", default=None, help="mbconv, resnet, fbnet ...")
    ap.add_argument("--n", type=int, default=30, help="architectures per space")
    ap.add_argument("--long-factor", type=int, default=10, help="steps of the long run, x")
    ap.add_argument("--out", type=Path, default=Path("runs/bench/accuracy_proxy"))
    ap.add_argument("--isolate", action="store_true", help="also a fresh-process peak per run")
    ap.add_argument("--report", action="store_true", help="only print the tables")
    ap.add_argument("--timing", action="store_true", help="default estimates only (cost)")
    ap.add_argument("--reverse", action="store_true", help="last candidates first (a 2nd worker)")
    ap.add_argument(
        "--shard", default="0/1", help="i/k: this process scores candidates i, i+k, ... only"
    )
    args = ap.parse_args()
    spaces = args.space or ["mbconv", "resnet"]
    args.out.mkdir(parents=True, exist_ok=True)
    i, k = (int(v) for v in args.shard.split("/"))
    if not args.report:
        for s in spaces:
            if args.timing:
                run_timing(s, args.n, args.out, args.isolate, (i, k))
            else:
                run_space(s, args.n, args.long_factor, args.out, args.isolate, (i, k), args.reverse)
    print(timing_report(spaces, args.out) if args.timing else report(spaces, args.out))


if __name__ == "__main__":
    main()
