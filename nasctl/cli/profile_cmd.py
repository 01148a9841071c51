"""`nasctl profile`: measure sampled architectures or ONNX models on a device into a store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from nasctl.cli.common import handle_errors, print_json
from nasctl.cli.fleet_cmd import FleetOpt, FleetSharedOpt, FleetWaitOpt, remote_device
from nasctl.cli.options import (
    CalibDataOpt,
    DataDirOpt,
    DbOpt,
    DeviceOpt,
    JsonOpt,
    PrecisionOpt,
    ThreadsOpt,
    TrtexecOpt,
    check_calib_data,
    device_options,
)
from nasctl.cli.progress import ProgressBar


@handle_errors
def profile(
    device: DeviceOpt,
    db: DbOpt,
    models: Annotated[
        list[Path] | None,
        typer.Argument(
            help="ONNX model files to measure (a shell glob works).", show_default=False
        ),
    ] = None,
    space: Annotated[
        str | None,
        typer.Option(
            "--space",
            help="Search space to sample: a name, or package.module:SPACE (nasctl imports and "
            "runs that module: only name code you trust).",
        ),
    ] = None,
    num: Annotated[
        int | None, typer.Option("--num", help="Number of distinct architectures to measure.")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Sampling seed (same seed, same set).")] = 0,
    pick: Annotated[
        str,
        typer.Option(
            "--pick",
            help="random, or informative: what tells most about a new device given the other "
            "devices in the store (for `train-predictor --transfer`).",
        ),
    ] = "random",
    onnx: Annotated[
        list[Path] | None,
        typer.Option("--onnx", help="ONNX model to measure (repeatable; same as the arguments)."),
    ] = None,
    kernels: Annotated[
        int | None,
        typer.Option("--kernels", help="Measure N single layers (space 'kernels') instead."),
    ] = None,
    precision: PrecisionOpt = "fp32",
    calib_data: CalibDataOpt = None,
    batch: Annotated[int, typer.Option("--batch", help="Batch size.")] = 1,
    threads: ThreadsOpt = None,
    trtexec: TrtexecOpt = None,
    data_dir: DataDirOpt = None,
    option: Annotated[
        list[str] | None,
        typer.Option(
            "--option",
            help="Timing protocol option KEY=VALUE (warmup, repeats, min_time_s, cv_threshold, "
            "max_attempts, ...); repeatable.",
        ),
    ] = None,
    layers: Annotated[
        bool, typer.Option("--layers/--no-layers", help="Also record per-layer times.")
    ] = True,
    fleet: FleetOpt = None,
    fleet_wait: FleetWaitOpt = 60.0,
    fleet_shared_dir: FleetSharedOpt = None,
    probe_every: Annotated[
        int,
        typer.Option(
            "--probe-every",
            help="Time the reference probe before the first and every K-th measurement and "
            "keep it with each (for `train-predictor --drift-correct`); 0: no probe.",
        ),
    ] = 0,
    probe_tolerance: Annotated[
        float,
        typer.Option(
            "--probe-tolerance",
            help="Stop when a probe is more than this factor off the device's usual probe time "
            "(from `nasctl devices --calibrate`, else this run's first probe).",
        ),
    ] = 1.5,
    auto_calibrate: Annotated[
        bool,
        typer.Option(
            "--auto-calibrate/--no-auto-calibrate",
            envvar="NASCTL_AUTO_CALIBRATE",
            help="When the device (cpu) has no noise gate yet, derive it first from 10 runs of "
            "the reference probe (a few seconds; the rule of `nasctl devices --calibrate`) and "
            "store it. Off: the protocol's fixed gate (CV 2.5 %, 3 attempts) until calibrated.",
        ),
    ] = True,
    json_out: JsonOpt = False,
) -> None:
    """Measure ONNX files (arguments or --onnx), N sampled architectures of a space (--space S
    --num N) or N single layers (--kernels N) on a device; resumable, Ctrl-C keeps what is
    committed."""
    from nasctl.datasets.collect import check_num, collect, onnx_jobs, read_onnx, space_jobs
    from nasctl.datasets.store import Store
    from nasctl.errors import NasctlError
    from nasctl.profiler.contention import CpuWatch, contention_warning
    from nasctl.spaces import get_space

    onnx = [*(models or []), *(onnx or [])]
    space, num = _check_what(space, num, onnx, kernels)
    if pick not in ("random", "informative") or (pick == "informative" and not space):
        raise NasctlError(f"--pick takes random or informative (with --space); got {pick!r}")
    if batch < 1:
        raise NasctlError(f"--batch must be >= 1; got {batch}")
    if probe_every < 0 or not probe_tolerance > 1.0:
        raise NasctlError(
            f"--probe-every must be >= 0 and --probe-tolerance > 1; got {probe_every} and "
            f"{probe_tolerance}"
        )
    if fleet and probe_every:
        raise NasctlError(
            "--probe-every times the probe on this machine; with --fleet it would have to run "
            "on the workers, which they do not do yet: drop one of the two"
        )
    check_calib_data(calib_data)
    if fleet:
        dev = remote_device(fleet, device, precision, fleet_wait, fleet_shared_dir, calib_data)
    else:
        extra_opts = {**_options(option), **device_options(calib_data=calib_data)}
        dev = _device(device, precision, threads, trtexec, data_dir, extra_opts)
    from nasctl.profiler.gate import gate_options

    warnings = _warnings()
    # everything a user typed is checked before the store is opened or created
    graphs = read_onnx(onnx) if onnx else []
    if space == "kernels":  # registered on import (until spaces/__init__ lists it)
        import nasctl.spaces.kernels  # noqa: F401
    the_space = get_space(space) if space else None
    if the_space is not None and num is not None:
        check_num(the_space, num)
    gate, calibration_s = _gate(dev, _options(option), auto_calibrate and not fleet, json_out)
    options = gate_options(gate, _options(option))
    probe = _prober(dev, gate, probe_tolerance) if probe_every else None
    with Store(db) as store:
        if store.replayed:
            warnings.append(f"stored {store.replayed} measurements kept in the journal earlier")
            typer.echo(f"warning: {warnings[-1]}", err=True)
        if the_space is None:
            jobs: Any = onnx_jobs(store, graphs)
            total = len(jobs)
        else:
            assert num is not None
            jobs, total = space_jobs(store, the_space, num, seed), num
            if pick == "informative":
                from nasctl.datasets.transfer_data import genotype_jobs, informative_genotypes

                picks = informative_genotypes(
                    store, the_space, num, device_id=dev.device_id, seed=seed
                )
                jobs = genotype_jobs(store, the_space, picks)
        # the cpu device shares this machine's caches with everything else (a fleet: not here)
        watch = CpuWatch() if dev.name == "cpu" and not fleet else None
        with ProgressBar(quiet=json_out) as bar:
            tick = bar.ticker(bar.add(f"{dev.name} -> {db.name}", total=total))
            probing = {"probe": probe, "probe_every": probe_every} if probe else {}
            summary = collect(  # a fleet too: RemoteDevice.measure_many
                store,
                dev,
                jobs,
                total,
                precision=precision,
                batch=batch,
                per_layer=layers,
                options=options,
                progress=tick,
                **probing,
            )
    other_cpus = watch.other_cpus() if watch is not None else None
    busy = contention_warning(other_cpus)
    if busy:
        warnings.append(busy)
        typer.echo(f"warning: {busy}", err=True)
    res = {
        **summary.to_dict(),
        "db": str(db),
        "precision": precision,
        "batch": batch,
        "other_cpus": other_cpus,
        "warnings": warnings,
        "noise_gate": (
            {
                "cv_threshold": gate.cv_threshold,
                "max_attempts": gate.max_attempts,
                "source": gate.source,
                "calibrated_now": calibration_s is not None,
            }
            if gate
            else None
        ),
        "calibration_seconds": calibration_s,
    }
    if json_out:
        print_json(res)
        return
    typer.echo(
        f"{res['device_id']}: measured {res['measured']} (ok {res['ok']}, noisy {res['noisy']}, "
        f"failed {res['failed']}), skipped {res['skipped']} already stored, of {total} "
        f"requested, in {res['seconds']:.1f} s -> {db}"
    )
    for f in res["failures"][:5]:
        typer.echo(f"  failed {f['arch']}: {f['error']}", err=True)
    if res["journaled"]:
        typer.echo(
            f"warning: the store stayed locked: {res['journaled']} measurements are kept in "
            f"{res['journal']}; the next command that opens {db} stores them",
            err=True,
        )


def _gate(dev: Any, user: dict[str, Any], auto: bool, quiet: bool) -> tuple[Any, float | None]:
    """The device's noise gate, calibrated now if it has none (see ``gate_for``); the seconds
    a calibration took (None: none ran)."""
    import time

    from nasctl.profiler.gate import load_gate
    from nasctl.profiler.probe import CALIBRATION_RUNS, gate_for

    gate = load_gate(dev.device_id)
    if gate is not None or not auto:
        return gate, None
    t0 = time.perf_counter()
    with ProgressBar(quiet=quiet) as bar:
        tick = bar.ticker(bar.add(f"noise gate {dev.device_id}", total=CALIBRATION_RUNS))
        gate, now = gate_for(dev, user, auto=auto, progress=tick)
    if now and gate is not None:
        typer.echo(
            f"calibrated the noise gate of {dev.device_id} (first profile here): CV <= "
            f"{100 * gate.cv_threshold:.2f} %, {gate.max_attempts} attempts; `nasctl devices "
            "--json` explains it",
            err=True,
        )
    return gate, (round(time.perf_counter() - t0, 3) if now else None)


def _prober(dev: Any, gate: Any, tolerance: float) -> Any:
    """The probe callable of :func:`~nasctl.datasets.collect.collect`: times the reference
    architecture and stops the run when it is ``tolerance`` times off the device's usual time
    (the gate's, else the first probe of this run)."""
    from nasctl.profiler.probe import check_probe, measure_probe, probe_request

    req = probe_request(dev)
    typical = [gate.probe_ms] if gate is not None else []

    def probe() -> dict[str, Any]:
        p = measure_probe(dev, req)
        check_probe(p.median_ms, typical[0] if typical else None, dev.device_id, tolerance)
        if not typical:
            typical.append(p.median_ms)
        return p.to_dict()

    return probe


def _check_what(
    space: str | None, num: int | None, onnx: list[Path] | None, kernels: int | None
) -> tuple[str | None, int | None]:
    """Exactly one of --space/--num, ONNX files, --kernels; returns (space, num)."""
    from nasctl.errors import NasctlError

    if kernels is not None:
        if space or onnx:
            raise NasctlError("--kernels samples its own space; drop --space and the ONNX files")
        space, num = "kernels", kernels
    if onnx and space:
        raise NasctlError("give either --space S --num N or ONNX files, not both")
    if not onnx and not space:
        raise NasctlError("nothing to measure: give ONNX files, --space S --num N or --kernels N")
    if space and num is None:
        raise NasctlError("--space needs --num N (how many architectures to measure)")
    if space and num is not None and num < 1:
        raise NasctlError(f"--num must be >= 1; got {num}")
    return space, num


def _warnings() -> list[str]:
    """Conditions that make latencies vary (a Jetson with unlocked clocks); printed on stderr."""
    from nasctl.profiler.fingerprint import warn_if_unlocked

    found = [w for w in (warn_if_unlocked(),) if w]
    for w in found:
        typer.echo(f"warning: {w}", err=True)
    return found


def _options(items: list[str] | None) -> dict[str, str]:
    from nasctl.errors import NasctlError

    out = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise NasctlError(f"--option takes KEY=VALUE; got {item!r}")
        out[key.strip()] = value.strip()
    return out


def _device(
    name: str,
    precision: str,
    threads: int | None,
    trtexec: Path | None,
    data_dir: Path | None,
    options: dict[str, object],
) -> Any:
    """The device, configured and checked usable here (else DeviceError with its reason)."""
    from nasctl.errors import DeviceError
    from nasctl.profiler import get_device

    opts = {
        "precision": precision,
        **options,
        **device_options(threads=threads, trtexec=trtexec, data_dir=data_dir),
    }
    dev = get_device(name, **opts)
    ok, reason = dev.available()
    if not ok:
        raise DeviceError(f"device {name!r} is not usable here: {reason}")
    precisions = getattr(dev, "precisions", None)
    if precisions and precision not in precisions:
        raise DeviceError(
            f"device {name!r} measures precisions {', '.join(precisions)}; got {precision!r}"
        )
    return dev
