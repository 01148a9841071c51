"""`nasctl profile` (filled by the profiler issue)."""
from __future__ import annotations

from nasctl.cli.common import fail


def profile() -> None:
    fail("not implemented yet")
