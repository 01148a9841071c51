"""A FRESH aside set for issue 16's fourth evaluation: well-known classifiers from timm, of
families in neither the old aside set (bench/zoo.py + bench/zoo_more.py: ResNets, MobileNets,
EfficientNet, RegNets, DenseNet, GoogLeNet, ShuffleNets, SqueezeNets, VGGs, AlexNet, ResNeXt,
MNASNet) nor the tuning set (bench/zoo_tune.py: GhostNet, RepVGG, Inception-v3). The selection
was written into the session notes before any of them was measured:

    xception41, dpn68, hrnet_w18_small, fbnetc_100, mobileone_s0, mixnet_s, rexnet_100,
    lcnet_100, dla34, cspresnet50, ese_vovnet19b_dw, selecsls42b

Random weights (``pretrained=False``; latency does not depend on trained values) with the same
non-trivial BatchNorm statistics as bench/zoo.py, ``eval()``, MobileOne reparameterized into its
deployed single-branch form (``timm.utils.model.reparameterize_model``); batch 1, 1x3x224x224,
exported as bench/zoo.py does (TorchScript exporter, opset 17, constant folding: BN folded).

timm is needed only here and imported lazily. Install it with ``pip install --no-deps timm``
(plus ``huggingface_hub pyyaml safetensors`` if missing): ``nasctl[bench]`` names it, but its own
requirements would replace the pinned torch 2.13.0. timm imports
torchvision at import time (data transforms, FrozenBatchNorm2d) but none of these models uses it
in ``forward``; where torchvision is absent or does not load (here: its only wheel is a CUDA
build, torch is 2.13.0+cpu), :func:`_stub_torchvision` puts an empty stand-in module in its place.

    .venv/bin/python bench/zoo_fresh.py --out runs/u2/fresh_onnx        # 12 models + zoo.json
    .venv/bin/python bench/zoo_fresh.py --set third --out runs/s24/third_onnx   # the third set
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.machinery
import json
import sys
import types
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # zoo.py's BN statistics and export

FRESH: tuple[str, ...] = (
    "xception41", "dpn68", "hrnet_w18_small", "fbnetc_100", "mobileone_s0", "mixnet_s",
    "rexnet_100", "lcnet_100", "dla34", "cspresnet50", "ese_vovnet19b_dw", "selecsls42b",
)  # fmt: skip

#: the THIRD aside set (chosen 2026-12-03 02:18 UTC, before any of it was exported or measured):
#: families in none of the old 21, the tuning three or FRESH
THIRD: tuple[str, ...] = (
    "spnasnet_100", "hardcorenas_a", "gernet_s", "skresnet18", "res2net50_14w_8s", "repvit_m1",
    "tresnet_m", "hgnetv2_b0", "darknet53", "starnet_s1",
)  # fmt: skip

SETS: dict[str, tuple[str, ...]] = {"fresh": FRESH, "third": THIRD}


class _Anything(type):
    """A class whose every attribute is another such class (torchvision names timm touches at
    import: ``transforms.InterpolationMode.BILINEAR``, ``FrozenBatchNorm2d`` in isinstance)."""

    def __getattr__(cls, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Anything(name, (), {})


class _StubModule(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Anything(name, (), {})


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname == "torchvision" or fullname.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec: Any) -> types.ModuleType:
        m = _StubModule(spec.name)
        m.__path__ = []
        return m

    def exec_module(self, module: types.ModuleType) -> None:
        return None


def _stub_torchvision() -> bool:
    """Import torchvision, or put a stand-in in its place if it does not load; True if stubbed."""
    try:
        import torchvision  # noqa: F401
    except Exception:
        for k in [k for k in sys.modules if k == "torchvision" or k.startswith("torchvision.")]:
            del sys.modules[k]
        sys.meta_path.insert(0, _StubFinder())
        return True
    return False


def build(name: str) -> Any:
    """timm's ``name`` with random weights, zoo.py's BN statistics, in eval (deployed) form."""
    import torch

    _stub_torchvision()
    import timm

    if name not in FRESH + THIRD:
        raise KeyError(
            f"unknown timm aside model {name!r}; expected one of {', '.join(FRESH + THIRD)}"
        )
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False).eval()
    if name.startswith("mobileone"):
        from timm.utils.model import reparameterize_model

        model = reparameterize_model(model)
    from zoo import with_bn_stats

    return with_bn_stats(model)


def export(name: str, path: str | Path, resolution: int = 224) -> Path:
    """Export ``build(name)`` to ``path`` as bench/zoo.py does."""
    from zoo import export_module

    return export_module(build(name), path, resolution)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="folder for <name>.onnx and zoo.json")
    ap.add_argument("--set", choices=sorted(SETS), default="fresh", help="which aside set")
    ap.add_argument("--only", default="", help="comma-separated model names (default: the set)")
    args = ap.parse_args(argv)
    chosen = SETS[args.set]
    names = [n for n in args.only.split(",") if n] or list(chosen)
    unknown = [n for n in names if n not in chosen]
    if unknown:
        print(f"error: unknown model(s) {unknown}; expected {', '.join(chosen)}", file=sys.stderr)
        return 1
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from zoo import describe

    info: dict[str, Any] = {}
    for name in names:
        try:
            d = describe(export(name, args.out / f"{name}.onnx"))
        except Exception as e:  # reported, not replaced (the selection is fixed)
            print(f"error: {name}: {type(e).__name__}: {e}", file=sys.stderr)
            info[name] = {"error": f"{type(e).__name__}: {e}"}
            continue
        info[name] = d
        print(f"{name:20s} {d['macs'] / 1e9:7.3f} GMACs  {d['params'] / 1e6:6.2f} M params  "
              f"{d['nodes']} nodes", flush=True)  # fmt: skip
    (args.out / "zoo.json").write_text(json.dumps(info, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
