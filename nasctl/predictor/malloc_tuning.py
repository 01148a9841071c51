"""Serve the big temporary arrays of a prediction from a reused heap (glibc only).

Predicting for thousands of graphs at once makes tens of arrays of 10-200 MB (node and group
rows, GNN activations). glibc hands out every allocation above its mmap threshold (at most 32 MB)
as fresh pages, which the kernel must fault in and zero, and returns them on free: on a 2-core
machine that page work costs as much as the arithmetic (the GNN forward over 10,000 MBConv graphs
takes about half the CPU time with the heap reused). :func:`reused_heap` raises the thresholds
for the duration of a block so freed arrays are reused in place, then puts glibc's usual values
back and returns the free memory to the system. Elsewhere (no glibc) it does nothing. Answers
are unaffected: only where memory comes from changes.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
from collections.abc import Iterator
from typing import Any

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_BIG = 1 << 30  # bytes: mmap/trim thresholds inside the block
_PAD = 1 << 28  # bytes: heap growth step inside the block
#: glibc's values after its dynamic threshold has adapted to big arrays (mmap 32 MiB, trim twice
#: that) and its default top pad, restored after the block.
_AFTER = ((_M_MMAP_THRESHOLD, 32 << 20), (_M_TRIM_THRESHOLD, 64 << 20), (_M_TOP_PAD, 128 << 10))
_LIBC: list[Any] = []


def _libc() -> Any:
    """glibc with ``mallopt``/``malloc_trim``, or None."""
    if not _LIBC:
        lib = None
        with contextlib.suppress(OSError, AttributeError, TypeError):
            name = ctypes.util.find_library("c")
            cand = ctypes.CDLL(name) if name else None
            if cand is not None and hasattr(cand, "mallopt") and hasattr(cand, "malloc_trim"):
                lib = cand
        _LIBC.append(lib)
    return _LIBC[0]


@contextlib.contextmanager
def reused_heap() -> Iterator[None]:
    """Within the block, big allocations come from a heap that is kept and reused."""
    libc = _libc()
    if libc is None:
        yield
        return
    ok = all(libc.mallopt(p, v) for p, v in ((_M_MMAP_THRESHOLD, _BIG), (_M_TRIM_THRESHOLD, _BIG)))
    ok = ok and bool(libc.mallopt(_M_TOP_PAD, _PAD))
    try:
        yield
    finally:
        for p, v in _AFTER:
            libc.mallopt(p, v)
        if ok:
            libc.malloc_trim(0)
