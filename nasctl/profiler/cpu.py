"""The ``cpu`` device: ONNX Runtime on the CPU, measured by the agent's code
(:mod:`nasctl_agent.cpu`): ``threads`` intra-op threads (default 1), FP32, all graph
optimizations, sequential execution; whole-graph latency from an un-profiled session, per-layer
times from a separate profiling session, mapped back to graph nodes here."""

from __future__ import annotations

from nasctl.profiler.agent_devices import AgentBackedDevice
from nasctl.profiler.devices import register_device


@register_device("cpu")
class CpuDevice(AgentBackedDevice):
    name = "cpu"
    agent_device = "cpu"
    description = "ONNX Runtime CPU, FP32, 1 intra-op thread by default (option threads)"
    precisions = ("fp32",)
    backend_label = "ONNX Runtime"
