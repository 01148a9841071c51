"""nasctl-agent: the device side of nasctl. Time one ONNX model on this machine and return a
JSON-serialisable record.

>>> import nasctl_agent
>>> r = nasctl_agent.measure("model.onnx", {"device": "cpu", "precision": "fp32", "batch": 1})
>>> r.status, r.timing["median_ms"], r.device_id, [la["name"] for la in r.layers]
>>> nasctl_agent.info()["devices"]

Standard library only at import time (Python >= 3.8); backends import their libraries lazily.
The request/result JSON is documented in :mod:`nasctl_agent.request`.
"""

from __future__ import annotations

from nasctl_agent._version import __version__
from nasctl_agent.api import info, measure, measure_json
from nasctl_agent.errors import AgentError, MissingBackendError, ModelError, RequestError
from nasctl_agent.protocol import Runner, TimingConfig, TimingResult, TimingStats
from nasctl_agent.request import PROTOCOL_VERSION, Request, Result

__all__ = [
    "PROTOCOL_VERSION",
    "AgentError",
    "MissingBackendError",
    "ModelError",
    "Request",
    "RequestError",
    "Result",
    "Runner",
    "TimingConfig",
    "TimingResult",
    "TimingStats",
    "__version__",
    "info",
    "measure",
    "measure_json",
]
