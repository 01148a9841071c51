#!/usr/bin/env python3
"""A trtexec stand-in for the tests (no TensorRT here). It checks every flag it receives
against trtexec's documented flag list for the version it plays (tests/data/trtexec_flags:
8.5, 10.3, 10.13, 11.1), refuses deprecated and unknown flags and malformed values, and
replays a real trtexec export from ../shared/data/tensorrt for the reports it is asked for.

Environment:
    FAKE_TRTEXEC_VERSION  TensorRT version to play: 8.5.2 (default), 10.3.0, 10.13.0, 11.1.0
    FAKE_TRTEXEC_EXPORT   base path of a real export (<base>.timing.json, .profile.json,
                          .graph.json); required for runs that export reports
    FAKE_TRTEXEC_MODE     ok (default) | crash | hang | build-fail | nograph | badcache | noisy
    FAKE_TRTEXEC_ARGV_LOG file to append each argv to (one JSON list per line)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
FLAGS_DIR = os.path.join(HERE, "..", "data", "trtexec_flags")
FLAG_FILES = {
    (8, 5): "trtexec-8.5.txt",
    (10, 3): "trtexec-10.3.txt",
    (10, 13): "trtexec-10.13.txt",
    (11, 1): "trtexec-11.1.txt",
}
SHAPES = re.compile(r"^[^:,]+:\d+(x\d+)*(,[^:,]+:\d+(x\d+)*)*$")
INT_FLAGS = ("--warmUp", "--iterations", "--duration", "--avgRuns", "--useDLACore")


def fail(msg: str, code: int = 1) -> None:
    print(f"[E] {msg}")
    print("&&&& FAILED TensorRT.trtexec")
    sys.exit(code)


def flag_list(version: tuple) -> dict:
    path = os.path.join(FLAGS_DIR, FLAG_FILES[version[:2]])
    out = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip() and not line.startswith("#"):
                parts = line.split()
                out[parts[0]] = len(parts) > 1 and parts[1] == "deprecated"
    return out


def main(argv: list) -> None:
    ver_text = os.environ.get("FAKE_TRTEXEC_VERSION", "8.5.2")
    v = tuple(int(x) for x in ver_text.split("."))
    tag = f"{v[0]}{v[1]}{v[2]:02d}" if v[0] < 10 else f"{v[0]}{v[1]:02d}{v[2]:02d}"
    log_path = os.environ.get("FAKE_TRTEXEC_ARGV_LOG")
    if log_path:
        with open(log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(argv) + "\n")
    print(f"&&&& RUNNING TensorRT.trtexec [TensorRT v{tag}] # trtexec " + " ".join(argv))
    known = flag_list(v)
    if argv == ["--help"]:
        print("\n".join(f"  {k}" for k in known))
        print(f"&&&& PASSED TensorRT.trtexec [TensorRT v{tag}]")
        return
    opts = {}
    for a in argv:
        name, _, value = a.partition("=")
        if name not in known:
            fail(f"Unknown option: {name} {value}")
        if known[name]:
            fail(f"stand-in: {name} is deprecated in TensorRT {ver_text}; do not pass it")
        if name in opts:
            fail(f"stand-in: {name} given twice")
        opts[name] = value
    check_values(opts, v)
    mode = os.environ.get("FAKE_TRTEXEC_MODE", "ok")
    if mode == "crash":
        os.kill(os.getpid(), signal.SIGSEGV)
    if mode == "hang":
        time.sleep(3600)
    if mode == "build-fail" and "--onnx" in opts:
        fail("Error[4]: [network.cpp::validate::2997] Error Code 4: Internal Error (build failed)")
    run(opts, v, mode)
    print(f"&&&& PASSED TensorRT.trtexec [TensorRT v{tag}]")


def check_values(opts: dict, v: tuple) -> None:
    if ("--onnx" in opts) == ("--loadEngine" in opts):
        fail("stand-in: exactly one of --onnx and --loadEngine")
    for key in ("--onnx", "--loadEngine", "--calib"):
        if key in opts and not os.path.isfile(opts[key]):
            fail(f"stand-in: {key} file {opts[key]} does not exist")
    for key in INT_FLAGS:
        if key in opts and not re.fullmatch(r"\d+", opts[key]):
            fail(f"stand-in: {key}={opts[key]} is not an integer")
    if "--useDLACore" in opts and opts["--useDLACore"] not in ("0", "1"):
        fail("stand-in: --useDLACore must be 0 or 1 on a Xavier NX")
    for key in ("--shapes", "--minShapes", "--optShapes", "--maxShapes"):
        if key in opts and not SHAPES.match(opts[key]):
            fail(f"stand-in: {key}={opts[key]} is not name:AxBxC[,name:...]")
    prof = [opts.get(k) for k in ("--minShapes", "--optShapes", "--maxShapes")]
    if any(prof) and not (all(prof) and len(set(prof)) == 1):
        fail("stand-in: the nasctl agent builds one profile with min = opt = max")
    if "--memPoolSize" in opts and not re.fullmatch(r"workspace:\d+[KMG]?", opts["--memPoolSize"]):
        fail(f"stand-in: --memPoolSize={opts['--memPoolSize']} is not workspace:<MiB>")
    if opts.get("--profilingVerbosity", "detailed") not in ("layer_names_only", "detailed", "none"):
        fail("stand-in: --profilingVerbosity must be layer_names_only, detailed or none")
    precision = [k for k in ("--fp16", "--int8", "--best") if k in opts]
    if "--stronglyTyped" in opts and precision:
        fail(f"stand-in: --stronglyTyped with {precision}: TensorRT would disable them")
    for key, val in opts.items():
        if (
            key
            in (
                "--fp16",
                "--int8",
                "--stronglyTyped",
                "--useSpinWait",
                "--useCudaGraph",
                "--noDataTransfers",
                "--separateProfileRun",
                "--allowGPUFallback",
            )
            and val
        ):
            fail(f"stand-in: {key} takes no value")


def run(opts: dict, v: tuple, mode: str) -> None:
    base = os.environ.get("FAKE_TRTEXEC_EXPORT")
    exports = [k for k in ("--exportTimes", "--exportProfile", "--exportLayerInfo") if k in opts]
    if exports and not base:
        fail("stand-in: FAKE_TRTEXEC_EXPORT is not set")
    if "--onnx" in opts:
        if "--timingCacheFile" in opts:
            path = opts["--timingCacheFile"]
            if mode == "badcache":
                print("[W] [TRT] Detected invalid timing cache, setup a local cache instead")
            with open(path, "ab") as f:
                f.write(b"timing-cache-entry\n")
        print("[I] [TRT] Total Host Persistent Memory: 170400")
        print("[I] [TRT] Total Device Persistent Memory: 125895680")
        if v >= (10, 0):  # 10.x names it "Max Scratch Memory" and adds the weights
            print("[I] [TRT] Max Scratch Memory: 59641344")
        else:
            print("[I] [TRT] Total Scratch Memory: 59641344")
        print("[I] [TRT] Total Activation Memory: 8388608")
        if v >= (10, 0):
            print("[I] [TRT] Total Weights Memory: 23380000")
            print("[I] [TRT] [MemUsageStats] Peak memory usage of TRT CPU/GPU memory "
                  "allocators: CPU 3 MiB, GPU 60 MiB")  # fmt: skip
        if "--useDLACore" in opts:
            dla_report(base)
        if "--saveEngine" in opts:
            with open(opts["--saveEngine"], "wb") as f:
                f.write(b"\0" * 4096)
    if v >= (10, 0):  # the inference phase (static context memory, trtexec's default)
        print("[I] Created execution context with device memory size: 8 MiB")
    if mode == "nograph" and "--useCudaGraph" in opts or mode == "nograph" and v >= (11, 0):
        print("[W] The CUDA graph capture on the stream has failed.")
        print(
            "[W] The built TensorRT engine contains operations that are not permitted under "
            "CUDA graph capture mode."
        )
    if "--exportTimes" in opts:
        times = json.load(open(base + ".timing.json", encoding="utf-8"))
        if mode == "noisy":
            times = [dict(t, computeMs=t["computeMs"] * (1 + (i % 2))) for i, t in enumerate(times)]
        json.dump(times, open(opts["--exportTimes"], "w", encoding="utf-8"))
    if "--exportProfile" in opts:
        shutil.copyfile(base + ".profile.json", opts["--exportProfile"])
    if "--exportLayerInfo" in opts:
        shutil.copyfile(base + ".graph.json", opts["--exportLayerInfo"])


def dla_report(base: str) -> None:
    """Half the exported layers on the DLA (as foreign nodes), the rest on the GPU."""
    profile = json.load(open(base + ".profile.json", encoding="utf-8"))
    names = [e["name"] for e in profile if isinstance(e, dict) and "name" in e]
    half = len(names) // 2
    print("[I] [TRT] ---------- Layers Running on DLA ----------")
    for n in names[:half]:
        print(f"[I] [TRT] [DlaLayer] {n}")
    print("[I] [TRT] ---------- Layers Running on GPU ----------")
    for n in names[half:]:
        print(f"[I] [TRT] [GpuLayer] CONVOLUTION: {n}")


if __name__ == "__main__":
    main(sys.argv[1:])
