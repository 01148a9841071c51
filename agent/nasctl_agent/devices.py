"""Devices of the agent, as a template (the Polygraphy runner idea one level up).

:meth:`AgentDevice.measure` owns what every device does the same way: check the request against
the device (precisions, options, hardware), turn the timing options into a
:class:`~nasctl_agent.protocol.TimingConfig`, open the model, turn a model's failure into a
``failed`` :class:`~nasctl_agent.request.Result`, and stamp the result with its device id,
fingerprint, memory and wall times. A device overrides only what differs:
:meth:`~AgentDevice.available`, :meth:`~AgentDevice.device_id` and
:meth:`~AgentDevice.measure_impl` (and :meth:`~AgentDevice.check_request` for its own options).

Devices register themselves here (:func:`register`); :mod:`nasctl_agent.catalog` imports them all
and looks them up.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from nasctl_agent._version import __version__
from nasctl_agent.errors import ModelError, RequestError
from nasctl_agent.model import Model, ModelLike, open_model
from nasctl_agent.protocol import TimingConfig
from nasctl_agent.request import Request, Result

_DEVICES: dict[str, type[AgentDevice]] = {}


def register(name: str) -> Callable[[type[AgentDevice]], type[AgentDevice]]:
    def deco(cls: type[AgentDevice]) -> type[AgentDevice]:
        cls.name = name
        _DEVICES[name] = cls
        return cls

    return deco


class AgentDevice:
    """A place that measures. See the module docstring for what a subclass overrides."""

    name = ""
    description = ""
    precisions: tuple[str, ...] = ("fp32",)

    def available(self) -> tuple[bool, str]:
        """(usable here, why not / what it uses)."""
        raise NotImplementedError

    def available_for(self, request: Request) -> tuple[bool, str]:
        """:meth:`available`, given what the request names (e.g. an explicit trtexec)."""
        return self.available()

    def device_id(self, request: Request) -> str:
        """The dataset id of a measurement of ``request`` on this device."""
        raise NotImplementedError

    def backend_name(self, request: Request) -> str:
        raise NotImplementedError

    def check_request(self, request: Request) -> None:  # noqa: B027 - optional hook
        """Raise :class:`RequestError` for options this device cannot serve."""

    def measure_impl(
        self, model: Model, request: Request, cfg: TimingConfig, result: Result
    ) -> None:
        """Measure ``model``: fill ``result`` (timing, layers, memory, ...). Raise
        :class:`ModelError` for this model's failure, :class:`RequestError` for the request's."""
        raise NotImplementedError

    def fingerprint(self, request: Request) -> dict[str, Any]:
        from nasctl_agent.fingerprint import collect

        return collect()

    # -- the template ----------------------------------------------------------------------------
    def prepare(self, request: Request) -> TimingConfig:
        """Check ``request`` against this device; the timing config it asks for."""
        request.check()
        ok, reason = self.available_for(request)
        if not ok:
            raise RequestError(f"device {self.name!r} is not usable here: {reason}")
        if request.precision not in self.precisions:
            raise RequestError(
                f"device {self.name!r} measures precisions {', '.join(self.precisions)}; "
                f"got {request.precision!r}"
            )
        self.check_request(request)
        return request.timing_config()

    def measure(
        self,
        model: ModelLike,
        request: Request,
        external_data: dict[str, bytes] | None = None,
    ) -> Result:
        """Measure ``model``; a failing model gives a ``failed`` result, a request this device
        cannot serve raises :class:`RequestError`."""
        cfg = self.prepare(request)
        result = Result(
            device=self.name,
            device_id=self.device_id(request),
            backend=self.backend_name(request),
            precision=request.precision,
            batch=request.batch,
            protocol_config=cfg.to_dict(),
            agent_version=__version__,
        )
        t0 = time.perf_counter()
        try:
            opened = open_model(model, external_data)
        except ModelError as e:
            return self.failed(result, str(e))
        result.timing_s["load"] = time.perf_counter() - t0
        try:
            with opened:
                self.measure_impl(opened, request, cfg, result)
        except (ModelError, RequestError) as e:
            if isinstance(e, RequestError) and not isinstance(e, ModelError):
                raise
            return self.failed(result, str(e))
        except Exception as e:  # engines raise their own classes: the model failed, go on
            return self.failed(result, f"{result.backend} failed: {_one_line(e)}")
        result.fingerprint = self.fingerprint(request)
        result.timing_s["total"] = time.perf_counter() - t0
        return result

    def failed(self, result: Result, error: str) -> Result:
        result.status = "failed"
        result.error = " ".join(error.split())[:500]
        result.timing = None
        result.layers = []
        return result


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text[:300] if text else type(e).__name__
