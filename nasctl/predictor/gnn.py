"""Graph neural network latency model (torch-geometric GIN layers, additive pooling, log-ms head).

Model: node features -> linear -> L residual layers, each a pair of :class:`GINConv` (one along
data flow, one against it) -> a positive per-node contribution ``softplus(w . h_v)``; the graph's
latency is ``scale * (sum_v contribution_v + overhead(g))`` (latency is roughly additive over
nodes), and the model outputs its log plus a small correction from the graph-level features.

Exact deduplication (a Weisfeiler-Lehman quotient): a node's embedding after ``l`` message-passing
layers depends only on its ``l``-hop neighbourhood, so nodes with equal WL colours share it. Graphs
of one search space share most neighbourhoods (a stem, cells repeated at three widths), so the
network runs on the distinct colours only and sums with multiplicities. The result is the same
function as running on every node, at a fraction of the cost.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from nasctl.arch.torch_threads import torch_threads
from nasctl.predictor.distinct_rows import factorize as _factorize
from nasctl.predictor.schema import GraphFeatures

if TYPE_CHECKING:
    from nasctl.predictor.batch import FeatureBatch

GNN_DEFAULTS: dict[str, Any] = {"hidden": 32, "layers": 2, "steps": 200, "lr": 5e-3}
BATCH_GRAPHS = 192
CLIP = 8.0
HASH_CHUNK = 8192  # rows hashed at a time
FORWARD_CHUNK = 4096  # colours per step of the inference forward (activations stay in cache)
TRAIN_THREADS = 1  # small batches: one thread is faster than two fighting

_RNG = np.random.default_rng(20240601)
_W_X = _RNG.integers(1, 2**63, size=4096, dtype=np.uint64) | np.uint64(1)


@dataclass
class Level:
    """Message passing from colour level l-1 to level l (indices into the colour tables)."""

    n: int
    self_idx: np.ndarray
    in_edges: np.ndarray  # (2, E): [colour at l-1 of the producer, colour at l of the consumer]
    out_edges: np.ndarray  # (2, E): [colour at l-1 of the consumer, colour at l of the producer]


@dataclass
class Quotient:
    """Distinct node neighbourhoods of a batch of graphs, level by level."""

    x0: np.ndarray  # (K0, F) distinct node feature rows
    levels: list[Level]
    pool: np.ndarray  # (3, P): graph index, final colour, multiplicity
    n_graphs: int


def _unique_counts(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct keys, count of each) (as ``np.unique(..., return_counts=True)``)."""
    ks = np.sort(keys)
    if ks.size == 0:
        return ks, np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, ks[1:] != ks[:-1]])
    return ks[starts], np.diff(np.r_[starts, ks.size])


def _hash_rows(x: np.ndarray) -> np.ndarray:
    """Two independent random linear hashes of the rows' bit patterns, combined (exact in
    practice: a collision needs both 64-bit hashes to agree)."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    n, d = bits.shape
    w = np.stack([_W_X[:d], _W_X[2048 : 2048 + d]], axis=1)
    h = np.empty((n, 2), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for a in range(0, n, HASH_CHUNK):  # chunks: the uint64 copy stays in cache
            h[a : a + HASH_CHUNK] = bits[a : a + HASH_CHUNK].astype(np.uint64) @ w
    h1, h2 = h[:, 0], h[:, 1]
    c1, _ = _factorize(h1)
    return (c1.astype(np.uint64) << np.uint64(32)) ^ (h2 >> np.uint64(32))


def _seg_sum(values: np.ndarray, seg: np.ndarray, n: int) -> np.ndarray:
    """Sum of uint64 ``values`` per segment id ``seg`` (wrapping, so exact in any order),
    length ``n``."""
    out = np.zeros(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        np.add.at(out, seg, values)
    return out


def build_quotient(feats: list[GraphFeatures], layers: int) -> Quotient:
    """WL-colour the batch ``feats`` for ``layers`` message-passing layers."""
    sizes = np.array([f.x.shape[0] for f in feats], dtype=np.int64)
    offsets = np.r_[0, np.cumsum(sizes)[:-1]]
    x = np.concatenate([f.x for f in feats]) if feats else np.zeros((0, 1), np.float32)
    empty = np.zeros(0, np.int64)
    src = np.concatenate([empty, *(f.edges[0] + o for f, o in zip(feats, offsets, strict=True))])
    dst = np.concatenate([empty, *(f.edges[1] + o for f, o in zip(feats, offsets, strict=True))])
    codes, first = _factorize(_hash_rows(x))
    return _colour(
        x[first], codes, np.asarray(src, np.int64), np.asarray(dst, np.int64), sizes, layers
    )


def batch_quotient(batch: FeatureBatch, layers: int) -> Quotient:
    """:func:`build_quotient` of the graphs of a :class:`~nasctl.predictor.batch.FeatureBatch`
    (the same quotient, colours numbered alike), from its concatenated arrays; with the batch's
    distinct-row ids only the distinct rows are hashed."""
    sizes = np.diff(batch.group_off)
    if batch.xcode is None or batch.xrep is None or batch.xtab.shape[0] == 0:
        x = batch.xtab
        codes, first = _factorize(_hash_rows(x))
        return _colour(x[first], codes, batch.gedges[0], batch.gedges[1], sizes, layers)
    # colours of the distinct rows; first group of each colour from the rows' first groups
    x, n = batch.xtab, batch.xcode.size
    tab_codes, _ = _factorize(_hash_rows(x))
    codes = tab_codes[batch.xcode]
    first = np.full(int(tab_codes.max()) + 1, n, dtype=np.int64)
    np.minimum.at(first, tab_codes, batch.xrep)
    x0 = x[batch.xcode[first]]
    return _colour(x0, codes, batch.gedges[0], batch.gedges[1], sizes, layers)


def _colour(
    x0: np.ndarray,
    codes: np.ndarray,
    src: np.ndarray,
    dst: np.ndarray,
    sizes: np.ndarray,
    layers: int,
) -> Quotient:
    """WL refinement of the level-0 colours ``codes`` (rows ``x0``) along edges ``src -> dst``
    for ``layers`` levels; ``sizes``: nodes per graph."""
    n = codes.size
    rng = np.random.default_rng(12345)
    levels: list[Level] = []
    for _ in range(layers):
        k = int(codes.max()) + 1 if n else 1
        r_self, r_in, r_out = (rng.integers(0, 2**63, size=k, dtype=np.uint64) for _ in range(3))
        with np.errstate(over="ignore"):
            key = r_self[codes] + _seg_sum(r_in[codes[src]], dst, n)
            key += _seg_sum(r_out[codes[dst]], src, n)
        new, reps = _factorize(key)
        is_rep = np.zeros(n, dtype=bool)
        is_rep[reps] = True
        m_in, m_out = is_rep[dst], is_rep[src]
        levels.append(
            Level(
                n=int(reps.size),
                self_idx=codes[reps],
                in_edges=np.stack([codes[src[m_in]], new[dst[m_in]]]),
                out_edges=np.stack([codes[dst[m_out]], new[src[m_out]]]),
            )
        )
        codes = new
    graph_of = np.repeat(np.arange(sizes.size, dtype=np.int64), sizes)
    k = int(codes.max()) + 1 if n else 1
    pair, counts = _unique_counts(graph_of * k + codes)
    pool = np.stack([pair // k, pair % k, counts])
    return Quotient(x0=x0, levels=levels, pool=pool, n_graphs=int(sizes.size))


def _make_module(node_dim: int, graph_dim: int, hidden: int, layers: int) -> Any:
    import torch
    from torch import nn
    from torch_geometric.nn import GINConv

    def mlp(i: int, o: int) -> nn.Module:
        return nn.Sequential(nn.Linear(i, hidden), nn.ReLU(), nn.Linear(hidden, o))

    class LatencyGNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inp = nn.Linear(node_dim, hidden)
            self.fwd = nn.ModuleList(
                GINConv(mlp(hidden, hidden), train_eps=True) for _ in range(layers)
            )
            self.bwd = nn.ModuleList(
                GINConv(mlp(hidden, hidden), train_eps=True) for _ in range(layers)
            )
            self.contrib = mlp(hidden, 1)
            self.graph = mlp(graph_dim, 2)
            self.log_scale = nn.Parameter(torch.zeros(()))

        def forward(self, q: dict[str, Any], g: torch.Tensor) -> torch.Tensor:
            h = torch.relu(self.inp(q["x0"]))
            for lvl, f, b in zip(q["levels"], self.fwd, self.bwd, strict=False):
                hd = h[lvl["self_idx"]]
                h = hd + torch.relu(f((h, hd), lvl["adj_in"]) + b((h, hd), lvl["adj_out"]))
            return self.head(nn.functional.softplus(self.contrib(h)).squeeze(-1), q, g)

        def head(self, c: torch.Tensor, q: dict[str, Any], g: torch.Tensor) -> torch.Tensor:
            """Log latency from the per-colour contributions ``c``."""
            gi, ci, cnt = q["pool"]
            s = torch.zeros(q["n_graphs"], dtype=c.dtype).index_add_(0, gi, c[ci] * cnt.to(c.dtype))
            z = self.graph(g)
            total = s + nn.functional.softplus(z[:, 0])
            return self.log_scale + torch.log(total + 1e-9) + 0.1 * z[:, 1]

    return LatencyGNN()


def _safe_std(std: np.ndarray) -> np.ndarray:
    """Standard deviations for scaling; a column (nearly) constant in training gets 1, so a
    value never seen there moves the input by its own size, not by thousands."""
    return np.where(std < 1e-2, 1.0, std)


def _standardize(v: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(v - mean) / std, NaN -> 0, clipped to +-CLIP (inputs far outside training)."""
    return np.clip(np.nan_to_num((v - mean) / std), -CLIP, CLIP).astype(np.float32)


def _csr(edges: np.ndarray, n_dst: int, n_src: int) -> tuple[np.ndarray, ...]:
    """(row pointers, columns, values) of the (n_dst, n_src) matrix of edge multiplicities."""
    key = edges[1] * n_src + edges[0]
    uniq, counts = _unique_counts(key)
    rows, cols = uniq // n_src, uniq % n_src
    crow = np.zeros(n_dst + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_dst), out=crow[1:])
    return crow, cols, counts.astype(np.float32)


def _sparse(crow: np.ndarray, cols: np.ndarray, vals: np.ndarray, n_src: int) -> Any:
    """Sparse CSR tensor (GINConv sums with it: spmm)."""
    import torch

    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore")
        return torch.sparse_csr_tensor(
            torch.from_numpy(crow),
            torch.from_numpy(cols),
            torch.from_numpy(vals),
            size=(crow.size - 1, n_src),
        )


def _csr_rows(csr: tuple[np.ndarray, ...], a: int, z: int, n_src: int) -> Any:
    """Rows ``a:z`` of a :func:`_csr` matrix as a sparse CSR tensor."""
    crow, cols, vals = csr
    s, e = int(crow[a]), int(crow[z])
    return _sparse(crow[a : z + 1] - s, cols[s:e], vals[s:e], n_src)


def _adjacency(edges: np.ndarray, n_dst: int, n_src: int) -> Any:
    """Sparse CSR (n_dst, n_src) of edge multiplicities: GINConv sums with it (spmm)."""
    return _sparse(*_csr(edges, n_dst, n_src), n_src)


def _to_torch(q: Quotient, mean: np.ndarray, std: np.ndarray) -> dict[str, Any]:
    import torch

    levels, k_prev = [], q.x0.shape[0]
    for lv in q.levels:
        levels.append(
            {
                "self_idx": torch.from_numpy(lv.self_idx),
                "adj_in": _adjacency(lv.in_edges, lv.n, k_prev),
                "adj_out": _adjacency(lv.out_edges, lv.n, k_prev),
            }
        )
        k_prev = lv.n
    return {
        "x0": torch.from_numpy(_standardize(q.x0, mean, std)),
        "levels": levels,
        "pool": torch.from_numpy(q.pool),
        "n_graphs": q.n_graphs,
    }


class GNNModel:
    """Trainable, saveable GNN latency model. Predictions are log latency (log ms)."""

    def __init__(self, config: dict[str, Any], state: dict[str, Any] | None = None) -> None:
        self.config = dict(config)
        c = self.config
        self.module = _make_module(c["node_dim"], c["graph_dim"], c["hidden"], c["layers"])
        if state is not None:
            self.module.load_state_dict(state)
        self.module.eval()

    def _norm(self) -> tuple[np.ndarray, ...]:
        c = self.config
        return (
            np.asarray(c["x_mean"], np.float32),
            np.asarray(c["x_std"], np.float32),
            np.asarray(c["g_mean"], np.float32),
            np.asarray(c["g_std"], np.float32),
        )

    @classmethod
    def fit(
        cls,
        feats: list[GraphFeatures],
        g: np.ndarray,
        y_log: np.ndarray,
        *,
        seed: int = 0,
        hidden: int = GNN_DEFAULTS["hidden"],
        layers: int = GNN_DEFAULTS["layers"],
        steps: int = GNN_DEFAULTS["steps"],
        lr: float = GNN_DEFAULTS["lr"],
    ) -> GNNModel:
        """Train on the WL quotients of fixed mini-batches (about ``BATCH_GRAPHS`` graphs each,
        cycled; ``steps`` optimizer steps in all); ``g`` (n, d) graph-level inputs."""
        import torch

        torch.manual_seed(seed)
        xs = np.concatenate([f.x for f in feats])
        config = {
            "node_dim": int(xs.shape[1]),
            "graph_dim": int(g.shape[1]),
            "hidden": hidden,
            "layers": layers,
            "x_mean": xs.mean(0).tolist(),
            "x_std": _safe_std(xs.std(0)).tolist(),
            "g_mean": np.nan_to_num(np.nanmean(g, 0)).tolist(),
            "g_std": _safe_std(np.nan_to_num(np.nanstd(g, 0))).tolist(),
        }
        model = cls(config)
        xm, xsd, gm, gsd = model._norm()
        gt = torch.from_numpy(_standardize(g, gm, gsd))
        y = torch.from_numpy(np.asarray(y_log, np.float32))
        n_b = max(1, round(len(feats) / BATCH_GRAPHS))
        parts = np.array_split(np.random.default_rng(seed).permutation(len(feats)), n_b)
        batches = [
            (_to_torch(build_quotient([feats[i] for i in p], layers), xm, xsd), torch.from_numpy(p))
            for p in parts
        ]
        m = model.module
        with torch.no_grad():
            m.log_scale.fill_(float(y.mean()) - float(np.log(np.mean([len(f.x) for f in feats]))))
        m.train()
        with torch_threads(TRAIN_THREADS):
            model._train_loop(batches, gt, y, steps, lr)
        m.eval()
        return model

    def _train_loop(self, batches: list[Any], gt: Any, y: Any, steps: int, lr: float) -> None:
        import torch

        m = self.module
        n_b = len(batches)
        opt = torch.optim.AdamW(m.parameters(), lr=lr, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
        for step in range(steps):
            q, idx = batches[step % n_b]
            opt.zero_grad()
            loss = torch.nn.functional.smooth_l1_loss(m(q, gt[idx]), y[idx], beta=0.05)
            loss.backward()
            opt.step()
            sched.step()

    def predict_log(
        self, feats: list[GraphFeatures], g: np.ndarray, quotient: Quotient | None = None
    ) -> np.ndarray:
        """Predicted log latency (log ms), shape (n,). ``quotient``: a prebuilt
        :func:`build_quotient` of ``feats`` with this model's layer count (reused across models)."""
        import torch

        if not feats:
            return np.zeros(0)
        xm, xsd, gm, gsd = self._norm()
        q = quotient or build_quotient(feats, self.config["layers"])
        gt = torch.from_numpy(_standardize(g, gm, gsd))
        with torch.no_grad():
            return self._forward_chunked(q, gt).double().numpy()

    def _forward_chunked(self, q: Quotient, gt: Any) -> Any:
        """The module's forward (the same function, same arithmetic) for inference, computed
        ``FORWARD_CHUNK`` colours at a time, so the per-colour activations of a chunk stay in
        cache instead of streaming tensors of all colours through memory; the last level's
        embeddings are reduced to contributions chunk by chunk and never stored."""
        import torch
        from torch.nn.functional import softplus

        m = self.module
        xm, xsd, _, _ = self._norm()
        h = torch.relu(m.inp(torch.from_numpy(_standardize(q.x0, xm, xsd))))
        last = len(q.levels) - 1
        for li, (lv, f, b) in enumerate(zip(q.levels, m.fwd, m.bwd, strict=False)):
            k_prev = h.shape[0]
            a_in, a_out = _csr(lv.in_edges, lv.n, k_prev), _csr(lv.out_edges, lv.n, k_prev)
            out = torch.empty((lv.n,) if li == last else (lv.n, h.shape[1]), dtype=h.dtype)
            sidx = torch.from_numpy(lv.self_idx)
            for a in range(0, lv.n, FORWARD_CHUNK):
                z = min(lv.n, a + FORWARD_CHUNK)
                hd = h[sidx[a:z]]
                u = f.nn(torch.sparse.mm(_csr_rows(a_in, a, z, k_prev), h) + (1 + f.eps) * hd)
                u = u + b.nn(torch.sparse.mm(_csr_rows(a_out, a, z, k_prev), h) + (1 + b.eps) * hd)
                hn = hd + torch.relu(u)
                out[a:z] = softplus(m.contrib(hn)).squeeze(-1) if li == last else hn
            h = out
        if last < 0:  # no message passing
            h = softplus(m.contrib(h)).squeeze(-1)
        return m.head(h, {"pool": torch.from_numpy(q.pool), "n_graphs": q.n_graphs}, gt)

    def state_dict(self) -> dict[str, Any]:
        return self.module.state_dict()
