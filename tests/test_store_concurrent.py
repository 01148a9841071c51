"""Several processes opening (creating, migrating) the same new store at once (#18.7): each one
opens it and writes; no traceback, nothing lost."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from nasctl.datasets.store import Store

REPO = Path(__file__).resolve().parents[1]
WRITERS = 6

SCRIPT = """
import sys, time
from nasctl.arch.graph import GraphBuilder
from nasctl.datasets.store import Store
from nasctl.records import Measurement

db, start, i = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
b = GraphBuilder(f"net{i}", (1, 3, 8, 8))
graph = b.build([b.act(b.conv(b.input, 4 + i, 3, id="/c"), "relu", id="/r")])
while time.time() < start:  # every process opens the new file at the same moment
    pass
with Store(db) as store:
    h = store.add_architecture(graph)
    store.add_measurement(Measurement(h, "test-dev", "fp32", 1, "ok", median_ms=1.0 + i))
print("ok")
"""


def test_processes_creating_one_new_store_at_once(tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start = time.time() + 3.0  # after every interpreter has imported nasctl
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SCRIPT, str(db), str(start), str(i)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(WRITERS)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0 and out.strip() == "ok", err
    with Store(db, readonly=True) as store:
        st = store.stats()
    assert st["architectures"] == WRITERS and st["by_status"] == {"ok": WRITERS}
