"""Other processes' CPU use while a local device measures.

A measurement on the ``cpu`` device shares the machine's last-level cache and memory bandwidth
with whatever else runs, on any core: pinning the timed process to a core does not keep that out,
and the slowdown is steady, so the noise gate (which looks at the spread of the runs) does not see
it. On a 2-core machine with another process busy on the other core, small networks measured
1.1-2.2x slower than on the quiet machine (MobileNetV3-Small 4.70 ms against 2.17 ms; issue 16's
notes in docs/benchmarks.md). :class:`CpuWatch` measures that load directly: the CPU time all
processes spent (``/proc/stat``) minus this process's own and its children's, over the wall time,
i.e. how many CPUs others kept busy on average. Linux only; elsewhere it answers None.
"""

from __future__ import annotations

import os
import resource
import time
from pathlib import Path

#: others keeping at least this many CPUs busy on average make ``nasctl profile`` warn; the
#: environment variable ``NASCTL_WARN_OTHER_CPUS`` sets another threshold (``off``: never)
WARN_OTHER_CPUS = 0.25
WARN_ENV = "NASCTL_WARN_OTHER_CPUS"
_STAT = Path("/proc/stat")


def _busy_seconds() -> float | None:
    """CPU seconds spent busy by all CPUs since boot (user, nice, system, irq, softirq, steal:
    steal is time a virtual machine's CPU was taken by other guests)."""
    try:
        first = _STAT.read_text().split("\n", 1)[0].split()
        ticks = [int(v) for v in first[1:9]]
        hz = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
    if first[0] != "cpu" or len(ticks) < 8 or hz <= 0:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = ticks[:8]
    return (user + nice + system + irq + softirq + steal) / hz


def _own_seconds() -> float:
    """CPU seconds of this process and its waited-for children (user + system)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


class CpuWatch:
    """Started on creation; :meth:`other_cpus` answers for the time since."""

    def __init__(self) -> None:
        self._busy0 = _busy_seconds()
        self._own0 = _own_seconds()
        self._t0 = time.monotonic()

    def other_cpus(self, min_wall_s: float = 1.0) -> float | None:
        """Average number of CPUs other processes kept busy since the start (>= 0); None where
        ``/proc/stat`` cannot be read or less than ``min_wall_s`` passed (too few clock ticks)."""
        wall = time.monotonic() - self._t0
        busy1 = _busy_seconds()
        if self._busy0 is None or busy1 is None or wall < min_wall_s:
            return None
        others = (busy1 - self._busy0) - (_own_seconds() - self._own0)
        return round(max(0.0, others / wall), 2)


def warn_threshold() -> float | None:
    """:data:`WARN_OTHER_CPUS`, or ``$NASCTL_WARN_OTHER_CPUS`` (a number; ``off``: None)."""
    raw = os.environ.get(WARN_ENV, "").strip().lower()
    if not raw:
        return WARN_OTHER_CPUS
    if raw in ("off", "0", "no", "false", "never"):
        return None
    try:
        return float(raw)
    except ValueError:
        return WARN_OTHER_CPUS


def contention_warning(other_cpus: float | None) -> str | None:
    """The warning ``nasctl profile`` prints when others kept :func:`warn_threshold` CPUs or
    more busy (None: no warning)."""
    threshold = warn_threshold()
    if other_cpus is None or threshold is None or other_cpus < threshold:
        return None
    n = os.cpu_count() or 1
    return (
        f"other processes kept {other_cpus:.2f} of {n} CPUs busy on average while this ran: "
        "they share the caches and memory bandwidth with the measured model and make its "
        "latency longer (up to 2x seen on small networks), steadily, so the noise gate does "
        "not catch it; the measurements are stored, measure again on a quiet machine to be sure"
    )
