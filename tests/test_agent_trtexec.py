"""The agent's trtexec path end to end against the trtexec stand-in (tests/tools/fake_trtexec.py),
which checks every flag against trtexec's documented lists for 8.5, 10.3, 10.13 and 11.1
(tests/data/trtexec_flags) and replays the real exports of ../shared/data/tensorrt; on a fake
Jetson Xavier NX / T4 (tests/agent_fakes.py). Each TensorRT fix of issue 11 point 3 has a test
here; the Python API's are in test_agent_tensorrt_api.py."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nasctl_agent
import pytest
from agent_fakes import (
    VERSIONS,
    engines,
    fake_trtexec,
    gpu_host,
    jetson_root,
    names_model,
    precision_of,
)
from agent_helpers import conv_model, save
from nasctl_agent import RequestError
from nasctl_agent.backends.trtexec import parse_trt_version

ENGINES = engines()
needs_data = pytest.mark.skipif(not ENGINES, reason="shared/data/tensorrt not beside the repo")
FAST = {"max_attempts": 1, "warmup_s": 0.2, "repeats": 10, "min_time_s": 1.0}


def _argv(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _builds(log: Path) -> list[list[str]]:
    return [a for a in _argv(log) if any(x.startswith("--onnx=") for x in a)]


@pytest.fixture
def xavier(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """A fake Xavier NX at 20 W with the 8.5 stand-in and the first fp16 export."""
    jetson_root(tmp_path, monkeypatch)
    log = tmp_path / "argv.jsonl"
    monkeypatch.setenv("FAKE_TRTEXEC_ARGV_LOG", str(log))
    if ENGINES:
        base = next(b for b in ENGINES if "pytorch" in str(b) and b.parent.name == "fp16")
        monkeypatch.setenv("FAKE_TRTEXEC_EXPORT", str(base))
    return {
        "tmp": tmp_path,
        "log": log,
        "trtexec": str(fake_trtexec(tmp_path, "8.5.2")),
        "cache": str(tmp_path / "cache"),
    }


def _req(x: dict, **kw: object) -> dict:
    opts = {"trtexec": x["trtexec"], "timing_cache_dir": x["cache"], **kw.pop("options", {})}  # type: ignore[dict-item]
    return {"device": "xavier", "precision": "fp16", "timing": FAST, "options": opts, **kw}


def test_version_parsing() -> None:
    assert parse_trt_version("&&&& RUNNING TensorRT.trtexec [TensorRT v8502] # trtexec") == (8, 5)
    assert parse_trt_version("[TensorRT v100300]") == (10, 3)
    assert parse_trt_version("&&&& RUNNING TensorRT.trtexec [TensorRT v110100] [b106]") == (11, 1)
    assert parse_trt_version("[11/25/2026-10:00:00] [I] TensorRT version: 11.1.0") == (11, 1)
    assert parse_trt_version("no version here") is None


# -- end to end on every real engine and every trtexec version -----------------------------------
@needs_data
@pytest.mark.slow
@pytest.mark.parametrize("version", VERSIONS)
def test_every_real_engine_through_the_agent_maps_at_least_as_well(
    version: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every flag passes the stand-in's check for ``version``; per-layer mapping through the
    agent and the host is the old direct mapping or better on every engine."""
    from nasctl.profiler.agent_devices import measurement_from_result
    from nasctl.profiler.source import ModelSource
    from nasctl.profiler.trt_names import map_engine_layers
    from nasctl.profiler.trt_reports import layer_info, profile_layers, read_json
    from nasctl.records import MeasurementRequest

    jetson_root(tmp_path, monkeypatch)
    trtexec = str(fake_trtexec(tmp_path, version))
    for i, base in enumerate(ENGINES):
        monkeypatch.setenv("FAKE_TRTEXEC_EXPORT", str(base))
        profile, info = read_json(f"{base}.profile.json"), read_json(f"{base}.graph.json")
        known = {n for p in map_engine_layers(list(layer_info(info))).values() for n in p.nodes}
        old = profile_layers(profile, info, known=known)  # the mapping before the agent
        order = list(
            dict.fromkeys(
                n for p in map_engine_layers(list(layer_info(info))).values() for n in p.nodes
            )
        )
        prec = precision_of(base)
        model = names_model(order, tmp_path / f"m{i}.onnx", prec)
        req = {
            "device": "xavier",
            "precision": prec,
            "timing": FAST,
            "options": {"trtexec": trtexec, "timing_cache_dir": str(tmp_path / "c")},
        }
        r = nasctl_agent.measure(model, req)
        assert r.status in ("ok", "noisy"), (base, r.error)
        assert r.device_id == f"xaviernx-20w6c-trt{'.'.join(version.split('.')[:2])}-{prec}"
        assert r.timing_method == "cuda-graph+spin-wait+no-transfers"
        mreq = MeasurementRequest(
            arch_hash="h", device="xavier", precision=prec, onnx_path=str(model)
        )
        m = measurement_from_result(mreq, r.to_dict(), ModelSource(path=model))
        assert [la.name for la in m.layers] == [la.name for la in old]
        for new_la, old_la in zip(m.layers, old, strict=True):
            assert set(old_la.nodes) <= set(new_la.nodes), (base, new_la.name)
        assert sum(bool(la.nodes) for la in m.layers) >= sum(bool(la.nodes) for la in old)
        assert m.extra["memory"]["activation_bytes"] > 0 and m.extra["memory"]["engine_bytes"] > 0


def test_flags_per_version(xavier: dict, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """8.5 and 10.x pass the timing flags and --fp16; 11.x passes neither (its defaults; the
    flags are deprecated no-ops there and the stand-in refuses them)."""
    if not ENGINES:
        pytest.skip("no exports")
    fp16 = tmp_path / "fp16.onnx"
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    onnx.save(convert_float_to_float16(conv_model(batch=1), keep_io_types=False), str(fp16))
    fp32 = save(conv_model(batch=1), tmp_path / "fp32.onnx")
    for version, model, expect, absent in [
        (
            "8.5.2",
            fp32,
            ["--fp16", "--useCudaGraph", "--useSpinWait", "--noDataTransfers"],
            ["--stronglyTyped"],
        ),
        ("10.3.0", fp32, ["--fp16", "--useCudaGraph"], ["--stronglyTyped"]),
        ("10.13.0", fp16, ["--stronglyTyped", "--useCudaGraph"], ["--fp16"]),
        ("11.1.0", fp16, [], ["--fp16", "--stronglyTyped", "--useCudaGraph", "--useSpinWait"]),
    ]:
        xavier["trtexec"] = str(fake_trtexec(tmp_path, version))
        r = nasctl_agent.measure(model, _req(xavier))
        assert r.status != "failed", (version, r.error)
        build = _builds(xavier["log"])[-1]
        for flag in expect:
            assert flag in build, (version, flag)
        for flag in absent:
            assert flag not in build, (version, flag)
        assert "--profilingVerbosity=detailed" in build


# -- point 3: correctness --------------------------------------------------------------------------
@needs_data
def test_dynamic_input_gets_one_profile_min_opt_max(xavier: dict) -> None:
    model = save(conv_model(batch="N"), xavier["tmp"] / "dyn.onnx")
    r = nasctl_agent.measure(model, _req(xavier, batch=4))
    assert r.status != "failed", r.error
    build = _builds(xavier["log"])[-1]
    for flag in ("--minShapes", "--optShapes", "--maxShapes", "--shapes"):
        assert f"{flag}=x:4x3x16x16" in build


@needs_data
def test_fixed_batch_measured_at_another_batch_is_refused(xavier: dict) -> None:
    model = save(conv_model(batch=1), xavier["tmp"] / "fixed.onnx")
    r = nasctl_agent.measure(model, _req(xavier, batch=8))
    assert r.status == "failed" and "fixed batch of 1" in r.error and r.timing is None
    assert _builds(xavier["log"]) == []  # nothing was built, nothing recorded under batch 8


@needs_data
def test_trtexec_and_python_api_time_the_same_way(xavier: dict) -> None:
    from nasctl_agent.backends import tensorrt_api, trt_common

    r = nasctl_agent.measure(save(conv_model(), xavier["tmp"] / "m.onnx"), _req(xavier))
    build = _builds(xavier["log"])[-1]
    assert {"--useCudaGraph", "--useSpinWait", "--noDataTransfers"} <= set(build)
    assert r.timing_method == trt_common.TIMING_METHOD
    assert "cudaGraphLaunch" in Path(tensorrt_api.__file__).read_text()  # the API's runner


@needs_data
def test_no_cuda_graph_gets_its_own_id(xavier: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_TRTEXEC_MODE", "nograph")
    r = nasctl_agent.measure(save(conv_model(), xavier["tmp"] / "m.onnx"), _req(xavier))
    assert r.status != "failed" and r.device_id.endswith("-fp16-nograph")
    assert r.timing_method == "stream+spin-wait+no-transfers" and r.warnings


@needs_data
def test_strongly_typed_precision_comes_from_the_model_or_is_refused(
    xavier: dict, tmp_path: Path
) -> None:
    fp32 = save(conv_model(), tmp_path / "fp32.onnx")
    for version in ("11.1.0",):
        xavier["trtexec"] = str(fake_trtexec(tmp_path, version))
        r = nasctl_agent.measure(fp32, _req(xavier, precision="fp16"))
        assert r.status == "failed" and "builds what the ONNX says (fp32)" in r.error
        assert not _builds(xavier["log"])  # never an FP32 engine labelled fp16
        r = nasctl_agent.measure(fp32, _req(xavier, precision="fp32"))
        assert r.status != "failed" and r.device_id.endswith("-fp32")


@needs_data
def test_int8_calibration_cache_or_refusal(xavier: dict, tmp_path: Path) -> None:
    fp32 = save(conv_model(), tmp_path / "fp32.onnx")
    with pytest.raises(RequestError, match="--calib-cache"):
        nasctl_agent.measure(fp32, _req(xavier, precision="int8"))
    with pytest.raises(RequestError, match="reads an INT8 calibration cache"):
        nasctl_agent.measure(
            fp32, _req(xavier, precision="int8", options={"calib_data": str(tmp_path)})
        )
    cache = tmp_path / "calib.cache"
    cache.write_bytes(b"TRT-8502-EntropyCalibration2\n")
    r = nasctl_agent.measure(
        fp32, _req(xavier, precision="int8", options={"calib_cache": str(cache)})
    )
    assert r.status != "failed", r.error
    build = _builds(xavier["log"])[-1]
    assert f"--calib={cache}" in build and "--int8" in build
    xavier["trtexec"] = str(fake_trtexec(tmp_path, "10.3.0"))  # implicit INT8: gone from 10.1
    r = nasctl_agent.measure(
        fp32, _req(xavier, precision="int8", options={"calib_cache": str(cache)})
    )
    assert r.status == "failed" and "Q/DQ" in r.error


@needs_data
def test_timing_cache_written_atomically_and_checked(
    xavier: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = save(conv_model(), xavier["tmp"] / "m.onnx")
    r = nasctl_agent.measure(model, _req(xavier))
    cache = Path(xavier["cache"]) / f"{r.device_id}.timing.cache"
    assert cache.read_bytes() == b"timing-cache-entry\n"
    staged = [a for a in _builds(xavier["log"])[-1] if a.startswith("--timingCacheFile=")]
    assert staged and staged[0] != f"--timingCacheFile={cache}"  # trtexec writes a private copy
    nasctl_agent.measure(model, _req(xavier))
    assert cache.read_bytes() == b"timing-cache-entry\n" * 2  # reused, then extended
    monkeypatch.setenv("FAKE_TRTEXEC_MODE", "build-fail")
    r = nasctl_agent.measure(model, _req(xavier))
    assert r.status == "failed" and "Error Code 4" in r.error
    assert cache.read_bytes() == b"timing-cache-entry\n" * 2  # a failed build leaves it alone
    monkeypatch.setenv("FAKE_TRTEXEC_MODE", "badcache")
    r = nasctl_agent.measure(model, _req(xavier))
    assert any("invalid" in w for w in r.warnings)
    assert not [p for p in cache.parent.iterdir() if p.name.startswith(".tmp-")]


@needs_data
def test_external_data_is_measured_from_its_folder(xavier: dict) -> None:
    folder = xavier["tmp"] / "big"
    model = save(conv_model(), folder / "big.onnx", external=True)
    assert (folder / "big.data").is_file()
    r = nasctl_agent.measure(folder, _req(xavier))  # the folder or the file
    assert r.status != "failed", r.error
    assert f"--onnx={model}" in _builds(xavier["log"])[-1]


# -- bad input -------------------------------------------------------------------------------------
@needs_data
@pytest.mark.parametrize(
    ("mode", "options", "message"),
    [
        ("crash", {}, "killed by signal"),
        ("hang", {"timeout_s": 1}, "timed out after 1 s"),
        ("build-fail", {}, "trtexec failed"),
    ],
)
def test_trtexec_failures_are_failed_results(
    xavier: dict, monkeypatch: pytest.MonkeyPatch, mode: str, options: dict, message: str
) -> None:
    monkeypatch.setenv("FAKE_TRTEXEC_MODE", mode)
    r = nasctl_agent.measure(
        save(conv_model(), xavier["tmp"] / "m.onnx"), _req(xavier, options=options)
    )
    assert r.status == "failed" and message in r.error, r.error


def test_corrupt_onnx_is_a_failed_result(xavier: dict) -> None:
    bad = xavier["tmp"] / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage")
    r = nasctl_agent.measure(bad, _req(xavier))
    assert r.status == "failed" and "not an ONNX model" in r.error


# -- point 4: Xavier NX ---------------------------------------------------------------------
@needs_data
def test_power_mode_is_part_of_the_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trtexec = str(fake_trtexec(tmp_path, "8.5.2"))
    req = {"device": "xavier", "precision": "fp16", "options": {"trtexec": trtexec}}
    ids = []
    for mode in ("MODE_20W_6CORE", "MODE_10W_4CORE", "MODE_15W_2CORE"):
        jetson_root(tmp_path, monkeypatch, mode=mode)
        monkeypatch.setenv("PATH", f"{Path(trtexec).parent}:{os.environ['PATH']}")
        ids.append(nasctl_agent.info("xavier")["devices"][0]["device_id_fp32"])
    assert ids == [
        "xaviernx-20w6c-trt8.5-fp32",
        "xaviernx-10w4c-trt8.5-fp32",
        "xaviernx-15w2c-trt8.5-fp32",
    ]
    jetson_root(tmp_path, monkeypatch, mode=None)
    with pytest.raises(RequestError, match="power mode"):
        nasctl_agent.measure(save(conv_model(), tmp_path / "m.onnx"), req)


def test_clocks_locked_is_judged_against_the_modes_caps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nasctl_agent.fingerprint import jetson_info, parse_jetson_clocks_show, warn_if_unlocked

    jetson_root(tmp_path, monkeypatch, mode="MODE_10W_2CORE", locked=True, cap_khz=1190400)
    info = jetson_info()
    assert info["clocks_locked"] is True  # at the 10 W cap, below the 1907 MHz hardware maximum
    assert info["clock_caps"]["cpu_cap_khz"] == 1190400 < info["clock_caps"]["cpu_hw_max_khz"]
    assert warn_if_unlocked(info) is None
    jetson_root(tmp_path, monkeypatch, locked=False)
    assert jetson_info()["clocks_locked"] is False and warn_if_unlocked()
    show = (
        "SOC family:tegra194  Machine:NVIDIA Jetson Xavier NX Developer Kit\n"
        "cpu0: Online=1 Governor=schedutil MinFreq=1190400 MaxFreq=1190400 CurrentFreq=1190400\n"
        "cpu1: Online=1 Governor=schedutil MinFreq=1190400 MaxFreq=1190400 CurrentFreq=1190400\n"
        "GPU MinFreq=510000000 MaxFreq=510000000 CurrentFreq=510000000\n"
        "EMC MinFreq=204000000 MaxFreq=1600000000 CurrentFreq=1600000000 FreqOverride=1\n"
        "NV Power Mode: MODE_10W_2CORE\n"
    )
    parsed = parse_jetson_clocks_show(show)
    assert parsed["locked"] is True and parsed["mode"] == "MODE_10W_2CORE"
    assert parsed["gpu"]["max"] == 510000000
    assert (
        parse_jetson_clocks_show(show.replace("MinFreq=510000000", "MinFreq=114750000"))["locked"]
        is False
    )


def test_hardware_is_refused_with_the_explicit_device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trtexec = str(fake_trtexec(tmp_path, "8.5.2"))
    model = save(conv_model(), tmp_path / "m.onnx")
    req = {"precision": "fp16", "options": {"trtexec": trtexec}}
    jetson_root(tmp_path, monkeypatch, model="NVIDIA Jetson AGX Orin Developer Kit")
    with pytest.raises(RequestError, match="not a Xavier NX: use --device jetson"):
        nasctl_agent.measure(model, {"device": "xavier", **req})
    monkeypatch.setenv("PATH", f"{Path(trtexec).parent}:{os.environ['PATH']}")
    ids = nasctl_agent.info("jetson")["devices"][0]
    assert ids["device_id_fp32"] == "jetson-agx-orin-20w6c-trt8.5-fp32"
    gpu_host(tmp_path, monkeypatch, "NVIDIA A100-SXM4-40GB")
    with pytest.raises(RequestError, match="not a T4: use --device cuda-trt"):
        nasctl_agent.measure(model, {"device": "t4", **req})
    with pytest.raises(RequestError, match="not a Jetson"):
        nasctl_agent.measure(model, {"device": "xavier", **req})
    monkeypatch.setenv("PATH", f"{Path(trtexec).parent}:{os.environ['PATH']}")
    assert nasctl_agent.info("cuda-trt")["devices"][0]["available"]
    gpu_host(tmp_path, monkeypatch, "Tesla T4")
    with pytest.raises(RequestError, match="no DLA"):
        nasctl_agent.measure(
            model, {"device": "t4", **req, "options": {"trtexec": trtexec, "dla_core": 0}}
        )


@needs_data
def test_dla_core_with_gpu_fallback_report(xavier: dict) -> None:
    model = save(conv_model(), xavier["tmp"] / "m.onnx")
    r = nasctl_agent.measure(model, _req(xavier, per_layer=True, options={"dla_core": 1}))
    assert r.status != "failed", r.error
    assert "-fp16-dla1" in r.device_id
    build = _builds(xavier["log"])[-1]
    assert "--useDLACore=1" in build and "--allowGPUFallback" in build
    on_dla = [la for la in r.layers if la["extra"]["device"] == "DLA"]
    fell_back = [la for la in r.layers if la["extra"]["fell_back"]]
    assert on_dla and fell_back and r.extra["gpu_fallback_layers"]
    with pytest.raises(RequestError, match="DLA runs FP16 or INT8"):
        nasctl_agent.measure(model, _req(xavier, precision="fp32", options={"dla_core": 0}))
    with pytest.raises(RequestError, match="dla_core must be 0 or 1"):
        nasctl_agent.measure(model, _req(xavier, options={"dla_core": 2}))
    with pytest.raises(RequestError, match="must be an integer"):
        nasctl_agent.measure(model, _req(xavier, options={"dla_core": "first"}))
    r = nasctl_agent.measure(model, _req(xavier, options={"dla_core": "0"}))  # --option dla_core=0
    assert r.device_id.endswith("-fp16-dla0"), r.error


# -- the host: nasctl profile through the agent --------------------------------------------------
@needs_data
def test_host_xavier_device_stores_the_agents_record(xavier: dict) -> None:
    from nasctl.profiler import get_device
    from nasctl.records import MeasurementRequest

    model = save(conv_model(), xavier["tmp"] / "m.onnx")
    dev = get_device("xavier", trtexec=xavier["trtexec"], timing_cache_dir=xavier["cache"])
    assert dev.device_id == "xaviernx-20w6c-trt8.5-fp32"
    m = dev.measure(
        MeasurementRequest(
            arch_hash="h",
            device="xavier",
            precision="fp16",
            onnx_path=str(model),
            options=dict(FAST),
        )
    )
    assert m.status in ("ok", "noisy") and m.device_id == "xaviernx-20w6c-trt8.5-fp16"
    assert m.extra["backend"] == "trtexec" and m.extra["memory"]["device_persistent_bytes"] > 0
    assert m.fingerprint["jetson"]["nvpmodel"]["mode"] == "MODE_20W_6CORE"
    assert os.path.isfile(Path(xavier["cache"]) / "xaviernx-20w6c-trt8.5-fp16.timing.cache")


@needs_data
def test_nasctl_profile_xavier_cli_on_the_device(xavier: dict) -> None:
    """On a (fake) Xavier NX, ``nasctl profile --device xavier`` stores the agent's record."""
    import sqlite3

    from typer.testing import CliRunner

    from nasctl.cli.main import app

    model = save(conv_model(), xavier["tmp"] / "m.onnx")
    db = xavier["tmp"] / "x.db"
    args = [
        "profile",
        "--device",
        "xavier",
        "--precision",
        "fp16",
        "--trtexec",
        xavier["trtexec"],
        "--onnx",
        str(model),
        "--db",
        str(db),
        "--option",
        "max_attempts=1",
        "--json",
    ]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    con = sqlite3.connect(db)
    ((dev_id, status),) = con.execute("SELECT device_id, status FROM measurements").fetchall()
    assert dev_id == "xaviernx-20w6c-trt8.5-fp16" and status in ("ok", "noisy")
    assert con.execute("SELECT COUNT(*) FROM layer_measurements").fetchone()[0] > 0
