"""The device registry: ``get_device(name, **opts)``, ``list_devices()``, ``describe_devices()``.

A device turns a :class:`~nasctl.records.MeasurementRequest` into a
:class:`~nasctl.records.Measurement` (:class:`~nasctl.profiler.base.Device`, a template). It
never writes files and never raises for a model that fails: that is a measurement with
``status="failed"`` and the error. It raises :class:`~nasctl.errors.DeviceError` for a device
that cannot run here or a request it cannot serve (a precision it lacks, bad options).

Devices register themselves with :func:`register_device`; the package ``nasctl.profiler``
imports every device module, so the registry is full once ``nasctl.profiler`` is imported.

Options (device kwargs, overridden per request by ``request.options``): the timing protocol's
``warmup``, ``warmup_s``, ``repeats``, ``min_time_s``, ``max_repeats``, ``cv_threshold``,
``max_attempts``, ``median_ci`` (see :class:`~nasctl.profiler.protocol.TimingConfig`; a device's
own defaults in ``timing_defaults``, e.g. the cpu device's ``median_ci=0.01``), plus per device:
``threads``, ``clock`` (``wall`` | ``thread``), ``per_layer_runs`` (cpu); ``trtexec``,
``timing_cache_dir``, ``workspace_mb`` (t4, xavier); ``data_dir`` (replay).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nasctl.errors import DeviceError
from nasctl.profiler.base import Device

__all__ = [
    "Device",
    "describe_devices",
    "get_device",
    "list_devices",
    "register_device",
]

_REGISTRY: dict[str, type[Device]] = {}


def register_device(name: str) -> Callable[[type[Device]], type[Device]]:
    """Class decorator adding a device class under ``name``."""

    def deco(cls: type[Device]) -> type[Device]:
        _REGISTRY[name] = cls
        return cls

    return deco


def device_class(name: str) -> type[Device] | None:
    """The registered class of device ``name`` (None for replay tables and unknown names)."""
    return None if name.startswith("replay") else _REGISTRY.get(name)


def list_devices() -> list[str]:
    """Registered device names; ``replay:<table>/<column>`` is listed as ``"replay"``."""
    return sorted(_REGISTRY)


def get_device(name: str, **opts: Any) -> Device:
    """The device called ``name`` (``cpu``, ``t4``, ``xavier``, ``cuda``,
    ``replay:<table>/<column>``), configured with ``opts``."""
    if name.startswith("replay:") or name == "replay":
        return _REGISTRY["replay"](spec=name.partition(":")[2], **opts)  # type: ignore[call-arg]
    if name not in _REGISTRY:
        known = ", ".join(n for n in list_devices() if n != "replay")
        raise DeviceError(
            f"unknown device {name!r}; known devices: {known}, replay:<table>/<column>"
        )
    return _REGISTRY[name](**opts)


def describe_devices(**opts: Any) -> list[dict[str, Any]]:
    """One row per registered device: name, description, available, reason (for ``nasctl
    devices``)."""
    return [_REGISTRY[name].describe(name, **opts) for name in list_devices()]
