"""`nasctl predict --genotypes-file` streams (#18.6): a long file is read and answered in chunks,
so peak memory does not grow with the number of lines; the JSON output is one valid array; a bad
line fails before any answer is printed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nasctl.cli.main import app

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()

#: Runs `nasctl predict` in a fresh interpreter and prints its peak RSS (KiB) on the last line.
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


@pytest.fixture(scope="module")
def predictor(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """A small NB201 predictor trained on 60 replayed cells."""
    import csv

    from nasctl.datasets.store import Store
    from nasctl.records import Measurement
    from nasctl.spaces import get_space

    d = tmp_path_factory.mktemp("stream")
    with open(shared_data / "nb201" / "latency_ms.csv", newline="") as f:
        rows = list(csv.DictReader(f))[:60]
    sp = get_space("nb201")
    with Store(d / "m.db") as st:
        for r in rows:
            h = st.add_architecture(sp.to_graph(r["arch"]))
            st.add_measurement(
                Measurement(h, "replay-nb201-fpga", "fp32", 1, "ok", median_ms=float(r["fpga"]))
            )
    args = ["train-predictor", "--db", str(d / "m.db"), "--device", "replay-nb201-fpga"]
    res = runner.invoke(app, [*args, "--out", str(d / "pred"), "--seed", "1", "--json"])
    assert res.exit_code == 0, res.output
    return d / "pred"


def _genotype_file(path: Path, lines: int) -> Path:
    from nasctl.spaces import get_space

    cells = get_space("nb201").enumerate()
    with path.open("w") as f:
        for i in range(lines):
            f.write(cells[i % len(cells)] + "\n")
    return path


def _peak_rss_mib(predictor: Path, genotypes: Path, out: Path) -> float:
    cmd = [sys.executable, "-c", RUN, "predict", "--predictor", str(predictor)]
    cmd += ["--space", "nb201", "--genotypes-file", str(genotypes), "--json"]
    with out.open("w") as stdout:
        p = subprocess.run(
            cmd,
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            timeout=300,
        )
    assert p.returncode == 0, p.stderr[-2000:]
    return int(p.stderr.split("maxrss_kib")[-1]) / 1024


@pytest.mark.slow
def test_long_genotype_file_streams_with_bounded_memory(predictor: Path, tmp_path: Path) -> None:
    small = _peak_rss_mib(predictor, _genotype_file(tmp_path / "s.txt", 10_000), tmp_path / "s")
    big = _peak_rss_mib(predictor, _genotype_file(tmp_path / "b.txt", 200_000), tmp_path / "b")
    # 20x the lines; answered whole (before #18.6) the big file took 101 MiB more
    print(f"peak RSS: {small:.0f} MiB (10k lines), {big:.0f} MiB (200k lines)")
    assert big - small < 40, (small, big)  # before streaming: +101 MiB
    rows = json.loads((tmp_path / "b").read_text())
    assert len(rows) == 200_000 and rows[15_625]["genotype"] == rows[0]["genotype"]
    assert rows[15_625]["latency_ms"] == rows[0]["latency_ms"]


def test_bad_line_fails_before_any_answer(predictor: Path, tmp_path: Path) -> None:
    f = _genotype_file(tmp_path / "g.txt", 30)
    f.write_text(f.read_text() + "|not_an_op~0|+|\n")
    args = ["predict", "--predictor", str(predictor), "--space", "nb201"]
    res = runner.invoke(app, [*args, "--genotypes-file", str(f), "--json"])
    assert res.exit_code == 1 and "g.txt:31" in res.output and "Traceback" not in res.output
    assert "latency_ms" not in res.output
    f.write_text("x" * 70_000 + "\n")
    res = runner.invoke(app, [*args, "--genotypes-file", str(f)])
    assert res.exit_code == 1 and "longer than" in res.output
    ok = _genotype_file(tmp_path / "ok.txt", 3)
    res = runner.invoke(app, [*args, "--genotypes-file", str(ok), "--json"])
    assert res.exit_code == 0 and len(json.loads(res.stdout)) == 3
