"""The cpu device's memory probe, cheaply (option ``memory=forked``; not the default): a fresh
process image per model without paying a new Python and ONNX Runtime import for each.

Not the default because it did not pass its acceptance check: on the 12 zoo classifiers 10 were
within 10 % of an independent fresh-process measurement (the new-process probe: also 10 that
day, other misses), and squeezenet1_1 read 26-31 MB forked against 31-35 MB in new processes.
A model's peak depends on the allocator's history in the process (glibc's dynamic mmap
threshold among others), and every child of one server shares the server's history
(docs/benchmarks.md, issue 14.3).

One long-lived *probe server* (``python -m nasctl_agent.memserver --threads N``) imports ONNX
Runtime and numpy and warms ONNX Runtime's environment once (the one-Relu session of
:func:`~nasctl_agent.backends.ort.warm_runtime`), then never runs a model itself. For each model
it forks a child, which is exactly the state a fresh ``python -m nasctl_agent.memprobe`` process
reaches before it measures: the child runs :func:`nasctl_agent.memprobe.probe` (model bytes read,
heap trimmed, peak RSS reset by ``/proc/self/clear_refs``, baseline ``VmRSS``, session created and
run 3 times, ``VmHWM``) and exits. Every model gets its own process, so no model is measured
after another in the same heap, and the start costs a ``fork`` (milliseconds) instead of an
interpreter and an ONNX Runtime import (about 0.3 s of CPU).

Wire format (one JSON object a line): the client writes ``{"path", "batch", "seed", "shapes",
"runs"}`` to the server's stdin, the server answers the child's record (the fields of
:func:`~nasctl_agent.memprobe.model_memory`, or ``{"missing": why}``) with ``probe_cpu_s``, the
child's user + system CPU. The server exits when its stdin closes (its client ended).

Linux only (``fork``, ``/proc``); :func:`measure_forked` answers ``None`` where it cannot start a
server, and the caller falls back to a new process per model (:func:`~nasctl_agent.memprobe.
measure_fresh`). Standard library only on the client side (Python >= 3.8).
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import select
import subprocess
import sys
import threading
import time
from typing import IO, Any

_LOCK = threading.Lock()
_SERVERS: dict[int, ProbeServer] = {}


class ProbeServer:
    """The client's handle on one probe server (one per intra-op thread count)."""

    def __init__(self, threads: int) -> None:
        env = dict(os.environ)
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
        cmd = [sys.executable, "-m", "nasctl_agent.memserver", "--threads", str(threads)]
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            text=True,
            bufsize=1,
        )
        ready = self._read_line(120.0)
        if not ready or not json.loads(ready).get("ready"):
            self.close()
            raise OSError("the memory probe server did not start")

    def _read_line(self, timeout_s: float) -> str | None:
        out: IO[str] = self.proc.stdout  # type: ignore[assignment]
        ready, _, _ = select.select([out], [], [], timeout_s)
        if not ready:
            return None
        line = out.readline()
        return line or None

    def ask(self, request: dict[str, Any], timeout_s: float) -> dict[str, Any] | None:
        """The record of one model; None when the server died or did not answer in time."""
        try:
            self.proc.stdin.write(json.dumps(request) + "\n")  # type: ignore[union-attr]
            self.proc.stdin.flush()  # type: ignore[union-attr]
        except (OSError, ValueError):
            return None
        line = self._read_line(timeout_s)
        try:
            rec = json.loads(line) if line else None
        except ValueError:
            rec = None
        return rec if isinstance(rec, dict) else None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        try:
            if self.proc.stdin:
                self.proc.stdin.close()
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


def _close_all() -> None:
    for server in list(_SERVERS.values()):
        server.close()
    _SERVERS.clear()


atexit.register(_close_all)


def measure_forked(
    path: str,
    *,
    threads: int,
    batch: int,
    seed: int,
    shapes: dict[str, Any] | None,
    runs: int = 3,
    timeout_s: float = 600.0,
) -> dict[str, Any] | None:
    """The memory record of the ``.onnx`` at ``path``, measured in a child forked from the probe
    server; None where no server can run here (the caller falls back to a new process)."""
    if not hasattr(os, "fork") or not os.path.exists("/proc/self/clear_refs"):
        return None
    with _LOCK:
        server = _SERVERS.get(threads)
        if server is None or not server.alive():
            try:
                server = ProbeServer(threads)
            except (OSError, ValueError):
                return None
            _SERVERS[threads] = server
        req = {"path": path, "batch": batch, "seed": seed, "shapes": shapes, "runs": runs,
               "timeout_s": timeout_s}  # fmt: skip
        rec = server.ask(req, timeout_s + 30.0)
        if rec is None:  # died or hung: never reuse it
            server.close()
            _SERVERS.pop(threads, None)
            return {"missing": "the memory probe server did not answer (it is restarted)"}
    rec["peak_rss_scope"] = "fresh process"
    rec["probe_process"] = "forked"
    return rec


# -- the server ---------------------------------------------------------------------------------

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_file_pages() -> list:
    """Addresses of this process's resident pages in readable file mappings (its libraries'
    code and data), from ``/proc/self/maps`` and the present bit of ``/proc/self/pagemap``.

    Why: ``fork`` copies the page table entries of anonymous memory but not of file mappings
    (the child faults those in on first touch), so a child's resident size starts below its
    parent's, and library pages the parent had resident would count as the model's memory when
    the session touches them (+12 MB on a tiny model). The child touches these pages before its
    baseline (:func:`touch_pages`) and starts where a fresh process that imported the same
    modules stands. The reads are small (32 KB): a buffer above glibc's mmap threshold, once
    freed, raises that threshold for the process and every child forked from it, and with it
    where a session's allocations land (efficientnet_b0 read 74 MB forked against 87 MB in a
    new process before)."""
    pages = []
    chunk = 4096  # pagemap entries a read: 32 KB buffers, below glibc's mmap threshold
    try:
        with open("/proc/self/maps") as f:
            maps = [line.split() for line in f]
        with open("/proc/self/pagemap", "rb", buffering=0) as pm:
            for parts in maps:
                if len(parts) < 6 or not parts[5].startswith("/") or parts[1][0] != "r":
                    continue
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                for start in range(lo, hi, chunk * _PAGE):
                    n = min(chunk, (hi - start) // _PAGE)
                    pm.seek(start // _PAGE * 8)
                    raw = pm.read(n * 8)
                    for i in range(len(raw) // 8):
                        if raw[8 * i + 7] & 0x80:  # bit 63: present
                            pages.append(start + i * _PAGE)
    except (OSError, ValueError):
        return []
    return pages


def touch_pages(pages: list) -> None:
    """Read one byte of each page (faults it into this process's resident set)."""
    import ctypes

    for addr in pages:
        ctypes.c_char.from_address(addr).value  # noqa: B018 - the read is the point


def _child(req: dict[str, Any], threads: int, wfd: int, pages: list) -> None:
    """In the forked child: measure, write the record to ``wfd``, exit without cleanup."""
    code = 0
    try:
        from nasctl_agent.memprobe import probe

        touch_pages(pages)

        rec = probe(
            req["path"], threads, int(req.get("batch", 1)), int(req.get("seed", 0)),
            req.get("shapes"), int(req.get("runs", 3)),
        )  # fmt: skip
    except BaseException as e:  # noqa: BLE001 - the child reports everything and exits
        rec = {"missing": "the memory probe failed: " + " ".join(str(e).split())[:200]}
        code = 1
    try:
        os.write(wfd, (json.dumps(rec) + "\n").encode())
    finally:
        os._exit(code)


def _serve_one(req: dict[str, Any], threads: int, pages: list) -> dict[str, Any]:
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(rfd)
        _child(req, threads, wfd, pages)
    os.close(wfd)
    deadline = time.monotonic() + float(req.get("timeout_s", 600.0))
    chunks: list[bytes] = []
    with os.fdopen(rfd, "rb", buffering=0) as r:
        while True:
            left = deadline - time.monotonic()
            ready = select.select([r], [], [], max(0.0, left))[0] if left > 0 else []
            if not ready:  # too slow: the child is ended, its record is missing
                os.kill(pid, 9)
                chunks = []
                break
            b = r.read(65536)
            if not b:
                break
            chunks.append(b)
    _, status, usage = os.wait4(pid, 0)
    cpu_s = usage.ru_utime + usage.ru_stime
    try:
        rec = json.loads(b"".join(chunks).decode() or "null")
    except ValueError:
        rec = None
    if not isinstance(rec, dict):
        rec = {"missing": f"the memory probe child ended without a record (status {status})"}
    rec["probe_cpu_s"] = round(cpu_s, 3)
    return rec


def serve(threads: int) -> int:
    import ctypes.util  # noqa: F401 - imported once here (the child's heap trim), inherited

    import numpy  # noqa: F401

    from nasctl_agent import memprobe  # noqa: F401
    from nasctl_agent.backends import ort

    ort.warm_runtime(threads)
    pages = resident_file_pages()
    out = sys.stdout
    out.write(json.dumps({"ready": True, "pid": os.getpid(), "file_pages": len(pages)}) + "\n")
    out.flush()
    for line in sys.stdin:
        if not line.strip():
            continue
        t0 = time.perf_counter()
        try:
            req = json.loads(line)
            rec = _serve_one(req, threads, pages)
        except (ValueError, KeyError, TypeError, OSError) as e:
            rec = {"missing": "the memory probe server failed: " + " ".join(str(e).split())[:200]}
        rec["probe_wall_s"] = round(time.perf_counter() - t0, 3)
        out.write(json.dumps(rec) + "\n")
        out.flush()
    return 0


def main(argv: list | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m nasctl_agent.memserver")
    ap.add_argument("--threads", type=int, default=1)
    return serve(ap.parse_args(argv).threads)


if __name__ == "__main__":
    sys.exit(main())
