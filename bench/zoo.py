"""Well-known image classifiers in plain torch, exported to ONNX at 1x3x224x224 (issue 4,
"Unseen families": the predictor is trained on search-space nets and kernels, tested on these).

torchvision is not a dependency, so each family is defined here after its reference
implementation (torchvision's layer configurations), with random weights: latency does not depend
on trained values. Export: ``model.eval()``, ``torch.onnx.export(dynamo=False, opset_version=17,
do_constant_folding=True)``, which folds BatchNorm into the preceding convolution.

    .venv/bin/python bench/zoo.py --out runs/bench/zoo_onnx            # all models, + zoo.json
    .venv/bin/python bench/zoo.py --out /tmp/zoo --only resnet18,vgg16

Published MACs at 224 px (multiply-accumulates, :data:`PUBLISHED_GMACS`) are checked against
``nasctl.arch.costs`` of the exported graph in ``zoo.json`` and in ``tests/test_bench_zoo.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

#: published GMACs at 224x224 (torchvision model docs / the papers)
PUBLISHED_GMACS: dict[str, float] = {
    "resnet18": 1.81,
    "resnet50": 4.09,
    "vgg11": 7.61,
    "vgg16": 15.47,
    "alexnet": 0.71,
    "densenet121": 2.83,
    "shufflenet_v2_x1_0": 0.146,
    "squeezenet1_1": 0.35,
    "regnet_x_400mf": 0.41,
    "mobilenet_v3_small": 0.057,
    "mobilenet_v2": 0.30,
    "efficientnet_b0": 0.39,
}


def conv_bn(cin: int, cout: int, k: int, s: int = 1, g: int = 1, act: nn.Module | None = None):
    """conv(k, stride s, groups g, 'same' padding) + BN [+ activation]."""
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, s, (k - 1) // 2, groups=g, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act is not None:
        layers.append(act)
    return nn.Sequential(*layers)


def make_divisible(v: float, divisor: int = 8) -> int:
    """Round channels as MobileNet/EfficientNet do (never more than 10% down)."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


class Classifier(nn.Module):
    """features -> global average pool -> flatten -> head."""

    def __init__(self, features: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.features, self.pool, self.head = features, nn.AdaptiveAvgPool2d(1), head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.pool(self.features(x)), 1))


# -- ResNet ------------------------------------------------------------------------------------


class ResBlock(nn.Module):
    """Basic (two 3x3) or bottleneck (1x1-3x3-1x1, stride on the 3x3: v1.5) residual block."""

    def __init__(self, cin: int, width: int, stride: int, bottleneck: bool) -> None:
        super().__init__()
        cout = width * 4 if bottleneck else width
        relu = nn.ReLU(inplace=True)
        if bottleneck:
            self.body = nn.Sequential(
                conv_bn(cin, width, 1, act=nn.ReLU()),
                conv_bn(width, width, 3, stride, act=nn.ReLU()),
                conv_bn(width, cout, 1),
            )
        else:
            self.body = nn.Sequential(
                conv_bn(cin, width, 3, stride, act=nn.ReLU()), conv_bn(width, cout, 3)
            )
        self.short = conv_bn(cin, cout, 1, stride) if stride != 1 or cin != cout else nn.Identity()
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.short(x))


def resnet(depths: tuple[int, ...], bottleneck: bool) -> nn.Module:
    layers: list[nn.Module] = [conv_bn(3, 64, 7, 2, act=nn.ReLU()), nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for i, (width, n) in enumerate(zip((64, 128, 256, 512), depths, strict=True)):
        for j in range(n):
            layers.append(ResBlock(cin, width, 2 if i > 0 and j == 0 else 1, bottleneck))
            cin = width * 4 if bottleneck else width
    return Classifier(nn.Sequential(*layers), nn.Linear(cin, 1000))


# -- VGG, AlexNet (no BN; huge fully connected layers) --------------------------------------------


def vgg(cfg: list[int | str]) -> nn.Module:
    layers: list[nn.Module] = []
    cin = 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, int(v), 3, padding=1), nn.ReLU(inplace=True)]
            cin = int(v)
    return nn.Sequential(*layers, nn.Flatten(), *_fc_head(512 * 7 * 7))


def _fc_head(n_in: int) -> list[nn.Module]:
    return [
        nn.Dropout(),
        nn.Linear(n_in, 4096),
        nn.ReLU(inplace=True),
        nn.Dropout(),
        nn.Linear(4096, 4096),
        nn.ReLU(inplace=True),
        nn.Linear(4096, 1000),
    ]


def alexnet() -> nn.Module:
    r = nn.ReLU
    return nn.Sequential(
        nn.Conv2d(3, 64, 11, 4, 2), r(), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), r(), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), r(),
        nn.Conv2d(384, 256, 3, padding=1), r(),
        nn.Conv2d(256, 256, 3, padding=1), r(), nn.MaxPool2d(3, 2),
        nn.Flatten(), *_fc_head(256 * 6 * 6),
    )  # fmt: skip


# -- DenseNet (pre-activation BN that cannot fold, concat-heavy) --------------------------------


class DenseLayer(nn.Module):
    """BN-ReLU-conv1x1(4k)-BN-ReLU-conv3x3(k) on the concatenation of all earlier features."""

    def __init__(self, cin: int, growth: int) -> None:
        super().__init__()
        self.f = nn.Sequential(
            nn.BatchNorm2d(cin), nn.ReLU(), nn.Conv2d(cin, 4 * growth, 1, bias=False),
            nn.BatchNorm2d(4 * growth), nn.ReLU(),
            nn.Conv2d(4 * growth, growth, 3, 1, 1, bias=False),
        )  # fmt: skip

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        return self.f(torch.cat(feats, 1))


class DenseBlock(nn.Module):
    def __init__(self, n: int, cin: int, growth: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(DenseLayer(cin + i * growth, growth) for i in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for layer in self.layers:
            feats.append(layer(feats))
        return torch.cat(feats, 1)


def densenet121(growth: int = 32, blocks: tuple[int, ...] = (6, 12, 24, 16)) -> nn.Module:
    layers: list[nn.Module] = [conv_bn(3, 64, 7, 2, act=nn.ReLU()), nn.MaxPool2d(3, 2, 1)]
    c = 64
    for i, n in enumerate(blocks):
        layers.append(DenseBlock(n, c, growth))
        c += n * growth
        if i < len(blocks) - 1:
            layers += [
                nn.BatchNorm2d(c),
                nn.ReLU(),
                nn.Conv2d(c, c // 2, 1, bias=False),
                nn.AvgPool2d(2, 2),
            ]
            c //= 2
    layers += [nn.BatchNorm2d(c), nn.ReLU()]
    return Classifier(nn.Sequential(*layers), nn.Linear(c, 1000))


# -- ShuffleNetV2 (split, concat, channel shuffle) ---------------------------------------------


class ShuffleUnit(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        bf = cout // 2
        self.stride = stride
        if stride > 1:
            self.branch1 = nn.Sequential(
                conv_bn(cin, cin, 3, stride, g=cin), conv_bn(cin, bf, 1, act=nn.ReLU())
            )
        b2_in = cin if stride > 1 else bf
        self.branch2 = nn.Sequential(
            conv_bn(b2_in, bf, 1, act=nn.ReLU()), conv_bn(bf, bf, 3, stride, g=bf),
            conv_bn(bf, bf, 1, act=nn.ReLU()),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), 1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), 1)
        n, c, h, w = out.shape
        return out.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)


def shufflenet_v2(widths: tuple[int, ...] = (24, 116, 232, 464, 1024)) -> nn.Module:
    layers: list[nn.Module] = [conv_bn(3, widths[0], 3, 2, act=nn.ReLU()), nn.MaxPool2d(3, 2, 1)]
    cin = widths[0]
    for cout, n in zip(widths[1:4], (4, 8, 4), strict=True):
        layers += [ShuffleUnit(cin if j == 0 else cout, cout, 2 if j == 0 else 1) for j in range(n)]
        cin = cout
    layers.append(conv_bn(cin, widths[4], 1, act=nn.ReLU()))
    return Classifier(nn.Sequential(*layers), nn.Linear(widths[4], 1000))


# -- SqueezeNet 1.1 (fire modules: squeeze 1x1, expand 1x1 + 3x3, concat) ----------------------


class Fire(nn.Module):
    def __init__(self, cin: int, sq: int, e1: int, e3: int) -> None:
        super().__init__()
        self.sq = nn.Sequential(nn.Conv2d(cin, sq, 1), nn.ReLU())
        self.e1 = nn.Sequential(nn.Conv2d(sq, e1, 1), nn.ReLU())
        self.e3 = nn.Sequential(nn.Conv2d(sq, e3, 3, padding=1), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.sq(x)
        return torch.cat((self.e1(s), self.e3(s)), 1)


def squeezenet1_1() -> nn.Module:
    pool = lambda: nn.MaxPool2d(3, 2, ceil_mode=True)  # noqa: E731
    return nn.Sequential(
        nn.Conv2d(3, 64, 3, 2), nn.ReLU(), pool(),
        Fire(64, 16, 64, 64), Fire(128, 16, 64, 64), pool(),
        Fire(128, 32, 128, 128), Fire(256, 32, 128, 128), pool(),
        Fire(256, 48, 192, 192), Fire(384, 48, 192, 192),
        Fire(384, 64, 256, 256), Fire(512, 64, 256, 256),
        nn.Dropout(), nn.Conv2d(512, 1000, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    )  # fmt: skip


# -- RegNetX-400MF (grouped 3x3 convs, group width 16) ------------------------------------------


class XBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, group_width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv_bn(cin, cout, 1, act=nn.ReLU()),
            conv_bn(cout, cout, 3, stride, g=cout // group_width, act=nn.ReLU()),
            conv_bn(cout, cout, 1),
        )
        self.short = conv_bn(cin, cout, 1, stride) if stride != 1 or cin != cout else nn.Identity()
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.short(x))


def regnet_x_400mf(
    widths: tuple[int, ...] = (32, 64, 160, 400), depths: tuple[int, ...] = (1, 2, 7, 12)
) -> nn.Module:
    layers: list[nn.Module] = [conv_bn(3, 32, 3, 2, act=nn.ReLU())]
    cin = 32
    for w, d in zip(widths, depths, strict=True):
        layers += [XBlock(cin if j == 0 else w, w, 2 if j == 0 else 1, 16) for j in range(d)]
        cin = w
    return Classifier(nn.Sequential(*layers), nn.Linear(cin, 1000))


# -- MobileNetV2 / V3-small / EfficientNet-B0 (inverted residuals, SE) --------------------------


class SE(nn.Module):
    """Squeeze-excitation: global pool, 1x1 reduce, act, 1x1 expand, gate, multiply."""

    def __init__(self, c: int, sq: int, act: nn.Module, gate: nn.Module) -> None:
        super().__init__()
        self.f = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, sq, 1), act, nn.Conv2d(sq, c, 1), gate
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.f(x)


class InvRes(nn.Module):
    """Inverted residual: [expand 1x1] - depthwise k x k - [SE] - project 1x1 (+ skip)."""

    def __init__(self, cin: int, exp: int, cout: int, k: int, s: int, act: Callable[[], nn.Module],
                 se: nn.Module | None = None) -> None:  # fmt: skip
        super().__init__()
        layers: list[nn.Module] = [] if exp == cin else [conv_bn(cin, exp, 1, act=act())]
        layers.append(conv_bn(exp, exp, k, s, g=exp, act=act()))
        if se is not None:
            layers.append(se)
        layers.append(conv_bn(exp, cout, 1))
        self.f = nn.Sequential(*layers)
        self.skip = s == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.f(x) if self.skip else self.f(x)


def mobilenet_v2() -> nn.Module:
    act = nn.ReLU6
    layers: list[nn.Module] = [conv_bn(3, 32, 3, 2, act=act())]
    cin = 32
    for t, c, n, s in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                       (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)):  # fmt: skip
        for j in range(n):
            layers.append(InvRes(cin, cin * t, c, 3, s if j == 0 else 1, act))
            cin = c
    layers.append(conv_bn(cin, 1280, 1, act=act()))
    return Classifier(nn.Sequential(*layers), nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, 1000)))


def mobilenet_v3_small() -> nn.Module:
    layers: list[nn.Module] = [conv_bn(3, 16, 3, 2, act=nn.Hardswish())]
    cin = 16
    # (kernel, expanded, out, SE, activation, stride), torchvision's table
    for k, exp, c, use_se, a, s in (
        (3, 16, 16, True, "RE", 2), (3, 72, 24, False, "RE", 2), (3, 88, 24, False, "RE", 1),
        (5, 96, 40, True, "HS", 2), (5, 240, 40, True, "HS", 1), (5, 240, 40, True, "HS", 1),
        (5, 120, 48, True, "HS", 1), (5, 144, 48, True, "HS", 1), (5, 288, 96, True, "HS", 2),
        (5, 576, 96, True, "HS", 1), (5, 576, 96, True, "HS", 1),
    ):  # fmt: skip
        act = nn.ReLU if a == "RE" else nn.Hardswish
        se = SE(exp, make_divisible(exp // 4), nn.ReLU(), nn.Hardsigmoid()) if use_se else None
        layers.append(InvRes(cin, exp, c, k, s, act, se))
        cin = c
    layers.append(conv_bn(cin, 576, 1, act=nn.Hardswish()))
    head = nn.Sequential(
        nn.Linear(576, 1024), nn.Hardswish(), nn.Dropout(0.2), nn.Linear(1024, 1000)
    )
    return Classifier(nn.Sequential(*layers), head)


def efficientnet_b0() -> nn.Module:
    act = nn.SiLU
    layers: list[nn.Module] = [conv_bn(3, 32, 3, 2, act=act())]
    cin = 32
    for t, k, s, c, n in ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
                          (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)):  # fmt: skip
        for j in range(n):
            exp = cin * t
            se = SE(exp, max(1, cin // 4), act(), nn.Sigmoid())
            layers.append(InvRes(cin, exp, c, k, s if j == 0 else 1, act, se))
            cin = c
    layers.append(conv_bn(cin, 1280, 1, act=act()))
    return Classifier(nn.Sequential(*layers), nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, 1000)))


_VGG11: list[int | str] = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]
_VGG16: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
                           512, 512, 512, "M", 512, 512, 512, "M"]  # fmt: skip

#: name -> constructor of an (untrained) model taking a (1, 3, 224, 224) input
MODELS: dict[str, Callable[[], nn.Module]] = {
    "resnet18": lambda: resnet((2, 2, 2, 2), bottleneck=False),
    "resnet50": lambda: resnet((3, 4, 6, 3), bottleneck=True),
    "vgg11": lambda: vgg(_VGG11),
    "vgg16": lambda: vgg(_VGG16),
    "alexnet": alexnet,
    "densenet121": densenet121,
    "shufflenet_v2_x1_0": shufflenet_v2,
    "squeezenet1_1": squeezenet1_1,
    "regnet_x_400mf": regnet_x_400mf,
    "mobilenet_v3_small": mobilenet_v3_small,
    "mobilenet_v2": mobilenet_v2,
    "efficientnet_b0": efficientnet_b0,
}


def build(name: str) -> nn.Module:
    """The model ``name`` in eval mode, with non-trivial BN statistics (so folding matters)."""
    if name not in MODELS:
        raise KeyError(f"unknown zoo model {name!r}; expected one of {', '.join(MODELS)}")
    torch.manual_seed(0)
    return with_bn_stats(MODELS[name]())


def with_bn_stats(model: nn.Module) -> nn.Module:
    """``model`` in eval mode with non-trivial BatchNorm statistics (random weights' BNs would
    fold to identities)."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.running_var, 0.5, 1.5)
            nn.init.normal_(m.running_mean, 0.0, 0.1)
    return model.eval()


def export(name: str, path: str | Path, resolution: int = 224) -> Path:
    """Export ``build(name)`` to ``path`` (ONNX opset 17, TorchScript exporter, BN folded)."""
    return export_module(build(name), path, resolution)


def export_module(model: nn.Module, path: str | Path, resolution: int = 224) -> Path:
    """Export ``model`` to ``path`` as :func:`export` does."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    x = torch.randn(1, 3, resolution, resolution)
    with torch.no_grad():
        torch.onnx.export(
            model, (x,), str(p), dynamo=False, opset_version=17, do_constant_folding=True,
            input_names=["input"], output_names=["logits"],
        )  # fmt: skip
    return p


def describe(path: str | Path) -> dict[str, float | int | str]:
    """MACs, params and node count of an exported model, read back with ``nasctl.arch``."""
    from nasctl.arch.costs import graph_costs
    from nasctl.arch.onnx_io import from_onnx

    graph = from_onnx(path)
    total = graph_costs(graph).total
    return {"file": Path(path).name, "nodes": len(graph.nodes), "macs": int(total["macs"]),
            "params": int(total["params"])}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="folder for <name>.onnx and zoo.json")
    ap.add_argument("--only", default="", help="comma-separated model names (default: all)")
    args = ap.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or list(MODELS)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        print(f"error: unknown model(s) {unknown}; expected {', '.join(MODELS)}", file=sys.stderr)
        return 1
    info = {}
    for name in names:
        d = describe(export(name, args.out / f"{name}.onnx"))
        d["published_gmacs"] = PUBLISHED_GMACS[name]
        info[name] = d
        print(f"{name:20s} {d['macs'] / 1e9:7.3f} GMACs (published {PUBLISHED_GMACS[name]})"
              f"  {d['params'] / 1e6:6.2f} M params  {d['nodes']} nodes", flush=True)  # fmt: skip
    (args.out / "zoo.json").write_text(json.dumps(info, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
