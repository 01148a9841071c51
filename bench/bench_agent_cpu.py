"""Issue 11 target: the cpu device through the agent (this tree) measures within 5 % of the
cpu profiler before the agent (another checkout, e.g. /work/main at the commit before the
agent), same models, same protocol; and the wall time each measurement takes.

    .venv/bin/python bench/bench_agent_cpu.py --baseline /path/to/old/checkout \
        --num 6 --rounds 3 [--clock thread]

Writes ``--num`` mbconv models (128-160 px) as ONNX once, then alternates, round by round, one
process per side (``PYTHONPATH`` = that side's checkout) measuring every model with
``get_device("cpu").measure`` (per-layer pass included). Prints a markdown table: per model the
median of the per-round medians on each side, their ratio, the wall time per measurement and
its overhead (wall time outside warm-up, timed runs and the per-layer pass: model loading,
session creation, result conversion and layer mapping).
The machine is shared: quote the load (printed) with the numbers.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()


def write_models(folder: Path, num: int, seed: int) -> list[Path]:
    from nasctl.arch.onnx_io import to_onnx
    from nasctl.spaces.mbconv import MBConvSpace

    space = MBConvSpace(resolutions=[128, 160])
    rng = random.Random(seed)
    out = []
    for i in range(num):
        path = folder / f"m{i}.onnx"
        path.write_bytes(to_onnx(space.to_graph(space.sample(rng))).SerializeToString())
        out.append(path)
    return out


def worker(models: list[str], clock: str) -> dict:
    """Measure each model once with this process's nasctl; {model: {median_ms, wall_s}}."""
    from nasctl.profiler import get_device
    from nasctl.records import MeasurementRequest

    dev = get_device("cpu", clock=clock)
    out = {}
    for m in models:
        t0 = time.perf_counter()
        rec = dev.measure(MeasurementRequest(arch_hash=Path(m).stem, device="cpu", onnx_path=m))
        wall = time.perf_counter() - t0
        ts = rec.extra.get("timing_s", {})
        measured = sum(float(ts.get(k) or 0) for k in ("warmup", "timed", "per_layer"))
        out[m] = {
            "median_ms": rec.median_ms,
            "wall_s": wall,
            "overhead_s": wall - measured,
            "status": rec.status,
            "layers": len(rec.layers),
        }
    return out


def run_side(root: str, models: list[Path], clock: str) -> dict:
    env = dict(os.environ, PYTHONPATH=root)
    cmd = [sys.executable, str(HERE), "--worker", "--clock", clock, *map(str, models)]
    r = subprocess.run(cmd, env=env, cwd=root, capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline", help="checkout of the profiler before the agent")
    ap.add_argument("--num", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--clock", default="wall", choices=("wall", "thread"))
    ap.add_argument("--worker", action="store_true")
    ap.add_argument("models", nargs="*")
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker(a.models, a.clock)))
        return
    if not a.baseline:
        ap.error("--baseline is required")
    this = str(HERE.parents[1])
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        models = write_models(Path(tmp), a.num, a.seed)
        runs: dict = {"before": [], "agent": []}
        for _ in range(a.rounds):
            runs["before"].append(run_side(a.baseline, models, a.clock))
            runs["agent"].append(run_side(this, models, a.clock))
    load1 = os.getloadavg()
    print(
        f"`{' '.join(sys.argv)}`; load average before/after: "
        f"{load0[0]:.1f} / {load1[0]:.1f} (2 cores)\n"
    )
    print(
        "| model | before ms | agent ms | agent/before | before wall s | agent wall s "
        "| before overhead s | agent overhead s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    ratios = []
    for m in models:
        b = [r[str(m)] for r in runs["before"]]
        g = [r[str(m)] for r in runs["agent"]]
        bm = statistics.median(x["median_ms"] for x in b)
        gm = statistics.median(x["median_ms"] for x in g)
        ratios.append(gm / bm)
        print(
            f"| {m.stem} | {bm:.3f} | {gm:.3f} | {gm / bm:.3f} | "
            f"{statistics.median(x['wall_s'] for x in b):.2f} | "
            f"{statistics.median(x['wall_s'] for x in g):.2f} | "
            f"{statistics.median(x['overhead_s'] for x in b):.3f} | "
            f"{statistics.median(x['overhead_s'] for x in g):.3f} |"
        )
    geo = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    print(f"| **geometric mean** | | | **{geo:.3f}** | | | | |")


if __name__ == "__main__":
    main()
