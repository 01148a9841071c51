"""trtexec backend: version-aware command lines (flags checked against trtexec's own lists for
8.5, 10.x and 11.x, see ``tests/data/trtexec_flags``), one subprocess per run (killed with its
process group on timeout), and trtexec's JSON reports read back (``--exportTimes``,
``--exportProfile``, ``--exportLayerInfo``).

Per version:

- 8.5 (JetPack 5): ``--useSpinWait --useCudaGraph --noDataTransfers --separateProfileRun``;
  precision by ``--fp16``/``--int8``; INT8 scales from ``--calib=<cache>``;
- 10.x: the same timing flags; ``--stronglyTyped`` when the ONNX carries the precision;
- 11.x: no precision flags (strongly typed, the ONNX decides) and no timing flags: CUDA graphs,
  spin wait, no transfers and a separate profile run are its defaults (the flags are
  deprecated no-ops there, so none is passed).

Dynamic inputs get one optimization profile, ``--minShapes = --optShapes = --maxShapes`` at the
request's shape. The timing cache is copied in, and the updated cache written back atomically
(``os.replace``) after a successful build whose log shows no invalid-cache warning.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from typing import Any

from nasctl_agent.backends import trt_common as tc
from nasctl_agent.errors import MissingBackendError, ModelError, RequestError
from nasctl_agent.model import Model
from nasctl_agent.protocol import TimingConfig, TimingResult

TRTEXEC_PLACES = ("/usr/src/tensorrt/bin/trtexec", "/usr/local/tensorrt/bin/trtexec")
TRTEXEC_MISSING = (
    "trtexec not found: on a Jetson it is /usr/src/tensorrt/bin/trtexec (JetPack's "
    "TensorRT); elsewhere install TensorRT or give --trtexec PATH"
)
_TAG = re.compile(r"\[TensorRT v(\d{4,6})\]")
_LINE = re.compile(r"TensorRT version:?\s*(\d+)\.(\d+)")
_GRAPH_FAILED = re.compile(
    r"CUDA graph capture on the stream has failed|not permitted under CUDA graph capture"
    r"|--useCudaGraph flag has been ignored"
)
_INVALID_CACHE = re.compile(r"invalid timing cache|timing cache .*(mismatch|corrupt)", re.I)


def find_trtexec(explicit: str | None = None) -> str | None:
    """``explicit`` if given (must be executable), else ``trtexec`` on PATH or in JetPack's
    place."""
    if explicit:
        return explicit if os.path.isfile(explicit) and os.access(explicit, os.X_OK) else None
    found = shutil.which("trtexec")
    if found:
        return found
    return next((p for p in TRTEXEC_PLACES if os.access(p, os.X_OK)), None)


def parse_trt_version(text: str) -> tc.Version | None:
    """TensorRT (major, minor) from trtexec output: ``[TensorRT v8502]`` -> (8, 5),
    ``[TensorRT v100300]`` -> (10, 3), or a ``TensorRT version: 10.3.0`` line."""
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


_PROBED: dict[str, str] = {}


def _probe(path: str) -> str:
    if path not in _PROBED:
        try:
            r = subprocess.run(
                [path, "--help"], capture_output=True, text=True, timeout=60, check=False
            )
        except (OSError, subprocess.SubprocessError) as e:
            raise RequestError(f"cannot run trtexec at {path}: {e}") from e
        _PROBED[path] = r.stdout + r.stderr
    return _PROBED[path]


def trtexec_version(path: str) -> tc.Version:
    """(major, minor) of the TensorRT behind the trtexec at ``path``."""
    v = parse_trt_version(_probe(path))
    if v is None:
        raise RequestError(f"cannot tell the TensorRT version of {path} (no '[TensorRT v...]')")
    return v


def trtexec_command(
    trtexec: str,
    version: tc.Version,
    *,
    onnx: str | None,
    out_prefix: str,
    plan: tc.PrecisionPlan,
    cfg: TimingConfig,
    shapes: tc.ShapePlan | None = None,
    timing_cache: str | None = None,
    workspace_mb: int | None = None,
    save_engine: str | None = None,
    load_engine: str | None = None,
    profile: bool = True,
    dla_core: int | None = None,
    calib_cache: str | None = None,
) -> list[str]:
    """The trtexec argument list for one build-and-time run (or, with ``load_engine``, a
    time-only run). Reports go to ``<out_prefix>.timing.json``/``.profile.json``/
    ``.graph.json``."""
    cmd = [trtexec]
    if load_engine:
        cmd.append(f"--loadEngine={load_engine}")
    else:
        if onnx is None:
            raise ModelError("trtexec needs an ONNX file or an engine")
        cmd.append(f"--onnx={onnx}")
        cmd += precision_flags(version, plan)
        if plan.calibration and calib_cache:
            cmd.append(f"--calib={calib_cache}")
        if workspace_mb:
            cmd.append(f"--memPoolSize=workspace:{int(workspace_mb)}")
        if timing_cache:
            cmd.append(f"--timingCacheFile={timing_cache}")
        if save_engine:
            cmd.append(f"--saveEngine={save_engine}")
        if shapes and shapes.dynamic:  # one profile: min = opt = max
            spec = shapes.spec()
            cmd += [f"--minShapes={spec}", f"--optShapes={spec}", f"--maxShapes={spec}"]
        cmd.append("--profilingVerbosity=detailed")
    if dla_core is not None:
        cmd += [f"--useDLACore={int(dla_core)}", "--allowGPUFallback"]
    if shapes and shapes.dynamic:
        cmd.append(f"--shapes={shapes.spec()}")
    cmd += [
        f"--warmUp={int(round(cfg.warmup_s * 1000))}",
        f"--iterations={cfg.repeats}",
        f"--duration={max(1, math.ceil(cfg.min_time_s))}",
        "--avgRuns=1",
    ]
    if version < (11, 0):  # from 11 these are the defaults (and deprecated no-op flags)
        cmd += ["--useSpinWait", "--useCudaGraph", "--noDataTransfers"]
        if profile:
            cmd.append("--separateProfileRun")
    cmd.append(f"--exportTimes={out_prefix}.timing.json")
    if not load_engine:
        cmd.append(f"--exportLayerInfo={out_prefix}.graph.json")
    if profile:
        cmd.append(f"--exportProfile={out_prefix}.profile.json")
    return cmd


def precision_flags(version: tc.Version, plan: tc.PrecisionPlan) -> list[str]:
    """trtexec's precision flags for ``plan`` on ``version``."""
    if version >= (11, 0):
        return []  # strongly typed always: the ONNX decides, --stronglyTyped is a no-op
    if plan.strongly_typed:
        if version < (10, 0):
            raise RequestError("strongly typed networks need TensorRT >= 10")
        return ["--stronglyTyped"]
    return ["--" + f for f in plan.flags]


def run_trtexec(cmd: list[str], timeout_s: float = 1800) -> str:
    """Run trtexec in its own process group; a non-zero exit is a :class:`ModelError` with
    trtexec's last error line; a run past ``timeout_s`` is killed (group and all)."""
    try:
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    except OSError as e:
        raise ModelError(f"cannot run trtexec: {e}") from e
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill(proc)
        raise ModelError(f"trtexec timed out after {timeout_s:.0f} s (killed)") from None
    except BaseException:  # Ctrl-C: leave no trtexec behind
        _kill(proc)
        raise
    if proc.returncode != 0 or "&&&& FAILED" in out:
        errors = [ln for ln in out.splitlines() if "[E]" in ln or "Error" in ln]
        how = f"exit code {proc.returncode}"
        if proc.returncode is not None and proc.returncode < 0:
            how = f"killed by signal {-proc.returncode}"
        raise ModelError("trtexec failed: " + (errors[-1].strip() if errors else how))
    return out


def _kill(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    proc.wait()


def measure(
    trtexec: str,
    model: Model,
    *,
    precision: str,
    batch: int,
    cfg: TimingConfig,
    per_layer: bool,
    options: dict[str, Any],
    shapes: dict[str, list[int]] | None,
    timing_cache: str | None,
    result: Any,
) -> None:
    """Build with trtexec, time (re-timing the saved engine while the quality gate fails), and
    fill ``result``: timing, layers as TensorRT names them, layer info, memory, DLA placement."""
    version = trtexec_version(trtexec)
    dla = options.get("dla_core")
    plan = tc.precision_plan(version, precision, model.info.precision, dla=dla is not None)
    calib_cache = options.get("calib_cache")
    if plan.calibration:
        if options.get("calib_data") and not calib_cache:
            raise RequestError(
                "trtexec reads an INT8 calibration cache (--calib-cache), not data: build the "
                "cache once with --backend tensorrt --calib-data DIR --calib-cache FILE"
            )
        if not calib_cache or not os.path.isfile(str(calib_cache)):
            raise RequestError(
                "INT8 by calibration (TensorRT < 10.1) needs --calib-cache FILE (or, with the "
                "Python API backend, --calib-data DIR); or give a Q/DQ ONNX"
            )
    sp = tc.shape_plan(model.info, batch, shapes)
    timeout = float(options.get("timeout_s", 1800))
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="nasctl-agent-trtexec-") as tmp:
        engine = os.path.join(tmp, "model.engine")
        cache_tmp = _stage_cache(timing_cache, tmp)
        common: dict[str, Any] = {
            "plan": plan,
            "cfg": cfg,
            "shapes": sp,
            "workspace_mb": options.get("workspace_mb"),
            "dla_core": dla,
        }
        prefix = os.path.join(tmp, "run0")
        log = run_trtexec(
            trtexec_command(
                trtexec,
                version,
                onnx=model.file_path(),  # a path: external data is read from the model's folder
                out_prefix=prefix,
                save_engine=engine,
                profile=per_layer,
                timing_cache=cache_tmp,
                calib_cache=calib_cache,
                **common,
            ),
            timeout,
        )
        result.timing_s["build_and_time"] = time.perf_counter() - t0
        _commit_cache(cache_tmp, timing_cache, log, result)
        attempts = [tc.timing_stats(tc.read_json(prefix + ".timing.json"))]
        logs = [log]
        while attempts[-1].cv > cfg.cv_threshold and len(attempts) < cfg.max_attempts:
            p = os.path.join(tmp, f"run{len(attempts)}")
            logs.append(
                run_trtexec(
                    trtexec_command(
                        trtexec,
                        version,
                        onnx=None,
                        out_prefix=p,
                        load_engine=engine,
                        profile=False,
                        **common,
                    ),
                    timeout,
                )
            )
            attempts.append(tc.timing_stats(tc.read_json(p + ".timing.json")))
        info = tc.read_json(prefix + ".graph.json")
        layers = tc.profile_to_layers(tc.read_json(prefix + ".profile.json")) if per_layer else []
        engine_bytes = os.path.getsize(engine) if os.path.isfile(engine) else None
    res = TimingResult.from_attempts(attempts, cfg.cv_threshold)
    graph_ok = not any(_GRAPH_FAILED.search(lg) for lg in logs)
    if not graph_ok:
        result.warnings.append("trtexec could not capture a CUDA graph: timed stream launches")
    result.layers = layers
    result.engine_graph = {"format": "tensorrt-layer-info", "data": info}
    # the build log has the builder's totals, the first run's log the context's device memory
    memory = tc.engine_memory(log, layer_info=info, engine_bytes=engine_bytes)
    tc.finish_result(
        result, res, log=log, graph_ok=graph_ok, dla=dla, notes=plan.notes, memory=memory
    )
    result.extra.update(
        trtexec=trtexec,
        tensorrt=f"{version[0]}.{version[1]}",
        engine_log_tail=log.splitlines()[-3:],
    )


def _stage_cache(cache: str | None, tmp: str) -> str | None:
    """A private copy of the timing cache for trtexec to read and update."""
    if not cache:
        return None
    staged = os.path.join(tmp, "timing.cache")
    if os.path.isfile(cache) and os.path.getsize(cache) > 0:
        shutil.copyfile(cache, staged)
    return staged


def _commit_cache(staged: str | None, cache: str | None, log: str, result: Any) -> None:
    """Write the updated timing cache back atomically, unless trtexec found it invalid and
    wrote none (the log says so) or wrote nothing."""
    if not staged or not cache:
        return
    if _INVALID_CACHE.search(log):
        result.warnings.append(f"TensorRT found the timing cache {cache} invalid; rebuilt it")
    if not os.path.isfile(staged) or os.path.getsize(staged) == 0:
        result.warnings.append("trtexec wrote no timing cache; the stored one is kept")
        return
    write_atomically(cache, staged)


def write_atomically(target: str, source: str) -> None:
    """Copy ``source`` over ``target`` through a temporary file in ``target``'s folder and
    ``os.replace`` (readers see the old file or the new one, never half of one)."""
    folder = os.path.dirname(os.path.abspath(target))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
            shutil.copyfileobj(src, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


__all__ = [
    "MissingBackendError",
    "TRTEXEC_MISSING",
    "find_trtexec",
    "measure",
    "parse_trt_version",
    "precision_flags",
    "run_trtexec",
    "trtexec_command",
    "trtexec_version",
    "write_atomically",
]
