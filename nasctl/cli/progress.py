"""The one progress display of the CLI: a rich bar on stderr with done/total, elapsed time and ETA.

Commands adapt the library's progress callbacks to it in a line or two::

    with ProgressBar(quiet=json_out) as bar:
        task = bar.add("cpu -> runs/cpu.db", total=50)
        collect(..., progress=bar.ticker(task))

The bar is off (every method a no-op, :meth:`ticker` returns None) under ``--json`` and when
stderr is not a terminal, so logs and pipes stay clean.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any


class ProgressBar:
    """A rich progress display with any number of tasks (rows)."""

    def __init__(self, quiet: bool = False) -> None:
        self.enabled = not quiet and sys.stderr.isatty()
        self._bar: Any = None

    def __enter__(self) -> ProgressBar:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[info]}", style="dim"),
                console=Console(stderr=True),
                transient=False,
            )
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def add(self, description: str, total: int | None = None) -> int | None:
        """A new row; ``total`` None until known (the bar pulses). Returns its task id."""
        if self._bar is None:
            return None
        return int(self._bar.add_task(description, total=total, info=""))

    def update(
        self,
        task: int | None,
        *,
        completed: int | None = None,
        total: int | None = None,
        description: str | None = None,
        info: str | None = None,
    ) -> None:
        """Move a row on; arguments left None keep their value."""
        if self._bar is None or task is None:
            return
        kw: dict[str, Any] = {}
        if completed is not None:
            kw["completed"] = completed
        if total is not None:
            kw["total"] = total
        if description is not None:
            kw["description"] = description
        if info is not None:
            kw["info"] = info
        self._bar.update(task, **kw)

    def ticker(self, task: int | None) -> Callable[..., None] | None:
        """A ``progress(done, total, [label])`` callback moving ``task``; None when off."""
        if self._bar is None or task is None:
            return None

        def tick(done: int, total: int, label: str | None = None) -> None:
            self.update(task, completed=done, total=total, info=label[:40] if label else None)

        return tick
