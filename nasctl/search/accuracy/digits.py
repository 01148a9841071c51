"""``train:digits``: a short real training run on scikit-learn's bundled digits images.

The 1,797 8x8 grey digits (no download) are resized to the network's input resolution and
copied to its input channels. The network is the candidate itself (built with
:func:`nasctl.arch.torch_module.to_torch`); spaces whose constructor takes ``resolution`` and
``num_classes`` (nb201) are rebuilt at :attr:`DigitsEstimator.resolution` px with 10 classes,
others keep their graph and get a new 10-way linear head on their output. Training: SGD with
momentum for ``epochs`` passes over ``train_size`` images (a fixed number of steps, so the score
does not depend on machine load; ``max_seconds`` is only a safety stop),
then the score is the accuracy (%) on ``val_size`` held-out images. Runs torch single-threaded.
Fixed seeds: a genotype always gets the same score on the same machine.
"""

from __future__ import annotations

import functools
import inspect
import time

from nasctl.arch.graph import Graph
from nasctl.errors import SearchError
from nasctl.search.accuracy.base import AccuracyEstimator, register_estimator
from nasctl.spaces.base import SearchSpace


@functools.lru_cache(maxsize=4)
def _digits(resolution: int, channels: int):  # -> (x, y) tensors
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False)
    x = (x - 0.5) / 0.5
    x = x.repeat(1, channels, 1, 1)
    y = torch.tensor(d.target, dtype=torch.long)
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(y), generator=g)
    return x[perm], y[perm]


class DigitsEstimator(AccuracyEstimator):
    """Validation accuracy (%) after a few seconds of training on digits."""

    unit = "digits validation accuracy (%)"
    #: smaller macro settings used when the space's constructor takes them (nb201: 8 channels,
    #: one cell per stage): the cell under test is the same, the run takes about a second.
    SMALL = {"channels": 8, "cells_per_stage": 1}
    needs_graph = False

    def __init__(
        self,
        arg: str = "digits",
        *,
        resolution: int = 8,
        epochs: int = 3,
        train_size: int = 768,
        val_size: int = 384,
        batch: int = 64,
        max_seconds: float = 60.0,
        seed: int = 0,
    ) -> None:
        if arg != "digits":
            raise SearchError(f"unknown training estimator train:{arg}; expected train:digits")
        self.name = "train:digits"
        self.resolution, self.epochs, self.batch = resolution, epochs, batch
        self.train_size, self.val_size = train_size, val_size
        self.max_seconds, self.seed = max_seconds, seed

    def _graph(self, genotype: str, space: SearchSpace) -> tuple[Graph, bool]:
        """(graph, has_10_class_head)."""
        params = inspect.signature(type(space)).parameters
        if "resolution" in params and "num_classes" in params:
            kw = {k: v for k, v in self.SMALL.items() if k in params}
            small = type(space)(resolution=self.resolution, num_classes=10, **kw)  # type: ignore[call-arg]
            return small.to_graph(genotype), True
        return space.to_graph(genotype), False

    def estimate(self, genotype: str, graph: Graph | None, space: SearchSpace) -> float:
        import torch
        from torch import nn

        from nasctl.arch.torch_module import to_torch

        torch.set_num_threads(1)  # small nets: threads only add overhead (and 2 shared cores)
        g, ten_way = self._graph(genotype, space)
        shape = g.input_shape
        if len(shape) != 4:
            raise SearchError(f"train:digits needs an image input (N,C,H,W); got {shape}")
        x, y = _digits(int(shape[2]), int(shape[1]))
        torch.manual_seed(self.seed)
        body = to_torch(g)
        out_dim = (
            int(g.node(g.outputs[0]).out_shape[-1])
            if g.outputs[0] in {n.id for n in g.nodes}
            else 0
        )
        net: nn.Module = body if ten_way else nn.Sequential(body, nn.Flatten(), nn.LazyLinear(10))
        if not ten_way and out_dim <= 0:
            raise SearchError(f"train:digits: cannot find the output width of {g.name}")
        xt, yt = x[: self.train_size], y[: self.train_size]
        xv, yv = (
            x[self.train_size : self.train_size + self.val_size],
            y[self.train_size : self.train_size + self.val_size],
        )
        net(xt[:2])  # materialize lazy layers before the optimizer sees the parameters
        opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
        loss_fn = nn.CrossEntropyLoss()
        t0 = time.perf_counter()
        net.train()
        for _ in range(self.epochs):
            if time.perf_counter() - t0 > self.max_seconds:
                break
            perm = torch.randperm(len(yt))
            for i in range(0, len(yt), self.batch):
                idx = perm[i : i + self.batch]
                opt.zero_grad()
                loss = loss_fn(net(xt[idx]), yt[idx])
                loss.backward()
                opt.step()
                if time.perf_counter() - t0 > self.max_seconds:
                    break
        net.eval()
        with torch.no_grad():
            pred = net(xv).argmax(dim=1)
        return float((pred == yv).float().mean()) * 100.0


register_estimator("train")(DigitsEstimator)
