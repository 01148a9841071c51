"""Shared CLI plumbing: one place that turns errors into one line and exit code 1.

Command modules import only typer at module level; heavy imports go inside command bodies so that
``nasctl --help`` stays instant.
"""

from __future__ import annotations

import functools
import json
import re
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from nasctl.cli.options import DeviceOpt  # noqa: F401  (re-exported: shared option types)

F = TypeVar("F", bound=Callable[..., Any])

STATE: dict[str, bool] = {"debug": False}

#: Library keyword names that differ from the command's parameter name: keyword -> parameter.
ALIASES: dict[str, str] = {"latency_budget_ms": "latency_budget", "predictor_dir": "predictor"}

#: A word of a message, unless it is part of a path, a file name or an environment variable.
_WORD = re.compile(r"(?<![\w/.\-])([a-z][a-z0-9_]*)(=(?!=)|(?![\w/\-]|\.\w))")


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
            if isinstance(e, NasctlError):
                msg = name_flags(msg, flags_of(fn))
            typer.echo(f"error: {msg}", err=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def name_flags(message: str, flags: dict[str, str]) -> str:
    """A library message in the command's words: setting names become the flags that set them.

    Library errors name a setting by its Python keyword (``device_budget must be >= 0``,
    ``set data_dir=DIR``), since a library user passes keywords. ``flags`` maps the command's
    parameter names to their flags (``{"device_budget": "--device-budget"}``). Replaced: a
    keyword with an underscore anywhere, ``name=VALUE`` anywhere (as ``--name VALUE``), and a
    plain word (``num``, ``population``) only as the subject of the message's first clause
    (``num must be >= 1``), so that ``space 'x' is unknown`` keeps its words.
    """

    def flag(word: str) -> str | None:
        return flags.get(ALIASES.get(word, word))

    def swap(m: re.Match[str]) -> str:
        word, eq = m.group(1), m.group(2)
        found = flag(word) if (eq or "_" in word) else None
        return word + eq if found is None else found + (" " if eq else "")

    out = _WORD.sub(swap, message)
    first = re.match(r"([a-z]+)( must | needs )", out)
    if first and flag(first.group(1)):
        out = f"{flag(first.group(1))}{out[first.end(1) :]}"
    return out


def flags_of(command: Callable[..., Any]) -> dict[str, str]:
    """Parameter name -> flag of a command function (``{"data_dir": "--data-dir"}``), read from
    its ``Annotated[..., typer.Option(...)]`` parameters; arguments are left out."""
    import typing

    from typer.models import OptionInfo

    try:
        hints = typing.get_type_hints(command, include_extras=True)
    except Exception:  # an annotation that does not resolve: messages stay as they are
        return {}
    out = {}
    for name, hint in hints.items():
        info = next(
            (m for m in getattr(hint, "__metadata__", ()) if isinstance(m, OptionInfo)), None
        )
        if info is None:
            continue
        # in Annotated, typer.Option("--flag", ...) holds the first flag as its "default"
        first = [info.default] if isinstance(info.default, str) else []
        decls = [d for d in (*first, *(info.param_decls or ())) if d.startswith("--")]
        out[name] = decls[0].split("/")[0] if decls else "--" + name.replace("_", "-")
    return out


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
