"""`nasctl spaces`: the registered search spaces, what each is, and how many genotypes it has."""

from __future__ import annotations

from typing import Any

import typer

from nasctl.cli.common import handle_errors, print_json
from nasctl.cli.options import JsonOpt


@handle_errors
def spaces(json_out: JsonOpt = False) -> None:
    from nasctl.spaces import get_space, list_spaces

    rows: list[dict[str, Any]] = []
    for name in list_spaces():
        sp = get_space(name)
        rows.append({"name": name, "description": sp.description, "size": sp.size()})
    if json_out:
        print_json(rows)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("space", "genotypes", "description", title="search spaces")
    for r in rows:
        table.add_row(r["name"], _size(r["size"]), r["description"])
    Console().print(table)
    typer.echo("A space of your own: --space package.module:SPACE (a SearchSpace subclass).")


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    return f"{n:,}" if n < 10**9 else f"{n:.2e}"
