"""The environment a measurement was taken in: host, CPU, OS, library versions, threads, load;
GPU clocks and throttle state through NVML where present; on a Jetson the L4T release, the
``nvpmodel`` power mode, whether ``jetson_clocks`` locked the clocks, and temperatures.

Every reader takes its paths/command output as arguments, so that the parsers are testable with
sample text. Nothing here raises: a fact that cannot be read is left out.
"""

from __future__ import annotations

import functools
import glob
import os
import platform
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

NV_TEGRA_RELEASE = "/etc/nv_tegra_release"
CPU_GLOB = "/sys/devices/system/cpu/cpu[0-9]*/cpufreq"
DEVFREQ_GLOB = "/sys/class/devfreq/*"
THERMAL_GLOB = "/sys/class/thermal/thermal_zone*"
_GPU_DEVFREQ = ("gv11b", "ga10b", "gp10b", "gm20b", "gpu")


def sysroot(path: str) -> str:
    """``path`` under ``$NASCTL_AGENT_ROOT`` (default ``/``): the tests' fake Jetson trees."""
    root = os.environ.get("NASCTL_AGENT_ROOT", "")
    return os.path.join(root, path.lstrip("/")) if root else path


def _read(path: str | Path) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None


def cpu_model(cpuinfo: str | None = None) -> str | None:
    """CPU model from ``/proc/cpuinfo`` text (x86 ``model name``; ARM ``Model``/``Hardware``)."""
    text = cpuinfo if cpuinfo is not None else _read("/proc/cpuinfo")
    for key in ("model name", "Model", "Hardware", "cpu model"):
        m = re.search(rf"^{key}\s*:\s*(.+)$", text or "", re.MULTILINE)
        if m:
            return m.group(1).strip()
    return platform.processor() or None


@functools.lru_cache(maxsize=1)
def _static() -> dict[str, Any]:
    return {
        "host": socket.gethostname(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "os": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "python": platform.python_version(),
    }


def library_versions(libs: tuple[str, ...]) -> dict[str, str]:
    """Versions of the given modules that are importable (``onnxruntime``, ``tensorrt``, ...)."""
    out: dict[str, str] = {}
    for name in libs:
        mod = sys.modules.get(name)
        if mod is None:
            import importlib.util

            if importlib.util.find_spec(name) is None:
                continue
            try:
                mod = __import__(name)
            except Exception:  # a broken install is not our failure to report here
                continue
        out[name] = str(getattr(mod, "__version__", "unknown"))
    return out


def collect(
    *,
    threads: int | None = None,
    libs: tuple[str, ...] = (),
    gpu: bool = False,
) -> dict[str, Any]:
    """The fingerprint dict stored with each measurement."""
    fp: dict[str, Any] = dict(_static())
    fp["libs"] = library_versions(libs)
    if threads is not None:
        fp["threads"] = threads
    try:
        fp["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    if gpu:
        nv = nvml_info()
        if nv:
            fp["gpu"] = nv
        cuda = cuda_toolkit_version()
        if cuda:
            fp["cuda"] = cuda
    if is_jetson():
        fp["jetson"] = jetson_info()
    return fp


# -- NVML ---------------------------------------------------------------------------------------
def nvml_info(index: int = 0) -> dict[str, Any]:
    """GPU name, driver/CUDA versions, SM/memory clocks (MHz, current and max), throttle reasons
    bitmask, temperature (°C) via ``pynvml`` (package nvidia-ml-py); empty without it."""
    try:
        import pynvml as nv
    except ImportError:
        return {}
    try:
        nv.nvmlInit()
    except Exception:
        return {}
    try:
        h = nv.nvmlDeviceGetHandleByIndex(index)
        info: dict[str, Any] = {
            "name": _s(nv.nvmlDeviceGetName(h)),
            "driver": _s(nv.nvmlSystemGetDriverVersion()),
        }
        cuda = nv.nvmlSystemGetCudaDriverVersion()
        info["cuda_driver"] = f"{cuda // 1000}.{cuda % 1000 // 10}"
        for key, clk in (("sm", nv.NVML_CLOCK_SM), ("mem", nv.NVML_CLOCK_MEM)):
            info[f"{key}_clock_mhz"] = nv.nvmlDeviceGetClockInfo(h, clk)
            info[f"{key}_clock_max_mhz"] = nv.nvmlDeviceGetMaxClockInfo(h, clk)
        reasons = getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None)
        if reasons is None:  # older nvidia-ml-py
            reasons = nv.nvmlDeviceGetCurrentClocksThrottleReasons
        info["throttle_reasons"] = int(reasons(h))
        info["temperature_c"] = nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU)
        return info
    except Exception:
        return {}
    finally:
        try:
            nv.nvmlShutdown()
        except Exception:
            pass


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def cuda_toolkit_version(root: str = "/usr/local/cuda") -> str | None:
    """CUDA toolkit version from ``<root>/version.json`` (CUDA >= 11) or ``version.txt``."""
    import json

    text = _read(f"{root}/version.json")
    if text:
        try:
            return str(json.loads(text)["cuda"]["version"])
        except (ValueError, KeyError, TypeError):
            pass
    m = re.search(r"CUDA Version\s+([\d.]+)", _read(f"{root}/version.txt") or "")
    return m.group(1) if m else None


def parse_jetpack(dpkg_text: str) -> str | None:
    """JetPack version from ``dpkg-query -W nvidia-jetpack`` (``nvidia-jetpack\t5.1.1-b56``)."""
    m = re.search(r"nvidia-jetpack\s+([\d.]+)", dpkg_text)
    return m.group(1) if m else None


# -- Jetson -------------------------------------------------------------------------------------
def is_jetson(release_path: str | None = None) -> bool:
    return os.path.exists(release_path or sysroot(NV_TEGRA_RELEASE))


def parse_nv_tegra_release(text: str) -> str | None:
    """L4T release from ``/etc/nv_tegra_release``, e.g. ``"# R35 (release), REVISION: 3.1, ..."``
    -> ``"35.3.1"``."""
    m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    return f"{m.group(1)}.{m.group(2)}" if m else None


def parse_nvpmodel(text: str) -> dict[str, Any]:
    """``nvpmodel -q`` output -> ``{"mode": "MODE_20W_6CORE", "id": 8}`` (id when printed)."""
    out: dict[str, Any] = {}
    m = re.search(r"NV Power Mode:\s*(\S+)", text)
    if m:
        out["mode"] = m.group(1)
        rest = text[m.end() :].split()
        if rest and rest[0].isdigit():
            out["id"] = int(rest[0])
    return out


def clocks_locked(cpu_glob: str | None = None, devfreq_glob: str | None = None) -> bool | None:
    """Whether ``jetson_clocks`` is in effect: every CPU's ``scaling_min_freq`` and the GPU's
    devfreq ``min_freq`` equal their caps under the current power mode (``scaling_max_freq``,
    devfreq ``max_freq``: nvpmodel lowers those), not the hardware maximum (``cpuinfo_max_freq``),
    which a 10 W or 15 W mode never reaches. None when nothing can be read."""
    cpu_glob = cpu_glob or sysroot(CPU_GLOB)
    seen = False
    for d in sorted(glob.glob(cpu_glob)):
        lo = _read(f"{d}/scaling_min_freq")
        hi = _read(f"{d}/scaling_max_freq") or _read(f"{d}/cpuinfo_max_freq")
        if lo and hi:
            seen = True
            if int(lo) < int(hi):
                return False
    for d in gpu_devfreq_dirs(devfreq_glob):
        lo, hi = _read(f"{d}/min_freq"), _read(f"{d}/max_freq")
        if lo and hi:
            seen = True
            if int(lo) < int(hi):
                return False
    return True if seen else None


def clock_caps(cpu_glob: str | None = None, devfreq_glob: str | None = None) -> dict[str, Any]:
    """The power mode's caps and the hardware maxima: ``cpu_cap_khz`` (highest
    ``scaling_max_freq``), ``cpu_hw_max_khz``, ``gpu_cap_hz`` (devfreq ``max_freq``),
    ``gpu_hw_max_hz`` (highest ``available_frequencies``)."""
    out: dict[str, Any] = {}
    cpu_glob = cpu_glob or sysroot(CPU_GLOB)
    caps = [_read(f"{d}/scaling_max_freq") for d in sorted(glob.glob(cpu_glob))]
    hws = [_read(f"{d}/cpuinfo_max_freq") for d in sorted(glob.glob(cpu_glob))]
    if any(caps):
        out["cpu_cap_khz"] = max(int(c) for c in caps if c)
    if any(hws):
        out["cpu_hw_max_khz"] = max(int(h) for h in hws if h)
    for d in gpu_devfreq_dirs(devfreq_glob):
        hi = _read(f"{d}/max_freq")
        if hi:
            out["gpu_cap_hz"] = int(hi)
        avail = (_read(f"{d}/available_frequencies") or "").split()
        if avail:
            out["gpu_hw_max_hz"] = max(int(a) for a in avail if a.isdigit())
        break
    return out


_SHOW_CPU = re.compile(r"^(cpu\d+):.*?MinFreq=(\d+)\s+MaxFreq=(\d+)\s+CurrentFreq=(\d+)", re.M)
_SHOW_UNIT = re.compile(
    r"^(GPU|EMC|DLA\d?\w*)\s+MinFreq=(\d+)\s+MaxFreq=(\d+)\s+CurrentFreq=(\d+)", re.M
)


def parse_jetson_clocks_show(text: str) -> dict[str, Any]:
    """``sudo jetson_clocks --show`` -> ``{"cpus": {"cpu0": {"min", "max", "cur"}}, "gpu":
    {...}, "emc": {...}, "mode": "MODE_20W_6CORE", "locked": bool | None}``. MaxFreq there is the
    power mode's cap; clocks are locked when every CPU's and the GPU's MinFreq equals it."""
    out: dict[str, Any] = {"cpus": {}}
    for name, lo, hi, cur in _SHOW_CPU.findall(text):
        out["cpus"][name] = {"min": int(lo), "max": int(hi), "cur": int(cur)}
    for name, lo, hi, cur in _SHOW_UNIT.findall(text):
        out[name.lower()] = {"min": int(lo), "max": int(hi), "cur": int(cur)}
    m = re.search(r"NV Power Mode:\s*(\S+)", text)
    if m:
        out["mode"] = m.group(1)
    units = list(out["cpus"].values()) + ([out["gpu"]] if "gpu" in out else [])
    out["locked"] = all(u["min"] >= u["max"] for u in units) if units else None
    return out


def gpu_devfreq_dirs(devfreq_glob: str | None = None) -> list[str]:
    devfreq_glob = devfreq_glob or sysroot(DEVFREQ_GLOB)
    return [
        d
        for d in sorted(glob.glob(devfreq_glob))
        if any(tag in os.path.basename(d) for tag in _GPU_DEVFREQ)
    ]


def temperatures_c(thermal_glob: str | None = None) -> dict[str, float]:
    """Thermal zone type -> temperature in °C (sysfs gives millidegrees)."""
    out: dict[str, float] = {}
    for d in sorted(glob.glob(thermal_glob or sysroot(THERMAL_GLOB))):
        name, temp = _read(f"{d}/type"), _read(f"{d}/temp")
        if name and temp and temp.lstrip("-").isdigit():
            out[name] = int(temp) / 1000.0
    return out


def jetson_info(
    release_path: str | None = None,
    nvpmodel_text: str | None = None,
    cpu_glob: str | None = None,
    devfreq_glob: str | None = None,
    thermal_glob: str | None = None,
) -> dict[str, Any]:
    """L4T release, power mode, clocks locked, temperatures (°C), GPU devfreq cur/max (Hz)."""
    info: dict[str, Any] = {}
    rel = _read(release_path or sysroot(NV_TEGRA_RELEASE))
    model = _read(sysroot("/proc/device-tree/model"))
    if model:
        info["model"] = model.strip("\x00").strip()
    if rel:
        info["l4t"] = parse_nv_tegra_release(rel)
    jetpack = parse_jetpack(_run(["dpkg-query", "-W", "nvidia-jetpack"]) or "")
    if jetpack:
        info["jetpack"] = jetpack
    if nvpmodel_text is None:
        nvpmodel_text = _run(["nvpmodel", "-q"])
    if nvpmodel_text:
        info["nvpmodel"] = parse_nvpmodel(nvpmodel_text)
    info["clocks_locked"] = clocks_locked(cpu_glob, devfreq_glob)
    info["clock_caps"] = clock_caps(cpu_glob, devfreq_glob)
    for d in gpu_devfreq_dirs(devfreq_glob):
        cur, hi = _read(f"{d}/cur_freq"), _read(f"{d}/max_freq")
        if cur and hi:
            info["gpu_freq_hz"], info["gpu_max_freq_hz"] = int(cur), int(hi)
            break
    info["temperature_c"] = temperatures_c(thermal_glob)
    return info


def warn_if_unlocked(info: dict[str, Any] | None = None) -> str | None:
    """A warning line when on a Jetson whose clocks are not locked (``jetson_clocks`` not run);
    None otherwise. ``info`` is a :func:`jetson_info` dict (read from the system when omitted)."""
    if info is None:
        if not is_jetson():
            return None
        info = jetson_info()
    if info.get("clocks_locked") is False:
        mode = info.get("nvpmodel", {}).get("mode", "unknown")
        return (
            f"Jetson clocks are not locked at power mode {mode}'s caps: latencies will vary; run "
            "'sudo jetson_clocks' (and keep the same nvpmodel mode) before profiling"
        )
    return None


def _run(cmd: list[str]) -> str | None:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout if r.returncode == 0 else None
