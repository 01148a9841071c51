"""The kernels space's sampler covers the configuration space real networks use (issue 16)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from nasctl.errors import SpaceError
from nasctl.spaces.kernels import FIELDS, GROUP_WIDTHS, KernelsSpace


def _draws(n: int = 800, seed: int = 0) -> list[str]:
    space, rng = KernelsSpace(), random.Random(seed)
    return [space.sample(rng) for _ in range(n)]


def test_sampler_is_seeded() -> None:
    assert _draws(50, 3) == _draws(50, 3) and _draws(50, 3) != _draws(50, 4)


def test_every_listed_kind_appears() -> None:
    space = KernelsSpace()
    parsed = [space.parse(g) for g in _draws()]
    kinds = Counter(k for k, _, _ in parsed)
    assert set(kinds) == set(FIELDS)  # conv, dconv, dwconv, gconv, linear, pools, gap, add, ...
    convs = [v for k, v, _ in parsed if k == "conv"]
    assert {v["k"] for v in convs} == {1, 3, 5, 7, 11}
    assert {v["s"] for v in convs} == {1, 2, 4}
    assert any(v["i"] == 3 for v in convs)  # stems
    assert {v["d"] for k, v, _ in parsed if k == "dconv"} >= {2, 3, 4}
    widths = {v["i"] // v["g"] for k, v, _ in parsed if k == "gconv"}
    assert len(widths) >= 10 and min(widths) <= 4 and max(widths) >= 64  # group widths vary
    assert {v["k"] for k, v, _ in parsed if k == "dwconv"} == {3, 5, 7}
    acts = {a for _, _, a in parsed if a}
    assert acts >= {"relu", "hardswish", "swish", "sigmoid"}
    sizes = [v["h"] for _, v, _ in parsed if "h" in v]
    assert min(sizes) == 7 and max(sizes) == 224
    chans = [v[t] for _, v, _ in parsed for t in ("i", "o") if t in v]
    assert min(chans) <= 4 and max(chans) >= 2048
    assert max(v["i"] * v["o"] for k, v, _ in parsed if k == "linear") >= 4096 * 4096


def test_se_block_and_other_kernels_are_built_as_networks_write_them() -> None:
    space = KernelsSpace()
    g = space.to_graph("se-i96-o24-h28-swish")
    assert [n.op for n in g.nodes] == ["globalavgpool", "conv", "swish", "conv", "sigmoid", "mul"]
    assert g.node("/se_reduce").attrs["out_channels"] == 24 and g.node("/layer").out_shape == (
        1,
        96,
        28,
        28,
    )
    assert space.to_graph("se-i96-o24-h28-hardswish").node("/se_gate").op == "hardsigmoid"
    d = space.to_graph("dconv-i64-o32-k3-d2-s1-h28").node("/layer")
    assert d.attrs["dilation"] == 2 and d.out_shape == (1, 32, 28, 28)
    assert space.to_graph("concat-i64-h7").node("/layer").out_shape == (1, 128, 7, 7)
    assert space.to_graph("act-i64-h7-hardswish").node("/layer").op == "hardswish"
    assert space.to_graph("gap-i512-h7").node("/layer").out_shape == (1, 512, 1, 1)
    assert space.to_graph("linear-i25088-o4096").node("/layer").attrs["in_features"] == 25088


def test_grouped_convs_get_a_fair_share_over_every_group_width() -> None:
    space = KernelsSpace()
    parsed = [space.parse(g) for g in _draws()]
    gconvs = [v for k, v, _ in parsed if k == "gconv"]
    assert len(gconvs) >= 0.15 * len(parsed)  # not a rare kind (~18 %, about as many as dense)
    widths = Counter(v["i"] // v["g"] for v in gconvs)
    for w in GROUP_WIDTHS:  # every stratum drawn, none dominant
        assert widths[w] >= 8, (w, widths[w])
    # the 3x3 of a ResNeXt/RegNet bottleneck: equal in/out channels, 8..64-channel groups
    mids = [v for v in gconvs if v["i"] == v["o"] and v["k"] == 3 and v["i"] // v["g"] >= 8]
    assert len(mids) >= 0.2 * len(gconvs) and {v["s"] for v in mids} == {1, 2}
    assert all(
        space.to_graph(f"gconv-{'-'.join(f'{t}{v[t]}' for t in FIELDS['gconv'])}").node("/layer").op
        == "gconv"
        for v in gconvs
    )  # never a depthwise conv


def test_channel_split_and_shuffle_are_sampled_as_shufflenet_writes_them() -> None:
    space = KernelsSpace()
    parsed = [space.parse(g) for g in _draws()]
    shuffles = [v for k, v, _ in parsed if k == "shuffle"]
    splits = [v for k, v, _ in parsed if k == "split"]
    assert len(shuffles) >= 15 and len(splits) >= 15
    assert {v["g"] for v in shuffles} >= {2, 3, 4} and all(v["i"] % v["g"] == 0 for v in shuffles)
    assert all(v["i"] % 2 == 0 for v in splits)
    g = space.to_graph("shuffle-i48-g2-h28")
    assert [n.op for n in g.nodes] == ["reshape", "transpose", "reshape"]
    assert g.node("/view").out_shape == (1, 2, 24, 28, 28)
    assert g.node("/layer").attrs["perm"] == [0, 2, 1, 3, 4]
    assert g.node("/unview").out_shape == (1, 48, 28, 28)
    g = space.to_graph("split-i48-h28")
    assert [n.op for n in g.nodes] == ["split"] and len(g.outputs) == 2
    assert g.nodes[0].out_shapes == [(1, 24, 28, 28), (1, 24, 28, 28)]
    for bad in ("shuffle-i48-g5-h28", "shuffle-i4-g4-h28", "split-i7-h28"):
        with pytest.raises(SpaceError):
            space.parse(bad)
