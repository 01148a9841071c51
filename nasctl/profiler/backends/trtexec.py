"""trtexec backend: version-aware command lines, one subprocess per measurement, and the JSON
reports (``--exportTimes``, ``--exportProfile``, ``--exportLayerInfo``) read back.

Version differences handled here:

- TensorRT 8.x (JetPack 5 ships 8.5): stable timing needs ``--useSpinWait --useCudaGraph
  --noDataTransfers --separateProfileRun``; precision by ``--fp16``/``--int8`` (INT8 without a
  calibration cache uses placeholder scales: fine for latency);
- TensorRT 10.x: the same flags (still off by default), ``--memPoolSize=workspace:<MiB>``
  instead of ``--workspace``; ``--stronglyTyped`` when ``precision="onnx"``;
- TensorRT >= 11: the precision flags are gone (every network is strongly typed, precision comes
  from the ONNX), and the stability flags are on by default, so none of them is passed.
"""

from __future__ import annotations

import math
import re
import subprocess
import tempfile
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

from nasctl.errors import BackendError, DeviceError, NasctlError
from nasctl.profiler.base import Device
from nasctl.profiler.protocol import TimingConfig
from nasctl.profiler.trt_reports import (
    graph_names,
    profile_layers,
    read_json,
    reconcile,
    timing_stats,
)
from nasctl.records import Measurement, MeasurementRequest

Version = tuple[int, int]
_TAG = re.compile(r"\[TensorRT v(\d{4,6})\]")
_LINE = re.compile(r"TensorRT version:?\s*(\d+)\.(\d+)")


def parse_trt_version(text: str) -> Version | None:
    """TensorRT (major, minor) from trtexec output: ``[TensorRT v8502]`` -> (8, 5),
    ``[TensorRT v100300]`` -> (10, 3), or a ``TensorRT version: 10.3.0`` log line."""
    m = _LINE.search(text)
    if m:
        return int(m.group(1)), int(m.group(2))
    m = _TAG.search(text)
    if not m:
        return None
    d = m.group(1)
    if len(d) == 4:  # MNPP
        return int(d[0]), int(d[1])
    if len(d) == 5:  # MNNPP (9.x: v90200)
        return int(d[0]), int(d[1:3])
    return int(d[:2]), int(d[2:4])  # MMNNPP


@lru_cache(maxsize=8)
def _probe(path: str) -> str:
    try:
        r = subprocess.run(
            [path, "--help"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.SubprocessError) as e:
        raise DeviceError(f"cannot run trtexec at {path}: {e}") from e
    return r.stdout + r.stderr


def trtexec_version(path: str) -> str:
    """``major.minor`` of the TensorRT behind the trtexec at ``path``."""
    v = parse_trt_version(_probe(path))
    if v is None:
        raise DeviceError(f"cannot tell the TensorRT version of {path} (no '[TensorRT v...]')")
    return f"{v[0]}.{v[1]}"


def precision_flags(version: Version, precision: str) -> list[str]:
    """Builder precision flags for ``precision`` (fp32|fp16|int8|onnx) on ``version``."""
    if version >= (11, 0):
        return []  # strongly typed: the ONNX decides
    if precision == "fp16":
        return ["--fp16"]
    if precision == "int8":
        return ["--int8", "--fp16"]  # int8 where it is faster, fp16 elsewhere (as trtexec users do)
    if precision == "onnx" and version >= (10, 0):
        return ["--stronglyTyped"]
    return []


def trtexec_command(
    trtexec: str,
    version: Version,
    *,
    onnx: str | None,
    out_prefix: str,
    precision: str,
    cfg: TimingConfig,
    timing_cache: str | None = None,
    workspace_mb: int | None = None,
    shapes: str | None = None,
    save_engine: str | None = None,
    load_engine: str | None = None,
    profile: bool = True,
) -> list[str]:
    """The trtexec argument list for one build-and-time (or, with ``load_engine``, time-only)
    run. Reports go to ``<out_prefix>.timing.json``/``.profile.json``/``.graph.json``."""
    cmd = [trtexec]
    if load_engine:
        cmd.append(f"--loadEngine={load_engine}")
    else:
        if onnx is None:
            raise BackendError("trtexec needs an ONNX file or an engine")
        cmd.append(f"--onnx={onnx}")
        cmd += precision_flags(version, precision)
        if workspace_mb:
            cmd.append(
                f"--memPoolSize=workspace:{int(workspace_mb)}"
                if version >= (8, 4)
                else f"--workspace={int(workspace_mb)}"
            )
        if timing_cache:
            cmd.append(f"--timingCacheFile={timing_cache}")
        if save_engine:
            cmd.append(f"--saveEngine={save_engine}")
    if version < (8, 2):
        cmd.append("--explicitBatch")
    if shapes:
        cmd.append(f"--shapes={shapes}")
    cmd += [
        f"--warmUp={int(round(cfg.warmup_s * 1000))}",
        f"--iterations={cfg.repeats}",
        f"--duration={max(1, math.ceil(cfg.min_time_s))}",
        "--avgRuns=1",
    ]
    if version < (11, 0):
        cmd += ["--useSpinWait", "--useCudaGraph", "--noDataTransfers"]
        if profile:
            cmd.append("--separateProfileRun")
    cmd += [
        "--profilingVerbosity=detailed",
        f"--exportTimes={out_prefix}.timing.json",
        f"--exportLayerInfo={out_prefix}.graph.json",
    ]
    if profile:
        cmd.append(f"--exportProfile={out_prefix}.profile.json")
    return cmd


def onnx_shapes(model_bytes: bytes, batch: int) -> str | None:
    """``--shapes`` value when the ONNX has a symbolic batch dimension, else None."""
    import onnx

    try:
        model = onnx.load_from_string(model_bytes)
    except Exception as e:  # protobuf DecodeError and friends
        raise BackendError(f"not an ONNX model: {e}") from e
    inits = {i.name for i in model.graph.initializer}
    specs, dynamic = [], False
    for inp in model.graph.input:
        if inp.name in inits:
            continue
        dims = []
        for k, d in enumerate(inp.type.tensor_type.shape.dim):
            if d.HasField("dim_value") and d.dim_value > 0:
                dims.append(str(d.dim_value))
            elif k == 0:
                dims.append(str(batch))
                dynamic = True
            else:
                raise BackendError(f"input {inp.name!r} has an unknown dimension {k}")
        specs.append(f"{inp.name}:{'x'.join(dims)}")
    return ",".join(specs) if dynamic else None


def run_trtexec(cmd: list[str], timeout_s: float = 1800) -> str:
    """Run trtexec; a non-zero exit is a :class:`BackendError` with trtexec's last error line."""
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as e:
        raise BackendError(f"trtexec timed out after {timeout_s:.0f} s") from e
    except OSError as e:
        raise BackendError(f"cannot run trtexec: {e}") from e
    out = r.stdout + r.stderr
    if r.returncode != 0 or "&&&& FAILED" in out:
        errors = [ln for ln in out.splitlines() if "[E]" in ln or "Error" in ln]
        raise BackendError(
            "trtexec failed: " + (errors[-1].strip() if errors else f"exit code {r.returncode}")
        )
    return out


def measure_trtexec(
    device: Device, request: MeasurementRequest, opts: dict[str, Any], trtexec: str
) -> Measurement:
    """Build with trtexec, time it (re-timing the saved engine while the quality gate fails),
    and read back whole-graph stats, per-layer times and layer info."""
    from nasctl.profiler.fingerprint import collect
    from nasctl.profiler.source import load_model

    cfg = TimingConfig.from_options(opts)
    version = parse_trt_version(_probe(trtexec)) or (0, 0)
    dev_id = device.device_id_for(request.precision)
    t0 = time.perf_counter()
    try:
        src = load_model(request)
        model, ids = src.data or src.path.read_bytes(), src.graph_ids  # type: ignore[union-attr]
    except DeviceError:
        raise
    except NasctlError as e:
        return device.failed(request, str(e), dev_id)
    with tempfile.TemporaryDirectory(prefix="nasctl-trtexec-") as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        onnx_path.write_bytes(model)
        engine = str(Path(tmp) / "model.engine")
        common: dict[str, Any] = {
            "precision": request.precision,
            "cfg": cfg,
            "timing_cache": _timing_cache(device, opts, request.precision),
            "workspace_mb": opts.get("workspace_mb"),
        }
        try:
            common["shapes"] = onnx_shapes(model, request.batch)
            prefix = str(Path(tmp) / "run0")
            log = run_trtexec(
                trtexec_command(
                    trtexec,
                    version,
                    onnx=str(onnx_path),
                    out_prefix=prefix,
                    save_engine=engine,
                    profile=request.per_layer,
                    **common,
                )
            )
            attempts = [timing_stats(read_json(prefix + ".timing.json"))]
            while attempts[-1].cv > cfg.cv_threshold and len(attempts) < cfg.max_attempts:
                p = str(Path(tmp) / f"run{len(attempts)}")
                run_trtexec(
                    trtexec_command(
                        trtexec,
                        version,
                        onnx=None,
                        out_prefix=p,
                        load_engine=engine,
                        profile=False,
                        **common,
                    )
                )
                attempts.append(timing_stats(read_json(p + ".timing.json")))
            info = read_json(prefix + ".graph.json")
            layers = (
                profile_layers(read_json(prefix + ".profile.json"), info, *graph_names(model, ids))
                if request.per_layer
                else []
            )
        except NasctlError as e:
            return device.failed(request, str(e), dev_id)
    best = min(attempts, key=lambda s: s.cv)
    m = Measurement(
        arch_hash=request.arch_hash,
        device_id=dev_id,
        precision=request.precision,
        batch=request.batch,
        status="ok" if best.cv <= cfg.cv_threshold else "noisy",
        median_ms=best.median_ms,
        mean_ms=best.mean_ms,
        p90_ms=best.p90_ms,
        std_ms=best.std_ms,
        cv=best.cv,
        runs=best.runs,
        warmup=0,
        attempts=len(attempts),
        layers=layers,
        fingerprint={
            **collect(libs=(), gpu=True),
            "tensorrt": ".".join(map(str, version)),
            "trtexec": trtexec,
        },
        extra={
            "cvs": [s.cv for s in attempts],
            "backend": "trtexec",
            "warmup_ms": cfg.warmup_s * 1000,
            "wall_s": time.perf_counter() - t0,
            "engine_log_tail": log.splitlines()[-3:],
        },
    )
    if version >= (11, 0):
        m.extra["precision_note"] = "TensorRT >= 11 takes precision from the ONNX"
    if layers and m.median_ms:
        r = reconcile(layers, m.median_ms)
        m.extra.update(layers_sum_ms=r["layers_sum_ms"], layers_sum_ratio=r["ratio"])
    return m


def _timing_cache(device: Any, opts: dict[str, Any], precision: str) -> str | None:
    d = opts.get("timing_cache_dir")
    if not d:
        return None
    Path(d).mkdir(parents=True, exist_ok=True)
    return str(Path(d) / f"{device.device_id_for(precision)}.timing.cache")
