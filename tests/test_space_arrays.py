"""``SearchSpace.graph_arrays`` (genotypes -> node arrays without building graphs) gives exactly
what scanning the space's graphs gives: rows, sizes, edges in order, outputs, depth, shapes."""

from __future__ import annotations

import random

import numpy as np
import pytest

from nasctl.arch import arrays
from nasctl.arch.graph import GraphBuilder
from nasctl.errors import SpaceError
from nasctl.spaces import get_space, list_spaces
from nasctl.spaces import rows as R
from nasctl.spaces.fbnet import FBNetSpace
from nasctl.spaces.mbconv import MBConvSpace
from nasctl.spaces.nb201 import OPS, NB201Space
from nasctl.spaces.nb201_genotype import format_genotype
from nasctl.spaces.resnet import ResNetSpace

FIELDS = ("raw", "sizes", "src", "dst", "outs", "depth")


def _reference(space, genotypes: list[str]) -> arrays.GraphArrays:  # noqa: ANN001
    return arrays.graph_arrays([space.to_graph(g) for g in genotypes], keep_ids=False)


def assert_same(fast: arrays.GraphArrays, ref: arrays.GraphArrays) -> None:
    for f in FIELDS:
        a, b = getattr(fast, f), getattr(ref, f)
        assert a.dtype == b.dtype and a.shape == b.shape, f
        assert np.array_equal(a, b), f
    assert fast.input_shapes == ref.input_shapes
    assert fast.precisions == ref.precisions


def _check(space, genotypes: list[str]) -> None:  # noqa: ANN001
    graphs = [space.to_graph(g) for g in genotypes]
    assert_same(space.graph_arrays(genotypes), arrays.graph_arrays(graphs, keep_ids=False))
    # again, from warm caches, in another order and in two batches
    perm = list(range(len(genotypes)))
    random.Random(3).shuffle(perm)
    half = len(perm) // 2
    parts = [
        space.graph_arrays([genotypes[i] for i in perm[:half]]),
        space.graph_arrays([genotypes[i] for i in perm[half:]]),
    ]
    ref = arrays.graph_arrays([graphs[i] for i in perm], keep_ids=False)
    assert_same(arrays.GraphArrays.concat(parts), ref)


def _nb201_edge_cases() -> list[str]:
    none, skip, c3, c1, pool = OPS[0], OPS[1], OPS[3], OPS[2], OPS[4]
    cases = [
        [none] * 6,  # cell output is a zero map
        [skip] * 6,  # adds of the input with itself, no op nodes
        [none, none, none, skip, none, none],  # output is the input, no nodes
        [c3, none, none, skip, none, none],  # output is the input, a dead branch
        [none, c1, c3, pool, skip, c3],  # every node kind (zero, add of 2 and of 3)
        [none, none, c3, none, none, skip],  # zero node 1 feeds node 2
        [skip, none, skip, none, none, skip],  # output is the input through skips
        [pool, pool, pool, pool, pool, pool],
        [none, none, none, none, none, c3],  # node 2 zero, consumed
    ]
    return [format_genotype(c) for c in cases]


def test_nb201_matches_graphs() -> None:
    sp = get_space("nb201")
    rng = random.Random(0)
    gs = _nb201_edge_cases() + [sp.arch_at(rng.randrange(sp.size())) for _ in range(200)]
    _check(sp, gs)


def test_nb201_all_cells_structures() -> None:
    """Every one of the 15,625 cells, in a tiny network (one cell per stage)."""
    sp = NB201Space(num_classes=3, channels=4, cells_per_stage=1, resolution=8)
    all_gs = sp.enumerate()
    fast = sp.graph_arrays(all_gs)
    assert fast.sizes.size == len(all_gs)
    rng = random.Random(1)
    pick = sorted(rng.sample(range(len(all_gs)), 150))
    sub = [all_gs[i] for i in pick]
    assert_same(sp.graph_arrays(sub), _reference(sp, sub))
    # per-genotype slices of the big batch equal the single-genotype arrays
    off = fast.offsets
    for i in pick[:50]:
        one = _reference(sp, [all_gs[i]])
        assert np.array_equal(fast.raw[off[i] : off[i + 1]], one.raw)
        assert fast.depth[i] == one.depth[0]


def test_nb201_every_cell_equals_built_cell() -> None:
    """The cell structure of each of the 15,625 op tuples equals the cell ``nb201._cell`` builds
    (edges in order, output, depths, node rows)."""
    from nasctl.spaces import nb201, nb201_arrays, templates

    b = GraphBuilder("kinds", (1, 4, 8, 8))
    nb201._cell(b, b.input, nb201_arrays.PROBE, "/c")  # noqa: SLF001
    by_id = {n.id: n for n in b._nodes}  # noqa: SLF001
    kind_rows = np.array([arrays.node_row(by_id[f"/c/{k}"]) for k in nb201_arrays.KIND_IDS])
    store = templates.ChainStore()
    cells = [tuple(OPS[int(c)] for c in code) for code in nb201._order()]  # noqa: SLF001
    built = []
    for ops in cells:
        b = GraphBuilder("cell", (1, 4, 8, 8))
        out = nb201._cell(b, b.input, ops, "/c")  # noqa: SLF001
        built.append(templates.harvest(b._nodes, b.input, out, graph_input=False))  # noqa: SLF001
        nb201_arrays._add_cell(store, ops)  # noqa: SLF001
    m = store._arrays()  # noqa: SLF001 - structures 0.. in cell order, flat
    assert m["n"].tolist() == [len(p.rows) for p in built]
    rows = np.array([r for p in built for r in p.rows], dtype=np.float64)
    assert np.array_equal(kind_rows[m["rl"]], rows)
    assert m["es"].tolist() == [j for p in built for j in p.src]
    assert m["ed"].tolist() == [j for p in built for j in p.dst]
    assert m["ne"].tolist() == [len(p.src) for p in built]
    assert m["out"].tolist() == [p.out for p in built]
    assert m["md"].tolist() == [max(p.depth, default=0) for p in built]
    assert m["od"].tolist() == [p.depth[p.out] if p.out >= 0 else 0 for p in built]


def test_nb201_other_config_and_cache_keys() -> None:
    a = NB201Space(num_classes=100, channels=8, cells_per_stage=2, resolution=64)
    b = NB201Space()
    gs = _nb201_edge_cases()
    _check(a, gs)
    _check(b, gs)
    a.num_classes = 7  # config changed in place: caches must not serve old rows
    _check(a, gs[:3])


def _mbconv_edge_cases(sp: MBConvSpace) -> list[str]:
    r0, r1 = sp.resolutions[0], sp.resolutions[-1]
    return [
        f"r{r0}-w0.5|" + "|".join(["relu:k3e1"] * 7),
        f"r{r1}-w1.25|" + "|".join(["swish:k7e6s,k5e6s,k3e4s,k7e3s"] * 7),
        f"r{r0}-w1.0|" + "|".join(["hardswish:k5e1s,k3e1"] * 7),
        f"r{r1}-w0.75|" + "|".join(["relu6:k3e3,k5e6s"] * 7),
    ]


def test_mbconv_matches_graphs() -> None:
    sp = get_space("mbconv")
    rng = random.Random(0)
    gs = _mbconv_edge_cases(sp) + [sp.sample(rng) for _ in range(120)]
    _check(sp, gs)


def test_mbconv_other_config() -> None:
    sp = MBConvSpace(num_classes=10, resolutions=(64, 96))
    rng = random.Random(1)
    _check(sp, _mbconv_edge_cases(sp) + [sp.sample(rng) for _ in range(30)])


@pytest.mark.parametrize(
    "space",
    [ResNetSpace(), ResNetSpace(num_classes=10, resolutions=(64, 128)), FBNetSpace(),
     FBNetSpace("imagenet"), FBNetSpace(resolution=64, num_classes=10)],
    ids=["resnet", "resnet-small", "fbnet", "fbnet-imagenet", "fbnet-64"],
)  # fmt: skip
def test_block_spaces_match_graphs(space) -> None:  # noqa: ANN001
    rng = random.Random(2)
    gs = [space.sample(rng) for _ in range(60)]
    if space.name == "fbnet":
        gs += ["-".join(["skip"] * 22), "-".join(["k5_e1_g2"] * 22)]
    if space.name == "resnet":
        r = space.resolutions[0]
        gs += [f"r{r}-bottleneck|32x1|64x1|128x1|256x1", f"r{r}-basic|96x6|192x6|384x6|768x6"]
    _check(space, gs)


@pytest.mark.parametrize("name", list_spaces())
def test_every_registered_space(name: str) -> None:
    sp = get_space(name)
    rng = random.Random(4)
    gs = [sp.sample(rng) for _ in range(20)]
    _check(sp, gs)
    empty = sp.graph_arrays([])
    assert empty.sizes.size == 0 and empty.raw.shape == (0, arrays.N_RAW)


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("nb201", "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|"),
        ("nb201", "|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|"),
        ("mbconv", "r160-w1.0|relu:k3e1"),
        ("mbconv", "r160-w1.0|" + "|".join(["relu:k3e01"] * 7)),
        ("mbconv", "r161-w1.0|" + "|".join(["relu:k3e1"] * 7)),
        ("mbconv", "r160-w1.0|" + "|".join(["relu:k3e1,k3e1,k3e1,k3e1,k3e1"] * 7)),
        ("mbconv", "r160-w1.0|" + "|".join(["relu,k3e1"] * 7)),
        ("resnet", "r224-basic|64x2|128x2|256x2"),
        ("fbnet", "skip-skip"),
    ],
)
def test_bad_genotypes_raise(name: str, bad: str) -> None:
    sp = get_space(name)
    good = sp.sample(random.Random(0))
    with pytest.raises(SpaceError):
        sp.graph_arrays([good, bad])
    with pytest.raises(SpaceError):
        sp.to_graph(bad)


def test_caches_are_bounded_and_shared() -> None:
    from nasctl.spaces import templates

    templates.clear_stores()
    sp = get_space("nb201")
    rng = random.Random(5)
    gs = [sp.arch_at(rng.randrange(sp.size())) for _ in range(40)]
    sp.graph_arrays(gs[:1])
    (store,) = templates._STORES.values()  # noqa: SLF001
    get_space("nb201").graph_arrays(gs[:1])  # another instance, same config: same store
    assert len(templates._STORES) == 1  # noqa: SLF001
    store.max_structs = 10
    for i in range(0, 40, 10):
        assert_same(sp.graph_arrays(gs[i : i + 10]), _reference(sp, gs[i : i + 10]))
        assert len(store._n) <= 10 + 10 + 4  # noqa: SLF001 - emptied between batches
    for k in range(templates.MAX_STORES + 2):
        NB201Space(num_classes=k + 2, cells_per_stage=1).graph_arrays(gs[:1])
    assert len(templates._STORES) == templates.MAX_STORES  # noqa: SLF001


def test_subclass_with_other_graphs_uses_its_graphs() -> None:
    class Wider(NB201Space):
        def to_graph(self, genotype: str):  # noqa: ANN202
            self.channels = 24
            return super().to_graph(genotype)

    sp = Wider()
    gs = _nb201_edge_cases()[:3]
    assert_same(sp.graph_arrays(gs), _reference(sp, gs))


def test_row_families_equal_node_row() -> None:
    rng = random.Random(6)
    for _ in range(200):
        c, o, h = rng.choice((1, 3, 8, 24, 96)), rng.choice((8, 16, 40)), rng.choice((1, 7, 14))
        k, s = rng.choice((1, 3, 5, 7)), rng.choice((1, 2))
        b = GraphBuilder("t", (1, c, h, h))
        g = rng.choice((1, c))
        y = b.conv(b.input, o if g == 1 else c, k, stride=s, groups=g, bias=bool(s - 1), id="c")
        h2 = b.shape(y)[2]
        bn = b.batchnorm(y, id="bn")
        act = b.act(bn, "swish", id="a")
        pool = b.global_pool(act, id="p")
        mul = b.mul(act, pool, id="m")
        add = b.add([act, mul], id="add")
        node_rows = np.array([arrays.node_row(b.build([add]).nodes[i]) for i in range(6)])
        co = b.shape(y)[1]
        fam = np.vstack([
            R.conv_rows(c, co, k, s, g, h, h2, bool(s - 1)),
            R.batchnorm_rows(co, h2),
            R.elementwise_rows("swish", co, h2),
            R.global_pool_rows(co, h2),
            R.scale_rows(co, h2),
            R.add_rows(co, h2),
        ])  # fmt: skip
        assert np.array_equal(fam, node_rows), (c, o, h, k, s, g)
