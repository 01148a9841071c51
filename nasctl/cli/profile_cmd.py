"""`nasctl profile`: measure sampled architectures or ONNX models on a device into a store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from nasctl.cli.common import DeviceOpt, handle_errors, print_json
from nasctl.cli.fleet_cmd import FleetOpt, FleetSharedOpt, FleetWaitOpt, remote_device


@handle_errors
def profile(
    device: DeviceOpt,
    db: Annotated[Path, typer.Option("--db", help="SQLite measurement store (one file).")],
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
    onnx: Annotated[
        list[Path] | None, typer.Option("--onnx", help="ONNX model(s) to measure (repeatable).")
    ] = None,
    kernels: Annotated[
        int | None,
        typer.Option("--kernels", help="Measure N single layers (space 'kernels') instead."),
    ] = None,
    precision: Annotated[str, typer.Option("--precision", help="fp32, fp16 or int8.")] = "fp32",
    batch: Annotated[int, typer.Option("--batch", help="Batch size.")] = 1,
    threads: Annotated[
        int | None, typer.Option("--threads", help="Intra-op threads (cpu; default 1).")
    ] = None,
    trtexec: Annotated[
        Path | None, typer.Option("--trtexec", help="Path to trtexec (t4, xavier).")
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="Tables for replay devices.", envvar="NASCTL_DATA_DIR"),
    ] = None,
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
    json_out: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
) -> None:
    from nasctl.datasets.collect import check_num, collect, onnx_jobs, read_onnx, space_jobs
    from nasctl.datasets.store import Store
    from nasctl.errors import NasctlError
    from nasctl.spaces import get_space

    space, num = _check_what(space, num, onnx, kernels)
    if batch < 1:
        raise NasctlError(f"--batch must be >= 1; got {batch}")
    if fleet:
        dev = remote_device(fleet, device, precision, fleet_wait, fleet_shared_dir)
    else:
        dev = _device(device, precision, threads, trtexec, data_dir, _options(option))
    warnings = _warnings()
    # everything a user typed is checked before the store is opened or created
    models = read_onnx(list(onnx)) if onnx else []
    if space == "kernels":  # registered on import (until spaces/__init__ lists it)
        import nasctl.spaces.kernels  # noqa: F401
    the_space = get_space(space) if space else None
    if the_space is not None and num is not None:
        check_num(the_space, num)
    with Store(db) as store:
        if store.replayed:
            warnings.append(f"stored {store.replayed} measurements kept in the journal earlier")
            typer.echo(f"warning: {warnings[-1]}", err=True)
        if the_space is None:
            jobs: Any = onnx_jobs(store, models)
            total = len(jobs)
        else:
            assert num is not None
            jobs, total = space_jobs(store, the_space, num, seed), num
        with _Bar(json_out, total, f"{dev.name} -> {db.name}") as tick:
            summary = (_fleet_collect() if fleet else collect)(
                store,
                dev,
                jobs,
                total,
                precision=precision,
                batch=batch,
                per_layer=layers,
                options=_options(option),
                progress=tick,
            )
    res = {
        **summary.to_dict(),
        "db": str(db),
        "precision": precision,
        "batch": batch,
        "warnings": warnings,
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


def _fleet_collect() -> Any:
    from nasctl.fleet import collect_fleet

    return collect_fleet


def _check_what(
    space: str | None, num: int | None, onnx: list[Path] | None, kernels: int | None
) -> tuple[str | None, int | None]:
    """Exactly one of --space/--num, --onnx, --kernels; returns (space, num)."""
    from nasctl.errors import NasctlError

    if kernels is not None:
        if space or onnx:
            raise NasctlError("--kernels samples its own space; drop --space/--onnx")
        space, num = "kernels", kernels
    if onnx and space:
        raise NasctlError("give either --space S --num N or --onnx FILE..., not both")
    if not onnx and not space:
        raise NasctlError("nothing to measure: give --space S --num N, --onnx FILE or --kernels N")
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
    options: dict[str, str],
) -> Any:
    """The device, configured and checked usable here (else DeviceError with its reason)."""
    from nasctl.errors import DeviceError
    from nasctl.profiler import get_device

    opts: dict[str, Any] = {"precision": precision, **options}
    for key, value in (("threads", threads), ("trtexec", trtexec), ("data_dir", data_dir)):
        if value is not None:
            opts[key] = str(value) if isinstance(value, Path) else value
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


def make_progress() -> Any:
    """A rich progress bar on stderr with elapsed time and ETA."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[label]}", style="dim"),
        console=Console(stderr=True),
        transient=False,
    )


class _Bar:
    """Progress for a profile run (off with --json or when stderr is not a terminal)."""

    def __init__(self, quiet: bool, total: int, label: str) -> None:
        import sys

        self.enabled = not quiet and sys.stderr.isatty()
        self.total, self.label = total, label
        self.bar: Any = None

    def __enter__(self) -> Any:
        if not self.enabled:
            return None
        bar = self.bar = make_progress()
        bar.start()
        task = bar.add_task(self.label, total=self.total, label="")

        def tick(done: int, total: int, label: str) -> None:
            bar.update(task, completed=done, label=label[:40])

        return tick

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()
