"""The base device, a template (the Polygraphy runner idea one level up).

:meth:`Device.measure` checks the request (usable here, precision, batch) and calls
:meth:`Device.measure_impl`, whose default is the whole measuring template:

1. options (device kwargs, then ``request.options``) -> a ``TimingConfig``;
2. the device id of this request (:meth:`Device.request_device_id`);
3. loading the model (:meth:`Device.load`: ONNX written from the graph, or the user's file);
4. :meth:`Device.measure_model`, the one step a backend implements;
5. a model's failure (any :class:`NasctlError` but :class:`DeviceError`, or the engine's own
   exception) becomes a ``failed`` record; a :class:`DeviceError` propagates;
6. the record gets the device's fingerprint when the backend did not set one.

A device that measures nothing (``replay``) overrides :meth:`measure_impl` as a whole.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import Any

from nasctl.errors import DeviceError, NasctlError
from nasctl.profiler.protocol import TimingConfig
from nasctl.profiler.source import ModelSource, load_model
from nasctl.records import Measurement, MeasurementRequest


class Device(ABC):
    """A place that measures. Subclasses set ``name``/``description`` and implement
    :meth:`available`, :meth:`device_id_for` and :meth:`measure_model`."""

    name = ""
    description = ""
    precisions: tuple[str, ...] = ("fp32",)
    #: A stored measurement of the same content hash answers for this device: the same network
    #: is the same measurement. False where the device answers per genotype (a replay table lists
    #: isomorphic NB201 cells with different latencies), so only the device itself answers.
    reuses_by_hash: bool = True
    backend_label = "the backend"  # "<label> failed: ..." for an engine's own exception
    #: This device's timing-protocol defaults (under the device's and the request's options).
    timing_defaults: dict[str, Any] = {}
    #: ``nasctl profile`` derives this device's noise gate itself the first time it measures on
    #: it (:func:`nasctl.profiler.probe.gate_for`): only where the probe costs seconds (no engine
    #: build per probe run).
    auto_calibrate: bool = False

    def __init__(self, **opts: Any) -> None:
        self.opts = dict(opts)

    @classmethod
    def describe(cls, name: str, **opts: Any) -> dict[str, Any]:
        """The ``nasctl devices`` row of this device: name, available, reason, description."""
        dev = cls(**opts)
        ok, reason = dev.available()
        return {"name": name, "available": ok, "reason": reason, "description": dev.description}

    @property
    def precision(self) -> str:
        """The precision named in the options (default fp32), used by :attr:`device_id`."""
        return str(self.opts.get("precision", "fp32"))

    @property
    def device_id(self) -> str:
        """Canonical dataset id at :attr:`precision`, e.g. ``cpu-ort1.32-fp32-t1``."""
        return self.device_id_for(self.precision)

    @abstractmethod
    def device_id_for(self, precision: str) -> str:
        """Canonical dataset id of a measurement at ``precision`` (device options)."""

    def request_device_id(self, request: MeasurementRequest, opts: dict[str, Any]) -> str:
        """The id of this request's measurement (options may change it, e.g. threads)."""
        return self.device_id_for(request.precision)

    @abstractmethod
    def available(self) -> tuple[bool, str]:
        """(usable here, why not / what it uses)."""

    # -- the template ----------------------------------------------------------------------------
    def measure(self, request: MeasurementRequest) -> Measurement:
        """Measure ``request``; a failing model gives a ``failed`` measurement, not an error."""
        ok, reason = self.available()
        if not ok:
            raise DeviceError(f"device {self.name!r} is not usable here: {reason}")
        if request.precision not in self.precisions:
            raise DeviceError(
                f"device {self.name!r} measures precisions {', '.join(self.precisions)}; "
                f"got {request.precision!r}"
            )
        if request.batch < 1:
            raise DeviceError(f"batch must be >= 1; got {request.batch}")
        return self.measure_impl(request, {**self.opts, **(request.options or {})})

    def measure_impl(self, request: MeasurementRequest, opts: dict[str, Any]) -> Measurement:
        """Options -> timing config, load, :meth:`measure_model`, failures -> failed record."""
        cfg = TimingConfig.from_options(self.timing_defaults, opts)
        dev_id = self.request_device_id(request, opts)
        t0 = time.perf_counter()
        try:
            source = self.load(request)
        except DeviceError:
            raise
        except NasctlError as e:
            return self.failed(request, str(e), dev_id)
        load_s = time.perf_counter() - t0
        try:
            m = self.measure_model(source, request, opts, cfg, dev_id)
        except DeviceError:
            raise
        except NasctlError as e:
            return self.failed(request, str(e), dev_id)
        except Exception as e:  # engines raise their own classes: the model failed, go on
            return self.failed(request, f"{self.backend_label} failed: {one_line(e)}", dev_id)
        if not m.fingerprint and m.status != "failed":
            m.fingerprint = self.fingerprint(opts)
        ts = m.extra.get("timing_s")
        if isinstance(ts, dict):  # the host's share: writing the ONNX / checking the file
            ts["load"] = ts.get("load", 0.0) + load_s
            ts["total"] = time.perf_counter() - t0
        return m

    def load(self, request: MeasurementRequest) -> ModelSource:
        """The request's model (raises :class:`NasctlError` for the model's own problems)."""
        return load_model(request)

    def measure_model(
        self,
        source: ModelSource,
        request: MeasurementRequest,
        opts: dict[str, Any],
        cfg: TimingConfig,
        device_id: str,
    ) -> Measurement:
        """Measure the loaded model: the one step a backend implements."""
        raise NotImplementedError(f"device {self.name!r} does not measure models")

    def fingerprint(self, opts: dict[str, Any]) -> dict[str, Any]:
        """The environment of this device's measurements."""
        from nasctl.profiler.fingerprint import collect

        return collect()

    def failed(
        self, request: MeasurementRequest, error: str, device_id: str | None = None, **extra: Any
    ) -> Measurement:
        """A ``failed`` record for ``request``."""
        return Measurement(
            arch_hash=request.arch_hash,
            device_id=device_id or self.device_id_for(request.precision),
            precision=request.precision,
            batch=request.batch,
            status="failed",
            error=error,
            extra=dict(extra),
        )


def one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text[:300] if text else type(e).__name__
