"""The benchmark zoo (bench/zoo.py): every model has its published size, and exported models are
read by nasctl.arch with the same MACs.

Exporting all twelve takes minutes (VGG is 530 MB of weights), so the export path is tested on a
few models covering the unusual ops (split/transpose/concat, SE with hardswish, fire modules), and
every model's MACs are counted on the meta device (no weights, no compute)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

ZOO_PATH = Path(__file__).resolve().parents[1] / "bench" / "zoo.py"


@pytest.fixture(scope="module")
def zoo():
    spec = importlib.util.spec_from_file_location("bench_zoo", ZOO_PATH)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def meta_macs(model: torch.nn.Module, resolution: int = 224) -> int:
    """MACs of conv and linear layers, counted with forward hooks on meta tensors."""
    total = 0

    def hook(m: torch.nn.Module, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(m, torch.nn.Conv2d):
            k = m.weight.shape[1] * m.weight.shape[2] * m.weight.shape[3]
            total += out.numel() * k
        else:
            total += m.in_features * m.out_features

    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d | torch.nn.Linear):
            m.register_forward_hook(hook)
    out = model(torch.empty(1, 3, resolution, resolution, device="meta"))
    assert tuple(out.shape) == (1, 1000)
    return total


def test_every_model_has_its_published_macs(zoo) -> None:
    assert set(zoo.MODELS) == set(zoo.PUBLISHED_GMACS)
    for name, make in zoo.MODELS.items():
        with torch.device("meta"):
            model = make().eval()
        gmacs = meta_macs(model) / 1e9
        published = zoo.PUBLISHED_GMACS[name]
        assert abs(gmacs - published) / published < 0.03, (name, gmacs, published)


@pytest.mark.parametrize(
    ("name", "special_ops"),
    [
        ("shufflenet_v2_x1_0", {"transpose", "concat", "dwconv"}),
        ("mobilenet_v3_small", {"hardswish", "hardsigmoid", "mul", "dwconv", "linear"}),
    ],
)
def test_export_reads_back_with_same_macs(
    zoo, name: str, special_ops: set[str], tmp_path: Path
) -> None:
    from nasctl.arch.costs import graph_costs
    from nasctl.arch.onnx_io import from_onnx

    proto = onnx.load(str(zoo.export(name, tmp_path / f"{name}.onnx")))
    assert not any(n.op_type == "BatchNormalization" for n in proto.graph.node)  # folded
    graph = from_onnx(proto)
    macs = graph_costs(graph).total["macs"]
    published = zoo.PUBLISHED_GMACS[name] * 1e9
    assert abs(macs - published) / published < 0.03
    ops = {n.op for n in graph.nodes}
    assert "conv" in ops and special_ops <= ops, ops


def test_unknown_model_is_a_clear_error(zoo) -> None:
    with pytest.raises(KeyError, match="unknown zoo model"):
        zoo.build("resnet9000")
