"""The environment a measurement was taken in. The readers live in the agent
(:mod:`nasctl_agent.fingerprint`: the device side collects its own fingerprint); the host
re-exports them for local devices and for ``nasctl profile``'s clock warning."""

from __future__ import annotations

from nasctl_agent.fingerprint import (
    clocks_locked,
    collect,
    cpu_model,
    cuda_toolkit_version,
    gpu_devfreq_dirs,
    is_jetson,
    jetson_info,
    library_versions,
    nvml_info,
    parse_jetpack,
    parse_nv_tegra_release,
    parse_nvpmodel,
    temperatures_c,
    warn_if_unlocked,
)

__all__ = [
    "clocks_locked",
    "collect",
    "cpu_model",
    "cuda_toolkit_version",
    "gpu_devfreq_dirs",
    "is_jetson",
    "jetson_info",
    "library_versions",
    "nvml_info",
    "parse_jetpack",
    "parse_nv_tegra_release",
    "parse_nvpmodel",
    "temperatures_c",
    "warn_if_unlocked",
]
