"""Precisions a search weighs (issue #15.3): the names, and whether the device can run them.

A search precision is ``fp32``, ``fp16``, ``int8`` or ``dla`` (a Jetson's DLA core 0 at INT8,
falling back to the GPU for layers the DLA cannot run). Each names what the device measures
(:func:`measure_precision`), the device options it needs (:func:`device_options_for`) and the
precision the accuracy estimator scores (:func:`accuracy_precision`: ``dla`` is INT8).

:func:`check_precisions` refuses, in one line and before anything runs, a precision the device
does not measure, DLA on a device without one, and a precision the device's TensorRT version
cannot build from the model nasctl sends it (TensorRT >= 11 takes precision from the ONNX only).
"""

from __future__ import annotations

import re
from typing import Any

from nasctl.errors import DeviceError, SearchError

PRECISIONS = ("fp32", "fp16", "int8", "dla")
#: plot markers (the seed's DeciNets figures: FP16 triangles, INT8 dots)
MARKERS = {"fp32": "s", "fp16": "^", "int8": "o", "dla": "D"}


def parse_precisions(text: str | list[str] | tuple[str, ...]) -> list[str]:
    """``"fp32,int8"`` -> ``["fp32", "int8"]`` (order kept, duplicates dropped)."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out = list(dict.fromkeys(p.strip().lower() for p in items if p.strip()))
    bad = [p for p in out if p not in PRECISIONS]
    if bad or not out:
        raise SearchError(
            f"precision must be a comma-separated list of {', '.join(PRECISIONS)}; "
            f"got {text if isinstance(text, str) else ','.join(items)!r}"
        )
    return out


def measure_precision(p: str) -> str:
    """The precision the device measures for search precision ``p``."""
    return "int8" if p == "dla" else p


def accuracy_precision(p: str) -> str:
    """The precision the accuracy estimator scores for search precision ``p``."""
    return measure_precision(p)


def device_options_for(p: str, opts: dict[str, Any]) -> dict[str, Any]:
    """Device options for search precision ``p`` (``dla``: DLA core 0 unless set)."""
    out = {**opts, "precision": measure_precision(p)}
    if p == "dla":
        out.setdefault("dla_core", 0)
    return out


def trt_version_of(device_id: str) -> tuple[int, int] | None:
    """TensorRT (major, minor) named in a device id (``...-trt10.3-...``), else None."""
    m = re.search(r"trt(\d+)\.(\d+)", device_id)
    return (int(m.group(1)), int(m.group(2))) if m else None


def check_precisions(name: str, devices: dict[str, Any]) -> None:
    """Raise :class:`SearchError` (one line) unless each device of ``devices`` (search precision
    -> device set up for it) can measure that precision."""
    for p, dev in devices.items():
        mp = measure_precision(p)
        have = getattr(dev, "precisions", None)
        if have and mp not in have:
            raise SearchError(
                f"device {name!r} measures precisions {', '.join(have)}; it cannot run {p} "
                f"(precision={','.join(devices)})"
            )
        try:
            dev_id = str(dev.device_id_for(mp))
        except DeviceError as e:
            if p == "dla":  # a device without DLA says so here
                raise SearchError(f"device {name!r} cannot run dla: {e}") from None
            continue  # not usable here: the search stops at its first measurement, in one line
        ver = trt_version_of(dev_id)
        if ver is not None:
            _check_trt(name, ver, p, mp, getattr(dev, "writes_precision", ()))


def _check_trt(name: str, ver: tuple[int, int], p: str, mp: str, writes: tuple) -> None:
    from nasctl_agent.backends import trt_common as tc
    from nasctl_agent.errors import AgentError

    model_precision = mp if mp in writes else "fp32"  # what nasctl sends the engine
    try:
        tc.precision_plan(ver, mp, model_precision, dla=p == "dla")
    except AgentError as e:
        why = " ".join(str(e).split())
        raise SearchError(
            f"device {name!r} (TensorRT {ver[0]}.{ver[1]}) cannot run {p}: {why}"
        ) from None
