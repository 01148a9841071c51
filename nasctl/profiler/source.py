"""The model a request names, ready for a device: ONNX written from the request's graph, or the
user's ONNX file by path (so a model with external data, > 2 GB, is read from its folder by the
engine, never copied into memory). Replaces the old ``load_model_bytes``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nasctl.errors import DeviceError, GraphError, OnnxReadError
from nasctl.records import MeasurementRequest


@dataclass
class ModelSource:
    """ONNX ``data`` (bytes, written from a graph) or ``path`` (a user's file); ``graph_ids``:
    the graph's node ids, to map inner ONNX nodes ``<id>/<part>`` back (None for user ONNX)."""

    data: bytes | None = None
    path: Path | None = None
    graph_ids: set[str] | None = None

    @property
    def model(self) -> bytes | str:
        """What the agent's ``measure`` takes: bytes, or the file's path."""
        if self.data is not None:
            return self.data
        assert self.path is not None
        return str(self.path)

    def onnx_proto(self) -> Any:
        """The ONNX graph (weights in external files are not loaded); None if unreadable."""
        import onnx

        try:
            if self.data is not None:
                return onnx.load_from_string(self.data)
            return onnx.load(str(self.path), load_external_data=False)
        except Exception:  # a model the engine ran but onnx cannot read: no names to map
            return None


def load_model(request: MeasurementRequest) -> ModelSource:
    """The model of ``request``. Raises :class:`GraphError`/:class:`OnnxReadError` for the
    model's own problems (a failed record) and :class:`DeviceError` for a request without one."""
    if request.graph_json:
        from nasctl.arch.graph import Graph
        from nasctl.arch.onnx_io import to_onnx

        try:
            graph = Graph.from_json(request.graph_json)
        except (ValueError, KeyError, TypeError) as e:
            raise GraphError(f"request graph_json is not a graph: {e}") from e
        return ModelSource(
            data=to_onnx(graph).SerializeToString(), graph_ids={n.id for n in graph.nodes}
        )
    if request.onnx_path:
        p = Path(request.onnx_path)
        try:
            size = p.stat().st_size
            if not p.is_file():
                raise IsADirectoryError(21, "is not a file")
        except OSError as e:
            raise OnnxReadError(f"cannot read ONNX file {p}: {e.strerror or e}") from e
        if size == 0:
            raise OnnxReadError(f"ONNX file {p} is empty")
        return ModelSource(path=p)
    raise DeviceError("measurement request has neither graph_json nor onnx_path")
