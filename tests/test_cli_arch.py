"""`nasctl spaces` and `nasctl arch show|export`: happy paths and bad input (one line, exit 1)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from nasctl.cli.main import app
from nasctl.spaces import get_space

runner = CliRunner()
EXAMPLES = Path(__file__).resolve().parent / "examples"
RESNET18 = "r224-basic|64x2|128x2|256x2|512x2"


def _ok(*args: object) -> str:
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res.stdout


def _json(*args: object) -> Any:
    return json.loads(_ok(*args, "--json"))


def test_cli_import_stays_light() -> None:
    code = (
        "import sys, nasctl.cli.main; "
        "print([m for m in ('torch', 'onnx', 'onnxruntime', 'torch_geometric', 'lightgbm', "
        "'numpy', 'rich') if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_spaces_json_and_table() -> None:
    rows = _json("spaces")
    by_name = {r["name"]: r for r in rows}
    assert {"mbconv", "resnet", "nb201", "fbnet"} <= set(by_name)
    assert by_name["nb201"]["size"] == 15625
    assert by_name["fbnet"]["size"] == 9**22
    assert all(r["description"] for r in rows)
    table = _ok("spaces")
    assert "nb201" in table and "15,625" in table


def test_show_genotype_json() -> None:
    info = _json("arch", "show", "--space", "resnet", "--genotype", RESNET18)
    assert isinstance(info, dict)
    for key in (
        "nodes",
        "macs",
        "params",
        "hash",
        "act_read_bytes",
        "act_write_bytes",
        "weight_bytes",
        "op_counts",
    ):
        assert key in info
    assert info["macs"] == pytest.approx(1.814e9, rel=0.005)
    assert info["params"] == pytest.approx(11.69e6, rel=0.005)
    assert info["op_counts"]["conv"] == 20 and info["genotype"] == RESNET18


def test_show_seed_is_the_library_sample() -> None:
    info = _json("arch", "show", "--space", "nb201", "--seed", 7, "--layers")
    assert info["genotype"] == get_space("nb201").sample(random.Random(7))
    assert len(info["layers"]) == info["nodes"]
    assert info["layers"][-1]["id"] == "/head/fc"


def test_show_table() -> None:
    out = _ok("arch", "show", "--space", "fbnet", "--seed", 0, "--layers")
    assert "MACs" in out and "hash" in out and "/head/fc" in out


def test_export_then_show_file_gives_same_costs_and_hash(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "m.onnx"
    exp = _json("arch", "export", "--space", "mbconv", "--seed", 3, "--out", out)
    assert out.is_file() and exp["path"] == str(out)
    from_file = _json("arch", "show", out)
    from_space = _json("arch", "show", "--space", "mbconv", "--seed", 3)
    for key in ("hash", "macs", "params", "nodes", "weight_bytes"):
        assert from_file[key] == from_space[key], key
    assert exp["hash"] == from_space["hash"]


def test_user_space(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    info = _json("arch", "show", "--space", "my_space:TinySpace", "--genotype", "16,32p,8")
    assert info["op_counts"] == {
        "conv": 3,
        "relu": 3,
        "maxpool": 1,
        "globalavgpool": 1,
        "flatten": 1,
        "linear": 1,
    }


# -- bad input: one line on stderr, exit code 1, no traceback --------------------------------


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("bad")
    empty = tmp / "empty.onnx"
    empty.write_bytes(b"")
    text = tmp / "notes.onnx"
    text.write_text("this is not a model\n" * 20)
    good = tmp / "good.onnx"
    _ok("arch", "export", "--space", "nb201", "--seed", 1, "--out", good)
    truncated = tmp / "truncated.onnx"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    files = {
        "missing": tmp / "nope.onnx",
        "empty": empty,
        "text": text,
        "truncated": truncated,
        "dir": tmp,
    }
    return {k: str(v) for k, v in files.items()}


MB_BAD_RES = "r240-w1.0|" + "|".join(["relu:k3e1"] * 7)


@pytest.mark.parametrize(
    "args, words",
    [
        (["arch", "show", "{missing}"], "not found"),
        (["arch", "show", "{empty}"], "empty"),
        (["arch", "show", "{text}"], "onnx"),
        (["arch", "show", "{truncated}"], "truncated"),
        (["arch", "show", "{dir}"], "not a file"),
        (["arch", "show", "--space", "nosuch", "--seed", "0"], "unknown search space"),
        (["arch", "show", "--space", "nb201", "--genotype", "|conv~0|"], "nb201"),
        (["arch", "show", "--space", "mbconv", "--genotype", MB_BAD_RES], "resolution 240"),
        (["arch", "show", "--space", "fbnet", "--genotype", "skip-skip"], "22"),
        (["arch", "show"], "give an ONNX file"),
        (["arch", "show", "--space", "nb201"], "exactly one"),
        (["arch", "show", "--space", "nb201", "--seed", "1", "--genotype", "x"], "exactly one"),
        (["arch", "show", "{empty}", "--space", "nb201"], "not both"),
        (["arch", "show", "--seed", "1"], "need --space"),
        (["arch", "export", "--space", "nb201", "--seed", "1"], "--out"),
        (["arch", "export", "--seed", "1", "--out", "{dir}/x.onnx"], "--space"),
        (
            ["arch", "export", "--space", "resnet", "--genotype", "r224", "--out", "{dir}/x.onnx"],
            "resnet",
        ),
    ],
)
def test_bad_input(bad_files: dict[str, str], args: list[str], words: str) -> None:
    res = runner.invoke(app, [a.format(**bad_files) for a in args])
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert words.lower() in lines[0].lower()
    assert not (Path(bad_files["dir"]) / "x.onnx").exists()


def test_exported_onnx_keeps_its_space_and_genotype(tmp_path):
    """`arch export` then `arch show FILE` tells where the model came from."""
    import json

    from typer.testing import CliRunner

    from nasctl.cli.main import app

    runner = CliRunner()
    out = tmp_path / "m.onnx"
    res = runner.invoke(
        app, ["arch", "export", "--space", "nb201", "--seed", "2", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["arch", "show", str(out), "--json"])
    info = json.loads(res.stdout)
    assert info["space"] == "nb201"
    assert info["genotype"].startswith("|") and info["genotype"].endswith("|")
