"""FBNet space (Wu et al., CVPR 2019) as benchmarked by HW-NAS-Bench and HELP.

Genotype: the 22 searchable layers' op names joined by ``-``, exactly as in
``shared/data/fbnet/latency_ms.csv``, e.g.
``k5_e6-skip-k3_e1_g2-skip-k5_e1-...-k5_e1_g2`` (22 names). Ops:

* ``k{3,5}_e{1,3,6}``: inverted-residual block: conv1x1 (expansion e) -BN -ReLU -depthwise kxk
  (stride) -BN -ReLU -conv1x1 -BN, plus a residual add when stride is 1 and channels match.
* ``k{3,5}_e1_g2``: the same with both 1x1 convs grouped (2 groups) and a channel shuffle
  (reshape -transpose -reshape) after the first one.
* ``skip``: identity, or conv1x1 (stride) -BN -ReLU where the layer changes shape.

Macro structure (HW-NAS-Bench ``FBNet_Infer``, the network the public tables were measured on):
stem conv3x3 (16 ch) -BN -ReLU; stages of 1, 4, 4, 4, 4, 4, 1 layers with 16, 24, 32, 64, 112,
184, 352 channels; head conv1x1 -BN -ReLU -global avgpool -flatten -linear.

* ``dataset="cifar100"`` (default; HW-NAS-Bench measured FBNet on CIFAR-100): input 32x32,
  stem stride 1, stage strides 1, 1, 2, 2, 1, 2, 1, head 1504 channels, 100 classes.
* ``dataset="imagenet"``: input 224x224, stem stride 2, stage strides 1, 2, 2, 2, 1, 2, 1, head
  1984 channels, 1000 classes (FBNet paper).

Node ids: ``/stem/conv``, ``/s2/b1/pw``, ``/s2/b1/shuffle/transpose``, ``/s2/b1/dw``,
``/s2/b1/pwl``, ``/s2/b1/add``, ``/s3/b1/skip/conv``, ``/head/fc``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nasctl.arch.graph import Graph, GraphBuilder, Shape
from nasctl.errors import SpaceError
from nasctl.spaces.base import SearchSpace, other_choice, register_space

if TYPE_CHECKING:
    from nasctl.arch.arrays import GraphArrays
    from nasctl.spaces.templates import Segment

OPS: tuple[str, ...] = (
    "k3_e1",
    "k3_e1_g2",
    "k3_e3",
    "k3_e6",
    "k5_e1",
    "k5_e1_g2",
    "k5_e3",
    "k5_e6",
    "skip",
)
LAYERS_PER_STAGE: tuple[int, ...] = (1, 4, 4, 4, 4, 4, 1)
STAGE_CHANNELS: tuple[int, ...] = (16, 24, 32, 64, 112, 184, 352)
NUM_LAYERS = sum(LAYERS_PER_STAGE)  # 22
STEM_CHANNELS = 16


@dataclass(frozen=True)
class _Setting:
    resolution: int
    num_classes: int
    stem_stride: int
    head_channels: int
    strides: tuple[int, ...]


DATASETS: dict[str, _Setting] = {
    "cifar100": _Setting(32, 100, 1, 1504, (1, 1, 2, 2, 1, 2, 1)),
    "imagenet": _Setting(224, 1000, 2, 1984, (1, 2, 2, 2, 1, 2, 1)),
}


def _parse(genotype: str) -> tuple[str, ...]:
    if not isinstance(genotype, str):
        raise SpaceError(f"fbnet genotype must be a string; got {type(genotype).__name__}")
    ops = tuple(genotype.split("-"))
    if len(ops) != NUM_LAYERS:
        raise SpaceError(
            f"fbnet genotype has {len(ops)} layers; expected {NUM_LAYERS} op names joined by '-'"
        )
    for i, op in enumerate(ops, start=1):
        if op not in OPS:
            raise SpaceError(
                f"fbnet genotype layer {i} op {op!r} unknown; expected one of {', '.join(OPS)}"
            )
    return ops


@register_space
class FBNetSpace(SearchSpace):
    """FBNet's 22-layer x 9-op space (genotypes as in the HW-NAS-Bench/HELP tables)."""

    name = "fbnet"
    description = "FBNet: 22 layers x 9 ops (k3/k5, e1/e3/e6, g2, skip), CIFAR-100 32x32"

    #: proxy-training size (estimators that train each candidate on a CPU, ``train:*``): input
    #: resolution (px) and channel scale; the 22 layers' ops and strides are kept.
    PROXY_RESOLUTION = 16
    PROXY_CHANNEL_SCALE = 0.5

    def __init__(
        self,
        dataset: str = "cifar100",
        resolution: int | None = None,
        num_classes: int | None = None,
        channel_scale: float = 1.0,
    ) -> None:
        """``channel_scale`` multiplies every channel count (for :meth:`proxy_space`)."""
        if dataset not in DATASETS:
            raise SpaceError(f"fbnet dataset {dataset!r} unknown; expected one of {list(DATASETS)}")
        cfg = DATASETS[dataset]
        self.dataset = dataset
        self.resolution = int(resolution or cfg.resolution)
        self.num_classes = int(num_classes or cfg.num_classes)
        self.stem_stride = cfg.stem_stride
        self.channel_scale = channel_scale
        self.head_channels = _scaled(cfg.head_channels, channel_scale)
        self.strides = cfg.strides
        if not 16 <= self.resolution <= 512:
            raise SpaceError(f"fbnet resolution {self.resolution} out of range; expected 16..512")

    def proxy_space(self, num_classes: int) -> FBNetSpace:
        return FBNetSpace(
            self.dataset,
            resolution=self.PROXY_RESOLUTION,
            num_classes=num_classes,
            channel_scale=self.PROXY_CHANNEL_SCALE,
        )

    # -- genotypes ---------------------------------------------------------------------------
    def parse(self, genotype: str) -> tuple[str, ...]:
        return _parse(genotype)

    def format(self, value: tuple[str, ...] | list[str]) -> str:
        ops = tuple(value)
        if len(ops) != NUM_LAYERS or any(o not in OPS for o in ops):
            raise SpaceError(f"fbnet: expected {NUM_LAYERS} ops from {', '.join(OPS)}")
        return "-".join(ops)

    def sample(self, rng: random.Random) -> str:
        return "-".join(rng.choice(OPS) for _ in range(NUM_LAYERS))

    def mutate(self, genotype: str, rng: random.Random) -> str:
        ops = list(_parse(genotype))
        k = rng.randrange(NUM_LAYERS)
        ops[k] = other_choice(rng, OPS, ops[k])
        return "-".join(ops)

    def crossover(self, a: str, b: str, rng: random.Random) -> str:
        pa, pb = _parse(a), _parse(b)
        return "-".join(x if rng.random() < 0.5 else y for x, y in zip(pa, pb, strict=True))

    def size(self) -> int:
        return len(OPS) ** NUM_LAYERS

    # -- graph -------------------------------------------------------------------------------
    def graph_arrays(self, genotypes: Sequence[str]) -> GraphArrays:
        """As :meth:`SearchSpace.graph_arrays`, from layers built once per (position, op)."""
        rebuilt = type(self).to_graph is not FBNetSpace.to_graph  # a subclass's other graphs
        if rebuilt or self.channel_scale != 1.0:
            return super().graph_arrays(genotypes)
        from nasctl.spaces.templates import built_graph_arrays, space_store

        config = (self.dataset, self.resolution, self.num_classes, self.stem_stride,
                  self.head_channels, self.strides)  # fmt: skip
        store = space_store(self, config, max_structs=1_000, max_rows=20_000)
        layers = [  # (channels, stride) per layer position
            (c, s if j == 1 else 1)
            for n, c, s in zip(LAYERS_PER_STAGE, STAGE_CHANNELS, self.strides, strict=True)
            for j in range(1, n + 1)
        ]
        first: list[Segment] = [("stem", stem, (self.stem_stride,))]
        last: list[Segment] = [("head", head, (self.head_channels, self.num_classes))]
        shape = (1, 3, self.resolution, self.resolution)

        def plan(genotype: str) -> tuple[Shape, list[Segment]]:
            # segments: layer position and op as key
            ops = _parse(genotype)
            mid = [((k, op), _layer, (op, *layers[k])) for k, op in enumerate(ops)]
            return shape, first + mid + last

        return built_graph_arrays(store, genotypes, plan)

    def to_graph(self, genotype: str) -> Graph:
        ops = _parse(genotype)
        r = self.resolution
        b = GraphBuilder(f"fbnet-{self.dataset}", (1, 3, r, r))
        scale = self.channel_scale
        x = stem(b, b.input, self.stem_stride, _scaled(STEM_CHANNELS, scale))
        k = 0
        for i, (n, c, s) in enumerate(
            zip(LAYERS_PER_STAGE, STAGE_CHANNELS, self.strides, strict=True), start=1
        ):
            c = _scaled(c, scale)
            for j in range(1, n + 1):
                x = fbnet_layer(b, x, ops[k], c, s if j == 1 else 1, prefix=f"/s{i}/b{j}")
                k += 1
        x = head(b, x, self.head_channels, self.num_classes)
        meta = {"space": self.name, "genotype": "-".join(ops), "resolution": r}
        return b.build([x], meta=meta)


def _scaled(channels: int, scale: float) -> int:
    """Channels times ``scale``, even (grouped g2 layers) and >= 4."""
    return channels if scale == 1.0 else max(4, 2 * int(round(channels * scale / 2)))


def stem(b: GraphBuilder, x: str, stride: int, channels: int = STEM_CHANNELS) -> str:
    """conv3x3 (16 ch) -BN -ReLU."""
    x = b.conv(x, channels, 3, stride=stride, id="/stem/conv")
    x = b.batchnorm(x, id="/stem/bn")
    return b.act(x, "relu", id="/stem/act")


def head(b: GraphBuilder, x: str, channels: int, num_classes: int) -> str:
    """conv1x1 -BN -ReLU -global avgpool -flatten -linear."""
    x = b.conv(x, channels, 1, id="/head/conv")
    x = b.batchnorm(x, id="/head/bn")
    x = b.act(x, "relu", id="/head/act")
    x = b.global_pool(x, id="/head/pool")
    x = b.flatten(x, id="/head/flatten")
    return b.linear(x, num_classes, id="/head/fc")


def _layer(b: GraphBuilder, x: str, op: str, cout: int, stride: int) -> str:
    return fbnet_layer(b, x, op, cout, stride, prefix="/b")


def fbnet_layer(b: GraphBuilder, x: str, op: str, cout: int, stride: int, *, prefix: str) -> str:
    """One searchable FBNet layer (see module docstring)."""
    cin = b.shape(x)[1]
    if op == "skip":
        if stride == 1 and cin == cout:
            return x
        y = b.conv(x, cout, 1, stride=stride, id=f"{prefix}/skip/conv")
        y = b.batchnorm(y, id=f"{prefix}/skip/bn")
        return b.act(y, "relu", id=f"{prefix}/skip/act")
    kernel, expansion = int(op[1]), int(op.split("_")[1][1:])
    groups = 2 if op.endswith("_g2") else 1
    mid = cin * expansion
    y = b.conv(x, mid, 1, groups=groups, id=f"{prefix}/pw")
    y = b.batchnorm(y, id=f"{prefix}/pw_bn")
    y = b.act(y, "relu", id=f"{prefix}/pw_act")
    if groups > 1:
        y = channel_shuffle(b, y, groups, prefix=f"{prefix}/shuffle")
    y = b.conv(y, mid, kernel, stride=stride, groups=mid, id=f"{prefix}/dw")
    y = b.batchnorm(y, id=f"{prefix}/dw_bn")
    y = b.act(y, "relu", id=f"{prefix}/dw_act")
    y = b.conv(y, cout, 1, groups=groups, id=f"{prefix}/pwl")
    y = b.batchnorm(y, id=f"{prefix}/pwl_bn")
    if stride == 1 and cin == cout:
        y = b.add([x, y], id=f"{prefix}/add")
    return y


def channel_shuffle(b: GraphBuilder, x: str, groups: int, *, prefix: str) -> str:
    """ShuffleNet channel shuffle: (N,C,H,W) -> (N,g,C/g,H,W) -> swap 1,2 -> (N,C,H,W)."""
    n, c, h, w = b.shape(x)
    y = b.reshape(x, (n, groups, c // groups, h, w), id=f"{prefix}/reshape1")
    y = b.transpose(y, [0, 2, 1, 3, 4], id=f"{prefix}/transpose")
    return b.reshape(y, (n, c, h, w), id=f"{prefix}/reshape2")
