"""Training-free accuracy proxies computed on CPU: ``proxy:synflow`` and ``proxy:naswot``.

Both build the network with :func:`nasctl.arch.torch_module.to_torch` at the graph's own input
shape (batch replaced by the proxy's batch) with fixed-seed random weights, so a genotype always
gets the same score.

* synflow (Tanaka et al. 2020): ``log10(sum |theta * dR/dtheta|)`` with all weights made positive
  and an all-ones input, in float64; scale-free, no data.
* naswot (Mellor et al. 2021): ``log|det K|`` of the Hamming-similarity kernel of the binary ReLU
  codes of a batch of random inputs.
"""

from __future__ import annotations

import math

from nasctl.arch.graph import Graph
from nasctl.errors import SearchError
from nasctl.search.accuracy.base import AccuracyEstimator, register_estimator
from nasctl.spaces.base import SearchSpace


def _module(graph: Graph, seed: int):  # -> GraphModule
    import torch

    from nasctl.arch.torch_module import to_torch

    torch.set_num_threads(1)  # one candidate at a time: threads only add overhead
    torch.manual_seed(seed)
    return to_torch(graph)


def synflow(graph: Graph, seed: int = 0) -> float:
    """SynFlow score (log10) of ``graph``."""
    import torch

    net = _module(graph, seed).double()
    net.eval()  # BN uses its (initial) running stats: a linear map, as the method assumes
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    shape = (1, *graph.input_shape[1:])
    out = net(torch.ones(shape, dtype=torch.float64))
    out = out[0] if isinstance(out, tuple) else out
    torch.sum(out).backward()
    total = sum(
        float((p.detach() * p.grad).abs().sum()) for p in net.parameters() if p.grad is not None
    )
    if not total > 0 or not math.isfinite(total):
        raise SearchError(f"synflow is {total} for {graph.name}: no signal reaches the output")
    return math.log10(total)


def naswot(graph: Graph, seed: int = 0, batch: int = 16) -> float:
    """NASWOT score (log-determinant of the ReLU-code kernel) of ``graph``."""
    import numpy as np
    import torch

    net = _module(graph, seed)
    net.train()
    k = torch.zeros((batch, batch), dtype=torch.float64)

    def hook(_m, _i, out):  # noqa: ANN001 - torch hook signature
        # the kernel is summed layer by layer: memory O(batch^2), not O(batch x all ReLU units)
        c = (out.detach().reshape(out.shape[0], -1) > 0).double()
        k.add_(c @ c.T).add_((1 - c) @ (1 - c).T)

    relu_nodes = [n.id for n in graph.nodes if n.op in ("relu", "relu6")]
    if not relu_nodes:
        raise SearchError(f"naswot needs ReLU activations; {graph.name} has none")
    for nid in relu_nodes:
        net.layers[net.node_modules[nid]].register_forward_hook(hook)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((batch, *graph.input_shape[1:]), generator=g)
    with torch.no_grad():
        net(x)
    sign, logdet = np.linalg.slogdet(k.numpy())
    if sign == 0:
        raise SearchError(f"naswot kernel is singular for {graph.name}")
    return float(logdet)


class ProxyEstimator(AccuracyEstimator):
    """A training-free proxy score (higher is better; not an accuracy)."""

    PROXIES = {"synflow": synflow, "naswot": naswot}

    def __init__(self, proxy: str) -> None:
        if proxy not in self.PROXIES:
            raise SearchError(f"unknown proxy {proxy!r}; expected one of {', '.join(self.PROXIES)}")
        self.name = f"proxy:{proxy}"
        self.unit = f"{proxy} score"
        self.fn = self.PROXIES[proxy]

    def estimate(self, genotype: str, graph: Graph | None, space: SearchSpace) -> float:
        if graph is None:
            graph = space.to_graph(genotype)
        return float(self.fn(graph))


register_estimator("proxy")(ProxyEstimator)
