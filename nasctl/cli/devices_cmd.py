"""`nasctl devices`: the registered devices, whether each is usable here, and why not."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from nasctl.cli.common import flags_of, handle_errors, name_flags, print_json
from nasctl.cli.options import DataDirOpt, JsonOpt, ThreadsOpt, TrtexecOpt, device_options

GATE_NOTE = (
    "noise_gate: derived from this device's own repeatability: the reference probe (a fixed "
    "mbconv net, never the nets being measured) is timed N times, cv_threshold = 1.25 x the 90th "
    "percentile of its within-run CVs (clamped to 0.5-200 %), max_attempts = the fewest whose "
    "chance of all failing is <= 5 % at the probe's fail rate; `rule` shows the numbers. Made "
    "by `nasctl devices --calibrate NAME`, or on cpu by the first `nasctl profile` "
    "(source 'auto: first profile'; load_avg = the 1-minute load before/after: a gate made on "
    "a busy machine is loose, calibrate again when it is quiet to replace it). `nasctl "
    "profile` uses its cv_threshold and max_attempts unless --option sets them, so `noisy` "
    "means noisier than this device usually is. null: never calibrated here, the protocol's "
    "defaults apply (cv_threshold 0.025, max_attempts 3)."
)


@handle_errors
def devices(
    json_out: JsonOpt = False,
    trtexec: TrtexecOpt = None,
    data_dir: DataDirOpt = None,
    calibrate: Annotated[
        str | None,
        typer.Option(
            "--calibrate",
            help="Time the reference probe on this device --runs times and store the noise "
            "gate derived from it (CV threshold, attempts, usual probe time).",
        ),
    ] = None,
    runs: Annotated[int, typer.Option("--runs", help="Probe runs of --calibrate.")] = 10,
    threads: ThreadsOpt = None,
    clock: Annotated[
        str | None,
        typer.Option("--clock", help="With --calibrate on cpu: wall (default) or thread."),
    ] = None,
) -> None:
    from nasctl.profiler import describe_devices

    opts = device_options(trtexec=trtexec, data_dir=data_dir)
    flags = flags_of(devices)
    if calibrate is not None:
        extra = {**device_options(threads=threads), **({"clock": clock} if clock else {})}
        return _calibrate(calibrate, runs, {**opts, **extra}, json_out)
    rows = [_with_id(r, opts) for r in describe_devices(**opts)]
    for r in rows:  # reasons in the words of this command (``trtexec=PATH`` -> ``--trtexec PATH``)
        r["reason"] = name_flags(r["reason"], flags)
    if json_out:
        print_json(rows)
        return
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        mark = "yes" if r["available"] else "no "
        dev_id = f"  [{r['device_id']}]" if r.get("device_id") else ""
        typer.echo(f"{r['name']:<{width}}  usable: {mark}  {r['reason']}{dev_id}")
        g = r.get("noise_gate")
        if g:
            typer.echo(
                f"{'':<{width}}  noise gate: CV <= {100 * g['cv_threshold']:.2f} %, "
                f"{g['max_attempts']} attempts, probe {g['probe_ms']:.2f} ms ({g['created_at']})"
            )


def _calibrate(name: str, runs: int, opts: dict[str, Any], json_out: bool) -> None:
    """``--calibrate NAME``: measure the probe, derive and store the gate, print it."""
    from nasctl.cli.progress import ProgressBar
    from nasctl.errors import DeviceError
    from nasctl.profiler import get_device
    from nasctl.profiler.gate import save_gate
    from nasctl.profiler.probe import calibrate

    if runs < 3:
        raise DeviceError(f"--runs must be >= 3 (a gate needs a spread); got {runs}")
    dev = get_device(name, **opts)
    ok, reason = dev.available()
    if not ok:
        raise DeviceError(f"device {name!r} is not usable here: {reason}")
    with ProgressBar(quiet=json_out) as bar:
        tick = bar.ticker(bar.add(f"probe {dev.device_id}", total=runs))
        gate = calibrate(dev, runs, progress=tick)
    path = save_gate(gate)
    out = {**gate.to_dict(), "path": str(path), "note": GATE_NOTE}
    if json_out:
        print_json(out)
        return
    typer.echo(
        f"{gate.device_id}: CV <= {100 * gate.cv_threshold:.2f} %, {gate.max_attempts} "
        f"attempts; probe {gate.probe_ms:.2f} ms (spread {100 * gate.probe_spread:.1f} % over "
        f"{runs} runs) -> {path}"
    )


def _with_id(row: dict[str, Any], opts: dict[str, Any]) -> dict[str, Any]:
    """Add the canonical dataset id (fp32) where the device can tell it here."""
    from nasctl.errors import NasctlError
    from nasctl.profiler import get_device
    from nasctl.profiler.gate import load_gate

    row = {"name": row["name"], "device_id": None, "usable": row["available"], **row}
    if row["available"] and not row["name"].startswith("replay"):
        try:
            row["device_id"] = get_device(row["name"], **opts).device_id
        except Exception:  # an id that needs the runtime (TensorRT version) stays unknown
            row["device_id"] = None
    gate = None
    if row["device_id"]:
        try:
            g = load_gate(row["device_id"])
        except NasctlError as e:  # a corrupt gate file: say so, never guess
            row["noise_gate_error"] = str(e)
        else:
            gate = g.to_dict() if g else None
    row["noise_gate"] = gate
    row["noise_gate_note"] = GATE_NOTE
    return row
