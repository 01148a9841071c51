"""GPU devices: ``t4`` and ``xavier`` (TensorRT: the Python API where ``tensorrt`` imports, else
``trtexec``) and ``cuda`` (PyTorch on a local NVIDIA GPU, CUDA events). All imports are lazy."""

from __future__ import annotations

import importlib.util
import os
import shutil
from functools import cached_property
from typing import Any

from nasctl.errors import DeviceError
from nasctl.profiler.devices import TRT_MISSING, Device, register_device
from nasctl.records import Measurement, MeasurementRequest

TRTEXEC_PLACES = ("/usr/src/tensorrt/bin/trtexec", "/usr/local/tensorrt/bin/trtexec")


def find_trtexec(explicit: str | None = None) -> str | None:
    """``explicit`` if given (must exist), else ``trtexec`` on PATH or in JetPack's place."""
    if explicit:
        return explicit if os.path.isfile(explicit) and os.access(explicit, os.X_OK) else None
    found = shutil.which("trtexec")
    if found:
        return found
    return next((p for p in TRTEXEC_PLACES if os.access(p, os.X_OK)), None)


def default_timing_cache_dir() -> str:
    """``$NASCTL_TRT_CACHE``, else ``$XDG_CACHE_HOME/nasctl/tensorrt`` (``~/.cache/...``)."""
    env = os.environ.get("NASCTL_TRT_CACHE")
    if env:
        return env
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "nasctl", "tensorrt")


class TensorRTDevice(Device):
    """A TensorRT device. ``id_prefix`` names the hardware in dataset ids
    (``t4-trt10.3-fp16``, ``xaviernx-trt8.5-int8``).

    Builds share a TensorRT timing cache per device id (``<id>.timing.cache`` in option
    ``timing_cache_dir``, default :func:`default_timing_cache_dir`; ``""`` disables it): engine
    builds on a Jetson take minutes without one.
    """

    id_prefix = ""
    precisions = ("fp32", "fp16", "int8")

    def __init__(self, **opts: Any) -> None:
        opts.setdefault("timing_cache_dir", default_timing_cache_dir())
        super().__init__(**opts)

    @cached_property
    def backend(self) -> tuple[str | None, str]:
        """(``"python"`` | ``"trtexec"`` | None, detail): the option ``trtexec`` wins, then the
        TensorRT Python module, then a trtexec found on this machine."""
        explicit = self.opts.get("trtexec")
        if explicit:
            path = find_trtexec(str(explicit))
            if path is None:
                return None, f"trtexec not found or not executable at {explicit}"
            return "trtexec", path
        if importlib.util.find_spec("tensorrt") is not None:
            return "python", "tensorrt"
        path = find_trtexec()
        if path:
            return "trtexec", path
        return None, TRT_MISSING

    @cached_property
    def trt_version(self) -> str:
        """TensorRT ``major.minor`` of the backend in use (raises :class:`DeviceError`)."""
        kind, detail = self.backend
        if kind == "python":
            from nasctl.profiler.backends.tensorrt import trt_version

            return trt_version()
        if kind == "trtexec":
            from nasctl.profiler.backends.trtexec import trtexec_version

            return trtexec_version(detail)
        raise DeviceError(detail)

    def device_id_for(self, precision: str) -> str:
        return f"{self.id_prefix}-trt{self.trt_version}-{precision}"

    def available(self) -> tuple[bool, str]:
        kind, detail = self.backend
        if kind is None:
            return False, detail
        try:
            ver = self.trt_version
        except DeviceError as e:
            return False, str(e)
        return True, f"TensorRT {ver} via " + ("the Python API" if kind == "python" else detail)

    def measure_impl(self, request: MeasurementRequest, opts: dict[str, Any]) -> Measurement:
        kind, detail = self.backend
        if kind == "python":
            from nasctl.profiler.backends.tensorrt import measure_tensorrt

            m = measure_tensorrt(self, request, opts)
        else:
            from nasctl.profiler.backends.trtexec import measure_trtexec

            m = measure_trtexec(self, request, opts, detail)
        from nasctl.profiler.fingerprint import warn_if_unlocked

        warning = warn_if_unlocked()
        if warning:
            m.extra["warning"] = warning
        return m


@register_device("t4")
class T4Device(TensorRTDevice):
    name = "t4"
    id_prefix = "t4"
    description = "NVIDIA T4 with TensorRT (Python API, or trtexec with trtexec=PATH)"


@register_device("xavier")
class XavierDevice(TensorRTDevice):
    name = "xavier"
    id_prefix = "xaviernx"
    description = "Jetson Xavier NX with JetPack's TensorRT (Python API or trtexec)"


@register_device("cuda")
class CudaDevice(Device):
    """PyTorch on the local NVIDIA GPU (``cuda:0``), timed with CUDA events; FP32/FP16."""

    name = "cuda"
    description = "PyTorch on a local NVIDIA GPU, CUDA events (graph requests only)"
    precisions = ("fp32", "fp16")

    def available(self) -> tuple[bool, str]:
        if importlib.util.find_spec("torch") is None:
            return False, "PyTorch is not installed"
        import torch

        if not torch.cuda.is_available():
            return False, (
                f"PyTorch {torch.__version__} sees no CUDA GPU "
                f"(CUDA build: {torch.version.cuda or 'none'})"
            )
        return True, f"{torch.cuda.get_device_name(0)} via PyTorch {torch.__version__}"

    def device_id_for(self, precision: str) -> str:
        ok, reason = self.available()
        if not ok:
            raise DeviceError(f"device 'cuda' is not usable here: {reason}")
        import torch

        gpu = torch.cuda.get_device_name(0).lower().replace("nvidia", "").strip()
        slug = "".join(c if c.isalnum() else "-" for c in gpu).strip("-")
        return f"cuda-{slug}-torch{'.'.join(torch.__version__.split('.')[:2])}-{precision}"

    def measure_impl(self, request: MeasurementRequest, opts: dict[str, Any]) -> Measurement:
        from nasctl.profiler.backends.torch_cuda import measure_torch_cuda

        return measure_torch_cuda(self, request, opts)
