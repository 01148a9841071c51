"""`nasctl arch show|export` (filled by the foundation issue)."""
from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True)
