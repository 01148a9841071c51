"""``nasctl fleet status`` and the ``--fleet`` options that profile and search share."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from nasctl.cli.common import handle_errors, print_json
from nasctl.cli.options import JsonOpt

FleetOpt = Annotated[
    str | None,
    typer.Option(
        "--fleet",
        help="Measure through a fleet of nasctl-agent workers: redis://[:PASSWORD@]HOST:PORT/DB "
        "(rediss:// for TLS). See docs/fleet.md.",
        envvar="NASCTL_FLEET",
    ),
]
FleetWaitOpt = Annotated[
    float,
    typer.Option(
        "--fleet-wait",
        help="Seconds to wait for a worker of the device (and for the broker) before stopping.",
    ),
]

FleetSharedOpt = Annotated[
    Path | None,
    typer.Option(
        "--fleet-shared-dir",
        help="A folder host and workers see at the same path: --onnx models under it travel "
        "by path instead of through Redis (models over 1 GiB must).",
    ),
]

app = typer.Typer(no_args_is_help=True)


def remote_device(
    url: str,
    device: str,
    precision: str,
    wait_s: float,
    shared_dir: Path | None = None,
    calib_data: Path | None = None,
) -> Any:
    """The fleet's workers of ``device`` at ``precision``, as a device."""
    from nasctl.errors import NasctlError
    from nasctl.fleet import RemoteDevice

    if wait_s <= 0:
        raise NasctlError(f"--fleet-wait must be > 0 seconds; got {wait_s:g}")
    if shared_dir is not None and not shared_dir.is_dir():
        raise NasctlError(f"--fleet-shared-dir {shared_dir} is not a folder")
    host = {"calib_data": str(calib_data)} if calib_data else {}
    return RemoteDevice(
        url, device, precision, wait_s=wait_s, shared_dir=shared_dir, host_opts=host
    )


@app.command("status")
@handle_errors
def status(
    fleet: Annotated[
        str,
        typer.Option("--fleet", help="redis://[:PASSWORD@]HOST:PORT/DB", envvar="NASCTL_FLEET"),
    ],
    json_out: JsonOpt = False,
) -> None:
    """Workers (device, device id, fingerprint, job in hand), queue lengths, jobs in flight."""
    from nasctl.fleet import Fleet, fleet_status

    f = Fleet(fleet)
    try:
        doc = fleet_status(f)
    finally:
        f.close()
    if json_out:
        print_json(doc)
        return
    _render(doc)


def _render(doc: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"fleet {doc['broker']} (protocol {doc['protocol']})")
    t = Table("worker", "device", "device id", "fingerprint", "job", "done", "seen")
    for w in doc["workers"]:
        job = (w["job"] or "-")[:20]
        seen = f"{w['seen_s_ago']:.0f} s ago"
        t.add_row(
            w["name"],
            w["device"],
            w["device_id"],
            w["fingerprint_digest"],
            job,
            str(w["jobs_done"]),
            seen,
        )
    console.print(t)
    q = Table("queue", "device id", "workers", "waiting", "in flight")
    for row in doc["queues"]:
        q.add_row(
            row["queue"],
            row["device_id"],
            str(row["workers"]),
            str(row["waiting"]),
            str(row["in_flight"]),
        )
    console.print(q)
    if not doc["workers"]:
        console.print("no worker is alive; start one: nasctl-agent worker --broker URL --device D")
