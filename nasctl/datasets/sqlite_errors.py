"""sqlite3 errors as one-line :class:`~nasctl.errors.StoreError` s (shared by the store's writer
and its reader)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nasctl.errors import StoreError, StoreLockedError


@contextmanager
def store_errors(path: Path, timeout_s: float) -> Iterator[None]:
    """Turn sqlite3 errors raised inside into :class:`StoreError` (a lock held longer than
    ``timeout_s``: :class:`StoreLockedError`)."""
    try:
        yield
    except sqlite3.OperationalError as e:
        msg = str(e)
        if "locked" in msg or "busy" in msg:
            raise StoreLockedError(
                f"database is locked by another process: {path} (waited "
                f"{timeout_s:g} s); wait for it to finish or use another --db"
            ) from e
        if "readonly" in msg or "read-only" in msg:
            raise StoreError(f"{path} is read-only: {msg}") from e
        raise StoreError(f"{path}: {msg}") from e
    except sqlite3.DatabaseError as e:
        raise StoreError(f"{path} is corrupt or not a database ({e}); nothing was changed") from e
