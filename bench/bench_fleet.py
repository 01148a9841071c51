"""Benchmark the device fleet (issue 12): scaling over workers of one key, and per-job overhead.

Scaling: replay workers that emulate device time (each job sleeps for the table's latency times
the protocol's runs, so the run is device-bound like a fleet of real boards); 1, 2, 4, 8 workers
serve one key and ``collect_fleet`` profiles ``jobs_per_worker x workers`` nb201 architectures.
"x linear" = throughput / (workers x the first row's throughput per worker) (the issue's target:
>= 0.9 at 4 workers, >= 0.8 at 8); "device-time efficiency" = (emulated device seconds /
workers) / wall seconds (1.0: no time lost to anything but the device).

Overhead: one worker that answers at once (replay without emulated time), a 5 MB ONNX (sent as
Redis chunks), one job at a time: wall per job from sending to the stored row (queue + transfer
+ store), median and p90.

    .venv/bin/python bench/bench_fleet.py                        # defaults below
    .venv/bin/python bench/bench_fleet.py --workers 1,2,4 --jobs-per-worker 6 --repeats 50

Starts its own redis-server on a free loopback port and its own worker processes, and stops
them. Timings on a shared machine are noisy: the load average is printed with the results.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fleet_harness import Fleet  # noqa: E402

from nasctl.arch.onnx_io import from_onnx  # noqa: E402
from nasctl.datasets.collect import space_jobs  # noqa: E402
from nasctl.datasets.store import Store  # noqa: E402
from nasctl.fleet import RemoteDevice, collect_fleet  # noqa: E402
from nasctl.records import MeasurementRequest  # noqa: E402
from nasctl.spaces import get_space  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def scaling(
    fleet: Fleet, tmp: Path, counts: list[int], per_worker: int, repeats: int, column: str
) -> list[dict[str, Any]]:
    device = f"replay:nb201/{column}"
    rows = []
    for n in counts:
        while len(fleet.workers) < n:
            fleet.worker(device, "--data-dir", str(DATA), "--emulate-time")
        dev = RemoteDevice(fleet.url, device, wait_s=30)
        assert dev.workers == n, f"{dev.workers} workers announced, expected {n}"
        jobs = per_worker * n
        with Store(tmp / f"scale{n}.db") as store:
            t0, c0 = time.perf_counter(), time.process_time()
            s = collect_fleet(
                store,
                dev,
                space_jobs(store, get_space("nb201"), jobs, 1000 + n),
                jobs,
                options={"repeats": repeats},
                per_layer=False,
            )
            wall, host_cpu = time.perf_counter() - t0, time.process_time() - c0
            device_s = sum(r.latency_ms for r in store.training_rows(device)) * repeats / 1000
        dev.close()
        assert s.ok == jobs, s.to_dict()
        ideal = device_s / n
        rows.append(
            {
                "workers": n,
                "jobs": jobs,
                "wall_s": round(wall, 2),
                "device_s": round(device_s, 2),
                "jobs_per_s": round(jobs / wall, 2),
                "efficiency": round(ideal / wall, 3),
                "host_cpu_ms_per_job": round(1000 * host_cpu / jobs, 1),
                "resent": dev.resent,
            }
        )
        print(json.dumps(rows[-1]), file=sys.stderr)
    one = rows[0]["jobs_per_s"] / rows[0]["workers"]
    for r in rows:  # throughput against n x the first row's per-worker throughput
        r["vs_linear"] = round(r["jobs_per_s"] / (r["workers"] * one), 3)
    return rows


def write_onnx(path: Path, mbytes: float) -> Path:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    n = int(mbytes * 2**20 / 4 / 1024)
    w = numpy_helper.from_array(np.random.default_rng(0).random((1024, n), dtype=np.float32), "w")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1024])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n])
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "g", [x], [y], [w]
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, path)
    return path


def overhead(fleet: Fleet, tmp: Path, jobs: int, mbytes: float, column: str) -> dict[str, Any]:
    device = f"replay:nb201/{column}"
    fleet.worker(device, "--data-dir", str(DATA), name="fast")
    path = write_onnx(tmp / "big.onnx", mbytes)
    graph = from_onnx(str(path))
    genotype = next(iter(_table_archs(column)))
    dev = RemoteDevice(fleet.url, device, wait_s=30)
    times: list[float] = []
    cpu: list[float] = []
    ok = 0
    with Store(tmp / "overhead.db") as store:
        for i in range(jobs):
            h = store.add_architecture(graph, model=path.name, arch_hash=f"bench-{mbytes}mb-{i}")
            req = MeasurementRequest(
                h, device, onnx_path=str(path), model=path.name, genotype=genotype, per_layer=False
            )
            t0, c0 = time.perf_counter(), time.process_time()
            m = dev.measure(req)
            store.add_measurement(m)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
            ok += m.status == "ok"
    dev.close()
    ms = sorted(1000 * t for t in times[1:])  # the first job warms the connections
    host_cpu_ms = statistics.median(1000 * c for c in cpu[1:])
    return {
        "jobs": len(ms),
        "ok": ok,
        "onnx_bytes": path.stat().st_size,
        "median_ms": round(statistics.median(ms), 2),
        "p90_ms": round(ms[int(0.9 * (len(ms) - 1))], 2),
        "min_ms": round(ms[0], 2),
        # CPU time of the host process per job (ONNX read, hashing, Redis, JSON, SQLite):
        # what the host pays whatever the load
        "host_cpu_ms": round(host_cpu_ms, 2),
    }


def _table_archs(column: str) -> list[str]:
    import csv

    with open(DATA / "nb201" / "latency_ms.csv", newline="") as f:
        return [r["arch"] for r, _ in zip(csv.DictReader(f), range(5), strict=False)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", default="1,2,4,8")
    ap.add_argument("--jobs-per-worker", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=100, help="runs per job (x table latency)")
    ap.add_argument("--column", default="titan_rtx_1")
    ap.add_argument("--overhead-jobs", type=int, default=31)
    ap.add_argument("--onnx-mb", type=float, default=5.0)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    counts = [int(x) for x in a.workers.split(",")]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        f1 = Fleet(tmp / "scale")
        try:
            scale = scaling(f1, tmp, counts, a.jobs_per_worker, a.repeats, a.column)
        finally:
            f1.close()
        f2 = Fleet(tmp / "overhead")
        try:
            over = overhead(f2, tmp, a.overhead_jobs, a.onnx_mb, "eyeriss")
        finally:
            f2.close()
    doc = {
        "command": " ".join(["bench/bench_fleet.py", *sys.argv[1:]]),
        "loadavg": os.getloadavg(),
        "cpus": os.cpu_count(),
        "scaling": scale,
        "overhead": over,
    }
    if a.json:
        print(json.dumps(doc, indent=2))
        return
    print(f"`{doc['command']}` (load average {doc['loadavg'][0]:.1f}, {doc['cpus']} cpus)\n")
    print(
        "| workers | jobs | wall s | device s | jobs/s | x linear (vs 1 worker) "
        "| device-time efficiency | host CPU ms/job |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in scale:
        print(
            f"| {r['workers']} | {r['jobs']} | {r['wall_s']} | {r['device_s']} | "
            f"{r['jobs_per_s']} | {r['vs_linear']} | {r['efficiency']} | "
            f"{r['host_cpu_ms_per_job']} |"
        )
    o = over
    print(
        f"\nper-job overhead, {o['onnx_bytes'] / 2**20:.1f} MiB ONNX, {o['jobs']} jobs: "
        f"median {o['median_ms']} ms, p90 {o['p90_ms']} ms, min {o['min_ms']} ms, "
        f"host CPU per job (median) {o['host_cpu_ms']} ms"
    )


if __name__ == "__main__":
    main()
