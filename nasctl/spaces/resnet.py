"""ResNet space: basic or bottleneck residual blocks, depth and width per stage, input resolution.

Genotype::

    r224-basic|64x2|128x2|256x2|512x2            (ResNet-18: 1.81 GMACs at 224x224)
    r224-bottleneck|64x3|128x4|256x6|512x3       (ResNet-50)

* ``r<pixels>``: input resolution, 96..224 in steps of 16 (square, RGB).
* ``basic`` | ``bottleneck``: the block type of the whole network.
* four stages ``<width>x<depth>``: width from the stage's choices (base 64/128/256/512 times
  0.5, 0.75, 1, 1.25, 1.5), depth 1..6. For bottleneck blocks the width is the inner width and
  the block outputs 4x as many channels (as in torchvision).

Macro structure (torchvision ResNet): stem conv7x7 s2 (64 ch) -BN -ReLU -maxpool 3x3 s2; stages
with strides 1, 2, 2, 2 (first block strides; bottleneck strides in its 3x3 conv, ResNet v1.5);
head global avgpool -flatten -linear(``num_classes``). Shortcut: identity, or conv1x1 (stride)
-BN when the shape changes.

Node ids: ``/stem/conv``, ``/s2/b1/conv1``, ``/s2/b1/down/conv``, ``/s2/b1/add``, ``/head/fc``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from nasctl.arch.graph import Graph, GraphBuilder, Shape
from nasctl.errors import SpaceError
from nasctl.spaces.base import ImageSpace, other_choice, register_space

if TYPE_CHECKING:
    from nasctl.arch.arrays import GraphArrays
    from nasctl.spaces.templates import Segment

BLOCKS: tuple[str, ...] = ("basic", "bottleneck")
BASE_WIDTHS: tuple[int, ...] = (64, 128, 256, 512)
WIDTH_MULTS: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25, 1.5)
STAGE_WIDTHS: tuple[tuple[int, ...], ...] = tuple(
    tuple(int(w * m) for m in WIDTH_MULTS) for w in BASE_WIDTHS
)
STRIDES: tuple[int, ...] = (1, 2, 2, 2)
DEPTHS: tuple[int, ...] = (1, 2, 3, 4, 5, 6)
STEM_CHANNELS = 64
RESOLUTIONS: tuple[int, ...] = tuple(range(96, 225, 16))


@dataclass(frozen=True)
class ResNetGenotype:
    resolution: int
    block: str
    stages: tuple[tuple[int, int], ...]  # (width, depth) per stage


@register_space
class ResNetSpace(ImageSpace):
    """ResNets with per-stage width and depth."""

    name = "resnet"
    description = (
        "ResNet: basic or bottleneck blocks, 4 stages of width 0.5-1.5x and depth 1-6, "
        "resolution 96-224"
    )

    #: proxy-training size (estimators that train each candidate on a CPU, ``train:*``): input
    #: resolution (px) and channel scale; block type, depths and relative widths are kept.
    PROXY_RESOLUTION = 32
    PROXY_CHANNEL_SCALE = 0.125
    #: compute bound per genotype (see :class:`ImageSpace`): only the heaviest ~1 % of the space
    #: exceed it; their proxy is rebuilt narrower
    PROXY_MAX_MACS = 3.0e6
    RESOLUTIONS = RESOLUTIONS

    # -- genotypes ---------------------------------------------------------------------------
    def parse(self, genotype: str) -> ResNetGenotype:
        if not isinstance(genotype, str):
            raise SpaceError(f"resnet genotype must be a string; got {type(genotype).__name__}")
        sections = genotype.split("|")
        if len(sections) != 1 + len(BASE_WIDTHS):
            raise SpaceError(
                f"resnet genotype has {len(sections)} '|' sections; expected 5, "
                "e.g. 'r224-basic|64x2|128x2|256x2|512x2'"
            )
        m = re.fullmatch(r"r(\d+)-(\w+)", sections[0])
        if not m:
            raise SpaceError(
                f"resnet genotype starts with {sections[0]!r}; expected 'r<res>-<basic|bottleneck>'"
            )
        res, block = int(m.group(1)), m.group(2)
        if res not in self.resolutions or m.group(1) != str(res):
            lo, hi = self.resolutions[0], self.resolutions[-1]
            raise SpaceError(
                f"resnet resolution {m.group(1)} out of range; expected {lo}..{hi} in steps of 16"
            )
        if block not in BLOCKS:
            raise SpaceError(f"resnet block {block!r} unknown; expected one of {', '.join(BLOCKS)}")
        stages = tuple(_parse_stage(i, s) for i, s in enumerate(sections[1:]))
        return ResNetGenotype(res, block, stages)

    def format(self, value: ResNetGenotype) -> str:
        stages = [f"{w}x{d}" for w, d in value.stages]
        return "|".join([f"r{value.resolution}-{value.block}", *stages])

    def sample(self, rng: random.Random) -> str:
        stages = tuple((rng.choice(ws), rng.choice(DEPTHS)) for ws in STAGE_WIDTHS)
        return self.format(ResNetGenotype(rng.choice(self.resolutions), rng.choice(BLOCKS), stages))

    def mutate(self, genotype: str, rng: random.Random) -> str:
        g = self.parse(genotype)
        what = rng.choice(("resolution", "block", "width", "width", "depth", "depth"))
        if what == "resolution" and len(self.resolutions) > 1:
            return self.format(
                replace(g, resolution=other_choice(rng, self.resolutions, g.resolution))
            )
        if what == "block":
            return self.format(replace(g, block=other_choice(rng, BLOCKS, g.block)))
        stages = list(g.stages)
        i = rng.randrange(len(stages))
        w, d = stages[i]
        if what == "width":
            stages[i] = (other_choice(rng, STAGE_WIDTHS[i], w), d)
        else:
            stages[i] = (w, other_choice(rng, DEPTHS, d))
        return self.format(replace(g, stages=tuple(stages)))

    def crossover(self, a: str, b: str, rng: random.Random) -> str:
        ga, gb = self.parse(a), self.parse(b)
        pick = lambda x, y: x if rng.random() < 0.5 else y  # noqa: E731
        stages = tuple(pick(x, y) for x, y in zip(ga.stages, gb.stages, strict=True))
        return self.format(
            ResNetGenotype(pick(ga.resolution, gb.resolution), pick(ga.block, gb.block), stages)
        )

    def size(self) -> int:
        per_stage = len(WIDTH_MULTS) * len(DEPTHS)
        return len(self.resolutions) * len(BLOCKS) * per_stage ** len(BASE_WIDTHS)

    # -- graph -------------------------------------------------------------------------------
    def graph_arrays(self, genotypes: Sequence[str]) -> GraphArrays:
        """As :meth:`SearchSpace.graph_arrays`, from blocks built once per shape."""
        rebuilt = type(self).to_graph is not ResNetSpace.to_graph  # a subclass's other graphs
        if rebuilt or self.input_resolution is not None or self.channel_scale != 1.0:
            return super().graph_arrays(genotypes)
        from nasctl.spaces.templates import built_graph_arrays, space_store

        store = space_store(
            self, (self.num_classes, self.resolutions), max_structs=20_000, max_rows=200_000
        )
        return built_graph_arrays(store, genotypes, self._planner())

    def _planner(self) -> Callable[[str], tuple[Shape, list[Segment]]]:
        """genotype -> (input shape, segments): a key per segment holds all its rows depend on
        (resolution, block type, stage, widths). Canonical strings are looked up (any other is
        parsed, which raises the parser's error)."""
        heads = {f"r{r}-{blk}": (r, blk) for r in self.resolutions for blk in BLOCKS}
        stage_tokens = [{f"{w}x{d}": (w, d) for w in ws for d in DEPTHS} for ws in STAGE_WIDTHS]
        runs: dict[tuple[object, ...], list[Segment]] = {}

        def stage(r: int, blk: str, i: int, width: int, depth: int, prev: int) -> list[Segment]:
            key = (r, blk, i, width, depth, prev)
            run = runs.get(key)
            if run is None:
                first: Segment = ((r, blk, i, width, prev), _block, (blk, width, STRIDES[i - 1]))
                later: Segment = ((r, blk, i, width, -1), _block, (blk, width, 1))
                run = runs[key] = [first] + [later] * (depth - 1)
            return run

        def plan(genotype: str) -> tuple[Shape, list[Segment]]:
            try:
                sec = genotype.split("|")
                r, blk = heads[sec[0]]
                stages = [tok[t] for tok, t in zip(stage_tokens, sec[1:], strict=True)]
            except (KeyError, ValueError, AttributeError):
                self.parse(genotype)  # raises the clear error
                raise SpaceError(f"resnet genotype {genotype!r} is not canonical") from None
            segs: list[Segment] = [(("stem", r), stem, ())]
            prev = 0
            for i, (width, depth) in enumerate(stages, start=1):
                segs += stage(r, blk, i, width, depth, prev)
                prev = width
            segs.append((("head", r, blk, prev), head, (self.num_classes,)))
            return (1, 3, r, r), segs

        return plan

    def to_graph(self, genotype: str) -> Graph:
        g = self.parse(genotype)
        r, scale = self.input_resolution or g.resolution, self.channel_scale
        b = GraphBuilder(f"resnet-r{r}-{g.block}", (1, 3, r, r))
        x = stem(b, b.input, _scaled(STEM_CHANNELS, scale))
        block = basic_block if g.block == "basic" else bottleneck_block
        for i, ((width, depth), stride) in enumerate(zip(g.stages, STRIDES, strict=True), start=1):
            for j in range(1, depth + 1):
                w = _scaled(width, scale)
                x = block(b, x, w, stride if j == 1 else 1, prefix=f"/s{i}/b{j}")
        x = head(b, x, self.num_classes)
        meta = {"space": self.name, "genotype": self.format(g), "resolution": r}
        return b.build([x], meta=meta)


def _parse_stage(i: int, text: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+)x(\d+)", text)
    if not m:
        raise SpaceError(f"resnet stage {i + 1} {text!r}: expected '<width>x<depth>', e.g. '64x2'")
    w, d = int(m.group(1)), int(m.group(2))
    if w not in STAGE_WIDTHS[i] or m.group(1) != str(w):
        choices = ", ".join(map(str, STAGE_WIDTHS[i]))
        raise SpaceError(
            f"resnet stage {i + 1} width {m.group(1)} invalid; expected one of {choices}"
        )
    if d not in DEPTHS or m.group(2) != str(d):
        raise SpaceError(
            f"resnet stage {i + 1} depth {m.group(2)} invalid; expected {DEPTHS[0]}..{DEPTHS[-1]}"
        )
    return w, d


def _scaled(channels: int, scale: float) -> int:
    return channels if scale == 1.0 else max(4, int(round(channels * scale)))


def stem(b: GraphBuilder, x: str, channels: int = STEM_CHANNELS) -> str:
    """conv7x7 s2 (64 ch) -BN -ReLU -maxpool 3x3 s2."""
    x = b.conv(x, channels, 7, stride=2, id="/stem/conv")
    x = b.batchnorm(x, id="/stem/bn")
    x = b.act(x, "relu", id="/stem/act")
    return b.pool(x, "max", 3, stride=2, id="/stem/pool")


def head(b: GraphBuilder, x: str, num_classes: int) -> str:
    """Global avgpool -flatten -linear."""
    x = b.global_pool(x, id="/head/pool")
    x = b.flatten(x, id="/head/flatten")
    return b.linear(x, num_classes, id="/head/fc")


def _block(b: GraphBuilder, x: str, kind: str, width: int, stride: int) -> str:
    """A block of either type (for ``graph_arrays``; node ids do not matter there)."""
    block = basic_block if kind == "basic" else bottleneck_block
    return block(b, x, width, stride, prefix="/b")


def _shortcut(b: GraphBuilder, x: str, cout: int, stride: int, prefix: str) -> str:
    if stride == 1 and b.shape(x)[1] == cout:
        return x
    s = b.conv(x, cout, 1, stride=stride, id=f"{prefix}/down/conv")
    return b.batchnorm(s, id=f"{prefix}/down/bn")


def basic_block(b: GraphBuilder, x: str, width: int, stride: int, *, prefix: str) -> str:
    """conv3x3(stride)-BN-ReLU-conv3x3-BN + shortcut, ReLU."""
    y = b.conv(x, width, 3, stride=stride, id=f"{prefix}/conv1")
    y = b.batchnorm(y, id=f"{prefix}/bn1")
    y = b.act(y, "relu", id=f"{prefix}/act1")
    y = b.conv(y, width, 3, id=f"{prefix}/conv2")
    y = b.batchnorm(y, id=f"{prefix}/bn2")
    y = b.add([_shortcut(b, x, width, stride, prefix), y], id=f"{prefix}/add")
    return b.act(y, "relu", id=f"{prefix}/act")


def bottleneck_block(b: GraphBuilder, x: str, width: int, stride: int, *, prefix: str) -> str:
    """conv1x1-BN-ReLU-conv3x3(stride)-BN-ReLU-conv1x1(4x)-BN + shortcut, ReLU."""
    cout = 4 * width
    y = b.conv(x, width, 1, id=f"{prefix}/conv1")
    y = b.batchnorm(y, id=f"{prefix}/bn1")
    y = b.act(y, "relu", id=f"{prefix}/act1")
    y = b.conv(y, width, 3, stride=stride, id=f"{prefix}/conv2")
    y = b.batchnorm(y, id=f"{prefix}/bn2")
    y = b.act(y, "relu", id=f"{prefix}/act2")
    y = b.conv(y, cout, 1, id=f"{prefix}/conv3")
    y = b.batchnorm(y, id=f"{prefix}/bn3")
    y = b.add([_shortcut(b, x, cout, stride, prefix), y], id=f"{prefix}/add")
    return b.act(y, "relu", id=f"{prefix}/act")
