"""`nasctl spaces` (filled by the foundation issue)."""
from __future__ import annotations

import typer

from nasctl.cli.common import fail


def spaces(json_out: bool = typer.Option(False, "--json")) -> None:
    fail("not implemented yet")
