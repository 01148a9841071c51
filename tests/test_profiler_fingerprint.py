"""Fingerprint: host facts, and the Jetson parsers on sample text and a fake sysfs tree."""

from __future__ import annotations

from pathlib import Path

from nasctl.profiler.fingerprint import (
    clocks_locked,
    collect,
    cpu_model,
    jetson_info,
    parse_nv_tegra_release,
    parse_nvpmodel,
    warn_if_unlocked,
)

# formats as printed on JetPack 5 (L4T R35) Xavier NX
NV_TEGRA_RELEASE = (
    "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, "
    "EABI: aarch64, DATE: Tue Aug  1 19:57:35 UTC 2023\n"
)
NVPMODEL_Q = "NV Fan Mode:quiet\nNV Power Mode: MODE_20W_6CORE\n8\n"


def _sysfs(root: Path, cpu_min: int, gpu_min: int) -> dict[str, str]:
    for i in range(2):
        d = root / "cpu" / f"cpu{i}" / "cpufreq"
        d.mkdir(parents=True)
        (d / "scaling_min_freq").write_text(f"{cpu_min}\n")
        (d / "cpuinfo_max_freq").write_text("1907200\n")
    g = root / "devfreq" / "17000000.gv11b"
    g.mkdir(parents=True)
    (g / "min_freq").write_text(f"{gpu_min}\n")
    (g / "max_freq").write_text("1109250000\n")
    (g / "cur_freq").write_text("1109250000\n")
    (root / "devfreq" / "15340000.vic").mkdir()  # not the GPU: ignored
    (root / "devfreq" / "15340000.vic" / "min_freq").write_text("1\n")
    (root / "devfreq" / "15340000.vic" / "max_freq").write_text("2\n")
    t = root / "thermal" / "thermal_zone0"
    t.mkdir(parents=True)
    (t / "type").write_text("GPU-therm\n")
    (t / "temp").write_text("41500\n")
    return {
        "cpu_glob": str(root / "cpu" / "cpu[0-9]*" / "cpufreq"),
        "devfreq_glob": str(root / "devfreq" / "*"),
        "thermal_glob": str(root / "thermal" / "thermal_zone*"),
    }


def test_parsers_on_sample_text() -> None:
    assert parse_nv_tegra_release(NV_TEGRA_RELEASE) == "35.4.1"
    assert parse_nv_tegra_release("garbage") is None
    assert parse_nvpmodel(NVPMODEL_Q) == {"mode": "MODE_20W_6CORE", "id": 8}
    assert parse_nvpmodel("NV Power Mode: MAXN\n0\n") == {"mode": "MAXN", "id": 0}
    assert (
        cpu_model("processor : 0\nmodel name : Intel(R) Xeon(R) Gold 6226\n")
        == "Intel(R) Xeon(R) Gold 6226"
    )
    assert (
        cpu_model("processor : 0\nModel : NVIDIA Jetson Xavier NX Developer Kit\n")
        == "NVIDIA Jetson Xavier NX Developer Kit"
    )


def test_locked_jetson(tmp_path: Path) -> None:
    rel = tmp_path / "nv_tegra_release"
    rel.write_text(NV_TEGRA_RELEASE)
    globs = _sysfs(tmp_path, cpu_min=1907200, gpu_min=1109250000)
    info = jetson_info(str(rel), NVPMODEL_Q, **globs)
    assert info["l4t"] == "35.4.1" and info["nvpmodel"]["mode"] == "MODE_20W_6CORE"
    assert info["clocks_locked"] is True
    assert info["temperature_c"] == {"GPU-therm": 41.5}
    assert info["gpu_freq_hz"] == info["gpu_max_freq_hz"] == 1109250000
    assert warn_if_unlocked(info) is None


def test_unlocked_jetson_warns(tmp_path: Path) -> None:
    globs = _sysfs(tmp_path, cpu_min=1907200, gpu_min=114750000)  # GPU may scale down
    assert clocks_locked(globs["cpu_glob"], globs["devfreq_glob"]) is False
    info = jetson_info(str(tmp_path / "missing"), NVPMODEL_Q, **globs)
    msg = warn_if_unlocked(info)
    assert msg and "jetson_clocks" in msg and "MODE_20W_6CORE" in msg
    assert clocks_locked(str(tmp_path / "none*"), str(tmp_path / "none*")) is None


def test_collect_on_this_host() -> None:
    fp = collect(threads=1, libs=("onnxruntime", "surely_not_a_module_xyz"))
    assert fp["host"] and fp["python"] and fp["threads"] == 1
    assert "onnxruntime" in fp["libs"] and "surely_not_a_module_xyz" not in fp["libs"]
    assert len(fp["loadavg"]) == 3


def test_cuda_and_jetpack_versions(tmp_path: Path) -> None:
    from nasctl.profiler.fingerprint import cuda_toolkit_version, parse_jetpack

    (tmp_path / "version.json").write_text('{"cuda": {"name": "CUDA SDK", "version": "11.4.315"}}')
    assert cuda_toolkit_version(str(tmp_path)) == "11.4.315"
    old = tmp_path / "old"
    old.mkdir()
    (old / "version.txt").write_text("CUDA Version 10.2.300\n")
    assert cuda_toolkit_version(str(old)) == "10.2.300"
    assert cuda_toolkit_version(str(tmp_path / "none")) is None
    assert parse_jetpack("nvidia-jetpack\t5.1.1-b56\n") == "5.1.1"
    assert parse_jetpack("") is None
