"""Genotypes -> node arrays: ``space.graph_arrays`` against building and scanning graphs.

    python bench/bench_space_arrays.py                          # 10,000 genotypes per space
    python bench/bench_space_arrays.py --spaces nb201,mbconv --ref-n 10000

For each space, ``--n`` distinct genotypes (nb201: drawn from all 15,625 cells) are turned into
:class:`~nasctl.arch.arrays.GraphArrays`:

* ``cold``: empty caches (``templates.clear_stores()``; every cell/block/row table is built in
  the call),
  best and median of ``--repeats`` (wall seconds, and CPU seconds of this process);
* ``first``: the very first call in this process (also pays imports and first-touch memory);
* ``warm``: the same genotypes again (caches are shared by instances of equal configuration);
* ``reference``: ``arrays.graph_arrays([space.to_graph(g) ...])`` on ``--ref-n`` of them, scaled
  to ``--n`` (the arrays are checked equal on that subset).

Prints a markdown table with the load average (the machine may be shared: timings are noisy).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time


def genotypes(name: str, n: int, seed: int = 1) -> list[str]:
    from nasctl.spaces import get_space

    sp, rng = get_space(name), random.Random(seed)
    if name == "nb201":
        gs = sp.enumerate()
        rng.shuffle(gs)
        return gs[:n]
    out: dict[str, None] = {}
    while len(out) < n:
        out[sp.sample(rng)] = None
    return list(out)


def timed(fn, *a):  # noqa: ANN001, ANN202
    c, t = time.process_time(), time.perf_counter()
    out = fn(*a)
    return out, time.perf_counter() - t, time.process_time() - c


def bench(name: str, n: int, ref_n: int, repeats: int, first: bool) -> dict[str, object]:
    import numpy as np

    from nasctl.arch import arrays
    from nasctl.spaces import get_space, templates

    gs = genotypes(name, n)
    res: dict[str, object] = {"space": name, "n": len(gs), "load": os.getloadavg()[0]}
    if first:
        templates.clear_stores()
        _, res["first_s"], _ = timed(get_space(name).graph_arrays, gs)
    walls, cpus = [], []
    for _ in range(repeats):
        templates.clear_stores()  # cold: no cached segment of any instance
        sp = get_space(name)
        fast, w, c = timed(sp.graph_arrays, gs)
        walls.append(w)
        cpus.append(c)
    _, res["warm_s"], _ = timed(sp.graph_arrays, gs)
    res["cold_best_s"], res["cold_median_s"] = min(walls), statistics.median(walls)
    res["cold_cpu_best_s"] = min(cpus)
    sub = gs[:ref_n]
    t = time.perf_counter()
    ref = arrays.graph_arrays([sp.to_graph(g) for g in sub], keep_ids=False)
    res["ref_s"] = (time.perf_counter() - t) * len(gs) / len(sub)
    part = sp.graph_arrays(sub)
    res["equal"] = (
        all(
            np.array_equal(getattr(part, f), getattr(ref, f))
            for f in ("raw", "sizes", "src", "dst", "outs", "depth")
        )
        and part.input_shapes == ref.input_shapes
        and part.precisions == ref.precisions
    )
    res["nodes"] = int(fast.sizes.sum())
    res["load_after"] = os.getloadavg()[0]
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--spaces", default="nb201,mbconv,resnet,fbnet")
    ap.add_argument("--n", type=int, default=10_000, help="distinct genotypes per space")
    ap.add_argument("--ref-n", type=int, default=1000, help="genotypes built by the reference")
    ap.add_argument("--repeats", type=int, default=3, help="cold runs (fresh instances)")
    args = ap.parse_args()
    print(f"uptime: {os.popen('uptime').read().strip()}")
    print(
        "| space | n | nodes | first call s | cold best s | cold median s | cold CPU s "
        "| warm s | reference s (scaled) | speed-up | equal | load 1-min |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for i, name in enumerate(args.spaces.split(",")):
        r = bench(name, args.n, args.ref_n, args.repeats, first=i == 0)
        first = f"{r['first_s']:.3f}" if "first_s" in r else "-"
        print(
            f"| {name} | {r['n']} | {r['nodes']} | {first} | {r['cold_best_s']:.3f} | "
            f"{r['cold_median_s']:.3f} | {r['cold_cpu_best_s']:.3f} | {r['warm_s']:.3f} | "
            f"{r['ref_s']:.1f} | {r['ref_s'] / r['cold_best_s']:.0f}x | {r['equal']} | "
            f"{r['load']:.2f}-{r['load_after']:.2f} |",
            flush=True,
        )
    print(f"uptime: {os.popen('uptime').read().strip()}")


if __name__ == "__main__":
    main()
