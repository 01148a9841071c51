"""The measurement store as a torch-geometric dataset: one ``Data`` per measured architecture.

Train your own GNN on nasctl measurements::

    from torch_geometric.loader import DataLoader
    from nasctl.datasets.pyg import LatencyDataset

    ds = LatencyDataset("runs/pyg", db="runs/cpu.db", device="cpu")
    for batch in DataLoader(ds, batch_size=64, shuffle=True):
        pred = model(batch.x, batch.edge_index, batch.batch)  # batch.y: latency in ms

Each graph holds (``G`` fused node groups, ``E`` edges):

* ``x``: (G, len(NODE_FEATURES)) float32, the latency predictor's node features
  (:mod:`nasctl.predictor.features`): one row per compute node with the normalisation and
  activation nodes an engine fuses into it; op counts, then log1p of kernel area, stride,
  groups, channels, output pixels, MACs, bytes read/written, weight bytes, and a few flags.
  ``LatencyDataset.node_features`` names the columns.
* ``edge_index``: (2, E) int64, data flow between the groups (producer, consumer).
* ``graph_attr``: (1, len(GRAPH_FEATURES)) float32, the predictor's graph-level features
  (totals, resolution, batch, precision bytes, op counts); batches stack it to (B, F).
* ``y``: (1,) float32, the measured median latency in **milliseconds** (batches: (B,)).
* ``arch_hash``, ``space``, ``genotype``, ``model``: strings ("" when unknown).

No other attribute name contains ``index``: PyG offsets such attributes by the node count when
it batches graphs, which is right for ``edge_index`` only.

The processed file's name carries the feature-schema hash (this module's format and the
predictor's :func:`~nasctl.predictor.features.schema_hash`), the filters and a hash of the
measurements it holds, so a schema change or a store that grew is processed again instead of
being read stale. The file holds tensors, strings and dicts only and is read back with
``torch.load(weights_only=True)`` (no pickle).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch_geometric.data import Data, InMemoryDataset

from nasctl.datasets.rows import TrainingRow
from nasctl.datasets.store import Store
from nasctl.errors import StoreError
from nasctl.predictor.features import GRAPH_FEATURES, NODE_FEATURES, featurize_many, schema_hash

#: Version of the ``Data`` layout above; change it when an attribute changes.
FORMAT_VERSION = "pyg-v1"
#: Graphs featurized at a time (bounds memory on big stores).
CHUNK = 2048


def feature_hash() -> str:
    """Short hash of what a processed file holds: this layout and the predictor's schema."""
    text = "|".join((FORMAT_VERSION, schema_hash(), "x,edge_index,graph_attr,y"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class LatencyDataset(InMemoryDataset):
    """Measured architectures of one device in a nasctl store, as PyG graphs (see the module).

    Args:
        root: folder for the processed file (created); one folder can hold many datasets.
        db: the SQLite measurement store (read only).
        device: a stored dataset id, or the short name given to ``nasctl profile`` (``cpu``).
        precision: fp32/fp16/int8; None: the one stored for the device.
        batch: batch size measured; None: the one stored for the device.
        space: only architectures of this search space; None: every space and ONNX model.
        include_noisy: keep measurements that never passed the quality gate (status noisy).
        transform, pre_transform, pre_filter: as in PyG (the pre_ ones enter the file name).
        force_reload: process again even when the processed file exists.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        db: str | os.PathLike[str],
        device: str,
        precision: str | None = None,
        batch: int | None = None,
        space: str | None = None,
        include_noisy: bool = True,
        transform: Callable[[Data], Data] | None = None,
        pre_transform: Callable[[Data], Data] | None = None,
        pre_filter: Callable[[Data], bool] | None = None,
        force_reload: bool = False,
    ) -> None:
        with Store(db, readonly=True) as store:
            device_id = store.resolve_device_id(device)
            rows = store.training_rows(
                device_id, precision, batch, include_noisy=include_noisy, space=space
            )
        if not rows:
            raise StoreError(
                f"{db} has no measurements of {device_id} that match precision={precision}, "
                f"batch={batch}, space={space}; drop a filter or measure some first"
            )
        self.device_id = device_id
        self.precision = rows[0].precision
        self.batch_size = rows[0].batch
        self._rows: list[TrainingRow] | None = rows
        key = [device_id, self.precision, f"b{self.batch_size}", space or "all"]
        key.append("ok+noisy" if include_noisy else "ok")
        self._file = "-".join(
            (
                re.sub(r"[^A-Za-z0-9_.+-]+", "_", "-".join(key)),
                feature_hash(),
                _content_hash(rows, pre_transform, pre_filter),
            )
        )
        super().__init__(
            str(root), transform, pre_transform, pre_filter, log=False, force_reload=force_reload
        )
        path = Path(self.processed_paths[0])
        if force_reload or not path.is_file():
            self._build(path)
        self._rows = None
        data, slices = torch.load(path, weights_only=True)
        self.data, self.slices = Data.from_dict(data), slices

    node_features: tuple[str, ...] = NODE_FEATURES
    graph_features: tuple[str, ...] = GRAPH_FEATURES

    @property
    def raw_file_names(self) -> list[str]:
        return []  # the store is the raw data

    @property
    def processed_file_names(self) -> list[str]:
        return [f"{self._file}.pt"]

    def _build(self, path: Path) -> None:
        assert self._rows is not None
        graphs: list[Data] = []
        for i in range(0, len(self._rows), CHUNK):
            graphs += to_data(self._rows[i : i + CHUNK], self.precision)
        if self.pre_filter is not None:
            graphs = [d for d in graphs if self.pre_filter(d)]
        if self.pre_transform is not None:
            graphs = [self.pre_transform(d) for d in graphs]
        if not graphs:
            raise StoreError(f"pre_filter left no graph of {self.device_id}; relax the filter")
        data, slices = self.collate(graphs)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save((data.to_dict(), slices), tmp)
        tmp.replace(path)  # a reader never sees half a file


def to_data(rows: list[TrainingRow], precision: str | None = None) -> list[Data]:
    """One :class:`~torch_geometric.data.Data` per training row (layout in the module doc)."""
    feats = featurize_many([r.graph for r in rows], precision)
    return [
        Data(
            x=torch.from_numpy(f.x).float(),
            edge_index=torch.from_numpy(f.edges).long().reshape(2, -1),
            graph_attr=torch.from_numpy(f.g).float().reshape(1, -1),
            y=torch.tensor([r.latency_ms], dtype=torch.float32),
            arch_hash=r.arch_hash,
            space=r.space or "",
            genotype=r.genotype or "",
            model=r.model or "",
        )
        for r, f in zip(rows, feats, strict=True)
    ]


def _content_hash(rows: list[TrainingRow], *hooks: Any) -> str:
    """Hash of the measurements and of the pre_ hooks: a grown store gets a new file."""
    h = hashlib.sha256()
    for r in rows:
        h.update(f"{r.arch_hash}:{r.latency_ms!r};".encode())
    for hook in hooks:  # repr without memory addresses, as PyG compares pre_transforms
        h.update(re.sub(r"(<.*?)\s.*(>)", r"\1\2", repr(hook)).encode())
    return h.hexdigest()[:12]
