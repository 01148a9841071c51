"""Devices, backends and the timing protocol: turn a measurement request into a measurement.

>>> from nasctl.profiler import get_device
>>> dev = get_device("cpu")            # ONNX Runtime, 1 thread (measured by nasctl_agent)
>>> dev.device_id                      # e.g. 'cpu-ort1.32-fp32-t1'
>>> m = dev.measure(request)           # a Measurement record (median_ms, layers, ...)

Importing the package registers every device (the modules below register themselves).
"""

from __future__ import annotations

from nasctl.profiler import cpu as _cpu  # noqa: F401  (registers "cpu")
from nasctl.profiler import gpu_devices as _gpu  # noqa: F401  ("t4", "xavier", "cuda")
from nasctl.profiler.backends import replay as _replay  # noqa: F401  ("replay")
from nasctl.profiler.base import Device
from nasctl.profiler.devices import (
    describe_devices,
    get_device,
    list_devices,
    register_device,
)
from nasctl.records import LayerTiming, Measurement, MeasurementRequest

__all__ = [
    "Device",
    "LayerTiming",
    "Measurement",
    "MeasurementRequest",
    "describe_devices",
    "get_device",
    "list_devices",
    "register_device",
]
