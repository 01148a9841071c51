"""`nasctl search` (filled by the search issue)."""
from __future__ import annotations

from nasctl.cli.common import fail


def search() -> None:
    fail("not implemented yet")
