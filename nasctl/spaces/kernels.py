"""The ``kernels`` space: single layers over wide configuration ranges, for per-layer predictors.

A genotype is one layer, profiled as a tiny graph (input -> layer [-> activation])::

    conv-i32-o64-k3-s1-h56-relu       dense conv, 32 -> 64 channels, 3x3, stride 1, 56x56 input
    dwconv-i96-k5-s2-h28              depthwise conv
    gconv-i64-o128-g4-k3-s1-h28-swish grouped conv, 4 groups
    linear-i1280-o1000                fully connected on a (1, i) input
    maxpool-i64-k3-s2-h56 / avgpool-...
    add-i64-h28-relu6                 elementwise add of two (1, i, h, h) tensors

Tokens: ``i`` input channels/features, ``o`` output channels/features, ``g`` groups, ``k`` kernel,
``s`` stride, ``h`` input height = width (px); an optional trailing activation (one of
:data:`nasctl.arch.graph.ACTIVATIONS`) makes a conv+act pair as engines fuse it. Sampling is
log-uniform over channels and spatial sizes and rejects layers above :data:`MAX_MACS` or
with tensors above :data:`MAX_ELEMENTS`.
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
}
#: sampling weights per kind (convs dominate real networks)
WEIGHTS: dict[str, float] = {
    "conv": 4,
    "dwconv": 2,
    "gconv": 1,
    "linear": 1,
    "maxpool": 0.5,
    "avgpool": 0.5,
    "add": 1,
}
FUSABLE = frozenset({"conv", "dwconv", "gconv", "linear", "add"})
LIMITS: dict[str, tuple[int, int]] = {
    "i": (1, 4096),
    "o": (1, 4096),
    "g": (1, 512),
    "k": (1, 11),
    "s": (1, 4),
    "h": (1, 512),
}
MAX_MACS = 1_000_000_000  # multiply-accumulates per sampled layer (~tens of ms on one core)
MAX_ELEMENTS = 4_000_000  # elements of the input or output tensor of a sampled layer
_TOKEN = re.compile(r"^([iogksh])(\d+)$")


def _log_choice(rng: random.Random, lo: int, hi: int, step: int = 8) -> int:
    v = math.exp(rng.uniform(math.log(lo), math.log(hi)))
    return max(lo, int(round(v / step)) * step)


@register_space
class KernelsSpace(SearchSpace):
    """Single layers (conv, depthwise, grouped, linear, pooling, add, + fused activation)."""

    name = "kernels"
    description = "single layers over wide config ranges, for per-layer latency models"
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
            if _macs(graph) <= MAX_MACS and max(sizes) <= MAX_ELEMENTS:
                return genotype

    def _draw(self, rng: random.Random) -> str:
        kind = rng.choices(list(WEIGHTS), weights=list(WEIGHTS.values()))[0]
        h = rng.choice((4, 7, 8, 14, 16, 28, 32, 56, 64, 112, 128, 160, 224))
        vals = {
            "i": _log_choice(rng, 8, 1024) if kind != "linear" else _log_choice(rng, 64, 4096),
            "o": _log_choice(rng, 8, 1024) if kind != "linear" else _log_choice(rng, 64, 4096),
            "k": rng.choice((1, 3, 5, 7)) if kind in ("conv", "gconv") else rng.choice((3, 5, 7)),
            "s": rng.choice((1, 1, 2)),
            "h": h,
        }
        if kind == "conv" and rng.random() < 0.1:
            vals["i"] = 3  # network stems
        if kind == "gconv":
            vals["g"] = rng.choice((2, 4, 8))
            vals["i"] = max(vals["g"], vals["i"] // vals["g"] * vals["g"])
            vals["o"] = max(vals["g"], vals["o"] // vals["g"] * vals["g"])
        if kind in ("maxpool", "avgpool"):
            vals["k"] = rng.choice((2, 3))
            vals["s"] = rng.choice((1, 2))
        act = rng.choice((None, None, "relu", "relu6", "hardswish", "swish", "sigmoid"))
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
        x = _layer(b, kind, v)
        if act:
            x = b.act(x, act, id="/act")
        return b.build([x], meta={"space": self.name, "genotype": self.format((kind, v, act))})


def _layer(b: GraphBuilder, kind: str, v: dict[str, int]) -> str:
    if kind == "conv":
        return b.conv(b.input, v["o"], v["k"], stride=v["s"], id="/layer")
    if kind == "dwconv":
        return b.conv(b.input, v["i"], v["k"], stride=v["s"], groups=v["i"], id="/layer")
    if kind == "gconv":
        return b.conv(b.input, v["o"], v["k"], stride=v["s"], groups=v["g"], id="/layer")
    if kind == "linear":
        return b.linear(b.input, v["o"], id="/layer")
    if kind in ("maxpool", "avgpool"):
        pads = [0, 0, 0, 0] if v["k"] % 2 == 0 else None
        return b.pool(b.input, kind[:3], v["k"], stride=v["s"], pads=pads, id="/layer")
    other = b.identity(b.input, id="/other")  # a second, distinct operand
    return b.add([b.input, other], id="/layer")


def _macs(graph: Graph) -> int:
    from nasctl.arch.costs import graph_costs

    return int(graph_costs(graph).total["macs"])
