"""Peak memory of `nasctl predict --genotypes-file` against the file's length (issue 18.6).

Trains a small NB201 predictor (60 replayed fpga cells), writes genotype files of the given
lengths (NB201 cells, cycled), and runs `nasctl predict --json` on each in a fresh interpreter,
output to /dev/null; reports the interpreter's peak RSS (``ru_maxrss``) and wall time.

    python bench/bench_predict_stream.py --lines 10000,200000,1000000
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("NASCTL_DATA_DIR", REPO.parent / "shared" / "data"))
RUN = """
import resource, sys
from nasctl.cli.main import app
try:
    app(sys.argv[1:], prog_name="nasctl")
except SystemExit as e:
    code = e.code or 0
else:
    code = 0
sys.stderr.write(f"\\nmaxrss_kib {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}\\n")
sys.exit(code)
"""


def train(d: Path, data: Path = DATA) -> Path:
    """A small NB201 predictor (``d / "pred"``) trained on 60 replayed fpga cells of ``data``."""
    from typer.testing import CliRunner

    from nasctl.cli.main import app
    from nasctl.datasets.store import Store
    from nasctl.records import Measurement
    from nasctl.spaces import get_space

    with open(data / "nb201" / "latency_ms.csv", newline="") as f:
        rows = list(csv.DictReader(f))[:60]
    sp = get_space("nb201")
    with Store(d / "m.db") as st:
        for r in rows:
            h = st.add_architecture(sp.to_graph(r["arch"]))
            st.add_measurement(
                Measurement(h, "replay-nb201-fpga", "fp32", 1, "ok", median_ms=float(r["fpga"]))
            )
    args = ["train-predictor", "--db", str(d / "m.db"), "--device", "replay-nb201-fpga"]
    res = CliRunner().invoke(app, [*args, "--out", str(d / "pred"), "--seed", "1", "--json"])
    assert res.exit_code == 0, res.output
    return d / "pred"


def genotype_file(path: Path, lines: int) -> Path:
    """Writes ``lines`` NB201 cells (cycled through the space) to ``path``."""
    from nasctl.spaces import get_space

    cells = get_space("nb201").enumerate()
    with path.open("w") as f:
        for i in range(lines):
            f.write(cells[i % len(cells)] + "\n")
    return path


def peak_rss_mib(pred: Path, genotypes: Path, out: Path, timeout: float | None = None) -> float:
    """Peak RSS (MiB) of `nasctl predict --json` on ``genotypes`` in a fresh interpreter, its
    output written to ``out``."""
    cmd = [sys.executable, "-c", RUN, "predict", "--predictor", str(pred), "--space", "nb201"]
    cmd += ["--genotypes-file", str(genotypes), "--json"]
    with out.open("w") as stdout:
        p = subprocess.run(
            cmd, stdout=stdout, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=timeout,
        )  # fmt: skip
    assert p.returncode == 0, p.stderr[-2000:]
    return int(p.stderr.split("maxrss_kib")[-1]) / 1024


def run(pred: Path, lines: int, d: Path) -> tuple[float, float]:
    g = genotype_file(d / f"g{lines}.txt", lines)
    t = time.perf_counter()
    rss = peak_rss_mib(pred, g, Path(os.devnull))
    wall = time.perf_counter() - t
    g.unlink()
    return rss, wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", default="10000,200000,1000000")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        pred = train(d)
        print("| lines | peak RSS (MiB) | wall (s) |\n|---|---|---|")
        for n in (int(x) for x in args.lines.split(",")):
            rss, wall = run(pred, n, d)
            print(f"| {n:,} | {rss:.0f} | {wall:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
