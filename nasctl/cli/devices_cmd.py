"""`nasctl devices` (filled by the profiler issue)."""
from __future__ import annotations

import typer

from nasctl.cli.common import fail


def devices(json_out: bool = typer.Option(False, "--json")) -> None:
    fail("not implemented yet")
