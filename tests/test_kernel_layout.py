"""ORT's layout conversions (ReorderInput/ReorderOutput) replayed on a graph's units (issue 16),
checked against the optimized graph ONNX Runtime builds on this machine."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import onnx
import pytest

from nasctl.arch.graph import Graph, GraphBuilder
from nasctl.predictor.kernel_layout import host_block, reorders
from nasctl.predictor.kernel_units import graph_units, unit_rows
from nasctl.spaces import get_space
from nasctl.spaces.kernels import KernelsSpace


def _ort_reorders(graph: Graph, tmp: Path) -> tuple[int, int]:
    import onnxruntime as ort
    from nasctl_agent.backends.ort import session_options

    from nasctl.arch.onnx_io import to_onnx

    path = tmp / "optimized.onnx"
    ort.InferenceSession(
        to_onnx(graph).SerializeToString(),
        session_options(1, optimized_path=str(path)),
        providers=["CPUExecutionProvider"],
    )
    ops = Counter(n.op_type for n in onnx.load(path).graph.node)
    return ops["ReorderInput"], ops["ReorderOutput"]


def _sim(graph: Graph) -> tuple[int, int]:
    found = reorders(graph, graph_units(graph))
    return sum(r.to_blocked for r in found), sum(not r.to_blocked for r in found)


def _block_size() -> int:
    """The NCHWc block of this CPU as ORT picks it (16 with AVX-512, 8 with AVX2)."""
    import re

    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return 16 if re.search(r"\bavx512f\b", flags) else 8


def test_the_block_is_the_one_ort_uses_on_this_cpu() -> None:
    """Read from ORT's optimized graph; checked against the CPU's flags (16 with AVX-512)."""
    assert host_block() == _block_size()
    ks = KernelsSpace()
    _, types = unit_rows(ks.to_graph("conv-i24-o24-k1-s1-h28"))
    assert types.count("reorder") == 2  # blocked on AVX2 and AVX-512 (multiple of 4 channels)
    _, types = unit_rows(ks.to_graph("dwconv-i58-k3-s1-h28"))
    assert types.count("reorder") == 0  # 58 channels: not a multiple of 4, ORT keeps NCHW


def _chain(mid: str, c: int) -> Graph:
    """conv -> ``mid`` -> conv: what a network does around one kernel."""
    b = GraphBuilder(f"chain-{mid}-{c}", (1, 32, 28, 28))
    x = b.conv(b.input, c, 3, id="c1")
    if mid == "gconv":
        y = b.conv(x, c, 3, groups=2, id="g")
    elif mid == "maxpool":
        y = b.pool(x, "max", 3, stride=2, id="p")
    elif mid == "se":
        s = b.global_pool(x, id="gap")
        s = b.act(b.conv(s, 8, 1, id="r", bias=True), "relu", id="ra")
        s = b.act(b.conv(s, c, 1, id="e", bias=True), "sigmoid", id="gate")
        y = b.mul(x, s, id="mul")
    else:
        y = b.act(x, mid, id="a")
    return b.build([b.conv(y, 32, 3, id="c2")])


@pytest.mark.parametrize(  # channel counts that behave alike with a block of 8 and of 16
    "mid,c,expected",
    [
        ("relu", 40, (1, 1)),  # a run of convolutions: one reorder at each end
        ("swish", 36, (1, 1)),
        ("gconv", 36, (2, 2)),  # 18-channel groups: NCHW, so out and back in
        ("gconv", 64, (1, 1)),  # 32-channel groups: blocked
        ("maxpool", 48, (1, 1)),
        ("maxpool", 36, (2, 2)),  # unaligned pool: NCHW
        ("se", 48, (2, 2)),  # the gate multiply is NCHW: the full tensor goes out and back
    ],
)
def test_reorders_of_a_chain_match_ort(mid: str, c: int, expected: tuple, tmp_path: Path) -> None:
    g = _chain(mid, c)
    got = _sim(g)
    if mid == "se":  # ORT also reorders the squeeze's 1x1 tensors (part of the SE unit)
        ort_in, ort_out = _ort_reorders(g, tmp_path)
        assert got == expected and ort_in >= got[0] and ort_out >= got[1]
    else:
        assert got == expected == _ort_reorders(g, tmp_path)


def test_reorders_of_samples_and_resnets_match_ort(tmp_path: Path) -> None:
    """Every sampled kernel but SE (whose inner 1x1 reorders belong to its unit), and whole
    resnet architectures: the same reorder counts as ORT's optimized graph."""
    ks, rng = KernelsSpace(), random.Random(5)
    graphs = [ks.to_graph(g) for g in (ks.sample(rng) for _ in range(60)) if not g.startswith("se")]
    sp = get_space("resnet")
    graphs += [sp.to_graph(sp.sample(rng)) for _ in range(3)]
    bad = [g.name for g in graphs if _sim(g) != _ort_reorders(g, tmp_path)]
    assert not bad


def test_a_conv_alone_carries_reorders_that_a_chain_of_convs_shares() -> None:
    ks = KernelsSpace()
    _, alone = unit_rows(ks.to_graph("conv-i64-o64-k3-s1-h28"))
    assert alone == ["conv", "reorder", "reorder"]
    _, stem = unit_rows(ks.to_graph("conv-i3-o64-k3-s2-h224"))  # < block channels: NCHW input
    assert stem == ["conv", "reorder"]
    b = GraphBuilder("three", (1, 64, 28, 28))
    x = b.input
    for i in range(3):
        x = b.act(b.conv(x, 64, 3, id=f"c{i}"), "relu", id=f"r{i}")
    _, types = unit_rows(b.build([x]))
    assert types.count("conv") == 3 and types.count("reorder") == 2
