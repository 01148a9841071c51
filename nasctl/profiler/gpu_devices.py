"""GPU devices. TensorRT devices measure through the agent's code (:mod:`nasctl_agent.gpu`):
``xavier`` (a Jetson Xavier NX), ``t4`` (an NVIDIA T4), ``jetson`` (any other Jetson),
``cuda-trt`` (any other NVIDIA GPU); trtexec by default, the TensorRT Python API with option
``backend=tensorrt``. ``cuda`` is PyTorch on a local GPU (CUDA events). All imports are lazy.

On a host that is not the device, a TensorRT device is refused in one line that says how to
measure there: ``nasctl-agent`` on the device itself, or the fleet (``--fleet``).
"""

from __future__ import annotations

import importlib.util
from typing import Any

from nasctl.errors import DeviceError
from nasctl.profiler.agent_devices import AgentBackedDevice
from nasctl.profiler.base import Device
from nasctl.profiler.devices import register_device
from nasctl.records import Measurement, MeasurementRequest

REMOTE_HINT = (
    "measure there: install the agent on it (pip install ./agent) and run 'nasctl-agent "
    "measure MODEL.onnx --device {name} --json', or reach it through the fleet (--fleet)"
)


class TensorRTDevice(AgentBackedDevice):
    """A TensorRT device measured by the agent (see :mod:`nasctl_agent.gpu` for ids, checks and
    backends). Builds share a TensorRT timing cache per device id (``<id>.timing.cache`` in
    option ``timing_cache_dir``; ``""`` disables it)."""

    precisions = ("fp32", "fp16", "int8")
    #: INT8 as explicit quantization: the host writes the Q/DQ model (TensorRT's symmetric
    #: form), which every TensorRT from 8.5 builds and the only INT8 TensorRT >= 10.1 builds
    #: (implicit calibration is deprecated there). FP16 stays a builder flag (< 11).
    writes_precision = ("int8",)
    backend_label = "TensorRT"

    def available(self) -> tuple[bool, str]:
        ok, reason = super().available()
        if not ok and "not a" in reason or not ok and "no NVIDIA GPU" in reason:
            return False, f"{reason}; {REMOTE_HINT.format(name=self.name)}"
        return ok, reason


@register_device("xavier")
class XavierDevice(TensorRTDevice):
    name = agent_device = "xavier"
    description = "Jetson Xavier NX (power mode in the id; trtexec or the TensorRT Python API)"


@register_device("jetson")
class JetsonDevice(TensorRTDevice):
    name = agent_device = "jetson"
    description = "any NVIDIA Jetson (board and power mode in the id)"


@register_device("t4")
class T4Device(TensorRTDevice):
    name = agent_device = "t4"
    description = "NVIDIA T4 with TensorRT (trtexec, or the TensorRT Python API)"


@register_device("cuda-trt")
class CudaTrtDevice(TensorRTDevice):
    name = agent_device = "cuda-trt"
    description = "any NVIDIA GPU with TensorRT (the GPU named in the id)"


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
