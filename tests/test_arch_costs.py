"""Cost counts against hand-computed and published numbers."""

from __future__ import annotations

import pytest
from arch_helpers import mixed_graph
from arch_models import MobileNetV2, ResNet18, export

from nasctl.arch.costs import COST_KEYS, graph_costs, node_costs
from nasctl.arch.graph import GraphBuilder
from nasctl.arch.onnx_io import from_onnx


def _within(value: float, published: float, rel: float = 0.01) -> bool:
    return abs(value - published) <= rel * published


@pytest.fixture(scope="module")
def resnet18_graph():  # noqa: ANN201
    """torchvision-style export: BatchNorm folded into the convolutions."""
    return from_onnx(export(ResNet18(), (1, 3, 224, 224), fold_bn=True))


@pytest.fixture(scope="module")
def mobilenetv2_graph():  # noqa: ANN201
    """Export that keeps BatchNormalization nodes."""
    return from_onnx(export(MobileNetV2(), (1, 3, 224, 224), fold_bn=False))


def test_resnet18_matches_published_costs(resnet18_graph) -> None:  # noqa: ANN001
    t = graph_costs(resnet18_graph).total
    assert _within(t["macs"], 1.81e9), t["macs"]
    assert _within(t["params"], 11.69e6), t["params"]
    counts = resnet18_graph.op_counts()
    assert counts["conv"] == 20 and counts.get("batchnorm", 0) == 0 and counts["add"] == 8
    assert "identity" not in counts  # exporter's Identity on shared weights is not a node


def test_mobilenetv2_matches_published_costs(mobilenetv2_graph) -> None:  # noqa: ANN001
    t = graph_costs(mobilenetv2_graph).total
    assert _within(t["macs"], 0.30e9), t["macs"]
    assert _within(t["params"], 3.50e6), t["params"]
    counts = mobilenetv2_graph.op_counts()
    assert counts["dwconv"] == 17 and counts["batchnorm"] == 52 and counts["relu6"] == 35
    # weight bytes: every stored FP32 tensor incl. BN running stats (2 more per channel)
    bn_channels = sum(n.attrs["channels"] for n in mobilenetv2_graph.nodes if n.op == "batchnorm")
    assert t["weight_bytes"] == 4 * (t["params"] + 2 * bn_channels)


def test_conv_linear_bn_node_costs() -> None:
    b = GraphBuilder("t", (2, 16, 10, 10))
    c = b.conv(b.input, 32, 3, stride=2, groups=4, id="g", bias=True)
    n = b.batchnorm(c, id="bn")
    d = b.conv(n, 32, 5, groups=32, id="dw")
    p = b.global_pool(d, id="gp")
    f = b.flatten(p, id="fl")
    fc = b.linear(f, 7, id="fc")
    g = b.build([fc])
    costs = graph_costs(g)
    pn = costs.per_node
    assert pn["g"]["macs"] == 2 * 32 * 5 * 5 * (16 // 4) * 9
    assert pn["g"]["params"] == 32 * 4 * 9 + 32
    assert pn["g"]["act_read_bytes"] == 4 * 2 * 16 * 100
    assert pn["g"]["act_write_bytes"] == 4 * 2 * 32 * 25
    assert pn["bn"] == {
        "macs": 0,
        "params": 64,
        "act_read_bytes": 6400,
        "act_write_bytes": 6400,
        "weight_bytes": 4 * 4 * 32,
    }
    assert pn["dw"]["macs"] == 2 * 32 * 25 * 25
    assert pn["fc"]["macs"] == 2 * 32 * 7 and pn["fc"]["params"] == 32 * 7 + 7
    assert pn["gp"]["macs"] == 0 and pn["gp"]["weight_bytes"] == 0
    for k in COST_KEYS:
        assert costs.total[k] == sum(v[k] for v in pn.values())


def test_unknown_shapes_count_zero_not_crash() -> None:
    g = mixed_graph()
    node = g.node("/b2/se/mul")
    node.in_shapes = [(-1, 48, 16, 16), ()]
    c = node_costs(node)
    assert c["act_read_bytes"] == 0 and c["macs"] == 0
