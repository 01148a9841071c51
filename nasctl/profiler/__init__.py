"""Devices, backends and the timing protocol: turn a measurement request into a measurement.

>>> from nasctl.profiler import get_device
>>> dev = get_device("cpu")            # ONNX Runtime, 1 thread
>>> dev.device_id                      # e.g. 'cpu-ort1.32-fp32-t1'
>>> m = dev.measure(request)           # a Measurement record (median_ms, layers, ...)
"""

from __future__ import annotations

from nasctl.profiler.devices import (
    Device,
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
