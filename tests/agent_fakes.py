"""Fake hardware for the agent's TensorRT tests (no Jetson, GPU or TensorRT here): a Jetson
root (``$NASCTL_AGENT_ROOT``: /etc/nv_tegra_release, the device tree, cpufreq and GPU devfreq
in sysfs), tools on ``PATH`` (``nvpmodel``, ``nvidia-smi``) and the trtexec stand-in
(tests/tools/fake_trtexec.py) pinned to one TensorRT version."""

from __future__ import annotations

import re
import stat
import sys
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

TOOLS = Path(__file__).resolve().parent / "tools"
TRT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "tensorrt"
VERSIONS = ("8.5.2", "10.3.0", "10.13.0", "11.1.0")
NV_TEGRA_RELEASE = "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref\n"


def _script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC | stat.S_IXGRP | stat.S_IXOTH)
    return path


def fake_trtexec(tmp: Path, version: str) -> Path:
    """``<tmp>/trt-<version>/trtexec``: the stand-in playing TensorRT ``version``."""
    stand_in = TOOLS / "fake_trtexec.py"
    body = f'FAKE_TRTEXEC_VERSION={version} exec "{sys.executable}" "{stand_in}" "$@"\n'
    return _script(tmp / f"trt-{version}" / "trtexec", body)


def jetson_root(
    tmp: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    model: str = "NVIDIA Jetson Xavier NX Developer Kit",
    mode: str | None = "MODE_20W_6CORE",
    locked: bool = True,
    cap_khz: int = 1420800,
) -> Path:
    """A fake Jetson: device tree ``model``, power ``mode`` (None: nvpmodel fails), CPU caps
    below the hardware maximum (1907200 kHz) as nvpmodel leaves them, clocks locked or not."""
    root = tmp / "root"
    (root / "etc").mkdir(parents=True, exist_ok=True)
    (root / "etc" / "nv_tegra_release").write_text(NV_TEGRA_RELEASE)
    (root / "proc" / "device-tree").mkdir(parents=True, exist_ok=True)
    (root / "proc" / "device-tree" / "model").write_text(model + "\x00")
    for i in range(2):
        d = root / "sys" / "devices" / "system" / "cpu" / f"cpu{i}" / "cpufreq"
        d.mkdir(parents=True, exist_ok=True)
        (d / "scaling_min_freq").write_text(f"{cap_khz if locked else 115200}\n")
        (d / "scaling_max_freq").write_text(f"{cap_khz}\n")
        (d / "cpuinfo_max_freq").write_text("1907200\n")
    g = root / "sys" / "class" / "devfreq" / "17000000.gv11b"
    g.mkdir(parents=True, exist_ok=True)
    (g / "min_freq").write_text("1109250000\n")
    (g / "max_freq").write_text("1109250000\n")
    (g / "cur_freq").write_text("1109250000\n")
    bin_dir = tmp / "bin"
    if mode is None:
        _script(bin_dir / "nvpmodel", "exit 1\n")
    else:
        num = re.findall(r"\d+", mode)
        _script(
            bin_dir / "nvpmodel", f'printf "NV Power Mode: {mode}\\n{num[0] if num else 0}\\n"\n'
        )
    monkeypatch.setenv("NASCTL_AGENT_ROOT", str(root))
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    return root


def gpu_host(tmp: Path, monkeypatch: pytest.MonkeyPatch, name: str = "Tesla T4") -> None:
    """A host whose ``nvidia-smi`` reports GPU ``name`` (and no Jetson)."""
    _script(tmp / "bin" / "nvidia-smi", f'echo "{name}"\n')
    monkeypatch.setenv("NASCTL_AGENT_ROOT", str(tmp / "emptyroot"))
    monkeypatch.setenv("PATH", f"{tmp / 'bin'}:/usr/bin:/bin")
    monkeypatch.setitem(sys.modules, "pynvml", None)  # NVML absent: nvidia-smi answers


def engines() -> list[Path]:
    """Base paths of the real trtexec exports (``<base>.timing.json`` ...)."""
    return sorted(
        p.with_name(p.name[: -len(".profile.json")])
        for p in TRT_DATA.glob("*/resnet/*/*/*.profile.json")
    )


def precision_of(base: Path) -> str:
    return {"fp32": "fp32", "fp16": "fp16"}.get(base.parent.name, "int8")


def names_model(node_names: list[str], path: Path, precision: str) -> Path:
    """An ONNX chain whose nodes carry ``node_names`` in order (op types from the names, Q/DQ
    nodes for int8, an FP16 input for fp16): what the host would have sent for that engine."""
    nodes, prev = [], "x"
    for i, name in enumerate(node_names):
        m = re.match(r"[A-Za-z]+", name.rsplit("/", 1)[-1])
        op = m.group(0) if m else "Identity"
        if precision == "int8" and "Quant" in name:
            op = (
                "QuantizeLinear"
                if "Quantize" in name or "QuantLinear" in name
                else "DequantizeLinear"
            )
        out = f"t{i}"
        nodes.append(helper.make_node(op, [prev], [out], name=name))
        prev = out
    if precision == "int8" and not any(n.op_type == "QuantizeLinear" for n in nodes):
        nodes.append(helper.make_node("QuantizeLinear", [prev], ["q"], name="q"))
        prev = "q"
    elem = TensorProto.FLOAT16 if precision == "fp16" else TensorProto.FLOAT
    g = helper.make_graph(
        nodes,
        "names",
        [helper.make_tensor_value_info("x", elem, [1, 3, 8, 8])],
        [helper.make_tensor_value_info(prev, elem, None)],
    )
    onnx.save(helper.make_model(g), str(path))
    return path
