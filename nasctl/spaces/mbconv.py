"""MBConv space: MobileNetV2/V3/EfficientNet-style inverted-residual networks.

Genotype (compact, human-readable)::

    r160-w1.0|relu6:k3e1|hardswish:k5e6s,k3e4|...      (7 stages, one ``|`` section each)

* ``r<pixels>``: input resolution, 96..224 in steps of 16 (square, RGB).
* ``w<mult>``: width multiplier, one of ``0.5 0.75 1.0 1.25`` (channels rounded to multiples of 8).
* each stage: ``<activation>:<block>,<block>,...`` with 1..4 blocks; activation one of
  ``relu relu6 hardswish swish``; block ``k<kernel>e<expansion>`` plus ``s`` for
  squeeze-excitation, kernel 3/5/7, expansion 1/3/4/6.

Macro structure (MobileNetV2 layout): stem conv3x3 s2 (32 ch) -BN-act; stages with output channels
16, 24, 32, 64, 96, 160, 320 and strides 1, 2, 2, 2, 1, 2, 1 (first block of a stage strides);
head conv1x1 (1280 ch, scaled when the multiplier is > 1) -BN-act -global avgpool -flatten
-linear(``num_classes``). The stem uses the first stage's activation, the head the last one's.

Block: [expand conv1x1 -BN-act when expansion > 1] -depthwise kxk -BN-act -[SE] -project conv1x1
-BN, plus a residual add when stride is 1 and input and output channels match. SE = global
avgpool -conv1x1 (expanded/4 ch, bias) -relu -conv1x1 (bias) -gate -mul, where the gate is
``sigmoid`` in ``swish`` stages (EfficientNet) and ``hardsigmoid`` otherwise (MobileNetV3).

Node ids: ``/stem/conv``, ``/s2/b1/expand``, ``/s2/b1/dw``, ``/s2/b1/se/fc1``, ``/s2/b1/project``,
``/s2/b1/add``, ``/head/fc``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from nasctl.arch.graph import Graph, GraphBuilder
from nasctl.errors import SpaceError
from nasctl.spaces.base import ImageSpace, other_choice, register_space
from nasctl.spaces.mbconv_arrays import mbconv_graph_arrays
from nasctl.spaces.mbconv_blocks import (  # noqa: F401 - re-exported for users of the space
    ACTS,
    EXPANSIONS,
    HEAD_CHANNELS,
    KERNELS,
    MAX_DEPTH,
    MIN_DEPTH,
    RESOLUTIONS,
    STAGE_CHANNELS,
    STAGE_STRIDES,
    STEM_CHANNELS,
    WIDTHS,
    gate_for,
    head,
    make_divisible,
    mbconv_block,
    squeeze_excite,
    stem,
)

if TYPE_CHECKING:
    from nasctl.arch.arrays import GraphArrays

_BLOCK_RE = re.compile(r"^k(\d+)e(\d+)(s?)$")


@dataclass(frozen=True)
class Block:
    kernel: int
    expansion: int
    se: bool

    def __str__(self) -> str:
        return f"k{self.kernel}e{self.expansion}{'s' if self.se else ''}"


@dataclass(frozen=True)
class Stage:
    act: str
    blocks: tuple[Block, ...]


@dataclass(frozen=True)
class MBConvGenotype:
    resolution: int
    width: str
    stages: tuple[Stage, ...]


@register_space
class MBConvSpace(ImageSpace):
    """Inverted-residual (MBConv) networks for ImageNet-size inputs."""

    name = "mbconv"
    description = (
        "MobileNetV2/V3/EfficientNet-style: 7 stages, depth 1-4, kernel 3/5/7, expansion 1/3/4/6, "
        "SE, activation, width 0.5-1.25, resolution 96-224"
    )

    #: proxy-training size (estimators that train each candidate on a CPU, ``train:*``): input
    #: resolution (px) and channel scale (every channel count is the full network's times the
    #: scale, so depths, kernels, expansions, SE, activations, residual adds and the width
    #: multiplier's relative effect are kept; SE reductions are at least 8 channels).
    PROXY_RESOLUTION = 32
    PROXY_CHANNEL_SCALE = 0.25
    #: compute bound per genotype (see :class:`ImageSpace`): only the heaviest ~1 % of the space
    #: exceed it; their proxy is rebuilt narrower
    PROXY_MAX_MACS = 3.0e6
    RESOLUTIONS = RESOLUTIONS

    # -- genotypes ---------------------------------------------------------------------------
    def parse(self, genotype: str) -> MBConvGenotype:
        if not isinstance(genotype, str):
            raise SpaceError(f"mbconv genotype must be a string; got {type(genotype).__name__}")
        sections = genotype.split("|")
        if len(sections) != 1 + len(STAGE_CHANNELS):
            raise SpaceError(
                f"mbconv genotype has {len(sections)} '|' sections; expected "
                f"{1 + len(STAGE_CHANNELS)} ('r<res>-w<mult>' then 7 stages 'act:k3e6s,...')"
            )
        res, width = self._parse_global(sections[0])
        stages = tuple(self._parse_stage(i + 1, s) for i, s in enumerate(sections[1:]))
        return MBConvGenotype(res, width, stages)

    def _parse_global(self, text: str) -> tuple[int, str]:
        m = re.fullmatch(r"r(\d+)-w([0-9.]+)", text)
        if not m:
            raise SpaceError(f"mbconv genotype starts with {text!r}; expected 'r<res>-w<mult>'")
        res, width = int(m.group(1)), m.group(2)
        if res not in self.resolutions or m.group(1) != str(res):
            lo, hi = self.resolutions[0], self.resolutions[-1]
            raise SpaceError(
                f"mbconv resolution {m.group(1)} out of range; expected {lo}..{hi} in steps of 16"
            )
        if width not in WIDTHS:
            raise SpaceError(f"mbconv width 'w{width}' unknown; expected one of {' '.join(WIDTHS)}")
        return res, width

    @staticmethod
    def _parse_stage(i: int, text: str) -> Stage:
        act, sep, rest = text.partition(":")
        if not sep or act not in ACTS:
            raise SpaceError(
                f"mbconv stage {i} {text!r}: expected '<act>:<blocks>' with act one of "
                f"{', '.join(ACTS)}"
            )
        tokens = rest.split(",")
        if not MIN_DEPTH <= len(tokens) <= MAX_DEPTH:
            raise SpaceError(
                f"mbconv stage {i} has {len(tokens)} blocks; expected {MIN_DEPTH}..{MAX_DEPTH}"
            )
        blocks = []
        for j, tok in enumerate(tokens, start=1):
            m = _BLOCK_RE.fullmatch(tok)
            if not m or int(m.group(1)) not in KERNELS or int(m.group(2)) not in EXPANSIONS:
                raise SpaceError(
                    f"mbconv stage {i} block {j} {tok!r}: expected k<kernel>e<expansion>[s] with "
                    f"kernel in {KERNELS}, expansion in {EXPANSIONS}"
                )
            if tok != f"k{int(m.group(1))}e{int(m.group(2))}{m.group(3)}":
                raise SpaceError(f"mbconv stage {i} block {j} {tok!r}: leading zeros")
            blocks.append(Block(int(m.group(1)), int(m.group(2)), m.group(3) == "s"))
        return Stage(act, tuple(blocks))

    def format(self, value: MBConvGenotype) -> str:
        stages = [f"{s.act}:{','.join(str(b) for b in s.blocks)}" for s in value.stages]
        return "|".join([f"r{value.resolution}-w{value.width}", *stages])

    def sample(self, rng: random.Random) -> str:
        stages = tuple(
            Stage(
                rng.choice(ACTS),
                tuple(_random_block(rng) for _ in range(rng.randint(MIN_DEPTH, MAX_DEPTH))),
            )
            for _ in STAGE_CHANNELS
        )
        return self.format(MBConvGenotype(rng.choice(self.resolutions), rng.choice(WIDTHS), stages))

    def mutate(self, genotype: str, rng: random.Random) -> str:
        g = self.parse(genotype)
        what = rng.choice(("resolution", "width", "act", "depth", "block", "block", "block"))
        if what == "resolution" and len(self.resolutions) > 1:
            return self.format(
                replace(g, resolution=other_choice(rng, self.resolutions, g.resolution))
            )
        if what == "width":
            return self.format(replace(g, width=other_choice(rng, WIDTHS, g.width)))
        stages = list(g.stages)
        i = rng.randrange(len(stages))
        st = stages[i]
        if what == "act":
            stages[i] = replace(st, act=other_choice(rng, ACTS, st.act))
        elif what == "depth":
            blocks = list(st.blocks)
            if len(blocks) == MAX_DEPTH or (len(blocks) > MIN_DEPTH and rng.random() < 0.5):
                blocks.pop(rng.randrange(len(blocks)))
            else:
                blocks.insert(rng.randrange(len(blocks) + 1), _random_block(rng))
            stages[i] = replace(st, blocks=tuple(blocks))
        else:
            blocks = list(st.blocks)
            j = rng.randrange(len(blocks))
            blocks[j] = _mutate_block(blocks[j], rng)
            stages[i] = replace(st, blocks=tuple(blocks))
        return self.format(replace(g, stages=tuple(stages)))

    def crossover(self, a: str, b: str, rng: random.Random) -> str:
        ga, gb = self.parse(a), self.parse(b)
        pick = lambda x, y: x if rng.random() < 0.5 else y  # noqa: E731
        stages = tuple(pick(x, y) for x, y in zip(ga.stages, gb.stages, strict=True))
        return self.format(
            MBConvGenotype(pick(ga.resolution, gb.resolution), pick(ga.width, gb.width), stages)
        )

    def size(self) -> int:
        per_block = len(KERNELS) * len(EXPANSIONS) * 2
        per_stage = len(ACTS) * sum(per_block**d for d in range(MIN_DEPTH, MAX_DEPTH + 1))
        return len(self.resolutions) * len(WIDTHS) * per_stage ** len(STAGE_CHANNELS)

    # -- graph -------------------------------------------------------------------------------
    def graph_arrays(self, genotypes: Sequence[str]) -> GraphArrays:
        """As :meth:`SearchSpace.graph_arrays`, vectorized (see ``mbconv_arrays``)."""
        rebuilt = type(self).to_graph is not MBConvSpace.to_graph  # a subclass's other graphs
        if rebuilt or self.input_resolution is not None or self.channel_scale != 1.0:
            return super().graph_arrays(genotypes)
        return mbconv_graph_arrays(self, genotypes)

    def to_graph(self, genotype: str) -> Graph:
        g = self.parse(genotype)
        mult, scale = float(g.width), self.channel_scale
        div = max(1, round(8 * scale))  # channels scale exactly, so residual adds stay as they are
        r = self.input_resolution or g.resolution
        b = GraphBuilder(f"mbconv-r{r}-w{g.width}", (1, 3, r, r))
        x = stem(b, mult * scale, g.stages[0].act, div)
        for i, (st, c, s) in enumerate(
            zip(g.stages, STAGE_CHANNELS, STAGE_STRIDES, strict=True), start=1
        ):
            cout = make_divisible(c * mult * scale, div)
            for j, blk in enumerate(st.blocks, start=1):
                x = mbconv_block(
                    b,
                    x,
                    cout,
                    blk.kernel,
                    blk.expansion,
                    s if j == 1 else 1,
                    blk.se,
                    st.act,
                    prefix=f"/s{i}/b{j}",
                )
        x = head(b, x, mult, g.stages[-1].act, self.num_classes, scale)
        meta = {"space": self.name, "genotype": self.format(g), "resolution": r}
        return b.build([x], meta=meta)


def _random_block(rng: random.Random) -> Block:
    return Block(rng.choice(KERNELS), rng.choice(EXPANSIONS), rng.random() < 0.5)


def _mutate_block(blk: Block, rng: random.Random) -> Block:
    what = rng.choice(("kernel", "expansion", "se"))
    if what == "kernel":
        return replace(blk, kernel=other_choice(rng, KERNELS, blk.kernel))
    if what == "expansion":
        return replace(blk, expansion=other_choice(rng, EXPANSIONS, blk.expansion))
    return replace(blk, se=not blk.se)
