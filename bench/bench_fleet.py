"""Benchmark the device fleet (issue 12): scaling over workers of one key, and per-job overhead.

Scaling: replay workers that emulate device time (each job sleeps for the table's latency times
the protocol's runs, so the run is device-bound like a fleet of real boards); 1, 2, 4, 8 workers
serve one key and ``collect`` (the CLI's loop) profiles the SAME ``--jobs`` nb201 architectures
(one seed) in every row, so rows differ only in the number of workers. "x linear" = throughput /
(workers x the first row's throughput per worker) (the issue's target: >= 0.9 at 4 workers, >=
0.8 at 8); "device-time efficiency" = (emulated device seconds / workers) / wall seconds (1.0:
no time lost to anything but the device, the last job's tail included).

Overhead: one worker that answers at once (replay without emulated time), a distinct 5 MB ONNX
per job, one job at a time: wall per job from sending to the stored row (queue + transfer +
store), median and p90; twice: the default (a worker on this machine reads the model by its
path) and a worker started with ``--no-local-paths`` (the model as Redis chunks, as for a
worker on another machine).

    .venv/bin/python bench/bench_fleet.py                        # defaults below
    .venv/bin/python bench/bench_fleet.py --workers 1,2,4 --jobs 24 --repeats 50

Starts its own redis-server (as docs/fleet.md starts it: ``--appendonly yes``, fsync every
second) on a free loopback port and its own worker processes, and stops them. Timings on a
shared machine are noisy: the load average is printed with the results.
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
from nasctl.datasets.collect import collect, space_jobs  # noqa: E402
from nasctl.datasets.store import Store  # noqa: E402
from nasctl.fleet import RemoteDevice  # noqa: E402
from nasctl.records import MeasurementRequest  # noqa: E402
from nasctl.spaces import get_space  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SEED = 1000
#: Redis as docs/fleet.md starts it (--appendonly yes; fsync once a second, Redis' default)
REDIS = {"appendfsync": "everysec"}


def scaling(
    fleet: Fleet, tmp: Path, counts: list[int], jobs: int, repeats: int, column: str
) -> list[dict[str, Any]]:
    device = f"replay:nb201/{column}"
    rows = []
    for n in counts:
        while len(fleet.workers) < n:
            fleet.worker(device, "--data-dir", str(DATA), "--emulate-time")
        _forget_answers(fleet)  # same jobs, same task ids: the row measures, not picks up
        dev = RemoteDevice(fleet.url, device, wait_s=30)
        assert dev.workers == n, f"{dev.workers} workers announced, expected {n}"
        with Store(tmp / f"scale{n}.db") as store:
            t0, c0 = time.perf_counter(), time.process_time()
            s = collect(
                store,
                dev,
                space_jobs(store, get_space("nb201"), jobs, SEED),  # the same jobs every row
                jobs,
                options={"repeats": repeats},
                per_layer=False,
            )
            wall, host_cpu = time.perf_counter() - t0, time.process_time() - c0
            device_s = sum(r.latency_ms for r in store.training_rows(device)) * repeats / 1000
        dev.close()
        assert s.ok == jobs and s.skipped == 0, s.to_dict()
        rows.append(
            {
                "workers": n,
                "jobs": jobs,
                "wall_s": round(wall, 2),
                "device_s": round(device_s, 2),
                "device_s_per_job": round(device_s / jobs, 3),
                "jobs_per_s": round(jobs / wall, 2),
                "efficiency": round(device_s / n / wall, 3),
                "host_cpu_ms_per_job": round(1000 * host_cpu / jobs, 1),
                "resent": dev.resent,
            }
        )
        print(json.dumps(rows[-1]), file=sys.stderr)
    one = rows[0]["jobs_per_s"] / rows[0]["workers"]
    for r in rows:  # throughput against n x the first row's per-worker throughput
        r["vs_linear"] = round(r["jobs_per_s"] / (r["workers"] * one), 3)
    return rows


def _forget_answers(fleet: Fleet) -> None:
    """Drop the answers and sent markers of earlier rows (the queues and workers stay)."""
    r = fleet.redis.client()
    try:
        for pattern in ("celery-task-meta-*", "nasctl:sent:*", "nasctl:started:*"):
            keys = list(r.scan_iter(match=pattern, count=1000))
            if keys:
                r.delete(*keys)
    finally:
        r.close()


def write_onnxes(folder: Path, n: int, mbytes: float) -> list[Path]:
    """``n`` MatMul models of ``mbytes`` MiB each, all different (one weight differs)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    cols = int(mbytes * 2**20 / 4 / 1024)
    weights = np.random.default_rng(0).random((1024, cols), dtype=np.float32)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1024])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, cols])
    paths = []
    for i in range(n):
        weights[0, 0] = i
        w = numpy_helper.from_array(weights, "w")
        node = helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")
        g = helper.make_graph([node], "g", [x], [y], [w])
        paths.append(folder / f"big{i}.onnx")
        onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), paths[-1])
    return paths


def overhead(
    fleet: Fleet, tmp: Path, jobs: int, mbytes: float, column: str, local: bool
) -> dict[str, Any]:
    device = f"replay:nb201/{column}"
    for w in fleet.workers:
        w.stop()
    flags = [] if local else ["--no-local-paths"]
    fleet.worker(device, "--data-dir", str(DATA), *flags, name=f"fast{len(fleet.workers)}")
    folder = tmp / f"models-{local}"
    folder.mkdir()
    paths = write_onnxes(folder, jobs, mbytes)
    graph = from_onnx(str(paths[0]))
    genotype = next(iter(_table_archs(column)))
    dev = RemoteDevice(fleet.url, device, wait_s=30)
    times: list[float] = []
    cpu: list[float] = []
    transfers: set[str] = set()
    ok = 0
    others = {"worker": fleet.workers[-1].proc.pid, "redis": fleet.redis.proc.pid}
    with Store(tmp / f"overhead-{local}.db") as store:
        for i, path in enumerate(paths):
            if i == 1:  # after the warm-up job
                cpu0 = {k: _cpu_s(pid) for k, pid in others.items()}
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
            transfers.add(m.extra["fleet"]["transfer"])
    cpu1 = {k: _cpu_s(pid) for k, pid in others.items()}
    dev.close()
    ms = sorted(1000 * t for t in times[1:])  # the first job warms the connections
    host_cpu_ms = statistics.median(1000 * c for c in cpu[1:])
    return {
        "transfer": "/".join(sorted(transfers)),
        "jobs": len(ms),
        "ok": ok,
        "onnx_bytes": paths[0].stat().st_size,
        "median_ms": round(statistics.median(ms), 2),
        "p90_ms": round(ms[int(0.9 * (len(ms) - 1))], 2),
        "min_ms": round(ms[0], 2),
        # CPU time of the host process per job (ONNX read, Redis, JSON, SQLite): what the host
        # pays whatever the load
        "host_cpu_ms": round(host_cpu_ms, 2),
        # the worker's and Redis' CPU per job (mean; heartbeats included): with the host's, the
        # work a job costs, which a loaded machine stretches into wall time
        **{f"{k}_cpu_ms": round(1000 * (cpu1[k] - cpu0[k]) / len(ms), 2) for k in others},
    }


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _table_archs(column: str) -> list[str]:
    import csv

    with open(DATA / "nb201" / "latency_ms.csv", newline="") as f:
        return [r["arch"] for r, _ in zip(csv.DictReader(f), range(5), strict=False)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", default="1,2,4,8")
    ap.add_argument("--jobs", type=int, default=64, help="architectures, the same in every row")
    ap.add_argument("--repeats", type=int, default=100, help="runs per job (x table latency)")
    ap.add_argument("--column", default="titan_rtx_1")
    ap.add_argument("--overhead-jobs", type=int, default=31)
    ap.add_argument("--onnx-mb", type=float, default=5.0)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    counts = [int(x) for x in a.workers.split(",")]
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        f1 = Fleet(tmp / "scale", **REDIS)
        try:
            scale = scaling(f1, tmp, counts, a.jobs, a.repeats, a.column)
        finally:
            f1.close()
        f2 = Fleet(tmp / "overhead", **REDIS)
        try:
            over = [
                overhead(f2, tmp, a.overhead_jobs, a.onnx_mb, "eyeriss", local)
                for local in (True, False)
            ]
        finally:
            f2.close()
    doc = {
        "command": " ".join(["bench/bench_fleet.py", *sys.argv[1:]]),
        "loadavg_before": load_before,
        "loadavg": os.getloadavg(),
        "cpus": os.cpu_count(),
        "scaling": scale,
        "overhead": over,
    }
    if a.json:
        print(json.dumps(doc, indent=2))
        return
    print(
        f"`{doc['command']}` (load average {load_before[0]:.1f} before, "
        f"{doc['loadavg'][0]:.1f} after, {doc['cpus']} cpus)\n"
    )
    print(
        "| workers | jobs | wall s | device s | device s/job | jobs/s | x linear (vs 1 worker) "
        "| device-time efficiency | host CPU ms/job |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in scale:
        print(
            f"| {r['workers']} | {r['jobs']} | {r['wall_s']} | {r['device_s']} | "
            f"{r['device_s_per_job']} | {r['jobs_per_s']} | {r['vs_linear']} | "
            f"{r['efficiency']} | {r['host_cpu_ms_per_job']} |"
        )
    for o in over:
        print(
            f"\nper-job overhead, {o['onnx_bytes'] / 2**20:.1f} MiB ONNX by {o['transfer']}, "
            f"{o['jobs']} jobs: median {o['median_ms']} ms, p90 {o['p90_ms']} ms, min "
            f"{o['min_ms']} ms; CPU per job: host {o['host_cpu_ms']} ms (median), worker "
            f"{o['worker_cpu_ms']} ms, Redis {o['redis_cpu_ms']} ms (means)"
        )


if __name__ == "__main__":
    main()
