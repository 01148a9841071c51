"""The agent's public functions: :func:`measure` and :func:`info` (JSON in, JSON out)."""

from __future__ import annotations

import time
from typing import Any

from nasctl_agent._version import __version__
from nasctl_agent.catalog import device_names, get_device
from nasctl_agent.model import ModelLike
from nasctl_agent.request import PROTOCOL_VERSION, Request, Result


def measure(
    model: ModelLike,
    request: Request | dict[str, Any],
    external_data: dict[str, bytes] | None = None,
) -> Result:
    """Measure one ONNX model on this machine.

    Args:
        model: path of an ``.onnx`` file (external data next to it) or of a folder holding one,
            or the model's bytes.
        request: a :class:`Request` or its JSON dict (checked; unknown fields are refused).
        external_data: with bytes only: external-data location -> bytes, written next to the
            model in a private temporary folder.

    Returns a :class:`Result`; a model that fails gives ``status="failed"`` and ``error``.
    Raises :class:`~nasctl_agent.errors.RequestError` when this machine cannot serve the request
    (unknown or absent device, precision it lacks, bad options).
    """
    req = request if isinstance(request, Request) else Request.from_dict(request)
    return get_device(req.device).measure(model, req, external_data)


def measure_json(
    model: ModelLike, request: dict[str, Any], external_data: dict[str, bytes] | None = None
) -> dict[str, Any]:
    """:func:`measure` with JSON dicts in and out (what a fleet worker calls)."""
    return measure(model, request, external_data).to_dict()


def info(device: str | None = None) -> dict[str, Any]:
    """This agent and machine: version, protocol, every device (usable here? its id at fp32)
    and the fingerprint (CPU, OS, libraries, GPU clocks, Jetson power mode)."""
    from nasctl_agent.fingerprint import collect

    t0 = time.perf_counter()
    devices = []
    for name in [device] if device else device_names():
        dev = get_device(name)
        ok, reason = dev.available()
        row: dict[str, Any] = {
            "name": name,
            "available": ok,
            "reason": reason,
            "description": dev.description,
            "precisions": list(dev.precisions),
        }
        if ok:
            try:
                row["device_id_fp32"] = dev.device_id(Request(device=name))
            except Exception as e:  # noqa: BLE001 - info never fails on one device
                row["device_id_error"] = " ".join(str(e).split())[:300]
        devices.append(row)
    gpu = any(d["available"] for d in devices if d["name"] != "cpu")
    return {
        "agent_version": __version__,
        "protocol": PROTOCOL_VERSION,
        "devices": devices,
        "fingerprint": collect(libs=("onnxruntime", "tensorrt"), gpu=gpu),
        "info_s": time.perf_counter() - t0,
    }
