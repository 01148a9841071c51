"""MBConv building blocks: the space's constants and the graph pieces (stem, head, block, SE).

Shared by :mod:`nasctl.spaces.mbconv` (one graph per genotype) and
:mod:`nasctl.spaces.mbconv_arrays` (node arrays of many genotypes), which import it one way.
"""

from __future__ import annotations

from nasctl.arch.graph import GraphBuilder

STAGE_CHANNELS: tuple[int, ...] = (16, 24, 32, 64, 96, 160, 320)
STAGE_STRIDES: tuple[int, ...] = (1, 2, 2, 2, 1, 2, 1)
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
KERNELS: tuple[int, ...] = (3, 5, 7)
EXPANSIONS: tuple[int, ...] = (1, 3, 4, 6)
ACTS: tuple[str, ...] = ("relu", "relu6", "hardswish", "swish")
WIDTHS: tuple[str, ...] = ("0.5", "0.75", "1.0", "1.25")
MIN_DEPTH, MAX_DEPTH = 1, 4
RESOLUTIONS: tuple[int, ...] = tuple(range(96, 225, 16))


def make_divisible(v: float, divisor: int = 8) -> int:
    """Round channels to a multiple of ``divisor``, never below 90% of ``v`` (MobileNet rule)."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new < 0.9 * v:
        new += divisor
    return new


def stem(b: GraphBuilder, mult: float, act: str, divisor: int = 8) -> str:
    """Stem on the graph input: conv3x3 s2 -BN -act; returns its output tensor."""
    c = make_divisible(STEM_CHANNELS * mult, divisor)
    x = b.conv(b.input, c, 3, stride=2, id="/stem/conv")
    x = b.batchnorm(x, id="/stem/bn")
    return b.act(x, act, id="/stem/act")


def head(
    b: GraphBuilder, x: str, mult: float, act: str, num_classes: int, scale: float = 1.0
) -> str:
    """Head: conv1x1 -BN -act -global avgpool -flatten -linear; returns the logits tensor.
    ``scale`` multiplies the head's channels (proxy training; 1 in the space itself)."""
    head_c = make_divisible(HEAD_CHANNELS * max(1.0, mult) * scale, max(1, round(8 * scale)))
    x = b.conv(x, head_c, 1, id="/head/conv")
    x = b.batchnorm(x, id="/head/bn")
    x = b.act(x, act, id="/head/act")
    x = b.global_pool(x, id="/head/pool")
    x = b.flatten(x, id="/head/flatten")
    return b.linear(x, num_classes, id="/head/fc")


def mbconv_block(
    b: GraphBuilder,
    x: str,
    cout: int,
    kernel: int,
    expansion: int,
    stride: int,
    se: bool,
    act: str,
    *,
    prefix: str,
) -> str:
    """One inverted-residual block (see module docstring); returns the output tensor."""
    cin = b.shape(x)[1]
    mid = cin * expansion
    y = x
    if expansion != 1:
        y = b.conv(y, mid, 1, id=f"{prefix}/expand")
        y = b.batchnorm(y, id=f"{prefix}/expand_bn")
        y = b.act(y, act, id=f"{prefix}/expand_act")
    y = b.conv(y, mid, kernel, stride=stride, groups=mid, id=f"{prefix}/dw")
    y = b.batchnorm(y, id=f"{prefix}/dw_bn")
    y = b.act(y, act, id=f"{prefix}/dw_act")
    if se:
        y = squeeze_excite(b, y, make_divisible(mid / 4), gate_for(act), prefix=f"{prefix}/se")
    y = b.conv(y, cout, 1, id=f"{prefix}/project")
    y = b.batchnorm(y, id=f"{prefix}/project_bn")
    if stride == 1 and cin == cout:
        y = b.add([x, y], id=f"{prefix}/add")
    return y


def squeeze_excite(b: GraphBuilder, x: str, reduced: int, gate: str, *, prefix: str) -> str:
    """x * gate(fc2(relu(fc1(avgpool(x))))), fc = conv1x1 with bias."""
    c = b.shape(x)[1]
    s = b.global_pool(x, id=f"{prefix}/pool")
    s = b.conv(s, reduced, 1, bias=True, id=f"{prefix}/fc1")
    s = b.act(s, "relu", id=f"{prefix}/act")
    s = b.conv(s, c, 1, bias=True, id=f"{prefix}/fc2")
    s = b.act(s, gate, id=f"{prefix}/gate")
    return b.mul(x, s, id=f"{prefix}/mul")


def gate_for(act: str) -> str:
    """SE gate: sigmoid for swish networks (EfficientNet), hardsigmoid otherwise (MobileNetV3)."""
    return "sigmoid" if act == "swish" else "hardsigmoid"
