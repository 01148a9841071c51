"""`nasctl devices`: the registered devices, whether each is usable here, and why not."""

from __future__ import annotations

from typing import Any

import typer

from nasctl.cli.common import flags_of, handle_errors, name_flags, print_json
from nasctl.cli.options import DataDirOpt, JsonOpt, TrtexecOpt, device_options


@handle_errors
def devices(
    json_out: JsonOpt = False,
    trtexec: TrtexecOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    from nasctl.profiler import describe_devices

    opts = device_options(trtexec=trtexec, data_dir=data_dir)
    flags = flags_of(devices)
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


def _with_id(row: dict[str, Any], opts: dict[str, Any]) -> dict[str, Any]:
    """Add the canonical dataset id (fp32) where the device can tell it here."""
    from nasctl.profiler import get_device

    row = {"name": row["name"], "device_id": None, "usable": row["available"], **row}
    if row["available"] and not row["name"].startswith("replay"):
        try:
            row["device_id"] = get_device(row["name"], **opts).device_id
        except Exception:  # an id that needs the runtime (TensorRT version) stays unknown
            row["device_id"] = None
    return row
