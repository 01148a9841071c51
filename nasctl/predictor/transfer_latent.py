"""The second half of a few-shot transfer's ensemble (:mod:`nasctl.predictor.transfer`): an MLP over
an architecture encoding and a learned *device embedding*, trained on every source device's rows
at once (NASFLAT/HELP style), and the new device's embedding fit from its few rows.

    lat = fit_latent(X_src, Y_src, seed=0)   # X: (archs, inputs); Y: (archs, sources) log ms, NaN
    emb = fit_embedding(lat, X_new, y_new)   # the new device: embedding + affine map to log ms
    log_ms = latent_log(lat, emb, X_test)

The input is the genotype one-hot when the sources' rows share a space with a fixed token layout
(:class:`~nasctl.predictor.genotype_onehot.GenotypeEncoder`), else the standardized graph-level
features. Each source's log latencies are standardized before training (a device embedding
describes the *shape* of a device's latencies, not its speed); the new device's embedding starts
at the mean of the sources', is pulled toward it by a Gaussian prior (per coordinate, the sources'
spread), and its output is mapped to log ms by an affine fit on its rows; both fits use a Huber
loss (a few-shot fit is otherwise pulled by one row the sources cannot explain, such as a cell
whose output is cut off). Only the new device's rows handed in are read.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nasctl.arch.torch_threads import one_thread

EMB_DIM = 8  # device embedding width
HIDDEN = 128  # MLP width
EPOCHS = 30  # passes over the (architecture, source) pairs
BATCH = 512
LR = 3e-3
FIT_STEPS = 200  # Adam steps of the new device's embedding
FIT_LR = 0.05
PRIOR = 0.01  # weight of the embedding's Gaussian prior (per coordinate, mean square)
HUBER = 0.3  # Huber threshold of the new device's fit, in (robust) standard deviations of log ms
AFFINE_IRLS = 10  # reweighting rounds of the final affine map
WEIGHTS = (0.25, 0.5, 0.75)  # the ridge head's weight in the mean, chosen by leave-one-out


def _net(n_in: int, emb_dim: int, hidden: int) -> Any:
    import torch

    return torch.nn.Sequential(
        torch.nn.Linear(n_in + emb_dim, hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, hidden),
        torch.nn.ReLU(),
        torch.nn.Linear(hidden, 1),
    )


class Latent:
    """A trained latent model: the MLP's ``state`` (torch state_dict), the sources' embeddings
    ``emb`` (sources x EMB_DIM), and how its input comes from a source model's design matrix
    (graph features, then the genotype one-hot): ``cols`` (first, last) and, for graph
    features, their ``mean``/``std``."""

    def __init__(self, state: dict[str, Any], emb: np.ndarray, inp: dict[str, Any]) -> None:
        self.emb, self.inp = np.asarray(emb, dtype=np.float32), inp
        lo, hi = inp["cols"]
        self.net = _net(hi - lo, self.emb.shape[1], int(inp["hidden"]))
        self.net.load_state_dict(state)
        self.net.eval()

    def meta(self) -> dict[str, Any]:
        return {"emb": self.emb.tolist(), "input": self.inp}

    @classmethod
    def from_meta(cls, meta: dict[str, Any], state: dict[str, Any]) -> Latent:
        return cls(state, np.asarray(meta["emb"]), meta["input"])

    def inputs(self, X_design: np.ndarray) -> np.ndarray:
        return _inputs(X_design, self.inp)

    def forward(self, X: np.ndarray, e: Any) -> Any:
        """The MLP's (standardized) output on inputs ``X`` for embedding ``e`` (a torch tensor)."""
        import torch

        Xt = torch.as_tensor(np.asarray(X, dtype=np.float32))
        return self.net(torch.cat([Xt, e.expand(len(Xt), -1)], 1)).squeeze(1)


def input_spec(X_design: np.ndarray, n_graph: int) -> dict[str, Any]:
    """How the latent model reads a design matrix with ``n_graph`` graph-feature columns: the
    genotype one-hot after them when there is one, else the standardized graph features."""
    if X_design.shape[1] > n_graph:
        return {"cols": [n_graph, int(X_design.shape[1])], "hidden": HIDDEN}
    G = X_design[:, :n_graph].astype(np.float64)
    return {
        "cols": [0, n_graph],
        "hidden": HIDDEN,
        "mean": G.mean(0).tolist(),
        "std": (G.std(0) + 1e-6).tolist(),
    }


def _inputs(X_design: np.ndarray, inp: dict[str, Any]) -> np.ndarray:
    lo, hi = inp["cols"]
    X = np.nan_to_num(np.asarray(X_design[:, lo:hi], dtype=np.float64))  # another space: 0
    if "mean" in inp:
        X = (X - np.asarray(inp["mean"])) / np.asarray(inp["std"])
    return X.astype(np.float32)


def _fit_latent(X_design: np.ndarray, n_graph: int, Y: np.ndarray, *, seed: int = 0) -> Latent:
    """Train on architectures (design matrix ``X_design``, its first ``n_graph`` columns graph
    features) and their log ms on each source ``Y`` (n, sources; NaN where a source did not
    measure that architecture)."""
    import torch

    inp = input_spec(X_design, n_graph)
    X = _inputs(X_design, inp)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    mu, sd = np.nanmean(Y, 0), np.nanstd(Y, 0) + 1e-9
    Z = (Y - mu) / sd
    ai, di = np.nonzero(~np.isnan(Z))
    net = _net(X.shape[1], EMB_DIM, HIDDEN)
    emb = torch.nn.Parameter(0.1 * torch.randn(Y.shape[1], EMB_DIM))
    opt = torch.optim.Adam([*net.parameters(), emb], lr=LR)
    Xt = torch.as_tensor(X)
    Zt = torch.as_tensor(Z[ai, di], dtype=torch.float32)
    ait, dit = torch.as_tensor(ai), torch.as_tensor(di)
    for _ in range(EPOCHS):
        perm = torch.as_tensor(rng.permutation(len(ai)))
        for b in range(0, len(perm), BATCH):
            p = perm[b : b + BATCH]
            out = net(torch.cat([Xt[ait[p]], emb[dit[p]]], 1)).squeeze(1)
            loss = ((out - Zt[p]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
    return Latent(net.state_dict(), emb.detach().numpy(), inp)


def _robust_sd(y: np.ndarray) -> float:
    """1.4826 x the median absolute deviation (the standard deviation of Gaussian rows, not
    inflated by one far-off row); the plain standard deviation when most rows tie."""
    mad = 1.4826 * float(np.median(np.abs(y - np.median(y))))
    return mad if mad > 1e-3 else float(np.std(y)) + 1e-9


def _huber_weights(r: Any, delta: float) -> Any:
    """IRLS weights of the Huber loss (1 inside ``delta``, ``delta / |r|`` outside)."""
    import torch

    return torch.clamp(delta / (r.detach().abs() + 1e-9), max=1.0)


def _fit_embedding(lat: Latent, X_design: np.ndarray, y_log: np.ndarray) -> dict[str, Any]:
    """The new device's embedding ``e`` and affine map (``a``, ``b``) to log ms from its rows
    (design matrix ``X_design``) and log latencies ``y_log``: Huber loss (threshold ``HUBER``
    robust standard deviations of ``y_log``; iteratively reweighted least squares for the affine
    map) plus the Gaussian prior on ``e``. The Huber loss keeps a row the sources cannot explain
    (a cell whose output is cut off runs in ~0.01 ms on some devices) from pulling the fit."""
    import torch

    X = lat.inputs(X_design)
    E = torch.as_tensor(lat.emb)
    m = E.mean(0)
    c = E.std(0) + 1e-3 if len(E) > 1 else torch.ones(E.shape[1])
    e = torch.nn.Parameter(m.clone())
    opt = torch.optim.Adam([e], lr=FIT_LR)
    mu, sd = float(np.median(y_log)), _robust_sd(y_log)
    yt = torch.as_tensor((y_log - mu) / sd, dtype=torch.float32).unsqueeze(1)
    for p in lat.net.parameters():
        p.requires_grad_(False)
    w = torch.ones_like(yt)
    for _ in range(FIT_STEPS):
        out = lat.forward(X, e)
        A = torch.stack([out, torch.ones_like(out)], 1)
        sol = torch.linalg.lstsq(A * w.sqrt(), yt * w.sqrt()).solution
        r = (A @ sol) - yt
        loss = (w * r.pow(2)).mean() + PRIOR * (((e - m) / c) ** 2).mean()
        w = _huber_weights(r, HUBER)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        out = lat.forward(X, e)
        A = torch.stack([out, torch.ones_like(out)], 1)
        w = torch.ones_like(yt)
        for _ in range(AFFINE_IRLS):  # the affine map, Huber too
            sol = torch.linalg.lstsq(A * w.sqrt(), yt * w.sqrt()).solution
            w = _huber_weights((A @ sol) - yt, HUBER)
    a, b = sol.numpy().ravel()
    return {"e": e.detach().numpy().tolist(), "a": float(a) * sd, "b": float(b) * sd + mu}


def _latent_log(lat: Latent, fit: dict[str, Any], X_design: np.ndarray) -> np.ndarray:
    """Log ms on the new device of rows (design matrix ``X_design``; ``fit`` from
    :func:`fit_embedding`)."""
    import torch

    with torch.no_grad():
        e = torch.as_tensor(np.asarray(fit["e"], dtype=np.float32))
        out = lat.forward(lat.inputs(X_design), e).numpy()
    return out.astype(np.float64) * fit["a"] + fit["b"]


def fit_latent(X_design: np.ndarray, n_graph: int, Y: np.ndarray, *, seed: int = 0) -> Latent:
    """Train on architectures (design matrix ``X_design``, its first ``n_graph`` columns graph
    features) and their log ms on each source ``Y`` (n, sources; NaN where a source did not
    measure that architecture)."""
    with one_thread():
        return _fit_latent(X_design, n_graph, Y, seed=seed)


def fit_embedding(lat: Latent, X_design: np.ndarray, y_log: np.ndarray) -> dict[str, Any]:
    """The new device's embedding ``e`` and affine map (``a``, ``b``) to log ms from its rows
    (design matrix ``X_design``) and log latencies ``y_log`` (Huber loss plus the Gaussian
    prior on ``e``)."""
    with one_thread():
        return _fit_embedding(lat, X_design, y_log)


def latent_log(lat: Latent, fit: dict[str, Any], X_design: np.ndarray) -> np.ndarray:
    """Log ms on the new device of rows (design matrix ``X_design``; ``fit`` from
    :func:`fit_embedding`)."""
    with one_thread():
        return _latent_log(lat, fit, X_design)


def ridge_weight(
    lat: Latent, X_design: np.ndarray, y_log: np.ndarray, ridge_loo: np.ndarray
) -> float:
    """The ridge head's weight in the transfer's mean, of ``WEIGHTS``: the one whose mixture has
    the least median absolute leave-one-out error on the new device's rows (``ridge_loo``: the
    ridge head's leave-one-out residuals, prediction - truth; the latent model's are refit here,
    one embedding per left-out row). The median, not the mean: one far-off row must not decide."""
    n = len(y_log)
    if n < 4:
        return 0.5
    lat_loo = np.empty(n)
    for i in range(n):
        keep = np.arange(n) != i
        fit = fit_embedding(lat, X_design[keep], y_log[keep])
        lat_loo[i] = latent_log(lat, fit, X_design[i : i + 1])[0] - y_log[i]
    errs = [float(np.median(np.abs(w * ridge_loo + (1 - w) * lat_loo))) for w in WEIGHTS]
    return float(WEIGHTS[int(np.argmin(errs))])
