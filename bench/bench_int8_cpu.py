"""Issue 15 target: INT8 (explicit Q/DQ written by nasctl.arch.precision) vs FP32 latency on the
``cpu`` device (ONNX Runtime, 1 thread), for sampled mbconv and resnet architectures and
classifiers of the zoo (bench/zoo.py, 224 px).

    PYTHONPATH=$PWD:$PWD/agent .venv/bin/python bench/bench_int8_cpu.py \
        --mbconv 10 --resnet 10 --pairs 3 --zoo \
        resnet18,mobilenet_v2,efficientnet_b0,squeezenet1_1,shufflenet_v2_x1_0,regnet_x_400mf

(The 26 models take longer than one 10-minute hold of a core: split them, e.g. ``--resnet 0``
then ``--mbconv 0 --zoo ""``; ``--skip N`` resumes a space after its first N samples.)

Each model is written once at each precision (INT8: calibrated on stated random N(0,1) data;
latency does not depend on the scales' values). Then ``--pairs`` rounds measure FP32 and INT8
alternately (order flipped each round), with the device's own timing protocol, so the machine's
drifting load falls on both alike. Per model: the median over rounds of each precision's median
latency, and the speed-up fp32/int8 (> 1: INT8 faster); the geometric mean over models. The load
average is printed before and after.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import sys
import tempfile
from pathlib import Path

from nasctl.profiler import MeasurementRequest, get_device
from nasctl.profiler.protocol import TimingConfig
from nasctl.spaces import get_space


def _requests(args: argparse.Namespace, tmp: Path) -> list[tuple[str, MeasurementRequest]]:
    out: list[tuple[str, MeasurementRequest]] = []
    rng = random.Random(args.seed)
    for space_name, n in (("mbconv", args.mbconv), ("resnet", args.resnet)):
        space = get_space(space_name)
        seen: set[str] = set()
        while len(seen) < n:
            g = space.sample(rng)
            if g in seen:
                continue
            seen.add(g)
            if len(seen) <= args.skip:  # measured by an earlier run (same sampler stream)
                continue
            graph = space.to_graph(g)
            label = f"{space_name}#{len(seen)}"
            out.append(
                (
                    label,
                    MeasurementRequest(arch_hash=label, device="cpu", graph_json=graph.to_json()),
                )
            )
    if args.genotypes:  # "space genotype" per line: e.g. a search's front architectures
        for k, line in enumerate(args.genotypes.read_text().splitlines(), 1):
            if not line.strip():
                continue
            space_name, g = line.split(maxsplit=1)
            graph = get_space(space_name).to_graph(g.strip())
            label = f"{space_name}@{k}"
            out.append(
                (
                    label,
                    MeasurementRequest(arch_hash=label, device="cpu", graph_json=graph.to_json()),
                )
            )
    if args.zoo:
        sys.path.insert(0, str(Path(__file__).parent))
        import zoo  # type: ignore[import-not-found]

        for name in [z for z in args.zoo.split(",") if z]:
            p = zoo.export(name, tmp / f"{name}.onnx")
            out.append((name, MeasurementRequest(arch_hash=name, device="cpu", onnx_path=str(p))))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mbconv", type=int, default=5)
    ap.add_argument("--resnet", type=int, default=5)
    ap.add_argument("--zoo", default="resnet18,mobilenet_v2,efficientnet_b0,squeezenet1_1")
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--skip",
        type=int,
        default=0,
        help="skip the first N samples of each space (measured by an earlier, split run)",
    )
    ap.add_argument(
        "--genotypes",
        type=Path,
        help="also measure these architectures: one 'space genotype' per line (labels space@line)",
    )
    ap.add_argument("--min-time-s", type=float, default=0.5)
    ap.add_argument("--json", type=Path, help="also write the rows here")
    ap.add_argument(
        "--activations",
        default=None,
        choices=("uint8", "int8"),
        help="INT8 activation encoding (default: the cpu device's, uint8 asymmetric; int8 = "
        "symmetric, the TensorRT form)",
    )
    args = ap.parse_args(argv)
    opts = {"min_time_s": args.min_time_s, "max_attempts": 1, "repeats": 10}
    cfg = TimingConfig.from_options(opts)
    load0 = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory() as td:
        reqs = _requests(args, Path(td))
        devs = {p: get_device("cpu", precision=p) for p in ("fp32", "int8")}
        if args.activations:
            devs["int8"].int8_activations = args.activations  # type: ignore[attr-defined]
        print(f"int8 activations: {devs['int8'].int8_activations}")  # type: ignore[attr-defined]
        print(f"load before: {load0}; {len(reqs)} models, {args.pairs} pairs", flush=True)
        for label, base in reqs:
            src, req = {}, {}
            for p, dev in devs.items():
                req[p] = MeasurementRequest(
                    arch_hash=base.arch_hash, device="cpu", precision=p, per_layer=False,
                    graph_json=base.graph_json, onnx_path=base.onnx_path,
                )  # fmt: skip
                src[p] = dev.load(req[p])
            times: dict[str, list[float]] = {"fp32": [], "int8": []}
            for k in range(args.pairs):
                order = ("fp32", "int8") if k % 2 == 0 else ("int8", "fp32")
                for p in order:
                    dev = devs[p]
                    m = dev.measure_model(src[p], req[p], opts, cfg, dev.device_id_for(p))
                    if m.status == "failed":
                        raise SystemExit(f"{label} {p} failed: {m.error}")
                    times[p].append(m.median_ms)
            f, q = statistics.median(times["fp32"]), statistics.median(times["int8"])
            pair = [a / b for a, b in zip(times["fp32"], times["int8"], strict=True)]
            row = {"model": label, "fp32_ms": f, "int8_ms": q, "speedup": f / q,
                   "pair_speedup_range": [min(pair), max(pair)],
                   "fp32_runs": times["fp32"], "int8_runs": times["int8"]}  # fmt: skip
            rows.append(row)
            print(f"{label:24s} fp32 {f:9.3f} ms  int8 {q:9.3f} ms  speed-up {f / q:5.2f}x "
                  f"(pairs {min(pair):.2f}-{max(pair):.2f})", flush=True)  # fmt: skip
    load1 = os.getloadavg()
    geo = math.exp(statistics.mean(math.log(r["speedup"]) for r in rows))
    print(f"geometric mean speed-up fp32/int8: {geo:.2f}x over {len(rows)} models")
    print(f"load after: {load1}")
    print("\n| model | fp32 ms | int8 ms | speed-up fp32/int8 | per-pair range |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        lo, hi = r["pair_speedup_range"]
        print(f"| {r['model']} | {r['fp32_ms']:.2f} | {r['int8_ms']:.2f} | {r['speedup']:.2f}x "
              f"| {lo:.2f}-{hi:.2f} |")  # fmt: skip
    print(f"| geometric mean | | | {geo:.2f}x | |")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "load": [load0, load1]}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
