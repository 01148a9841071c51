"""One parametrized suite over every registered search space plus a user-registered example."""

from __future__ import annotations

import csv
import random
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from nasctl.arch.graph import Graph
from nasctl.errors import SpaceError
from nasctl.spaces import SearchSpace, get_space, list_spaces
from nasctl.spaces.mbconv import MBConvSpace
from nasctl.spaces.nb201 import NB201Space
from nasctl.spaces.resnet import ResNetSpace

EXAMPLES = Path(__file__).resolve().parent / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))

USER_SPACE = "my_space:TinySpace"

# Small inputs where the space allows it, so that the whole file stays fast.
FACTORIES: dict[str, Callable[[], SearchSpace]] = {
    "mbconv": lambda: MBConvSpace(resolutions=(96, 112)),
    "resnet": lambda: ResNetSpace(resolutions=(64, 80)),
}
# Registered on import by `nasctl profile --kernels`; the same contract applies to it.
import nasctl.spaces.kernels  # noqa: E402,F401

ALL = [*list_spaces(), USER_SPACE]
IMAGE_NETS = {"mbconv", "resnet", "nb201", "fbnet", "tiny"}


def make(name: str) -> SearchSpace:
    return FACTORIES[name]() if name in FACTORIES else get_space(name)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():  # type: ignore[no-untyped-def]
    """One intra-op thread: on a shared, loaded machine thread spinning makes torch 50x slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(params=ALL)
def space(request: pytest.FixtureRequest) -> SearchSpace:
    return make(request.param)


def test_builtin_spaces_registered() -> None:
    assert {"mbconv", "resnet", "nb201", "fbnet"} <= set(list_spaces())


def test_user_space_loads_by_import_path() -> None:
    sp = get_space(USER_SPACE)
    assert type(sp).__name__ == "TinySpace"
    ops = {n.op for n in sp.to_graph(sp.sample(random.Random(0)))}
    assert ops <= {"conv", "relu", "maxpool", "globalavgpool", "flatten", "linear"}


@pytest.mark.parametrize("bad", ["nosuchspace", "my_space:Missing", "no_such_module_xyz:Space"])
def test_unknown_space_is_one_line_error(bad: str) -> None:
    with pytest.raises(SpaceError) as e:
        get_space(bad)
    assert "\n" not in str(e.value) and bad in str(e.value)


# -- the contract, for every space -----------------------------------------------------------


def test_sample_is_deterministic_and_round_trips(space: SearchSpace) -> None:
    genos = [space.sample(random.Random(seed)) for seed in range(12)]
    assert genos == [space.sample(random.Random(seed)) for seed in range(12)]
    assert len(set(genos)) >= 10  # samples differ between seeds
    for g in genos:
        assert space.format(space.parse(g)) == g
        assert space.validate(g) == g


def test_mutate_is_valid_and_usually_differs(space: SearchSpace) -> None:
    rng = random.Random(1)
    changed = 0
    for seed in range(20):
        g = space.sample(random.Random(seed))
        m = space.mutate(g, rng)
        assert space.format(space.parse(m)) == m
        changed += m != g
    assert changed >= 18


def test_crossover_is_valid(space: SearchSpace) -> None:
    rng = random.Random(2)
    for seed in range(10):
        a, b = space.sample(random.Random(seed)), space.sample(random.Random(seed + 50))
        c = space.crossover(a, b, rng)
        assert space.format(space.parse(c)) == c
        assert space.crossover(a, a, rng) == a


@pytest.mark.parametrize("bad", ["", "garbage", "|||", "k3-k5"])
def test_bad_genotype_is_space_error(space: SearchSpace, bad: str) -> None:
    with pytest.raises(SpaceError) as e:
        space.to_graph(bad)
    assert "\n" not in str(e.value)


def test_extended_genotype_is_rejected(space: SearchSpace) -> None:
    g = space.sample(random.Random(0))
    for bad in (g + "#", g + "|", "x" + g):
        with pytest.raises(SpaceError):
            space.parse(bad)


def test_graph_structure(space: SearchSpace) -> None:
    for seed in range(3):
        geno = space.sample(random.Random(seed))
        g = space.to_graph(geno)
        g.validate()
        assert g.meta["space"] and g.meta["genotype"] == geno
        if space.name in IMAGE_NETS:
            assert g.meta["resolution"] == g.input_shape[-1]
        assert all(n.id.startswith("/") for n in g.nodes)
        assert len({n.id for n in g.nodes}) == len(g.nodes)
        out = g.tensor_shapes()[g.outputs[0]]
        assert out[0] == 1
        if space.name in IMAGE_NETS:
            assert len(out) == 2 and g.outputs == ["/head/fc"]


def test_hash_stability(space: SearchSpace) -> None:
    hashing = pytest.importorskip("nasctl.arch.hashing")
    genos = sorted({space.sample(random.Random(seed)) for seed in range(8)})
    hashes = [hashing.graph_hash(space.to_graph(g)) for g in genos]
    assert hashes == [hashing.graph_hash(space.to_graph(g)) for g in genos]
    assert len(set(hashes)) >= len(genos) - 1


def _check_onnx_matches_torch(g: Graph, seed: int = 0) -> np.ndarray:
    import onnx
    import onnxruntime as ort
    import torch

    from nasctl.arch.onnx_io import to_onnx
    from nasctl.arch.torch_module import to_torch

    torch.manual_seed(seed)
    module = to_torch(g).eval()
    model = to_onnx(g, params=module.export_params())
    onnx.checker.check_model(model)
    x = np.random.default_rng(seed).standard_normal(g.input_shape).astype(np.float32)
    with torch.no_grad():
        expected = module(torch.from_numpy(x)).numpy()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    got = sess.run(None, {next(iter(g.inputs)): x})[0]
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4 * scale)
    return got


@pytest.mark.slow
def test_onnx_runs_and_matches_torch(space: SearchSpace) -> None:
    for seed in range(2):
        _check_onnx_matches_torch(space.to_graph(space.sample(random.Random(seed))), seed)


# -- space-specific ---------------------------------------------------------------------------


def test_nb201_order_matches_shared_table(shared_data: Path) -> None:
    sp = NB201Space()
    with open(shared_data / "nb201" / "latency_ms.csv", newline="") as f:
        rows = [
            (int(r["nb201_index"]), r["arch"], r["i7_7820x_tf_fp32"]) for r in csv.DictReader(f)
        ]
    archs = sp.enumerate()
    assert len(archs) == len(set(archs)) == sp.size() == 15625
    assert [a for _, a, _ in sorted(rows)] == archs
    for i, a, _ in rows[::997]:
        assert sp.index_of(a) == i and sp.arch_at(i) == a
    # LatBench could not measure exactly the cells whose output is cut off.
    assert {a for _, a, lat in rows if lat == ""} == {a for a in archs if not sp.connected(a)}


def test_nb201_order_file_without_shared_data() -> None:
    sp = NB201Space()
    archs = sp.enumerate()
    assert archs[0] == (
        "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|"
        "skip_connect~2|"
    )
    assert sorted(sp.index_of(a) for a in archs[:50]) == list(range(50))
    with pytest.raises(SpaceError):
        sp.arch_at(15625)


def test_nb201_disconnected_cell_outputs_constant() -> None:
    sp = NB201Space()
    geno = "|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|avg_pool_3x3~2|"
    assert not sp.connected(geno)
    g = sp.to_graph(geno)
    assert any(n.op == "pad" and n.id.endswith("/n2/zero") for n in g.nodes)
    a, b = _check_onnx_matches_torch(g, 0), _check_onnx_matches_torch(g, 1)
    assert a.shape == (1, 10)
    # same weights (seed), different inputs: logits do not depend on the image
    import torch

    from nasctl.arch.torch_module import to_torch

    torch.manual_seed(0)
    m = to_torch(g).eval()
    with torch.no_grad():
        y1, y2 = m(torch.randn(1, 3, 32, 32)), m(torch.randn(1, 3, 32, 32))
    assert torch.allclose(y1, y2) and b.shape == (1, 10)


def test_nb201_network_layout() -> None:
    g = get_space("nb201").to_graph(
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|"
        "nor_conv_3x3~2|"
    )
    counts = g.op_counts()
    # stem 1 + 15 cells x 6 + 2 reductions x 3 convs
    assert counts["conv"] == 1 + 90 + 6
    assert g.node("/s3/c5/e23/conv").out_shape == (1, 64, 8, 8)
    assert g.node("/head/fc").out_shape == (1, 10)


def test_fbnet_parses_every_shared_genotype(shared_data: Path) -> None:
    sp = get_space("fbnet")
    with open(shared_data / "fbnet" / "latency_ms.csv", newline="") as f:
        archs = [r["arch"] for r in csv.DictReader(f)]
    assert len(archs) == 5000
    for a in archs:
        assert sp.format(sp.parse(a)) == a
    g = sp.to_graph(archs[0])
    assert g.input_shape == (1, 3, 32, 32) and g.node("/head/fc").out_shape == (1, 100)


def test_fbnet_imagenet_layout() -> None:
    from nasctl.spaces.fbnet import FBNetSpace

    g = FBNetSpace(dataset="imagenet").to_graph("-".join(["k3_e1_g2"] * 22))
    assert g.input_shape == (1, 3, 224, 224)
    assert g.node("/s7/b1/pwl").out_shape == (1, 352, 7, 7)
    assert g.node("/s2/b2/pw").attrs["groups"] == 2
    assert g.node("/s2/b2/shuffle/transpose").op == "transpose"


def _gmacs(g: Graph) -> float:
    costs = pytest.importorskip("nasctl.arch.costs")
    return costs.graph_costs(g).total["macs"] / 1e9


def test_resnet18_and_resnet50_macs() -> None:
    sp = get_space("resnet")
    r18 = sp.to_graph("r224-basic|64x2|128x2|256x2|512x2")
    assert _gmacs(r18) == pytest.approx(1.81, abs=0.01)
    from nasctl.arch.costs import graph_costs

    assert graph_costs(r18).total["params"] == 11_689_512  # torchvision resnet18
    assert _gmacs(sp.to_graph("r224-bottleneck|64x3|128x4|256x6|512x3")) == pytest.approx(
        4.09, abs=0.03
    )


def test_mbconv_expresses_mobilenet_v2() -> None:
    sp = get_space("mbconv")
    v2 = (
        "r224-w1.0|relu6:k3e1|relu6:k3e6,k3e6|relu6:k3e6,k3e6,k3e6|relu6:k3e6,k3e6,k3e6,k3e6"
        "|relu6:k3e6,k3e6,k3e6|relu6:k3e6,k3e6,k3e6|relu6:k3e6"
    )
    g = sp.to_graph(v2)
    assert sum(n.op == "add" for n in g.nodes) == 10  # MobileNetV2 has 10 residual adds
    assert _gmacs(g) == pytest.approx(0.30, abs=0.01)
    from nasctl.arch.costs import graph_costs

    assert graph_costs(g).total["params"] == 3_504_872  # torchvision mobilenet_v2


@pytest.mark.parametrize(
    "bad, words",
    [
        ("r240-w1.0|" + "|".join(["relu:k3e1"] * 7), "resolution 240 out of range"),
        ("r80-w1.0|" + "|".join(["relu:k3e1"] * 7), "resolution 80 out of range"),
        ("r160-w2.0|" + "|".join(["relu:k3e1"] * 7), "width"),
        ("r160-w1.0|" + "|".join(["gelu:k3e1"] * 7), "stage 1"),
        ("r160-w1.0|" + "|".join(["relu:k9e1"] * 7), "block 1"),
        ("r160-w1.0|" + "|".join(["relu:k3e1,k3e1,k3e1,k3e1,k3e1"] * 7), "5 blocks"),
    ],
)
def test_mbconv_errors_say_what_is_wrong(bad: str, words: str) -> None:
    with pytest.raises(SpaceError, match=words):
        get_space("mbconv").parse(bad)


def test_mbconv_se_and_residual_structure() -> None:
    sp = get_space("mbconv")
    g = sp.to_graph("r128-w0.5|swish:k5e1s|" + "|".join(["hardswish:k3e4s,k7e3"] * 6))
    assert g.node("/s1/b1/se/gate").op == "sigmoid"
    assert g.node("/s2/b1/se/gate").op == "hardsigmoid"
    assert g.node("/s2/b1/se/mul").op == "mul"
    assert "/s2/b2/add" in {n.id for n in g.nodes} and "/s2/b1/add" not in {n.id for n in g.nodes}
    assert g.node("/s2/b2/dw").attrs["kernel"] == 7


def test_nb201_costs_match_published_numbers() -> None:
    """NAS-Bench-201 reports 220.11 MFLOPs (MACs) / 1.53 M params for the all-conv3x3 cell on
    CIFAR-10 and 7.78 M / 0.073 M for the all-none cell."""
    costs = pytest.importorskip("nasctl.arch.costs")
    sp = get_space("nb201")
    for op, macs_m, params_m in (("nor_conv_3x3", 220.12, 1.5315), ("none", 7.78, 0.0733)):
        geno = f"|{op}~0|+|{op}~0|{op}~1|+|{op}~0|{op}~1|{op}~2|"
        total = costs.graph_costs(sp.to_graph(geno)).total
        assert total["macs"] / 1e6 == pytest.approx(macs_m, abs=0.01)
        assert total["params"] / 1e6 == pytest.approx(params_m, abs=0.0002)


def test_nb201_structure_counts() -> None:
    """Live edges per op, additions, zero maps, nodes without inputs, cut-off flag; other spaces
    have none."""
    sp = get_space("nb201")
    # ops: none, skip, conv1x1, conv3x3, avgpool
    cut = sp.structure_counts("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    # no op edges: one zero map (the output's; nothing reads nodes 1 and 2), cut off
    assert list(cut) == [0, 0, 0, 0, 0, 0, 1, 3, 1.0]  # three nodes without inputs
    # node 2 has no inputs and nothing reads it: no zero map is built (the graph has no pad)
    sparse = "|nor_conv_3x3~0|+|none~0|none~1|+|none~0|skip_connect~1|none~2|"
    assert list(sp.structure_counts(sparse)) == [0, 1, 0, 1, 0, 0, 0, 1, 0.0]
    assert not any(n.op == "pad" for n in sp.to_graph(sparse).nodes)
    read = "|nor_conv_3x3~0|+|none~0|none~1|+|none~0|skip_connect~1|skip_connect~2|"
    assert list(sp.structure_counts(read))[-4:] == [1, 1, 1, 0.0]  # node 2 read: a zero map
    assert sum(n.op == "pad" for n in sp.to_graph(read).nodes) == 15  # one per cell
    full = sp.structure_counts(
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|avg_pool_3x3~0|none~1|nor_conv_1x1~2|"
    )
    assert list(full) == [0, 1, 1, 2, 1, 2, 0, 0, 0.0]
    assert (
        get_space("mbconv").structure_counts(get_space("mbconv").sample(random.Random(0))) is None
    )
