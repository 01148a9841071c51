"""Example of a user-registered search space, built only from ops a small target supports.

Load it from the CLI or Python with ``package.module:ATTR``::

    PYTHONPATH=tests/examples nasctl arch show --space my_space:TinySpace --seed 0
    get_space("my_space:TinySpace")

Genotype: 2..4 conv layers ``<channels>[p]`` joined by ``,`` (channels 8/16/32; ``p`` = 2x2 max
pool after the layer), e.g. ``16,32p,32``. Network on 3x32x32 input: conv3x3-ReLU per layer, then
global avgpool -flatten -linear(10).
"""

from __future__ import annotations

import random
import re

from nasctl.arch.graph import Graph, GraphBuilder
from nasctl.errors import SpaceError
from nasctl.spaces import SearchSpace

CHANNELS = (8, 16, 32)
MIN_LAYERS, MAX_LAYERS = 2, 4


class TinySpace(SearchSpace):
    """Plain conv-ReLU-pool stacks (a space for a target without depthwise or BN support)."""

    name = "tiny"
    description = "example user space: 2-4 conv3x3-ReLU layers, optional max pools, linear head"

    def parse(self, genotype: str) -> list[tuple[int, bool]]:
        layers = []
        tokens = genotype.split(",") if isinstance(genotype, str) else []
        if not MIN_LAYERS <= len(tokens) <= MAX_LAYERS:
            raise SpaceError(f"tiny genotype {genotype!r}: expected 2..4 layers joined by ','")
        for i, tok in enumerate(tokens, start=1):
            m = re.fullmatch(r"(\d+)(p?)", tok)
            if not m or int(m.group(1)) not in CHANNELS or m.group(1) != str(int(m.group(1))):
                raise SpaceError(
                    f"tiny layer {i} {tok!r}: expected <channels>[p], channels {CHANNELS}"
                )
            layers.append((int(m.group(1)), m.group(2) == "p"))
        return layers

    def format(self, value: list[tuple[int, bool]]) -> str:
        return ",".join(f"{c}{'p' if p else ''}" for c, p in value)

    def sample(self, rng: random.Random) -> str:
        n = rng.randint(MIN_LAYERS, MAX_LAYERS)
        return self.format([(rng.choice(CHANNELS), rng.random() < 0.5) for _ in range(n)])

    def mutate(self, genotype: str, rng: random.Random) -> str:
        layers = self.parse(genotype)
        i = rng.randrange(len(layers))
        c, p = layers[i]
        if rng.random() < 0.5:
            layers[i] = (rng.choice([x for x in CHANNELS if x != c]), p)
        else:
            layers[i] = (c, not p)
        return self.format(layers)

    def crossover(self, a: str, b: str, rng: random.Random) -> str:
        la, lb = self.parse(a), self.parse(b)
        cut = rng.randint(1, min(len(la), len(lb)))
        child = la[:cut] + lb[cut:]
        return self.format(child[:MAX_LAYERS])

    def to_graph(self, genotype: str) -> Graph:
        layers = self.parse(genotype)
        b = GraphBuilder("tiny", (1, 3, 32, 32))
        x = b.input
        for i, (c, pool) in enumerate(layers, start=1):
            x = b.conv(x, c, 3, bias=True, id=f"/l{i}/conv")
            x = b.act(x, "relu", id=f"/l{i}/act")
            if pool:
                x = b.pool(x, "max", 2, stride=2, pads=[0, 0, 0, 0], id=f"/l{i}/pool")
        x = b.global_pool(x, id="/head/pool")
        x = b.flatten(x, id="/head/flatten")
        x = b.linear(x, 10, id="/head/fc")
        return b.build(
            [x], meta={"space": "tiny", "genotype": self.format(layers), "resolution": 32}
        )
