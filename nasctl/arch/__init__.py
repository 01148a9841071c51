"""Architecture graphs: build, read/write ONNX, convert to torch, count costs, hash.

Heavy modules (onnx, torch) are imported on first use of the name, so ``import nasctl.arch``
stays cheap for the CLI.
"""

from __future__ import annotations

from typing import Any

from nasctl.arch.graph import ACTIVATIONS, OPS, Graph, GraphBuilder, Node

__all__ = [
    "ACTIVATIONS",
    "OPS",
    "Graph",
    "GraphBuilder",
    "GraphModule",
    "Node",
    "from_onnx",
    "graph_costs",
    "graph_hash",
    "save_onnx",
    "to_onnx",
    "to_torch",
]

_LAZY = {
    "to_onnx": "nasctl.arch.onnx_io",
    "save_onnx": "nasctl.arch.onnx_io",
    "from_onnx": "nasctl.arch.onnx_io",
    "to_torch": "nasctl.arch.torch_module",
    "GraphModule": "nasctl.arch.torch_module",
    "graph_costs": "nasctl.arch.costs",
    "graph_hash": "nasctl.arch.hashing",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nasctl.arch' has no attribute {name!r}")
