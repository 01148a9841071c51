"""PyTorch CUDA backend (device ``cuda``): the graph as a ``torch.nn.Module`` on ``cuda:0``,
each timed step bracketed by CUDA events. ``torch`` is imported lazily."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from nasctl.errors import DeviceError, NasctlError
from nasctl.profiler.protocol import Runner, TimingConfig
from nasctl.records import Measurement, MeasurementRequest

if TYPE_CHECKING:
    from nasctl.profiler.gpu_devices import CudaDevice


class TorchCudaRunner(Runner):
    """Runs ``module(x)`` under ``torch.inference_mode``; GPU time from CUDA events (ms)."""

    def __init__(self, module: Any, input_shape: tuple[int, ...], half: bool = False) -> None:
        super().__init__()
        self.module, self.shape, self.half = module, input_shape, half

    def activate_impl(self) -> None:
        import torch

        dtype = torch.float16 if self.half else torch.float32
        self.torch = torch
        self.module = self.module.to("cuda", dtype=dtype).eval()
        self.x = torch.randn(self.shape, device="cuda", dtype=dtype)
        self.start = torch.cuda.Event(enable_timing=True)
        self.end = torch.cuda.Event(enable_timing=True)

    def step_impl(self) -> None:
        with self.torch.inference_mode():
            self.module(self.x)
        self.torch.cuda.synchronize()

    def timed_step_ms(self) -> float:
        with self.torch.inference_mode():
            self.start.record()
            self.module(self.x)
            self.end.record()
        self.end.synchronize()
        return float(self.start.elapsed_time(self.end))


def measure_torch_cuda(
    device: CudaDevice, request: MeasurementRequest, opts: dict[str, Any]
) -> Measurement:
    """Measure a graph request with PyTorch on the GPU (ONNX files are not supported here)."""
    from nasctl.profiler.fingerprint import collect

    if not request.graph_json:
        raise DeviceError("device 'cuda' measures space graphs, not ONNX files (use t4/xavier)")
    cfg = TimingConfig.from_options(opts)
    dev_id = device.device_id_for(request.precision)
    t0 = time.perf_counter()
    try:
        from nasctl.arch.graph import Graph
        from nasctl.arch.torch_module import to_torch

        graph = Graph.from_json(request.graph_json)
        shape = (request.batch, *graph.input_shape[1:])
        runner = TorchCudaRunner(to_torch(graph), shape, half=request.precision == "fp16")
        with runner:
            res = runner.measure(cfg)
    except DeviceError:
        raise
    except NasctlError as e:
        return device.failed(request, str(e), dev_id)
    except RuntimeError as e:  # CUDA OOM and friends
        text = " ".join(str(e).split())[:300]
        return device.failed(request, f"PyTorch failed: {text}", dev_id)
    return res.to_measurement(
        request,
        dev_id,
        fingerprint=collect(libs=("torch",), gpu=True),
        extra={"backend": "torch_cuda", "cvs": res.cvs, "wall_s": time.perf_counter() - t0},
    )
