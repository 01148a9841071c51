"""Architecture graphs: build, read/write ONNX, convert to torch, count costs, hash."""

from __future__ import annotations

from nasctl.arch.graph import ACTIVATIONS, OPS, Graph, GraphBuilder, Node

__all__ = ["ACTIVATIONS", "OPS", "Graph", "GraphBuilder", "Node"]
