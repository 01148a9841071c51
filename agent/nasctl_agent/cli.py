"""``nasctl-agent``: ``measure`` one ONNX model on this machine, ``info`` about the machine.

Errors are one line on stderr and exit code 1 (a request this machine cannot serve, or a model
that failed: with ``--json`` the failed result is still printed). Standard library only.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from nasctl_agent._version import __version__
from nasctl_agent.errors import AgentError
from nasctl_agent.request import BACKENDS, DEVICES, PRECISIONS, PROTOCOL_VERSION

_TIMING = (
    ("warmup", int, "warm-up runs (default 10)"),
    ("warmup_s", float, "warm-up time budget, seconds (default 0.2)"),
    ("repeats", int, "minimum timed runs (default 20)"),
    ("min_time_s", float, "minimum timed seconds (default 1.0)"),
    ("max_repeats", int, "cap on timed runs per attempt (default 10000)"),
    ("cv_threshold", float, "quality gate on std/mean (default 0.025)"),
    ("max_attempts", int, "attempts while the gate fails (default 3)"),
    (
        "median_ci",
        float,
        "stop before min_time_s once the median's 95%% CI is within +-this "
        "fraction of it (default 0: off)",
    ),
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="nasctl-agent",
        description="The device side of nasctl: time an ONNX model on this machine.",
    )
    p.add_argument(
        "--version",
        action="version",
        version=f"nasctl-agent {__version__} (protocol {PROTOCOL_VERSION})",
    )
    sub = p.add_subparsers(dest="command")
    m = sub.add_parser("measure", help="time one ONNX model and print its record")
    m.add_argument("model", help="ONNX file (external data next to it) or a folder holding one")
    m.add_argument("--device", default="cpu", choices=DEVICES)
    m.add_argument("--precision", default="fp32", choices=PRECISIONS)
    m.add_argument("--batch", type=int, default=1)
    m.add_argument(
        "--shape",
        action="append",
        default=[],
        metavar="NAME:1x3x224x224",
        help="full shape of a dynamic input (repeatable)",
    )
    m.add_argument("--backend", choices=BACKENDS, help="default: the device's own")
    m.add_argument("--no-per-layer", action="store_true", help="skip the per-layer run")
    for name, typ, help_ in _TIMING:
        m.add_argument("--" + name.replace("_", "-"), type=typ, help=help_)
    m.add_argument("--threads", type=int, help="cpu: intra-op threads (default 1)")
    m.add_argument("--trtexec", help="path of trtexec")
    m.add_argument("--dla-core", type=int, choices=(0, 1), help="Jetson: run on a DLA core")
    m.add_argument("--calib-data", help="INT8 calibration: folder of .npy input batches")
    m.add_argument("--calib-cache", help="INT8 calibration cache file (reused)")
    m.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other backend option (see nasctl_agent.request.OPTIONS)",
    )
    m.add_argument("--request", help="a request JSON file (the flags above override it)")
    m.add_argument("--json", action="store_true", help="print the result as JSON")
    i = sub.add_parser("info", help="this agent, its devices and the machine's fingerprint")
    i.add_argument("--device", choices=DEVICES, help="only this device")
    i.add_argument("--json", action="store_true")
    from nasctl_agent.worker import add_parser as add_worker_parser

    add_worker_parser(sub)
    return p


def _shapes(items: list[str]) -> dict[str, list[int]] | None:
    if not items:
        return None
    out: dict[str, list[int]] = {}
    for item in items:
        name, sep, dims = item.rpartition(":")
        try:
            out[name] = [int(d) for d in dims.lower().split("x")]
        except ValueError:
            sep = ""
        if not sep or not name:
            raise AgentError(f"--shape {item!r} is not NAME:DxDxD (e.g. input:1x3x224x224)")
    return out


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def request_from_args(a: argparse.Namespace) -> dict[str, Any]:
    req: dict[str, Any] = {}
    if a.request:
        try:
            with open(a.request, encoding="utf-8") as f:
                req = json.load(f)
        except (OSError, ValueError) as e:
            raise AgentError(f"cannot read request {a.request}: {e}") from e
        if not isinstance(req, dict):
            raise AgentError(f"request {a.request} is not a JSON object")
    req["device"], req["precision"], req["batch"] = a.device, a.precision, a.batch
    shapes = _shapes(a.shape)
    if shapes:
        req["shapes"] = shapes
    if a.backend:
        req["backend"] = a.backend
    if a.no_per_layer:
        req["per_layer"] = False
    timing = dict(req.get("timing") or {})
    for name, _, _ in _TIMING:
        v = getattr(a, name)
        if v is not None:
            timing[name] = v
    req["timing"] = timing
    opts = dict(req.get("options") or {})
    for key in ("threads", "trtexec", "dla_core", "calib_data", "calib_cache"):
        v = getattr(a, key)
        if v is not None:
            opts[key] = v
    for item in a.option:
        key, sep, val = item.partition("=")
        if not sep:
            raise AgentError(f"--option {item!r} is not KEY=VALUE")
        opts[key.strip()] = _value(val)
    req["options"] = opts
    return req


def _print_result(r: dict[str, Any]) -> None:
    if r["status"] == "failed":
        print(f"{r['device_id']}: failed: {r['error']}")
        return
    t = r["timing"]
    print(
        f"{r['device_id']}: median {t['median_ms']:.4f} ms  p90 {t['p90_ms']:.4f} ms  "
        f"cv {t['cv']:.3f}  runs {t['runs']}  ({r['status']}, {r['backend']})"
    )
    for la in r["layers"][:50]:
        print(f"  {la['time_ms']:9.4f} ms  {la['name']}")
    if len(r["layers"]) > 50:
        print(f"  ... {len(r['layers']) - 50} more layers (--json for all)")
    for w in r.get("warnings", []):
        print(f"warning: {w}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command is None:
        _parser().print_help()
        return 1
    if args.command == "worker":
        return int(args.func(args))
    try:
        if args.command == "info":
            from nasctl_agent.api import info

            out = info(args.device)
            if args.json:
                print(json.dumps(out, indent=2, sort_keys=True))
            else:
                for d in out["devices"]:
                    mark = "yes" if d["available"] else "no "
                    print(f"{d['name']:9s} {mark} {d.get('device_id_fp32', '')} {d['reason']}")
            return 0
        from nasctl_agent.api import measure

        result = measure(args.model, request_from_args(args)).to_dict()
    except AgentError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
    else:
        _print_result(result)
    if result["status"] == "failed":
        if args.json:
            print(f"error: {result['error']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
