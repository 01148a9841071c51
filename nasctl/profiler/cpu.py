"""The ``cpu`` device: ONNX Runtime on the CPU, measured by the agent's code
(:mod:`nasctl_agent.cpu`): ``threads`` intra-op threads (default 1), FP32, all graph
optimizations, sequential execution; whole-graph latency from an un-profiled session, per-layer
times from a separate profiling session, mapped back to graph nodes here. INT8: the host writes
the model as explicit Q/DQ (:mod:`nasctl.arch.precision`, calibrated on ``calib_data`` or stated
random data; activations uint8 asymmetric, ORT's fast CPU path, weights int8 symmetric
per-channel) and ORT runs its int8 kernels; the device id says ``int8``.

Timed runs stop early once the median is known to +-1 % (``median_ci=0.01``; 95 % confidence,
at least ``repeats`` runs; option ``median_ci=0`` always runs ``min_time_s``): stable nets
take a fraction of a second, noisy ones still run ``min_time_s``. The noise gate is derived from
the device on its first ``nasctl profile`` (``auto_calibrate``, :mod:`nasctl.profiler.gate`)."""

from __future__ import annotations

from nasctl.profiler.agent_devices import AgentBackedDevice
from nasctl.profiler.devices import register_device


@register_device("cpu")
class CpuDevice(AgentBackedDevice):
    name = "cpu"
    agent_device = "cpu"
    description = (
        "ONNX Runtime CPU, FP32 or INT8 (Q/DQ written by the host; option calib_data), "
        "1 intra-op thread by default (option threads)"
    )
    precisions = ("fp32", "int8")
    writes_precision = ("int8",)
    int8_activations = "uint8"  # ORT's x86 fast path (U8S8); symmetric int8 runs slower here
    backend_label = "ONNX Runtime"
    timing_defaults = {"median_ci": 0.01}
    auto_calibrate = True  # 10 probe runs, ~5 s: the first profile calibrates the gate
