"""`nasctl predict --genotypes-file` streams (#18.6): a long file is read and answered in chunks,
so peak memory does not grow with the number of lines; the JSON output is one valid array; a bad
line fails before any answer is printed."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest
from typer.testing import CliRunner

from nasctl.cli.main import app

BENCH_PATH = Path(__file__).resolve().parents[1] / "bench" / "bench_predict_stream.py"
runner = CliRunner()


def _load_bench() -> ModuleType:
    """bench/bench_predict_stream.py: its predictor, genotype files and fresh-process peak RSS."""
    spec = importlib.util.spec_from_file_location("bench_predict_stream", BENCH_PATH)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


bench = _load_bench()


@pytest.fixture(scope="module")
def predictor(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """A small NB201 predictor trained on 60 replayed cells."""
    return bench.train(tmp_path_factory.mktemp("stream"), shared_data)


@pytest.mark.slow
def test_long_genotype_file_streams_with_bounded_memory(predictor: Path, tmp_path: Path) -> None:
    def peak_rss_mib(name: str, lines: int) -> float:
        genotypes = bench.genotype_file(tmp_path / f"{name}.txt", lines)
        return bench.peak_rss_mib(predictor, genotypes, tmp_path / name, timeout=300)

    small, big = peak_rss_mib("s", 10_000), peak_rss_mib("b", 200_000)
    # 20x the lines; answered whole (before #18.6) the big file took 101 MiB more
    print(f"peak RSS: {small:.0f} MiB (10k lines), {big:.0f} MiB (200k lines)")
    assert big - small < 40, (small, big)  # before streaming: +101 MiB
    rows = json.loads((tmp_path / "b").read_text())
    assert len(rows) == 200_000 and rows[15_625]["genotype"] == rows[0]["genotype"]
    assert rows[15_625]["latency_ms"] == rows[0]["latency_ms"]


def test_bad_line_fails_before_any_answer(predictor: Path, tmp_path: Path) -> None:
    f = bench.genotype_file(tmp_path / "g.txt", 30)
    f.write_text(f.read_text() + "|not_an_op~0|+|\n")
    args = ["predict", "--predictor", str(predictor), "--space", "nb201"]
    res = runner.invoke(app, [*args, "--genotypes-file", str(f), "--json"])
    assert res.exit_code == 1 and "g.txt:31" in res.output and "Traceback" not in res.output
    assert "latency_ms" not in res.output
    f.write_text("x" * 70_000 + "\n")
    res = runner.invoke(app, [*args, "--genotypes-file", str(f)])
    assert res.exit_code == 1 and "longer than" in res.output
    ok = bench.genotype_file(tmp_path / "ok.txt", 3)
    res = runner.invoke(app, [*args, "--genotypes-file", str(ok), "--json"])
    assert res.exit_code == 0 and len(json.loads(res.stdout)) == 3
