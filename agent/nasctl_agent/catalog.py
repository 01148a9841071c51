"""Every device of the agent (the modules below register themselves on import) and the lookup:
:func:`get_device`, :func:`device_names`."""

from __future__ import annotations

from nasctl_agent import cpu as _cpu  # noqa: F401  (registers "cpu")
from nasctl_agent import gpu as _gpu  # noqa: F401  ("xavier", "jetson", "t4", "cuda-trt")
from nasctl_agent.devices import _DEVICES, AgentDevice
from nasctl_agent.errors import RequestError


def device_names() -> list[str]:
    return sorted(_DEVICES)


def get_device(name: str) -> AgentDevice:
    """The device called ``name``; :class:`RequestError` for an unknown one."""
    cls = _DEVICES.get(name)
    if cls is None:
        known = ", ".join(sorted(_DEVICES))
        raise RequestError(f"unknown device {name!r}; this agent measures {known}")
    return cls()
