"""A TUNING set for the per-kernel model's per-graph term (issue 16): well-known classifiers of
families that are NOT in the aside (evaluation) set of bench/zoo.py + bench/zoo_more.py, in plain
torch after their published layer configurations (random weights), batch 1, 224x224.

The aside set holds ResNets, MobileNets, EfficientNet-B0, RegNets, DenseNet, GoogLeNet,
ShuffleNets, SqueezeNets, VGGs, AlexNet, ResNeXt and MNASNet. The tuning set, chosen to span the
shapes the aside set has without being any of its families:

* ``ghostnet_1_0`` (GhostNet 1.0, Han et al. 2020, ~0.15 GMACs): many small units, channel
  concat + slice in every ghost module, depthwise convs, SE with a hard-sigmoid gate: the small,
  split/concat-heavy kind of network (ShuffleNet x0.5's failure mode) without being a ShuffleNet;
* ``repvgg_a0`` (RepVGG-A0 in its deployed form, Ding et al. 2021, ~1.4 GMACs): a plain chain of
  3x3 convs + ReLU, 22 layers, 48..1280 channels;
* ``inception_v3`` (torchvision's Inception-v3 at 224 px, not its native 299, ~3.3 GMACs):
  multi-branch blocks with 1x7/7x1 and 3x3 convs, avg/max pools and concats.

    .venv/bin/python bench/zoo_tune.py --out runs/u/tune_onnx     # the 3 models + zoo.json
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import zoo  # noqa: E402
from zoo import SE, Classifier, conv_bn, make_divisible  # noqa: E402

#: published GMACs at 224x224 (papers; Inception-v3's 5.7 are at 299 px, ~3.3 at 224)
TUNE_GMACS: dict[str, float] = {
    "ghostnet_1_0": 0.141,
    "repvgg_a0": 1.36,
    "inception_v3": 5.71 * (224 / 299) ** 2,
}


# -- GhostNet 1.0 ---------------------------------------------------------------------------------


class Ghost(nn.Module):
    """Ghost module: 1x1 conv to half the channels, a cheap 3x3 depthwise conv of those, concat,
    slice to ``cout``."""

    def __init__(self, cin: int, cout: int, relu: bool) -> None:
        super().__init__()
        init = math.ceil(cout / 2)
        act = nn.ReLU if relu else None
        self.cout = cout
        self.primary = conv_bn(cin, init, 1, act=act() if act else None)
        self.cheap = conv_bn(init, init, 3, g=init, act=act() if act else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.primary(x)
        return torch.cat([x1, self.cheap(x1)], 1)[:, : self.cout]


class GhostBottleneck(nn.Module):
    def __init__(self, cin: int, mid: int, cout: int, k: int, s: int, se: float) -> None:
        super().__init__()
        body: list[nn.Module] = [Ghost(cin, mid, relu=True)]
        if s > 1:
            body.append(conv_bn(mid, mid, k, s, g=mid))
        if se:
            body.append(SE(mid, make_divisible(mid * se, 4), nn.ReLU(), nn.Hardsigmoid()))
        body.append(Ghost(mid, cout, relu=False))
        self.body = nn.Sequential(*body)
        self.short = (
            nn.Identity()
            if cin == cout and s == 1
            else nn.Sequential(conv_bn(cin, cin, k, s, g=cin), conv_bn(cin, cout, 1))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.short(x)


_GHOST = [  # k, expansion (mid), out, SE ratio, stride
    (3, 16, 16, 0, 1), (3, 48, 24, 0, 2), (3, 72, 24, 0, 1), (5, 72, 40, 0.25, 2),
    (5, 120, 40, 0.25, 1), (3, 240, 80, 0, 2), (3, 200, 80, 0, 1), (3, 184, 80, 0, 1),
    (3, 184, 80, 0, 1), (3, 480, 112, 0.25, 1), (3, 672, 112, 0.25, 1), (5, 672, 160, 0.25, 2),
    (5, 960, 160, 0, 1), (5, 960, 160, 0.25, 1), (5, 960, 160, 0, 1), (5, 960, 160, 0.25, 1),
]  # fmt: skip


def ghostnet() -> nn.Module:
    layers: list[nn.Module] = [conv_bn(3, 16, 3, 2, act=nn.ReLU())]
    cin = 16
    for k, mid, cout, se, s in _GHOST:
        layers.append(GhostBottleneck(cin, mid, cout, k, s, se))
        cin = cout
    layers.append(conv_bn(cin, 960, 1, act=nn.ReLU()))
    features = nn.Sequential(*layers)
    head = nn.Sequential(
        nn.Unflatten(1, (960, 1, 1)), nn.Conv2d(960, 1280, 1), nn.ReLU(), nn.Flatten(),
        nn.Linear(1280, 1000),
    )  # fmt: skip
    return Classifier(features, head)


# -- RepVGG-A0, deployed (each block one 3x3 conv with bias + ReLU) -------------------------------


def repvgg_a0() -> nn.Module:
    widths, depths = (48, 48, 96, 192, 1280), (1, 2, 4, 14, 1)
    layers: list[nn.Module] = []
    cin = 3
    for w, n in zip(widths, depths, strict=True):
        for j in range(n):
            layers += [nn.Conv2d(cin, w, 3, 2 if j == 0 else 1, 1), nn.ReLU()]
            cin = w
    return Classifier(nn.Sequential(*layers), nn.Linear(1280, 1000))


# -- Inception-v3 (torchvision's layout, 224 px input) --------------------------------------------


def _c(cin: int, cout: int, k: int | tuple[int, int], s: int = 1, p: int | tuple = 0) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, s, p, bias=False), nn.BatchNorm2d(cout, eps=0.001), nn.ReLU()
    )


class _Cat(nn.Module):
    def __init__(self, *branches: nn.Module) -> None:
        super().__init__()
        self.b = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([b(x) for b in self.b], 1)


def _pool_proj(cin: int, cout: int) -> nn.Module:
    return nn.Sequential(nn.AvgPool2d(3, 1, 1), _c(cin, cout, 1))


def _a(cin: int, pool: int) -> nn.Module:
    return _Cat(
        _c(cin, 64, 1),
        nn.Sequential(_c(cin, 48, 1), _c(48, 64, 5, p=2)),
        nn.Sequential(_c(cin, 64, 1), _c(64, 96, 3, p=1), _c(96, 96, 3, p=1)),
        _pool_proj(cin, pool),
    )


def _b(cin: int) -> nn.Module:
    return _Cat(
        _c(cin, 384, 3, 2),
        nn.Sequential(_c(cin, 64, 1), _c(64, 96, 3, p=1), _c(96, 96, 3, 2)),
        nn.MaxPool2d(3, 2),
    )


def _c7(cin: int, m: int) -> nn.Module:
    return _Cat(
        _c(cin, 192, 1),
        nn.Sequential(_c(cin, m, 1), _c(m, m, (1, 7), p=(0, 3)), _c(m, 192, (7, 1), p=(3, 0))),
        nn.Sequential(
            _c(cin, m, 1),
            _c(m, m, (7, 1), p=(3, 0)),
            _c(m, m, (1, 7), p=(0, 3)),
            _c(m, m, (7, 1), p=(3, 0)),
            _c(m, 192, (1, 7), p=(0, 3)),
        ),  # fmt: skip
        _pool_proj(cin, 192),
    )


def _d(cin: int) -> nn.Module:
    return _Cat(
        nn.Sequential(_c(cin, 192, 1), _c(192, 320, 3, 2)),
        nn.Sequential(
            _c(cin, 192, 1),
            _c(192, 192, (1, 7), p=(0, 3)),
            _c(192, 192, (7, 1), p=(3, 0)),
            _c(192, 192, 3, 2),
        ),  # fmt: skip
        nn.MaxPool2d(3, 2),
    )


class _Split2(nn.Module):
    """x -> [1x3 branch, 3x1 branch] concatenated (Inception-E's split 3x3)."""

    def __init__(self, cin: int, m: int, pre: nn.Module) -> None:
        super().__init__()
        self.pre, self.a, self.b = pre, _c(m, 384, (1, 3), p=(0, 1)), _c(m, 384, (3, 1), p=(1, 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pre(x)
        return torch.cat([self.a(y), self.b(y)], 1)


def _e(cin: int) -> nn.Module:
    return _Cat(
        _c(cin, 320, 1),
        _Split2(cin, 384, _c(cin, 384, 1)),
        _Split2(cin, 384, nn.Sequential(_c(cin, 448, 1), _c(448, 384, 3, p=1))),
        _pool_proj(cin, 192),
    )


def inception_v3() -> nn.Module:
    features = nn.Sequential(
        _c(3, 32, 3, 2), _c(32, 32, 3), _c(32, 64, 3, p=1), nn.MaxPool2d(3, 2),
        _c(64, 80, 1), _c(80, 192, 3), nn.MaxPool2d(3, 2),
        _a(192, 32), _a(256, 64), _a(288, 64), _b(288),
        _c7(768, 128), _c7(768, 160), _c7(768, 160), _c7(768, 192), _d(768),
        _e(1280), _e(2048),
    )  # fmt: skip
    return Classifier(features, nn.Linear(2048, 1000))


zoo.MODELS.clear()
zoo.MODELS.update({"ghostnet_1_0": ghostnet, "repvgg_a0": repvgg_a0, "inception_v3": inception_v3})
zoo.PUBLISHED_GMACS.clear()
zoo.PUBLISHED_GMACS.update(TUNE_GMACS)

if __name__ == "__main__":
    sys.exit(zoo.main())
