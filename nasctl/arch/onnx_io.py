"""ONNX in and out: :func:`to_onnx`, :func:`save_onnx`, :func:`from_onnx`.

Writing lives in :mod:`nasctl.arch.onnx_write`, reading in :mod:`nasctl.arch.onnx_read`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx

from nasctl.arch.graph import Graph
from nasctl.arch.onnx_read import from_onnx
from nasctl.arch.onnx_write import to_onnx
from nasctl.errors import GraphError

__all__ = ["from_onnx", "save_onnx", "to_onnx"]


def save_onnx(graph: Graph, path: str | Path, **kw: Any) -> Path:
    """Write ``to_onnx(graph, **kw)`` to ``path`` (parent folders created); returns the path."""
    p = Path(path)
    model = to_onnx(graph, **kw)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        onnx.save_model(model, str(p))
    except OSError as e:
        raise GraphError(f"cannot write ONNX file {p}: {e.strerror or e}") from e
    return p
