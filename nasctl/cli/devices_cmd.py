"""`nasctl devices`: the registered devices, whether each is usable here, and why not."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from nasctl.cli.common import handle_errors, print_json


@handle_errors
def devices(
    json_out: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
    trtexec: Annotated[
        Path | None, typer.Option("--trtexec", help="Path to trtexec (t4, xavier).")
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="Tables for replay devices.", envvar="NASCTL_DATA_DIR"),
    ] = None,
) -> None:
    from nasctl.profiler import describe_devices

    opts = {k: str(v) for k, v in (("trtexec", trtexec), ("data_dir", data_dir)) if v}
    rows = [_with_id(r, opts) for r in describe_devices(**opts)]
    if json_out:
        print_json(rows)
        return
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        mark = "yes" if r["available"] else "no "
        dev_id = f"  [{r['device_id']}]" if r.get("device_id") else ""
        typer.echo(f"{r['name']:<{width}}  usable: {mark}  {r['reason']}{dev_id}")


def _with_id(row: dict[str, Any], opts: dict[str, str]) -> dict[str, Any]:
    """Add the canonical dataset id (fp32) where the device can tell it here."""
    from nasctl.profiler import get_device

    row = {"name": row["name"], "device_id": None, "usable": row["available"], **row}
    if row["available"] and not row["name"].startswith("replay"):
        try:
            row["device_id"] = get_device(row["name"], **opts).device_id
        except Exception:  # an id that needs the runtime (TensorRT version) stays unknown
            row["device_id"] = None
    return row
