"""Devices that measure through the agent's code (:mod:`nasctl_agent`): one implementation of
the measuring itself, whether ``nasctl profile`` runs on the device or a fleet worker runs
``nasctl-agent`` there. The host's part: turn a :class:`~nasctl.records.MeasurementRequest`
into the agent's request (:func:`agent_request`), and the agent's result into the stored
:class:`~nasctl.records.Measurement`, mapping engine layer names to graph nodes
(:func:`measurement_from_result`)."""

from __future__ import annotations

from typing import Any

import nasctl_agent
from nasctl_agent.errors import RequestError
from nasctl_agent.request import OPTIONS

from nasctl.errors import DeviceError
from nasctl.profiler.base import Device
from nasctl.profiler.layers import ort_layers, trt_layers
from nasctl.profiler.protocol import TimingConfig, TimingResult, measurement_from_timing
from nasctl.profiler.source import ModelSource, at_precision, load_model
from nasctl.records import Measurement, MeasurementRequest


def agent_options(opts: dict[str, Any]) -> dict[str, Any]:
    """The backend options of ``opts`` the agent knows (timing keys and host-only keys such as
    ``data_dir`` or ``precision`` stay behind)."""
    return {k: v for k, v in opts.items() if k in OPTIONS and v is not None}


def agent_request(
    device: str, request: MeasurementRequest, opts: dict[str, Any], cfg: TimingConfig
) -> nasctl_agent.Request:
    """The agent's request for ``request`` on agent device ``device``."""
    return nasctl_agent.Request(
        device=device,
        precision=request.precision,
        batch=request.batch,
        shapes=opts.get("shapes"),
        timing=cfg.to_dict(),
        per_layer=request.per_layer,
        backend=opts.get("backend"),
        options=agent_options(opts),
    )


def measurement_from_result(
    request: MeasurementRequest, result: dict[str, Any], source: ModelSource | None = None
) -> Measurement:
    """The stored record of an agent result (``Result.to_dict()``), engine layers mapped to the
    graph's nodes. ``source``: the model measured (loaded from ``request`` when omitted)."""
    try:
        res = nasctl_agent.Result.from_dict(result)
    except RequestError as e:  # another protocol version: the agent and nasctl do not match
        raise DeviceError(str(e)) from None
    if res.status == "failed" or res.timing is None:
        return Measurement(
            arch_hash=request.arch_hash,
            device_id=res.device_id,
            precision=request.precision,
            batch=request.batch,
            status="failed",
            error=res.error or "the agent returned no timing",
        )
    timing = TimingResult.from_dict(res.timing)
    extra: dict[str, Any] = dict(res.extra)
    extra["cvs"] = timing.cvs
    extra["timing_s"] = dict(res.timing_s)
    extra["protocol"] = dict(res.protocol_config)
    if res.backend != "onnxruntime":
        extra["backend"] = res.backend
        extra["timing_method"] = res.timing_method
    if res.memory:
        extra["memory"] = dict(res.memory)
    if res.notes:
        extra["notes"] = list(res.notes)
    if res.warnings:
        extra["warning"] = "; ".join(res.warnings)
    m = measurement_from_timing(
        timing, request, res.device_id, fingerprint=dict(res.fingerprint), extra=extra
    )
    if res.layers:
        _add_layers(m, res, source if source is not None else load_model(request))
    if source is not None and source.precision_note is not None:  # written by the host
        m.extra["precision_written"] = source.precision_note
    return m


def _add_layers(m: Measurement, res: nasctl_agent.Result, source: ModelSource) -> None:
    proto = source.onnx_proto()
    graph = res.engine_graph or {}
    if graph.get("format") == "ort-optimized-nodes" or res.backend == "onnxruntime":
        m.layers, unassigned = ort_layers(res.layers, graph.get("data"), proto, source.graph_ids)
        if unassigned:
            m.extra["layers_unassigned_nodes"] = unassigned
    else:
        info = graph.get("data") if graph.get("format") == "tensorrt-layer-info" else None
        m.layers = trt_layers(res.layers, info, proto, source.graph_ids)
    total = sum(la.time_ms for la in m.layers)
    m.extra["layers_sum_ms"] = total
    m.extra["layers_sum_ratio"] = total / m.median_ms if m.median_ms else None


class AgentBackedDevice(Device):
    """A device whose measuring is the agent's device ``agent_device``; the host adds the
    request translation and the layer mapping."""

    agent_device = ""
    #: precisions the host writes into the model before the agent measures it
    writes_precision: tuple[str, ...] = ()
    #: INT8 activation encoding the engine runs best (see :func:`nasctl.arch.precision.to_int8`)
    int8_activations = "int8"

    def load(self, request: MeasurementRequest) -> ModelSource:
        source = load_model(request)
        if request.precision not in self.writes_precision:
            return source
        opts = {**self.opts, **(request.options or {})}
        calib = opts.get("calib_data")
        return at_precision(
            source,
            request.precision,
            str(calib) if calib else None,
            int(opts.get("seed", 0)),
            self.int8_activations,
        )

    def _agent(self) -> Any:
        from nasctl_agent.catalog import get_device as agent_get_device

        return agent_get_device(self.agent_device)

    def _agent_request(self, precision: str, opts: dict[str, Any]) -> nasctl_agent.Request:
        return nasctl_agent.Request(
            device=self.agent_device, precision=precision, options=agent_options(opts)
        )

    def available(self) -> tuple[bool, str]:
        req = self._agent_request(self.precision, self.opts)
        req.backend = self.opts.get("backend")
        return self._agent().available_for(req)  # type: ignore[no-any-return]

    def device_id_for(self, precision: str) -> str:
        return self.request_device_id(
            MeasurementRequest(arch_hash="", device=self.name, precision=precision), {}
        )

    def request_device_id(self, request: MeasurementRequest, opts: dict[str, Any]) -> str:
        merged = {**self.opts, **opts}
        try:
            req = self._agent_request(request.precision, merged)
            req.backend = merged.get("backend")
            dev = self._agent()
            dev.check_request(req)
            return str(dev.device_id(req))
        except RequestError as e:
            raise DeviceError(str(e)) from None

    def measure_model(
        self,
        source: ModelSource,
        request: MeasurementRequest,
        opts: dict[str, Any],
        cfg: TimingConfig,
        device_id: str,
    ) -> Measurement:
        req = agent_request(self.agent_device, request, opts, cfg)
        try:
            result = self._agent().measure(source.model, req)
        except RequestError as e:
            raise DeviceError(str(e)) from None
        return measurement_from_result(request, result.to_dict(), source)
