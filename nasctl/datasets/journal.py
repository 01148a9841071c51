"""The store's sidecar journal: measurements kept while the store stayed locked.

A measurement that a device has already produced must not be lost because another process holds
the SQLite write lock (``nasctl dataset import`` of a large table, a second profiler). After the
retries of :func:`nasctl.datasets.measure.store_result` it is appended, as one JSON line, to
``<store>.journal.jsonl`` next to the store; the next writable open of the store
(:class:`nasctl.datasets.store.Store`) replays the journal into it and removes the file.

Both sides take an exclusive ``flock`` on the journal file, so two processes never replay the
same lines twice nor append to a file another has just replayed and removed (an appender that
finds the file replaced re-opens it).
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable
from pathlib import Path

from nasctl.records import Measurement

SUFFIX = ".journal.jsonl"


def journal_path(store_path: str | os.PathLike[str]) -> Path:
    """The journal file of a store: ``<store>.journal.jsonl`` in the same folder."""
    p = Path(store_path)
    return p.with_name(p.name + SUFFIX)


def _line(m: Measurement) -> str:
    return json.dumps({"measurement": m.to_dict()}, default=str) + "\n"


def append(store_path: str | os.PathLike[str], m: Measurement) -> Path:
    """Append one measurement (fsync'ed) to the store's journal; returns the journal's path."""
    path = journal_path(store_path)
    line = _line(m)
    while True:
        with path.open("a", encoding="utf-8") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                if not path.exists() or os.stat(path).st_ino != os.fstat(f.fileno()).st_ino:
                    continue  # replayed and removed while we waited: append to a new file
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
                return path
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


def replay(
    store_path: str | os.PathLike[str],
    add: Callable[[list[Measurement]], list[Measurement]],
) -> int:
    """Hand every journaled measurement to ``add`` (one call, one transaction in the store),
    which returns those it could not take (their architecture is not in this store); those stay
    in the journal, which is otherwise removed. Returns how many were stored (0 without a
    journal). When ``add`` raises, the journal is left as it was. A line that is not a
    measurement (a write cut short by a crash) is skipped."""
    path = journal_path(store_path)
    try:
        f = path.open("r+", encoding="utf-8")
    except FileNotFoundError:
        return 0
    with f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            if not path.exists() or os.stat(path).st_ino != os.fstat(f.fileno()).st_ino:
                return 0  # another process replayed it first
            ms = []
            for line in f:
                try:
                    ms.append(Measurement.from_dict(json.loads(line)["measurement"]))
                except (ValueError, KeyError, TypeError):
                    continue
            left = add(ms) if ms else []
            if left:
                f.seek(0)
                f.truncate()
                f.writelines(_line(m) for m in left)
                f.flush()
                os.fsync(f.fileno())
            else:
                path.unlink()
            return len(ms) - len(left)
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
