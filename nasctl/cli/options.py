"""Options that several commands share, defined once so that a flag means the same everywhere.

Each is an ``Annotated`` type for a command parameter: ``def cmd(db: DbOpt, json_out: JsonOpt =
False)``. A command whose flag means something narrower (``predict --device`` only checks the
predictor's device) keeps its own definition.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

#: ``--json``: machine-readable output on stdout (and no progress bar).
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]

#: ``--device`` of commands that measure on a device.
DeviceOpt = Annotated[
    str,
    typer.Option(
        "--device", help="cpu, t4, xavier, jetson, cuda-trt, cuda or replay:<table>/<column>."
    ),
]

#: ``--device`` of commands that read a dataset: a short name or a stored dataset id.
DatasetDeviceOpt = Annotated[
    str,
    typer.Option(
        "--device",
        help="Device name given to `profile` (cpu) or a full dataset id; an ambiguous "
        "name lists the matching ids.",
    ),
]

#: ``--db``: the measurement store, required.
DbOpt = Annotated[Path, typer.Option("--db", help="SQLite measurement store (one file).")]

#: ``--data-dir``: recorded public tables (imports and replay devices).
DataDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Folder holding the recorded tables nb201/ and fbnet/, for imports and replay "
        "devices (default: $NASCTL_DATA_DIR, else ../shared/data).",
        envvar="NASCTL_DATA_DIR",
    ),
]

#: ``--trtexec``: measure with trtexec instead of the TensorRT Python API.
TrtexecOpt = Annotated[
    Path | None,
    typer.Option(
        "--trtexec", help="Path to trtexec (t4, xavier; default: the TensorRT Python API)."
    ),
]

#: ``--threads``: intra-op threads of the cpu device.
ThreadsOpt = Annotated[
    int | None, typer.Option("--threads", help="cpu: intra-op threads (default 1).")
]

#: ``--precision`` of a measurement.
PrecisionOpt = Annotated[str, typer.Option("--precision", help="fp32, fp16 or int8.")]


def device_options(**given: object) -> dict[str, object]:
    """Keyword options for ``get_device`` from the flags given (None left out, paths as str)."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in given.items() if v is not None}


#: ``--calib-data``: INT8 calibration input batches (issue #15).
CalibDataOpt = Annotated[
    Path | None,
    typer.Option(
        "--calib-data",
        help="INT8: folder of .npy input batches (batch first) to calibrate the Q/DQ model on; "
        "without it the scales come from stated random N(0,1) data (recorded in each row).",
    ),
]


def check_calib_data(path: Path | None) -> None:
    """A one-line error for a calibration folder that is missing or holds no .npy file."""
    from nasctl.errors import NasctlError

    if path is None:
        return
    if not path.is_dir():
        raise NasctlError(f"--calib-data {path} is not a folder; give a folder of .npy batches")
    if not any(path.glob("*.npy")):
        raise NasctlError(f"--calib-data {path} holds no .npy file; add input batches")
