"""Training estimators (issue 19): proxy-size rebuild per space, mini-batch evaluation, the
image-folder loader on generated images and its bad input, and a memory bound."""

from __future__ import annotations

import os
import pickle
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nasctl.errors import SearchError
from nasctl.search.accuracy import get_estimator
from nasctl.search.accuracy.imagedata import load_folder
from nasctl.search.accuracy.training import DigitsEstimator, FolderEstimator
from nasctl.spaces import get_space

CONVS = (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|"
    "nor_conv_3x3~2|"
)
SMALL_MBCONV = "r96-w0.5|relu:k3e1|relu:k3e3|relu:k3e3|relu:k3e3|relu:k3e3|relu:k3e3|relu:k3e3"
# the heaviest choices of each image space (memory bound)
BIG_MBCONV = "r224-w1.25|" + "|".join(["swish:" + ",".join(["k7e6s"] * 4)] * 7)
BIG_RESNET = "r224-bottleneck|96x6|192x6|384x6|768x6"


def _ops(graph) -> list[tuple[str, str]]:  # noqa: ANN001
    return [(n.id, n.op) for n in graph.nodes]


@pytest.mark.parametrize("name", ["mbconv", "resnet", "fbnet", "nb201"])
def test_proxy_space_keeps_the_block_structure_at_a_smaller_size(name: str) -> None:
    space = get_space(name)
    small = space.proxy_space(10)
    assert small is not None
    for g in [space.sample(random.Random(s)) for s in range(3)]:
        full, proxy = space.to_graph(g), small.to_graph(g)
        if name != "nb201":  # nb201's proxy has one cell per stage instead of five
            assert _ops(proxy) == _ops(full)
            scale = small.channel_scale  # type: ignore[attr-defined]
            for n in full.nodes:  # every conv's width is the full one's times the scale
                if n.op == "conv" and "/se/" not in n.id:
                    assert proxy.node(n.id).out_shape[1] == round(n.out_shape[1] * scale), n.id
        assert proxy.input_shape[2] < full.input_shape[2] or name == "nb201"
        assert proxy.input_shape[2] == getattr(small, "input_resolution", None) or (
            proxy.input_shape[2] == small.resolution  # type: ignore[attr-defined]
        )
        assert proxy.node(proxy.outputs[0]).out_shape[-1] == 10
        assert proxy.meta["genotype"] == full.meta["genotype"]
        assert _macs(proxy) < _macs(full) / 10


@pytest.mark.parametrize("name,big", [("mbconv", BIG_MBCONV), ("resnet", BIG_RESNET)])
def test_proxy_compute_is_bounded_per_genotype(name: str, big: str) -> None:
    space = get_space(name)
    cap = space.PROXY_MAX_MACS  # type: ignore[attr-defined]
    plain_scale = space.PROXY_CHANNEL_SCALE  # type: ignore[attr-defined]
    assert _macs(space.proxy_space(10).to_graph(big)) > cap  # the plain proxy is over the cap
    heavy = space.proxy_graph(big, 10)
    assert heavy is not None and _macs(heavy) <= cap
    assert heavy.meta["channel_scale"] < plain_scale
    assert _ops(heavy) == _ops(space.to_graph(big))  # narrower, the same blocks
    assert space.proxy_graph(big, 10).to_dict() == heavy.to_dict()  # deterministic
    typical = space.sample(random.Random(0))  # most genotypes keep the plain proxy
    plain = space.proxy_graph(typical, 10)
    assert plain is not None and plain.meta["channel_scale"] == plain_scale
    assert plain.to_dict()["nodes"] == space.proxy_space(10).to_graph(typical).to_dict()["nodes"]


def _macs(graph) -> float:  # noqa: ANN001
    from nasctl.arch.costs import graph_costs

    return float(graph_costs(graph).total["macs"])


def test_mini_batch_evaluation_matches_one_batch_and_onnx_runtime() -> None:
    from nasctl.arch.onnx_io import to_onnx

    est = DigitsEstimator(steps=10, eval_batch=8, val_size=100)
    space = get_space("nb201")
    trained = est.train(CONVS, space)
    assert trained.accuracy == est.estimate(CONVS, None, space)  # seeded per genotype
    whole = DigitsEstimator(eval_batch=10_000, val_size=100)
    shape = trained.graph.input_shape
    assert whole.evaluate(trained.module, shape) == pytest.approx(trained.accuracy)
    assert 100 % 8 != 0  # the last mini-batch is a partial one
    # the trained network as ONNX (batch 1) scores the same held-out images the same way
    model = to_onnx(trained.graph, params=trained.module.export_params())
    assert est.evaluate_onnx(model) == pytest.approx(trained.accuracy, abs=0.5)


def test_training_is_deterministic_and_restores_the_thread_count() -> None:
    import torch

    before = torch.get_num_threads()
    space = get_space("nb201")
    a = DigitsEstimator(steps=30).estimate(CONVS, None, space)
    b = DigitsEstimator(steps=30).estimate(CONVS, None, space)
    assert a == b and a > 30.0  # 10 classes: chance is 10 %
    assert torch.get_num_threads() == before


def _png(path: Path, kind: int, size: tuple[int, int], seed: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    base = [(yy // 3) % 2, (xx // 3) % 2, ((xx - w / 2) ** 2 + (yy - h / 2) ** 2 < (w / 3) ** 2)][
        kind
    ]
    img = (base * 200 + rng.integers(0, 50, (h, w))).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.stack([img] * 3, axis=-1)).save(path)


def _image_folder(root: Path, per_class: int = 12) -> Path:
    """3 classes (horizontal stripes, vertical stripes, a disc), mixed sizes and formats."""
    for k, cls in enumerate(("hstripes", "vstripes", "disc")):
        for i in range(per_class):
            size = (24, 24) if i % 2 else (40, 30)
            ext = ".png" if i % 3 else ".jpg"
            _png(root / cls / f"img{i}{ext}", k, size, seed=100 * k + i)
    return root


def test_folder_estimator_learns_generated_images(tmp_path: Path) -> None:
    root = _image_folder(tmp_path / "imgs")
    data = load_folder(root, size=16)
    assert data.classes == ("disc", "hstripes", "vstripes")
    assert data.x_train.shape[1:] == (3, 16, 16) and data.x_train.dtype == np.uint8
    assert len(data.y_train) + len(data.y_val) == 36 and len(data.y_val) >= 3
    est = get_estimator(f"train:folder:{root}")
    assert isinstance(est, FolderEstimator)
    est.check_space(get_space("nb201"))
    assert est.estimate(CONVS, None, get_space("nb201")) > 60.0  # chance is 33 %


def test_folder_with_train_and_val_subfolders(tmp_path: Path) -> None:
    _image_folder(tmp_path / "d" / "train", per_class=4)
    _image_folder(tmp_path / "d" / "val", per_class=2)
    data = load_folder(tmp_path / "d", size=8)
    assert (len(data.y_train), len(data.y_val)) == (12, 6)


def test_folder_bad_input(tmp_path: Path) -> None:
    with pytest.raises(SearchError, match="not found"):
        load_folder(tmp_path / "missing")
    (tmp_path / "empty" / "a").mkdir(parents=True)
    (tmp_path / "empty" / "b").mkdir(parents=True)
    (tmp_path / "empty" / "a" / "notes.txt").write_text("no image")
    with pytest.raises(SearchError, match="no readable image"):
        load_folder(tmp_path / "empty")
    _png(tmp_path / "one" / "a" / "x.png", 0, (8, 8), 0)
    with pytest.raises(SearchError, match="1 class subfolder"):
        load_folder(tmp_path / "one")
    # a corrupt file is skipped with a warning; a class with one image trains only
    root = _image_folder(tmp_path / "ok", per_class=4)
    (root / "disc" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    _png(root / "single" / "only.png", 1, (20, 20), 7)
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        data = load_folder(root, size=8)
    assert data.num_classes == 4
    single = data.classes.index("single")
    assert (data.y_train == single).sum() == 1 and (data.y_val == single).sum() == 0
    with pytest.raises(SearchError, match="needs a data folder"):
        get_estimator("train:folder")


def test_cifar10_batches_are_read_without_running_pickled_code(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for name, n in (("data_batch_1", 20), ("test_batch", 10)):
        batch = {
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"labels": [int(v) for v in rng.integers(0, 10, n)],
        }
        (tmp_path / name).write_bytes(pickle.dumps(batch))
    data = load_folder(tmp_path, size=16)
    assert data.x_train.shape == (20, 3, 16, 16) and len(data.y_val) == 10
    evil = tmp_path / "evil"
    evil.mkdir()
    (evil / "data_batch_1").write_bytes(pickle.dumps(subprocess.Popen))  # a global, refused
    with pytest.raises(SearchError, match="not a CIFAR-10 python batch"):
        load_folder(evil)


def test_search_cli_train_folder_bad_data_dir_is_one_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from nasctl.cli.main import app

    (tmp_path / "imgs" / "a").mkdir(parents=True)
    (tmp_path / "imgs" / "b").mkdir(parents=True)
    args = ["search", "--device", "replay:nb201/fpga", "--space", "nb201"]
    args += ["--accuracy", "train:folder", "--data-dir", str(tmp_path / "imgs")]
    r = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "out")])
    assert r.exit_code == 1
    assert "no readable image" in r.output and "Traceback" not in r.output


_MEMORY_PROBE = """
import sys
from nasctl.search.accuracy.training import DigitsEstimator
from nasctl.spaces import get_space
est = DigitsEstimator(steps=2, val_size=64)
for space, g in ((sys.argv[1], sys.argv[2]), (sys.argv[3], sys.argv[4])):
    est.estimate(g, None, get_space(space))
hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]
print(int(hwm.split()[1]) // 1024)
"""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM (Linux)")
def test_training_the_heaviest_candidates_stays_under_one_gib() -> None:
    """Peak resident memory (VmHWM: this process only, unlike ru_maxrss after fork+exec) of a
    fresh interpreter that trains the heaviest mbconv and resnet genotypes at proxy size (a
    few steps: the peak is reached in the first one, weights + Adam state + one batch)."""
    repo = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(
        [sys.executable, "-c", _MEMORY_PROBE, "mbconv", BIG_MBCONV, "resnet", BIG_RESNET],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    peak_mib = int(out.stdout.strip().splitlines()[-1])
    assert peak_mib < 1024, f"peak {peak_mib} MiB"


@pytest.mark.slow
def test_digits_training_of_an_mbconv_candidate_beats_chance() -> None:
    acc = get_estimator("train:digits").estimate(SMALL_MBCONV, None, get_space("mbconv"))
    assert 20.0 < acc <= 100.0
