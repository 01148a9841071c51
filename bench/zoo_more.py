"""More well-known classifiers for the unseen-families benchmark of issue 16, in plain torch after
torchvision's layer configurations (random weights), added to :data:`zoo.MODELS`: families and
variants the predictor's design never looked at (the 12 of :mod:`zoo` were looked at when the
out-of-distribution overhead form was chosen in issue 4).

    .venv/bin/python bench/zoo_more.py --out runs/k16/zoo_onnx        # all 21 models + zoo.json
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import zoo  # noqa: E402
from zoo import SE, Classifier, InvRes, conv_bn, make_divisible  # noqa: E402

#: published GMACs at 224x224 (torchvision model docs)
MORE_GMACS: dict[str, float] = {
    "resnet34": 3.66,
    "resnext50_32x4d": 4.23,
    "vgg13": 11.31,
    "mobilenet_v3_large": 0.217,
    "regnet_y_400mf": 0.40,
    "googlenet": 1.50,
    "squeezenet1_0": 0.82,
    "shufflenet_v2_x0_5": 0.041,
    "mnasnet1_0": 0.31,
}


class NeXtBlock(nn.Module):
    """Bottleneck with a grouped 3x3 (ResNeXt: ``groups`` x ``width // groups`` channels)."""

    def __init__(self, cin: int, width: int, cout: int, stride: int, groups: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv_bn(cin, width, 1, act=nn.ReLU()),
            conv_bn(width, width, 3, stride, g=groups, act=nn.ReLU()),
            conv_bn(width, cout, 1),
        )
        self.short = conv_bn(cin, cout, 1, stride) if stride != 1 or cin != cout else nn.Identity()
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.short(x))


def resnext50_32x4d() -> nn.Module:
    layers: list[nn.Module] = [conv_bn(3, 64, 7, 2, act=nn.ReLU()), nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for i, (planes, n) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3), strict=True)):
        for j in range(n):
            layers.append(NeXtBlock(cin, planes * 2, planes * 4, 2 if i and not j else 1, 32))
            cin = planes * 4
    return Classifier(nn.Sequential(*layers), nn.Linear(cin, 1000))


class YBlock(nn.Module):
    """RegNetY: 1x1, grouped 3x3 (group width 8), SE (squeeze = a quarter of the input), 1x1."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv_bn(cin, cout, 1, act=nn.ReLU()),
            conv_bn(cout, cout, 3, stride, g=cout // 8, act=nn.ReLU()),
            SE(cout, int(round(0.25 * cin)), nn.ReLU(), nn.Sigmoid()),
            conv_bn(cout, cout, 1),
        )
        self.short = conv_bn(cin, cout, 1, stride) if stride != 1 or cin != cout else nn.Identity()
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.short(x))


def regnet_y_400mf() -> nn.Module:
    layers: list[nn.Module] = [conv_bn(3, 32, 3, 2, act=nn.ReLU())]
    cin = 32
    for w, d in zip((48, 104, 208, 440), (1, 3, 6, 6), strict=True):
        layers += [YBlock(cin if j == 0 else w, w, 2 if j == 0 else 1) for j in range(d)]
        cin = w
    return Classifier(nn.Sequential(*layers), nn.Linear(cin, 1000))


def mobilenet_v3_large() -> nn.Module:
    layers: list[nn.Module] = [conv_bn(3, 16, 3, 2, act=nn.Hardswish())]
    cin = 16
    for k, exp, c, use_se, a, s in (
        (3, 16, 16, False, "RE", 1), (3, 64, 24, False, "RE", 2), (3, 72, 24, False, "RE", 1),
        (5, 72, 40, True, "RE", 2), (5, 120, 40, True, "RE", 1), (5, 120, 40, True, "RE", 1),
        (3, 240, 80, False, "HS", 2), (3, 200, 80, False, "HS", 1), (3, 184, 80, False, "HS", 1),
        (3, 184, 80, False, "HS", 1), (3, 480, 112, True, "HS", 1), (3, 672, 112, True, "HS", 1),
        (5, 672, 160, True, "HS", 2), (5, 960, 160, True, "HS", 1), (5, 960, 160, True, "HS", 1),
    ):  # fmt: skip
        act = nn.ReLU if a == "RE" else nn.Hardswish
        se = SE(exp, make_divisible(exp // 4), nn.ReLU(), nn.Hardsigmoid()) if use_se else None
        layers.append(InvRes(cin, exp, c, k, s, act, se))
        cin = c
    layers.append(conv_bn(cin, 960, 1, act=nn.Hardswish()))
    head = nn.Sequential(
        nn.Linear(960, 1280), nn.Hardswish(), nn.Dropout(0.2), nn.Linear(1280, 1000)
    )
    return Classifier(nn.Sequential(*layers), head)


def mnasnet1_0() -> nn.Module:
    layers: list[nn.Module] = [
        conv_bn(3, 32, 3, 2, act=nn.ReLU()), conv_bn(32, 32, 3, g=32, act=nn.ReLU()),
        conv_bn(32, 16, 1),
    ]  # fmt: skip
    cin = 16
    for c, k, s, t, n in ((24, 3, 2, 3, 3), (40, 5, 2, 3, 3), (80, 5, 2, 6, 3), (96, 3, 1, 6, 2),
                          (192, 5, 2, 6, 4), (320, 3, 1, 6, 1)):  # fmt: skip
        for j in range(n):
            layers.append(InvRes(cin, cin * t, c, k, s if j == 0 else 1, nn.ReLU))
            cin = c
    layers.append(conv_bn(cin, 1280, 1, act=nn.ReLU()))
    return Classifier(nn.Sequential(*layers), nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, 1000)))


class Inception(nn.Module):
    """GoogLeNet's block: 1x1 | 1x1-3x3 | 1x1-3x3 | maxpool-1x1, concatenated."""

    def __init__(self, cin: int, c1: int, r3: int, c3: int, r5: int, c5: int, pp: int) -> None:
        super().__init__()
        relu = nn.ReLU
        self.b1 = conv_bn(cin, c1, 1, act=relu())
        self.b2 = nn.Sequential(conv_bn(cin, r3, 1, act=relu()), conv_bn(r3, c3, 3, act=relu()))
        self.b3 = nn.Sequential(conv_bn(cin, r5, 1, act=relu()), conv_bn(r5, c5, 3, act=relu()))
        self.b4 = nn.Sequential(
            nn.MaxPool2d(3, 1, 1, ceil_mode=True), conv_bn(cin, pp, 1, act=relu())
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], 1)


def googlenet() -> nn.Module:
    pool = lambda k=3: nn.MaxPool2d(k, 2, ceil_mode=True)  # noqa: E731
    relu = nn.ReLU
    feats = nn.Sequential(
        conv_bn(3, 64, 7, 2, act=relu()), pool(), conv_bn(64, 64, 1, act=relu()),
        conv_bn(64, 192, 3, act=relu()), pool(),
        Inception(192, 64, 96, 128, 16, 32, 32), Inception(256, 128, 128, 192, 32, 96, 64), pool(),
        Inception(480, 192, 96, 208, 16, 48, 64), Inception(512, 160, 112, 224, 24, 64, 64),
        Inception(512, 128, 128, 256, 24, 64, 64), Inception(512, 112, 144, 288, 32, 64, 64),
        Inception(528, 256, 160, 320, 32, 128, 128), pool(2),
        Inception(832, 256, 160, 320, 32, 128, 128), Inception(832, 384, 192, 384, 48, 128, 128),
    )  # fmt: skip
    return Classifier(feats, nn.Sequential(nn.Dropout(0.2), nn.Linear(1024, 1000)))


def squeezenet1_0() -> nn.Module:
    pool = lambda: nn.MaxPool2d(3, 2, ceil_mode=True)  # noqa: E731
    f = zoo.Fire
    return nn.Sequential(
        nn.Conv2d(3, 96, 7, 2), nn.ReLU(), pool(),
        f(96, 16, 64, 64), f(128, 16, 64, 64), f(128, 32, 128, 128), pool(),
        f(256, 32, 128, 128), f(256, 48, 192, 192), f(384, 48, 192, 192), f(384, 64, 256, 256),
        pool(), f(512, 64, 256, 256),
        nn.Dropout(), nn.Conv2d(512, 1000, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    )  # fmt: skip


_VGG13: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M",
                           512, 512, "M"]  # fmt: skip

zoo.MODELS.update(
    {
        "resnet34": lambda: zoo.resnet((3, 4, 6, 3), bottleneck=False),
        "resnext50_32x4d": resnext50_32x4d,
        "vgg13": lambda: zoo.vgg(_VGG13),
        "mobilenet_v3_large": mobilenet_v3_large,
        "regnet_y_400mf": regnet_y_400mf,
        "googlenet": googlenet,
        "squeezenet1_0": squeezenet1_0,
        "shufflenet_v2_x0_5": lambda: zoo.shufflenet_v2((24, 48, 96, 192, 1024)),
        "mnasnet1_0": mnasnet1_0,
    }
)
zoo.PUBLISHED_GMACS.update(MORE_GMACS)

if __name__ == "__main__":
    sys.exit(zoo.main())
