"""The store as a torch-geometric dataset: real NB201 latencies in, a PyG GNN trains on them."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from torch_geometric.loader import DataLoader

from nasctl.datasets.importers import import_table
from nasctl.datasets.pyg import LatencyDataset, feature_hash
from nasctl.datasets.store import Store
from nasctl.errors import StoreError
from nasctl.predictor.features import GRAPH_FEATURES, NODE_FEATURES

DEVICE = "replay-nb201-titan_rtx_1"


@pytest.fixture(scope="module")
def store(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """120 NB201 architectures on two devices, imported from the real table."""
    db = tmp_path_factory.mktemp("pyg") / "nb201.db"
    with Store(db) as s:
        import_table(s, "nb201", "titan_rtx_1", shared_data, limit=120)
        import_table(s, "nb201", "raspi4", shared_data, limit=120)
    return db


def _table(shared_data: Path, column: str) -> dict[str, float]:
    with (shared_data / "nb201" / "latency_ms.csv").open(newline="") as f:
        return {r["arch"]: float(r[column]) for r in csv.DictReader(f) if r[column]}


def test_graphs_carry_predictor_features_and_latency_ms(
    store: Path, shared_data: Path, tmp_path: Path
) -> None:
    ds = LatencyDataset(tmp_path, db=store, device="replay:nb201/titan_rtx_1")
    table = _table(shared_data, "titan_rtx_1")
    assert ds.device_id == DEVICE and 100 <= len(ds) <= 120  # isomorphic cells share a row
    for d in (ds[0], ds[len(ds) - 1]):
        assert d.x.dtype == torch.float32 and d.x.shape[1] == len(NODE_FEATURES)
        assert d.edge_index.dtype == torch.long and d.edge_index.shape[0] == 2
        assert int(d.edge_index.max()) < d.num_nodes
        assert d.graph_attr.shape == (1, len(GRAPH_FEATURES))
        assert d.space == "nb201" and d.y.item() == pytest.approx(table[d.genotype], rel=1e-6)
    other = LatencyDataset(tmp_path, db=store, device="replay:nb201/raspi4")
    assert other[0].arch_hash == ds[0].arch_hash and other[0].y.item() != ds[0].y.item()
    with pytest.raises(StoreError, match="no measurements"):
        LatencyDataset(tmp_path, db=store, device=DEVICE, space="fbnet")
    with pytest.raises(StoreError, match="precision"):
        LatencyDataset(tmp_path, db=store, device=DEVICE, precision="int8")


def test_batching_offsets_edge_index_only(store: Path, tmp_path: Path) -> None:
    ds = LatencyDataset(tmp_path, db=store, device=DEVICE)
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch.y.shape == (4,) and batch.graph_attr.shape == (4, len(GRAPH_FEATURES))
    assert batch.arch_hash == [ds[i].arch_hash for i in range(4)]
    start = 0
    for i in range(4):
        g, n = ds[i], ds[i].num_nodes
        mine = batch.batch[batch.edge_index[0]] == i
        assert torch.equal(batch.edge_index[:, mine] - start, g.edge_index)
        assert torch.equal(batch.y[i : i + 1], g.y)
        start += n


def test_processed_file_names_the_schema_and_follows_the_store(
    store: Path, shared_data: Path, tmp_path: Path
) -> None:
    db = tmp_path / "grows.db"
    db.write_bytes(store.read_bytes())
    root = tmp_path / "pyg"
    ds = LatencyDataset(root, db=db, device=DEVICE)
    (name,) = ds.processed_file_names
    assert feature_hash() in name and (root / "processed" / name).is_file()
    again = LatencyDataset(root, db=db, device=DEVICE)
    assert again.processed_file_names == [name] and len(again) == len(ds)
    with Store(db) as s:  # the store grows: a new file, never the stale one
        import_table(s, "nb201", "titan_rtx_1", shared_data, limit=160)
    grown = LatencyDataset(root, db=db, device=DEVICE)
    assert grown.processed_file_names != [name] and len(grown) > len(ds)


def test_a_tiny_pyg_gnn_learns_from_the_store(
    store: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """What the README shows: a user's own GNN on nasctl data; the loss falls in a few steps."""
    from torch_geometric.nn import GraphConv, global_mean_pool

    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small batches: one thread beats two fighting on a loaded machine
    request.addfinalizer(lambda: torch.set_num_threads(threads))
    ds = LatencyDataset(tmp_path, db=store, device=DEVICE)
    mean = ds.x.mean(0)
    std = ds.x.std(0).clamp_min(1e-3)
    log_y = torch.log(ds.y)
    mu, sd = log_y.mean(), log_y.std()

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = GraphConv(len(NODE_FEATURES), 32)
            self.conv2 = GraphConv(32, 32)
            self.head = torch.nn.Linear(32, 1)

        def forward(
            self, x: torch.Tensor, edge_index: torch.Tensor, batch: torch.Tensor
        ) -> torch.Tensor:
            h = self.conv1((x - mean) / std, edge_index).relu()
            h = self.conv2(h, edge_index).relu()
            return self.head(global_mean_pool(h, batch)).squeeze(-1)

    model = Net()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    loader = DataLoader(ds, batch_size=32, shuffle=True)
    losses = []
    for _ in range(8):
        total = 0.0
        for b in loader:
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(
                model(b.x, b.edge_index, b.batch), (torch.log(b.y) - mu) / sd
            )
            loss.backward()
            opt.step()
            total += loss.item() * b.num_graphs
        losses.append(total / len(ds))
    assert losses[-1] < 0.5 * losses[0], losses


def test_measured_onnx_files_become_graphs(tmp_path: Path) -> None:
    """No public table needed: two ONNX files measured for real on the cpu device."""
    from typer.testing import CliRunner

    from nasctl.arch.graph import GraphBuilder
    from nasctl.arch.onnx_io import save_onnx
    from nasctl.cli.main import app

    files = []
    for width in (8, 16):
        b = GraphBuilder(f"w{width}", (1, 3, 16, 16))
        y = b.act(b.conv(b.input, width, 3, id="/c"), "relu", id="/r")
        files.append(str(save_onnx(b.build([y]), tmp_path / f"w{width}.onnx")))
    db = tmp_path / "cpu.db"
    fast = ["--option", "min_time_s=0.02", "--option", "repeats=5", "--option", "max_attempts=1"]
    res = CliRunner().invoke(app, ["profile", "--device", "cpu", "--db", str(db), *fast, *files])
    assert res.exit_code == 0, res.output
    ds = LatencyDataset(tmp_path / "pyg", db=db, device="cpu")
    assert sorted(d.model for d in ds) == ["w16.onnx", "w8.onnx"]
    assert all(d.y.item() > 0 and d.x.shape[0] >= 1 for d in ds) and ds.precision == "fp32"
