"""Feature schema of the latency predictor (versioned): names, units and the per-graph container.

A :class:`~nasctl.arch.graph.Graph` becomes :class:`GraphFeatures` (computed by
:mod:`nasctl.predictor.batch`; :mod:`nasctl.predictor.features` has the entry points):

* ``x``: one row per fused group of nodes (a compute node with the normalisation/activation
  nodes an engine would fuse into it, ``fusion.fuse_groups``), ``NODE_FEATURES`` columns: op counts
  over :data:`OPS` (a one-hot for a lone node), then ``log1p`` of kernel area, stride, groups,
  channels in/out, output spatial size (H*W) of the group's heaviest node, and of the group's
  MACs, activation bytes read/written and weight bytes, plus a "live" flag (the group reaches a
  graph output) and log1p fan-in/fan-out.
* ``edges``: data-flow edges between groups (producer, consumer), shape (2, E).
* ``g``: one graph-level vector, ``GRAPH_FEATURES`` columns: log1p totals (MACs, params, bytes,
  nodes, edges, depth), resolution, batch, precision bytes, per-op counts (all nodes and live
  nodes), per-op log1p MAC and byte sums, and counts of op-group pairs along edges.

Units before the log: MACs are multiply-accumulates, bytes are bytes (element size from
``graph.meta["precision"]``, default fp32), spatial sizes are pixels. The schema is identified by
:data:`SCHEMA_VERSION`; a predictor trained on one schema refuses another.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

from nasctl.arch.arrays import node_raw as _node_raw  # noqa: F401  (re-exported for tests)
from nasctl.arch.graph import ACTIVATIONS, OP_INDEX, OPS

SCHEMA_VERSION = "feat-v1"

PRECISION_BYTES: dict[str, int] = {"fp32": 4, "fp16": 2, "int8": 1}

_NUMERIC = (
    "kernel_area",
    "stride",
    "groups",
    "c_in",
    "c_out",
    "spatial_out",
    "macs",
    "read_bytes",
    "write_bytes",
    "weight_bytes",
)
NODE_FEATURES: tuple[str, ...] = (
    tuple(f"op_{o}" for o in OPS)
    + tuple(f"log1p_{n}" for n in _NUMERIC)
    + (
        "live",
        "log1p_fan_in",
        "log1p_fan_out",
    )
)
N_OPS = len(OPS)
_COL = {n: N_OPS + i for i, n in enumerate(_NUMERIC)}

#: Coarse op groups for edge-pair counts.
_GROUP_OF: dict[str, str] = {
    "conv": "conv",
    "dwconv": "dwconv",
    "gconv": "gconv",
    "linear": "fc",
    "matmul": "fc",
    "batchnorm": "norm",
    "layernorm": "norm",
    "add": "add",
    "mul": "mul",
    "concat": "concat",
    "split": "shape",
    "reshape": "shape",
    "flatten": "shape",
    "transpose": "shape",
    "pad": "shape",
    "maxpool": "pool",
    "avgpool": "pool",
    "globalavgpool": "gpool",
    "globalmaxpool": "gpool",
    "identity": "identity",
    "resize": "other",
    "softmax": "other",
    "other": "other",
}
GROUPS: tuple[str, ...] = (
    "conv",
    "dwconv",
    "gconv",
    "fc",
    "norm",
    "act",
    "add",
    "mul",
    "concat",
    "shape",
    "pool",
    "gpool",
    "identity",
    "other",
)
_GROUP_INDEX = {g: i for i, g in enumerate(GROUPS)}
_OP_GROUP = np.array([_GROUP_INDEX[_GROUP_OF.get(o, "act")] for o in OPS], dtype=np.int64)
N_GROUPS = len(GROUPS)

GRAPH_FEATURES: tuple[str, ...] = (
    (
        "log1p_macs",
        "log1p_params",
        "log1p_read_bytes",
        "log1p_write_bytes",
        "log1p_weight_bytes",
        "log1p_nodes",
        "log1p_edges",
        "log1p_depth",
        "log1p_live_nodes",
        "log1p_live_macs",
        "resolution",
        "batch",
        "precision_bytes",
    )
    + tuple(f"count_{o}" for o in OPS)
    + tuple(f"live_count_{o}" for o in OPS)
    + tuple(f"log1p_macs_{o}" for o in OPS)
    + tuple(f"log1p_bytes_{o}" for o in OPS)
    + tuple(f"pair_{a}_{b}" for a in GROUPS for b in GROUPS)
)


def schema_hash() -> str:
    """Short hash of the schema (version + feature names), stored in artifacts."""
    text = SCHEMA_VERSION + "|" + ",".join(NODE_FEATURES) + "|" + ",".join(GRAPH_FEATURES)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class GraphFeatures:
    """Features of one graph.

    ``x``: (groups, len(NODE_FEATURES)) float32, one row per fused group of nodes (a compute
    node with the normalisation/activation nodes around it, see ``fusion.fuse_groups``); op columns
    count the group's ops, shape columns come from its heaviest node, cost columns are sums.
    ``edges``: (2, E) int64 between groups. ``g``: (len(GRAPH_FEATURES),) float32. ``group``:
    group index per node. ``costs``: (nodes, 4): MACs, read bytes, write bytes, weight bytes.
    ``op``: op index per node. ``node_ids``: node ids in graph order.
    """

    x: np.ndarray
    edges: np.ndarray
    g: np.ndarray
    group: np.ndarray
    costs: np.ndarray
    op: np.ndarray
    node_ids: list[str]
    raw: np.ndarray | None = None


_UNARY = np.array([OP_INDEX[o] for o in ("batchnorm", "identity", *ACTIVATIONS)], dtype=np.int64)


def group_rows(
    raw: np.ndarray, costs: np.ndarray, op: np.ndarray, grp: np.ndarray, k: int
) -> np.ndarray:
    """Rows of NODE_FEATURES for groups of nodes (``grp``: group per node, -1 = none): op
    counts, shape of the heaviest member, log1p summed costs. Live and fan columns are 0."""
    m = grp >= 0
    raw, costs, op, grp = raw[m], costs[m], op[m], grp[m]
    n = raw.shape[0]
    x = np.zeros((k, len(NODE_FEATURES)), dtype=np.float64)
    np.add.at(x, (grp, op), 1.0)
    order = np.lexsort((np.arange(n), -raw[:, 7], grp))  # heaviest member first per group
    lead = order[np.r_[True, grp[order][1:] != grp[order][:-1]]] if n else order
    x[grp[lead], N_OPS : N_OPS + 6] = raw[lead, 1:7]
    for j in range(4):
        x[:, N_OPS + 6 + j] = np.bincount(grp, weights=costs[:, j], minlength=k)
    x[:, N_OPS : N_OPS + 10] = np.log1p(x[:, N_OPS : N_OPS + 10])
    return x


def graph_matrix(feats: list[GraphFeatures]) -> np.ndarray:
    """Stack graph-level vectors: (graphs, len(GRAPH_FEATURES)) float32."""
    if not feats:
        return np.zeros((0, len(GRAPH_FEATURES)), dtype=np.float32)
    return np.stack([f.g for f in feats])


def log_safe(v: float) -> float:
    """Natural log of a positive latency (ms), floored at 1e-6 ms."""
    return math.log(max(float(v), 1e-6))
