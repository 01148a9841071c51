"""The cpu device's memory measurement, in a fresh process per model (this module: a new Python
process per model, the default; option ``memory=forked`` forks each model's process from a probe
server instead, :mod:`nasctl_agent.memserver`, with this module as its fallback).

Measured inside one long-lived process, a model's peak memory depends on the models before it:
memory an earlier session freed but the process kept resident (heap fragments glibc cannot give
back) is reused without showing as growth, so a model measured after others reads up to 20 %
low (bench/bench_memory_zoo.py: mobilenet_v2 after mobilenet_v3_small 47-48 MB in-process, 57
MB in a fresh process). Here the parent starts ``python -m nasctl_agent.memprobe`` for each
model (about 0.15 s of CPU to start, then one session), which measures the way the cpu device
times (:func:`~nasctl_agent.backends.ort.session_options`, the model's bytes, random inputs):

1. ONNX Runtime's environment warmed by a one-Relu session; the model's bytes read;
2. the peak RSS reset (``/proc/self/clear_refs``), the resident size read (``VmRSS``);
3. the session created and run ``runs`` times (3: ONNX Runtime's arena has its final size after
   the second run); the peak read (``VmHWM``).

It prints ``{"peak_rss_bytes", "baseline_rss_bytes", "model_peak_bytes"}`` as one JSON line, or
``{"missing": reason}`` where the memory cannot be measured (not Linux, no ``clear_refs``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any

from nasctl_agent.errors import ModelError


def measure_fresh(
    path: str,
    *,
    threads: int,
    batch: int,
    seed: int,
    shapes: dict[str, list[int]] | None,
    runs: int = 3,
    timeout_s: float = 600.0,
) -> dict[str, Any]:
    """Run the probe on the ``.onnx`` at ``path`` in a fresh process; its memory record."""
    cmd = [sys.executable, "-m", "nasctl_agent.memprobe", path, "--threads", str(threads)]
    cmd += ["--batch", str(batch), "--seed", str(seed), "--runs", str(runs)]
    if shapes:
        cmd += ["--shapes", json.dumps(shapes)]
    env = dict(os.environ)
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
    before = _children_cpu_s()
    try:
        out = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout_s, env=env, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"missing": f"the memory probe did not run: {' '.join(str(e).split())[:200]}"}
    cpu_s = _children_cpu_s() - before
    lines = out.stdout.strip().splitlines()
    try:
        rec = json.loads(lines[-1]) if lines else None
    except ValueError:
        rec = None
    if out.returncode != 0 or not isinstance(rec, dict):
        err = (out.stderr.strip().splitlines() or [f"exit code {out.returncode}"])[-1]
        return {"missing": f"the memory probe failed: {err[:200]}"}
    rec["peak_rss_scope"] = "fresh process"
    rec["probe_process"] = "spawned"
    if cpu_s >= 0:
        rec["probe_cpu_s"] = round(cpu_s, 3)  # what the probe cost (user + system CPU)
    return rec


def _children_cpu_s() -> float:
    """User + system CPU seconds of this process's waited-for children so far (-inf where
    unknown: the cost is then not reported)."""
    try:
        import resource

        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    except (ImportError, OSError):
        return float("-inf")
    return float(ru.ru_utime + ru.ru_stime)


def probe(path: str, threads: int, batch: int, seed: int, shapes: Any, runs: int) -> dict:
    from nasctl_agent.backends import ort
    from nasctl_agent.model import open_model

    ort.warm_runtime(threads)
    model = open_model(path)
    if not model.has_external_data:
        model.data = model.read_bytes()  # the caller's copy is not the model's memory
    scoped = ort.reset_peak_rss()
    baseline = ort.current_rss_bytes() if scoped else None
    session = ort.create_session(model, threads)
    feeds = ort.make_feeds(session, batch, seed, shapes)
    outputs = [o.name for o in session.get_outputs()]
    try:
        for _ in range(max(1, runs)):
            session.run(outputs, feeds)
    except Exception as e:  # noqa: BLE001 - ORT raises its own classes
        msg = " ".join(str(e).split())[:200]
        raise ModelError(f"ONNX Runtime cannot run the model: {msg}") from None
    return model_memory(scoped, baseline, ort.peak_rss_bytes())


def model_memory(scoped: bool, baseline: int | None, peak: int | None) -> dict[str, Any]:
    """The ``memory`` of a cpu measurement: the process's peak RSS over the timed session
    (``peak_rss_bytes``) and ``model_peak_bytes`` = that peak minus the resident size just before
    the session (session, weights, arena, activations, inputs). Where that cannot be measured
    (no resettable peak, no ``/proc/self``, a peak below the baseline) ``model_peak_bytes`` is
    left out and ``missing`` says why: the latency stands, the memory is never a guess."""
    out: dict[str, Any] = {}
    if peak is not None:
        out["peak_rss_bytes"] = peak
        out["peak_rss_scope"] = "measurement" if scoped else "process"
    if not scoped:
        out["missing"] = (
            "the process's peak memory cannot be reset here (needs /proc/self/clear_refs)"
        )
    elif peak is None or baseline is None:
        out["missing"] = "the process's memory cannot be read here (needs /proc/self/status)"
    elif peak < baseline:
        out["missing"] = f"peak RSS {peak} below the baseline {baseline}: not a measurement"
    else:
        out["baseline_rss_bytes"] = baseline
        out["model_peak_bytes"] = peak - baseline
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m nasctl_agent.memprobe")
    ap.add_argument("model")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--shapes", default="")
    a = ap.parse_args(argv)
    shapes = json.loads(a.shapes) if a.shapes else None
    rec = probe(a.model, a.threads, a.batch, a.seed, shapes, a.runs)
    print(json.dumps(rec))
    return 0


if __name__ == "__main__":
    sys.exit(main())
