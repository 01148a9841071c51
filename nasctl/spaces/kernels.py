"""The ``kernels`` space: single kernels over the configuration space real networks use, for
per-kernel latency models (issue 16).

A genotype is one kernel, profiled as a tiny graph (input -> kernel [-> activation])::

    conv-i32-o64-k3-s1-h56-relu        dense conv, 32 -> 64 channels, 3x3, stride 1, 56x56 input
    dconv-i64-o64-k3-d2-s1-h28         dilated dense conv (dilation 2)
    dwconv-i96-k5-s2-h28               depthwise conv
    gconv-i64-o128-g4-k3-s1-h28-swish  grouped conv, 4 groups
    linear-i1280-o1000                 fully connected on a (1, i) input
    maxpool-i64-k3-s2-h56 / avgpool-...
    gap-i512-h7                        global average pool
    add-i64-h28-relu6                  elementwise add of two (1, i, h, h) tensors [+ activation]
    concat-i64-h28                     concatenation of two (1, i, h, h) tensors on channels
    split-i48-h28                      channel split of a (1, i, h, h) tensor into two halves
                                       (ShuffleNetV2's ``x.chunk(2, 1)``, CSP/GhostNet halves)
    shuffle-i48-g2-h28                 channel shuffle: reshape to (1, g, i / g, h, h), transpose
                                       the two channel axes, reshape back (ShuffleNet's g groups)
    act-i64-h28-hardswish              an activation alone (one is required)
    se-i96-o24-h28-swish               squeeze-excitation: global pool, 1x1 conv i -> o, activation
                                       (relu unless given), 1x1 conv o -> i, gate (hardsigmoid after
                                       a hardswish, else sigmoid), multiply with the input

Tokens: ``i`` input channels/features, ``o`` output channels/features (SE: squeeze width), ``g``
groups, ``k`` kernel, ``d`` dilation, ``s`` stride, ``h`` input height = width (px); an optional
trailing activation (one of :data:`nasctl.arch.graph.ACTIVATIONS`) makes a kernel+act pair as
engines fuse it.

**Sampler** (:meth:`KernelsSpace.sample`, seeded by the caller's ``random.Random``: the same seed
gives the same kernels): a kind by :data:`WEIGHTS`; an input size from :data:`SIZES` (7..224, the
feature-map sizes of 224-px classifiers); channels log-uniform over 4..2048 in steps of 4 (a
tenth of dense convs take a 3-channel stem input), linear layers 64..25,088 -> 10..4,096
features; kernels 1/3/5/7/11 (depthwise 3/5/7, dilated 3 with dilation 2/3/4/6), strides 1/2/4
(4 only for dense convs); grouped convs (a fair share, :data:`WEIGHTS`) in three equally likely
shapes (:func:`_gconv`): the ResNeXt/RegNet bottleneck 3x3 (``i == o``), a general grouped conv,
each with a group width from :data:`GROUP_WIDTHS` (2..64 channels per group, one stratum each),
and 2..64 wide groups; SE squeeze ratios 4..24; activations ReLU, ReLU6, hardswish,
SiLU (swish), sigmoid, hardsigmoid; channel splits (two equal halves, even channel counts) and
channel shuffles (2 groups in half the draws, else 3/4/8, as ShuffleNet v1/v2 write them) over
the same channel and size ranges. A draw is rejected (and drawn again) above :data:`MAX_MACS`
multiply-accumulates, :data:`MAX_ELEMENTS` elements in an input or output tensor or
:data:`MAX_PARAMS` weights.
"""

from __future__ import annotations

import math
import random
import re

from nasctl.arch.graph import ACTIVATIONS, Graph, GraphBuilder
from nasctl.errors import SpaceError
from nasctl.spaces.base import SearchSpace, register_space

#: layer kind -> tokens it takes, in genotype order
FIELDS: dict[str, tuple[str, ...]] = {
    "conv": ("i", "o", "k", "s", "h"),
    "dwconv": ("i", "k", "s", "h"),
    "gconv": ("i", "o", "g", "k", "s", "h"),
    "linear": ("i", "o"),
    "maxpool": ("i", "k", "s", "h"),
    "avgpool": ("i", "k", "s", "h"),
    "add": ("i", "h"),
    "dconv": ("i", "o", "k", "d", "s", "h"),
    "gap": ("i", "h"),
    "concat": ("i", "h"),
    "split": ("i", "h"),
    "shuffle": ("i", "g", "h"),
    "act": ("i", "h"),
    "se": ("i", "o", "h"),
}
#: sampling weights per kind (convs dominate real networks)
WEIGHTS: dict[str, float] = {
    "conv": 3.5,
    "dwconv": 2,
    "gconv": 3,
    "dconv": 0.5,
    "linear": 1,
    "maxpool": 0.5,
    "avgpool": 0.5,
    "gap": 0.5,
    "add": 1,
    "concat": 0.5,
    "split": 0.5,
    "shuffle": 0.5,
    "act": 1,
    "se": 1.5,
}
FUSABLE = frozenset({"conv", "dwconv", "gconv", "dconv", "linear", "add", "act", "se"})
NEEDS_ACT = frozenset({"act"})
#: channels per group of a sampled grouped conv, one stratum each (equal chance): ResNeXt's 4,
#: RegNet's 8/16/24/32/48/56/64..., ShuffleNet-v1 and AlexNet-style 2-group convs' wide groups;
#: 16-aligned widths run blocked (NCHWc) in ONNX Runtime, the others in NCHW (kernel_layout).
#: Width 1 (groups == input channels) is the depthwise kind, sampled as ``dwconv``.
GROUP_WIDTHS = (2, 4, 8, 16, 24, 32, 48, 64)
#: input sizes (px) drawn from: the feature maps of 224-px classifiers (AlexNet's 55/27/13 too)
SIZES = (7, 7, 13, 14, 14, 27, 28, 28, 55, 56, 56, 112, 112, 224)
SAMPLED_ACTS = ("relu", "relu6", "hardswish", "swish", "sigmoid", "hardsigmoid")
LIMITS: dict[str, tuple[int, int]] = {
    "i": (1, 32768),
    "o": (1, 4096),
    "g": (1, 512),
    "k": (1, 11),
    "d": (1, 8),
    "s": (1, 4),
    "h": (1, 512),
}
MAX_MACS = 1_000_000_000  # multiply-accumulates per sampled layer (~tens of ms on one core)
MAX_ELEMENTS = 4_000_000  # elements of the input or output tensor of a sampled layer
MAX_PARAMS = 48_000_000  # weights of a sampled layer (AlexNet's 9216 x 4096 FC fits)
_TOKEN = re.compile(r"^([iogkdsh])(\d+)$")


def _log_choice(rng: random.Random, lo: int, hi: int, step: int = 4) -> int:
    v = math.exp(rng.uniform(math.log(lo), math.log(hi)))
    return max(lo, int(round(v / step)) * step)


@register_space
class KernelsSpace(SearchSpace):
    """Single kernels (convs of every kind, linear, pooling, add, concat, activations, SE)."""

    name = "kernels"
    description = "single kernels over real networks' config ranges, for per-kernel models"
    single_layer = True

    def parse(self, genotype: str) -> tuple[str, dict[str, int], str | None]:
        parts = genotype.split("-") if isinstance(genotype, str) else []
        if not parts or parts[0] not in FIELDS:
            raise SpaceError(
                f"kernels genotype {genotype!r} must start with one of "
                f"{', '.join(FIELDS)} (e.g. conv-i32-o64-k3-s1-h56-relu)"
            )
        kind, act = parts[0], None
        if parts[-1] in ACTIVATIONS:
            if kind not in FUSABLE:
                raise SpaceError(f"kernels genotype {genotype!r}: {kind} takes no activation")
            act, parts = parts[-1], parts[:-1]
        elif kind in NEEDS_ACT:
            raise SpaceError(f"kernels genotype {genotype!r}: {kind} needs an activation")
        vals: dict[str, int] = {}
        for tok in parts[1:]:
            m = _TOKEN.match(tok)
            if not m or m.group(1) in vals:
                raise SpaceError(f"kernels genotype {genotype!r}: bad token {tok!r}")
            vals[m.group(1)] = int(m.group(2))
        if tuple(vals) != FIELDS[kind]:
            raise SpaceError(
                f"kernels genotype {genotype!r}: {kind} takes "
                f"{'-'.join(t + 'N' for t in FIELDS[kind])} in this order"
            )
        for t, v in vals.items():
            lo, hi = LIMITS[t]
            if not lo <= v <= hi:
                raise SpaceError(f"kernels genotype {genotype!r}: {t}={v} outside {lo}..{hi}")
        if kind == "gconv" and (vals["i"] % vals["g"] or vals["o"] % vals["g"] or vals["g"] < 2):
            raise SpaceError(
                f"kernels genotype {genotype!r}: groups must be >= 2 and divide i and o"
            )
        if kind == "shuffle" and (vals["g"] < 2 or vals["i"] % vals["g"] or vals["i"] == vals["g"]):
            raise SpaceError(
                f"kernels genotype {genotype!r}: groups must be >= 2, divide i and be below it"
            )
        if kind == "split" and (vals["i"] % 2 or vals["i"] < 2):
            raise SpaceError(f"kernels genotype {genotype!r}: a split takes an even i >= 2")
        return kind, vals, act

    def format(self, value: tuple[str, dict[str, int], str | None]) -> str:
        kind, vals, act = value
        toks = [kind, *(f"{t}{vals[t]}" for t in FIELDS[kind])]
        return "-".join(toks + ([act] if act else []))

    def sample(self, rng: random.Random) -> str:
        while True:
            genotype = self._draw(rng)
            try:
                graph = self.to_graph(genotype)
            except Exception:  # e.g. a kernel larger than the input: draw again
                continue
            sizes = [math.prod(s) for n in graph.nodes for s in (*n.in_shapes, *n.out_shapes)]
            params = sum(
                int(n.attrs.get("in_features", 0)) * int(n.attrs.get("out_features", 0))
                for n in graph.nodes
            )
            if _macs(graph) <= MAX_MACS and max(sizes) <= MAX_ELEMENTS and params <= MAX_PARAMS:
                return genotype

    def _draw(self, rng: random.Random) -> str:
        kind = rng.choices(list(WEIGHTS), weights=list(WEIGHTS.values()))[0]
        vals = {
            "i": _log_choice(rng, 4, 2048),
            "o": _log_choice(rng, 4, 2048),
            "k": rng.choice((1, 1, 3, 3, 3, 5, 7, 11)),
            "s": rng.choice((1, 1, 2)),
            "h": rng.choice(SIZES),
        }
        if kind in ("conv", "dconv"):
            vals["s"] = rng.choice((1, 1, 1, 2, 2, 4))
            if rng.random() < 0.1:
                vals["i"] = 3  # network stems
        if kind == "dconv":
            vals["k"], vals["d"] = 3, rng.choice((2, 3, 4, 6))
        if kind == "dwconv":
            vals["k"] = rng.choice((3, 3, 5, 7))
        if kind == "linear":
            vals["i"], vals["o"] = _log_choice(rng, 64, 25088), _log_choice(rng, 10, 4096, 2)
        if kind == "gconv":
            vals.update(_gconv(rng, vals))
        if kind in ("maxpool", "avgpool"):
            vals["k"] = rng.choice((2, 3, 3))
            vals["s"] = rng.choice((1, 2, 2))
        if kind == "se":
            vals["o"] = max(4, vals["i"] // rng.choice((4, 4, 8, 16, 24)))
        if kind == "shuffle":
            vals["g"] = rng.choice((2, 2, 2, 3, 4, 8))
            vals["i"] = max(2 * vals["g"], vals["i"] // vals["g"] * vals["g"])
        act = rng.choice((None, None, *SAMPLED_ACTS))
        if kind in NEEDS_ACT and act is None:
            act = rng.choice(SAMPLED_ACTS)
        picked = {t: vals[t] for t in FIELDS[kind]}
        return self.format((kind, picked, act if kind in FUSABLE else None))

    def mutate(self, genotype: str, rng: random.Random) -> str:
        kind, vals, act = self.parse(genotype)
        for _ in range(100):
            t = rng.choice(FIELDS[kind])
            new = dict(vals)
            new[t] = max(LIMITS[t][0], min(LIMITS[t][1], int(vals[t] * rng.choice((0.5, 2)))))
            cand = self.format((kind, new, act))
            try:
                self.parse(cand)
                self.to_graph(cand)
            except Exception:
                continue
            if cand != genotype:
                return cand
        return self.sample(rng)

    def crossover(self, a: str, b: str, rng: random.Random) -> str:
        return rng.choice((a, b))

    def to_graph(self, genotype: str) -> Graph:
        kind, v, act = self.parse(genotype)
        shape = (1, v["i"]) if kind == "linear" else (1, v["i"], v["h"], v["h"])
        b = GraphBuilder(f"kernel-{genotype}", shape)
        if kind == "se":
            x = _se(b, v, act or "relu")
        elif kind == "split":  # both halves are outputs (a network consumes both)
            return b.build(
                b.split(b.input, [v["i"] // 2] * 2, id="/layer"),
                meta={"space": self.name, "genotype": self.format((kind, v, act))},
            )
        elif kind == "shuffle":
            x = _shuffle(b, v)
        elif kind == "act":
            x = b.act(b.input, str(act), id="/layer")
        else:
            x = _layer(b, kind, v)
            if act:
                x = b.act(x, act, id="/act")
        return b.build([x], meta={"space": self.name, "genotype": self.format((kind, v, act))})


def _gconv(rng: random.Random, vals: dict[str, int]) -> dict[str, int]:
    """A grouped conv's ``i``, ``o``, ``g``, ``k``, ``s``: three equally likely shapes.

    * the 3x3 middle of a ResNeXt/RegNet bottleneck (1x1 -> grouped 3x3 -> 1x1): ``i == o``,
      a group width from :data:`GROUP_WIDTHS` (one stratum each), stride 1 or 2 (a stage's
      first block), at the 7..56 px stages;
    * a general grouped conv with a group width from :data:`GROUP_WIDTHS` (uneven in/out widths,
      kernels 1/3/5, a 1x1 grouped conv as ShuffleNet-v1 and CondenseNet write it);
    * few wide groups: 2..64 groups over any channel count (AlexNet's 2-group convs).
    """
    mode = rng.randrange(3)
    if mode == 2:
        g = rng.choice((2, 4, 8, 16, 32, 64))
        i = max(2 * g, vals["i"] // g * g)  # g == i would be a depthwise conv
        o = max(g, vals["o"] // g * g)
        return {"g": g, "i": i, "o": o, "k": rng.choice((1, 3, 3, 5))}
    width = rng.choice(GROUP_WIDTHS)
    g = max(2, _log_choice(rng, 16, 2048, 1) // width)
    i = g * width
    if mode == 0:
        return {
            "g": g,
            "i": i,
            "o": i,
            "k": 3,
            "s": rng.choice((1, 1, 2)),
            "h": rng.choice((7, 14, 14, 28, 28, 56, 56)),
        }
    o = g * max(1, round(width * rng.choice((0.5, 1, 2, 4))))
    return {"g": g, "i": i, "o": o, "k": rng.choice((1, 3, 3, 5))}


def _layer(b: GraphBuilder, kind: str, v: dict[str, int]) -> str:
    if kind == "conv":
        return b.conv(b.input, v["o"], v["k"], stride=v["s"], id="/layer")
    if kind == "dwconv":
        return b.conv(b.input, v["i"], v["k"], stride=v["s"], groups=v["i"], id="/layer")
    if kind == "gconv":
        return b.conv(b.input, v["o"], v["k"], stride=v["s"], groups=v["g"], id="/layer")
    if kind == "dconv":
        return b.conv(b.input, v["o"], v["k"], stride=v["s"], dilation=v["d"], id="/layer")
    if kind == "gap":
        return b.global_pool(b.input, id="/layer")
    if kind == "linear":
        return b.linear(b.input, v["o"], id="/layer")
    if kind in ("maxpool", "avgpool"):
        pads = [0, 0, 0, 0] if v["k"] % 2 == 0 else None
        return b.pool(b.input, kind[:3], v["k"], stride=v["s"], pads=pads, id="/layer")
    other = b.identity(b.input, id="/other")  # a second, distinct operand
    if kind == "concat":
        return b.concat([b.input, other], id="/layer")
    return b.add([b.input, other], id="/layer")


def _shuffle(b: GraphBuilder, v: dict[str, int]) -> str:
    """ShuffleNet's channel shuffle: ``x.view(n, g, c // g, h, w).transpose(1, 2).reshape(...)``."""
    i, g, h = v["i"], v["g"], v["h"]
    x = b.reshape(b.input, (1, g, i // g, h, h), id="/view")
    x = b.transpose(x, [0, 2, 1, 3, 4], id="/layer")
    return b.reshape(x, (1, i, h, h), id="/unview")


def _se(b: GraphBuilder, v: dict[str, int], act: str) -> str:
    """Squeeze-excitation as torchvision writes it: pool, reduce, act, expand, gate, multiply."""
    s = b.global_pool(b.input, id="/se_pool")
    s = b.act(b.conv(s, v["o"], 1, id="/se_reduce", bias=True), act, id="/se_act")
    s = b.conv(s, v["i"], 1, id="/se_expand", bias=True)
    s = b.act(s, "hardsigmoid" if act == "hardswish" else "sigmoid", id="/se_gate")
    return b.mul(b.input, s, id="/layer")


def _macs(graph: Graph) -> int:
    from nasctl.arch.costs import graph_costs

    return int(graph_costs(graph).total["macs"])
