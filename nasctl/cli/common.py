"""Shared CLI plumbing: one place that turns errors into one line and exit code 1.

Command modules import only typer at module level; heavy imports go inside command bodies so that
``nasctl --help`` stays instant.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer

F = TypeVar("F", bound=Callable[..., Any])

STATE: dict[str, bool] = {"debug": False}

#: The ``--device`` option of commands that measure on a device.
DeviceOpt = Annotated[
    str, typer.Option("--device", help="cpu, t4, xavier, cuda or replay:<table>/<column>.")
]


def fail(message: str, code: int = 1) -> None:
    """Print one line on stderr and exit."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def handle_errors(fn: F) -> F:
    """Decorator for commands: NasctlError and bad files become one line + exit 1.

    With ``nasctl --debug`` the traceback is shown instead.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from nasctl.errors import NasctlError

        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except KeyboardInterrupt:
            typer.echo("interrupted: everything committed so far is kept", err=True)
            raise typer.Exit(130) from None
        except (NasctlError, OSError, ValueError) as e:
            if STATE["debug"]:
                raise
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            typer.echo(f"error: {msg}", err=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def print_json(obj: Any) -> None:
    """Machine-readable output on stdout."""
    sys.stdout.write(json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(o, tuple | set):
        return list(o)
    return str(o)
