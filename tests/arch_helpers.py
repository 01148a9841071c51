"""Graphs and torch models used by the tests of ``nasctl.arch`` (no torchvision here)."""

from __future__ import annotations

from nasctl.arch.graph import Graph, GraphBuilder


def mixed_graph(res: int = 32) -> Graph:
    """Residual, depthwise, SE, concat branches, avgpool(count_include_pad=False), linear head."""
    b = GraphBuilder("mixed", (1, 3, res, res))
    x = b.conv(b.input, 16, 3, stride=2, id="/stem/conv")
    x = b.batchnorm(x, id="/stem/bn")
    x = b.act(x, "relu", id="/stem/act")
    # residual block
    y = b.conv(x, 16, 3, id="/b1/conv1")
    y = b.batchnorm(y, id="/b1/bn1")
    y = b.act(y, "relu6", id="/b1/act1")
    y = b.conv(y, 16, 3, id="/b1/conv2", bias=True)
    x = b.add([x, y], id="/b1/add")
    # inverted residual with depthwise and SE
    e = b.conv(x, 48, 1, id="/b2/expand")
    e = b.act(e, "hardswish", id="/b2/act1")
    d = b.conv(e, 48, 5, groups=48, id="/b2/dw")
    d = b.act(d, "swish", id="/b2/act2")
    s = b.global_pool(d, id="/b2/se/pool")
    s = b.conv(s, 12, 1, id="/b2/se/fc1", bias=True)
    s = b.act(s, "relu", id="/b2/se/act")
    s = b.conv(s, 48, 1, id="/b2/se/fc2", bias=True)
    s = b.act(s, "hardsigmoid", id="/b2/se/gate")
    d = b.mul(d, s, id="/b2/se/mul")
    x = b.conv(d, 24, 1, id="/b2/project")
    x = b.batchnorm(x, id="/b2/bn")
    # concat branches, grouped conv, pools
    p1 = b.conv(x, 16, 3, groups=4, id="/b3/gconv")
    p2 = b.pool(x, "avg", 3, stride=1, id="/b3/avg", count_include_pad=False)
    p3 = b.pool(x, "max", 3, stride=1, id="/b3/max")
    x = b.concat([p1, p2, p3], id="/b3/cat")
    x = b.act(x, "gelu", id="/b3/gelu")
    x = b.add([x, x, x], id="/b3/sum3")
    x = b.global_pool(x, id="/head/pool")
    x = b.flatten(x, id="/head/flatten")
    x = b.linear(x, 10, id="/head/fc")
    return b.build([x], meta={"space": "test"})


def misc_graph() -> Graph:
    """The less common ops: split, resize, pad, reshape, transpose, matmul, layernorm, softmax."""
    b = GraphBuilder("misc", (1, 8, 8, 8))
    x = b.conv(b.input, 16, 3, stride=2, id="/conv", pads=[0, 0, 1, 1])
    x = b.pool(x, "avg", 3, stride=1, id="/avg_asym", pads=[2, 0, 0, 2])
    x = b.pool(x, "max", 2, stride=1, id="/max_asym", pads=[0, 0, 1, 1])
    a, c = b.split(x, [4, 12], id="/split")
    a = b.resize(a, 2, id="/up")
    a = b.pad(a, [1, 0, 1, 0], id="/pad")
    a = b.pool(a, "avg", 2, stride=2, id="/down", pads=[0, 0, 0, 0])
    a = b.pad(a, [0, 1, 0, 0], id="/pad2", mode="reflect")
    a = b.pool(a, "max", 2, stride=1, id="/max2", pads=[0, 0, 0, 0])  # back to 4x4
    x = b.concat([a, c], id="/cat")
    x = b.reshape(x, (1, 16, 16), id="/tokens")
    t = b.transpose(x, [0, 2, 1], id="/tr")
    t = b.layernorm(t, id="/ln")
    t = b.linear(t, 16, id="/qkv")
    s = b.matmul(t, x, id="/attn")  # (1,16,16) @ (1,16,16)
    s = b.softmax(s, id="/softmax")
    s = b.act(s, "sigmoid", id="/sig")
    return b.build([s, c])
