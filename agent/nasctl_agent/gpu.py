"""The TensorRT devices: ``xavier`` (a Jetson Xavier NX), ``t4`` (an NVIDIA T4), and the
explicit ``jetson`` (any other Jetson) and ``cuda-trt`` (any other NVIDIA GPU).

- Backend: ``trtexec`` by default (what NVIDIA's users run), the TensorRT Python API with
  ``backend="tensorrt"``. Both build and time the same way (see
  :mod:`~nasctl_agent.backends.trt_common`), so their measurements share an id.
- Device ids: ``xaviernx-<mode>-trt<maj.min>-<prec>[-dla<N>]`` (power mode from ``nvpmodel``:
  measurements at 10 W and 20 W never merge), ``jetson-<board>-<mode>-trt...``,
  ``t4-trt<maj.min>-<prec>``, ``cudatrt-<gpu>-trt<maj.min>-<prec>``.
- Hardware: ``xavier`` refuses a machine that is not a Xavier NX, ``t4`` a GPU that is not a
  T4, naming the explicit device to use instead.
- Jetson clocks: judged against the power mode's caps; unlocked clocks are a warning in the
  result (and ``clocks_locked: false`` in its fingerprint).
"""

from __future__ import annotations

import os
from typing import Any

from nasctl_agent import hardware as hw
from nasctl_agent.devices import AgentDevice, register
from nasctl_agent.errors import ModelError, RequestError
from nasctl_agent.model import Model
from nasctl_agent.protocol import TimingConfig
from nasctl_agent.request import Request, Result


def default_timing_cache_dir() -> str:
    """``$NASCTL_TRT_CACHE``, else ``$XDG_CACHE_HOME/nasctl/tensorrt`` (``~/.cache/...``)."""
    env = os.environ.get("NASCTL_TRT_CACHE")
    if env:
        return env
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "nasctl", "tensorrt")


class TensorRTDevice(AgentDevice):
    """A TensorRT device; subclasses say what hardware they are and how they are named."""

    precisions = ("fp32", "fp16", "int8")
    jetson = False

    # -- hardware ------------------------------------------------------------------------------
    def hardware(self) -> tuple[bool, str]:
        """(this machine is this device, what it is / why not)."""
        raise NotImplementedError

    def id_prefix(self) -> str:
        raise NotImplementedError

    # -- backend -------------------------------------------------------------------------------
    def backend_name(self, request: Request) -> str:
        return request.backend or "trtexec"

    def _trtexec(self, request: Request) -> str:
        from nasctl_agent.backends.trtexec import TRTEXEC_MISSING, find_trtexec

        explicit = request.options.get("trtexec")
        path = find_trtexec(str(explicit) if explicit else None)
        if path is None:
            if explicit:
                raise RequestError(f"trtexec not found or not executable at {explicit}")
            raise RequestError(TRTEXEC_MISSING)
        return path

    def trt_version(self, request: Request) -> tuple[int, int]:
        backend = self.backend_name(request)
        if backend == "trtexec":
            from nasctl_agent.backends.trtexec import trtexec_version

            return trtexec_version(self._trtexec(request))
        if backend == "tensorrt":
            from nasctl_agent.backends import trt_libs

            return trt_libs.version()
        raise RequestError(f"device {self.name!r} measures with trtexec or tensorrt, not {backend}")

    def available(self) -> tuple[bool, str]:
        ok, what = self.hardware()
        if not ok:
            return False, what
        from nasctl_agent.backends import trt_libs
        from nasctl_agent.backends.trtexec import TRTEXEC_MISSING, find_trtexec

        path = find_trtexec()
        if path:
            return True, f"{what}; trtexec at {path}"
        if trt_libs.available():
            return True, f"{what}; TensorRT Python API (no trtexec: use backend tensorrt)"
        return False, f"{what}, but {TRTEXEC_MISSING}"

    def available_for(self, request: Request) -> tuple[bool, str]:
        if request.options.get("trtexec") or request.backend:
            return self.hardware()  # the backend named is checked by check_request
        return self.available()

    def check_request(self, request: Request) -> None:
        dla = request.options.get("dla_core")
        if dla is not None:
            if not self.jetson:
                raise RequestError(f"device {self.name!r} has no DLA (Jetson devices only)")
            if dla not in (0, 1):
                raise RequestError(f"dla_core must be 0 or 1; got {dla!r}")
            if request.precision == "fp32":
                raise RequestError("DLA runs FP16 or INT8 only; ask for --precision fp16 or int8")
        self.trt_version(request)  # the backend must be there

    def device_id(self, request: Request) -> str:
        major, minor = self.trt_version(request)
        dev_id = f"{self.id_prefix()}-trt{major}.{minor}-{request.precision}"
        dla = request.options.get("dla_core")
        return dev_id + (f"-dla{int(dla)}" if dla is not None else "")

    def fingerprint(self, request: Request) -> dict[str, Any]:
        from nasctl_agent.fingerprint import collect

        return collect(libs=("tensorrt",), gpu=True)

    def timing_cache(self, request: Request, device_id: str) -> str | None:
        d = request.options.get("timing_cache_dir", default_timing_cache_dir())
        if not d:
            return None
        os.makedirs(str(d), exist_ok=True)
        return os.path.join(str(d), f"{device_id}.timing.cache")

    def measure_impl(
        self, model: Model, request: Request, cfg: TimingConfig, result: Result
    ) -> None:
        if model.info.error:
            raise ModelError(f"not an ONNX model: {model.info.error}")
        kw: dict[str, Any] = {
            "precision": request.precision,
            "batch": request.batch,
            "cfg": cfg,
            "per_layer": request.per_layer,
            "options": request.options,
            "shapes": request.shapes,
            "timing_cache": self.timing_cache(request, result.device_id),
            "result": result,
        }
        if self.backend_name(request) == "trtexec":
            from nasctl_agent.backends import trtexec

            trtexec.measure(self._trtexec(request), model, **kw)
        else:
            from nasctl_agent.backends import tensorrt_api

            tensorrt_api.measure(model, **kw)
        if self.jetson:
            from nasctl_agent.fingerprint import warn_if_unlocked

            warning = warn_if_unlocked()
            if warning:
                result.warnings.append(warning)


class JetsonDevice(TensorRTDevice):
    jetson = True

    def power_slug(self) -> str:
        mode = hw.power_mode()
        if mode is None:
            raise RequestError(
                "cannot read the Jetson power mode ('nvpmodel -q'); it is part of the device id "
                "so that measurements at different modes never merge"
            )
        return hw.mode_slug(str(mode["mode"]))


@register("xavier")
class XavierDevice(JetsonDevice):
    description = "Jetson Xavier NX (JetPack's TensorRT: trtexec, or the Python API)"

    def hardware(self) -> tuple[bool, str]:
        model = hw.jetson_model()
        if model is None:
            return False, "this machine is not a Jetson (no /etc/nv_tegra_release)"
        if not hw.is_xavier_nx():
            return False, f"this Jetson is a {model}, not a Xavier NX: use --device jetson"
        return True, model

    def id_prefix(self) -> str:
        return f"xaviernx-{self.power_slug()}"


@register("jetson")
class AnyJetsonDevice(JetsonDevice):
    description = "any NVIDIA Jetson with JetPack's TensorRT (the board is named in the id)"

    def hardware(self) -> tuple[bool, str]:
        model = hw.jetson_model()
        if model is None:
            return False, "this machine is not a Jetson (no /etc/nv_tegra_release)"
        return True, model

    def id_prefix(self) -> str:
        return f"jetson-{hw.slug(hw.jetson_model() or 'unknown')}-{self.power_slug()}"


@register("t4")
class T4Device(TensorRTDevice):
    description = "NVIDIA T4 with TensorRT (trtexec, or the Python API)"

    def hardware(self) -> tuple[bool, str]:
        name = hw.gpu_name()
        if name is None:
            return False, "no NVIDIA GPU found (NVML / nvidia-smi)"
        if not hw.is_t4(name):
            return False, f"the GPU is a {name}, not a T4: use --device cuda-trt"
        return True, name

    def id_prefix(self) -> str:
        return "t4"


@register("cuda-trt")
class CudaTrtDevice(TensorRTDevice):
    description = "any NVIDIA GPU with TensorRT (the GPU is named in the id)"

    def hardware(self) -> tuple[bool, str]:
        name = hw.gpu_name()
        if name is None:
            return False, "no NVIDIA GPU found (NVML / nvidia-smi)"
        return True, name

    def id_prefix(self) -> str:
        return f"cudatrt-{hw.slug(hw.gpu_name() or 'unknown')}"
