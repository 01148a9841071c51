"""What this machine is: a Jetson (which board, which power mode) or a host with an NVIDIA GPU
(which one). The TensorRT devices refuse hardware they are not (``xavier`` only on a Jetson
Xavier NX, ``t4`` only on a T4); ``jetson`` and ``cuda-trt`` take any Jetson / NVIDIA GPU and
name it in their device ids. System files are read under ``$NASCTL_AGENT_ROOT`` when set (the
tests' fake Jetson trees); tools (``nvpmodel``, ``nvidia-smi``) are found on ``PATH``."""

from __future__ import annotations

import re
import subprocess
from typing import Any

from nasctl_agent.fingerprint import _read, is_jetson, parse_nvpmodel, sysroot

DEVICE_TREE_MODEL = "/proc/device-tree/model"
DEVICE_TREE_COMPATIBLE = "/proc/device-tree/compatible"


def _run(cmd: list, timeout: float = 10) -> str | None:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout if r.returncode == 0 else None


def jetson_model() -> str | None:
    """The board's name from the device tree (``NVIDIA Jetson Xavier NX Developer Kit``), or
    None on a machine that is not a Jetson."""
    if not is_jetson():
        return None
    model = _read(sysroot(DEVICE_TREE_MODEL))
    return model.replace("\x00", "").strip() if model else "unknown Jetson"


def is_xavier_nx() -> bool:
    """A Jetson Xavier NX (module p3668), by the device tree's model or compatible string."""
    model = jetson_model()
    if model is None:
        return False
    compat = (_read(sysroot(DEVICE_TREE_COMPATIBLE)) or "").replace("\x00", " ")
    return "xavier nx" in model.lower() or "p3668" in compat or "jetson-xavier-nx" in compat


def power_mode() -> dict[str, Any] | None:
    """``nvpmodel -q`` -> ``{"mode": "MODE_20W_6CORE", "id": 8}``; None if it cannot be read."""
    text = _run(["nvpmodel", "-q"])
    mode = parse_nvpmodel(text or "")
    return mode if mode.get("mode") else None


def mode_slug(mode: str) -> str:
    """A power mode's name for a device id: ``MODE_20W_6CORE`` -> ``20w6c``, ``MODE_10W_DESKTOP``
    -> ``10wdesktop``, ``MAXN`` -> ``maxn``."""
    s = mode.upper()
    s = s[len("MODE_") :] if s.startswith("MODE_") else s
    s = re.sub(r"(\d+)CORE", r"\1C", s)
    return re.sub(r"[^a-z0-9]", "", s.lower()) or "unknown"


def slug(text: str) -> str:
    """``NVIDIA Jetson AGX Orin`` -> ``agx-orin``; ``Tesla T4`` -> ``tesla-t4``."""
    t = text.lower().replace("nvidia", "").replace("jetson", "").replace("developer kit", "")
    return re.sub(r"[^a-z0-9]+", "-", t).strip("-") or "unknown"


def gpu_name(index: int = 0) -> str | None:
    """The NVIDIA GPU's name (NVML, else ``nvidia-smi``); None without one."""
    try:
        import pynvml as nv

        nv.nvmlInit()
        try:
            name = nv.nvmlDeviceGetName(nv.nvmlDeviceGetHandleByIndex(index))
            return name.decode() if isinstance(name, bytes) else str(name)
        finally:
            nv.nvmlShutdown()
    except Exception:  # no pynvml, no driver: ask nvidia-smi
        pass
    out = _run(["nvidia-smi", f"--id={index}", "--query-gpu=name", "--format=csv,noheader"])
    return out.strip().splitlines()[0].strip() if out and out.strip() else None


def is_t4(name: str | None) -> bool:
    return bool(name) and re.search(r"\bT4\b", str(name)) is not None
