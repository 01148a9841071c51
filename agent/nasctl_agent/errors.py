"""The agent's errors. Two kinds matter to a caller:

- :class:`RequestError`: the request cannot be served here (unknown device, a precision or DLA
  core the device lacks, bad options, wrong hardware). Nothing was measured; the caller fixes
  the request. The CLI prints it on one line and exits 1; the host turns it into its own
  ``DeviceError``.
- :class:`ModelError`: this model failed (corrupt ONNX, engine build failed, runtime error,
  trtexec crashed or timed out). :func:`nasctl_agent.measure` never raises it: it becomes a
  result with ``status="failed"`` and the error, and the agent goes on with the next model.
"""

from __future__ import annotations


class AgentError(Exception):
    """Root of the agent's errors."""


class RequestError(AgentError):
    """The request cannot be served on this device (nothing was measured)."""


class ModelError(AgentError):
    """This model could not be measured (recorded as a failed result)."""


class MissingBackendError(RequestError):
    """A backend's library or tool is not installed here; the message names what to install."""
