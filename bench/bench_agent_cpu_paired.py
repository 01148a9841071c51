"""Issue 11 target, paired: the cpu device through the agent (this tree) vs the cpu profiler of
another checkout (before the agent), in ONE process, alternating A/B on each model, so that the
machine's load drifts over both alike.

    .venv/bin/python bench/bench_agent_cpu_paired.py --baseline /path/to/old/checkout \
        --num 6 --pairs 6 [--clock thread]

The baseline's ``nasctl`` package is copied to a temporary folder as ``nasctl_before`` (imports
rewritten), so both implementations load side by side. Each pair measures a model with the
baseline's ``get_device("cpu")`` and with this tree's (order alternating per pair), default
protocol, per-layer pass on. Prints per model the median of the paired ratios agent/before of the
records' median latency, and the geometric mean over models.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
from pathlib import Path


def load_baseline(root: Path, tmp: Path) -> object:
    dst = tmp / "nasctl_before"
    shutil.copytree(root / "nasctl", dst, ignore=shutil.ignore_patterns("__pycache__"))
    rx = re.compile(r"\bnasctl(?=[.\s])")
    for p in dst.rglob("*.py"):
        text = p.read_text()
        text = re.sub(r"(from|import)\s+nasctl\b", r"\1 nasctl_before", text)
        text = rx.sub("nasctl_before", text) if "nasctl." in text else text
        p.write_text(text)
    sys.path.insert(0, str(tmp))
    import nasctl_before.profiler as before  # type: ignore[import-not-found]

    return before


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline", required=True)
    ap.add_argument("--num", type=int, default=6)
    ap.add_argument("--pairs", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--clock", default="wall", choices=("wall", "thread"))
    a = ap.parse_args()
    from nasctl.arch.onnx_io import to_onnx
    from nasctl.profiler import get_device
    from nasctl.records import MeasurementRequest
    from nasctl.spaces.mbconv import MBConvSpace

    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        before = load_baseline(Path(a.baseline), Path(tmp))
        old = before.get_device("cpu", clock=a.clock)  # type: ignore[attr-defined]
        new = get_device("cpu", clock=a.clock)
        old_req = before.MeasurementRequest  # type: ignore[attr-defined]
        space = MBConvSpace(resolutions=[128, 160])
        rng = random.Random(a.seed)
        rows = []
        for i in range(a.num):
            path = Path(tmp) / f"m{i}.onnx"
            path.write_bytes(to_onnx(space.to_graph(space.sample(rng))).SerializeToString())
            ratios, olds, news = [], [], []
            for k in range(a.pairs):
                order = (0, 1) if k % 2 == 0 else (1, 0)
                got = {}
                for side in order:
                    if side == 0:
                        r = old.measure(old_req(arch_hash="b", device="cpu", onnx_path=str(path)))
                    else:
                        r = new.measure(
                            MeasurementRequest(arch_hash="a", device="cpu", onnx_path=str(path))
                        )
                    got[side] = r.median_ms
                olds.append(got[0])
                news.append(got[1])
                ratios.append(got[1] / got[0])
            rows.append(
                (
                    path.stem,
                    statistics.median(olds),
                    statistics.median(news),
                    statistics.median(ratios),
                    min(ratios),
                    max(ratios),
                )
            )
    load1 = os.getloadavg()
    print(f"`{' '.join(sys.argv)}`; load average before/after: {load0[0]:.1f} / {load1[0]:.1f}\n")
    print("| model | before ms | agent ms | median paired ratio | min | max |")
    print("|---|---|---|---|---|---|")
    for name, b, g, r, lo, hi in rows:
        print(f"| {name} | {b:.3f} | {g:.3f} | {r:.3f} | {lo:.3f} | {hi:.3f} |")
    geo = math.exp(sum(math.log(r[3]) for r in rows) / len(rows))
    print(f"| **geometric mean** | | | **{geo:.3f}** | | |")


if __name__ == "__main__":
    main()
