"""User code runs only when the command line names it (#18.5): `--accuracy python:...` and
`--space pkg.mod:SPACE` import the user's module, and say so in `--help`; a stored store or search
never makes nasctl import a module it names."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nasctl.cli.main import app
from nasctl.datasets.store import Store
from nasctl.errors import StoreError

runner = CliRunner()
MODULE = """
from pathlib import Path
Path({marker!r}).write_text("imported")

def score(genotype, graph):
    return float(genotype.count("conv"))
"""


@pytest.fixture
def usermod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    """A user module that leaves a marker file when it is imported."""
    marker = tmp_path / "imported.txt"
    pkg = tmp_path / "code"
    pkg.mkdir()
    (pkg / "usermod_18.py").write_text(MODULE.format(marker=str(marker)))
    monkeypatch.syspath_prepend(str(pkg))
    monkeypatch.delitem(sys.modules, "usermod_18", raising=False)
    return "usermod_18", marker


def test_help_says_user_code_is_run() -> None:
    for cmd in (["search", "--help"], ["profile", "--help"]):
        out = " ".join(runner.invoke(app, cmd, env={"COLUMNS": "200"}).output.split())
        assert "imports and runs" in out, cmd


def test_store_naming_a_user_space_does_not_import_it(
    tmp_path: Path, usermod: tuple[str, Path]
) -> None:
    name, marker = usermod
    with Store(tmp_path / "m.db") as store:
        # a store from elsewhere: a row whose space names a module and has no graph
        store.add_genotype(f"{name}:SPACE", "g0", "a" * 40)
        with pytest.raises(StoreError, match="not a built-in space"):
            store.graph("a" * 40)
    assert not marker.exists()


def test_resume_imports_only_what_the_command_line_names(
    tmp_path: Path, usermod: tuple[str, Path], shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nasctl.search.loop import SearchConfig, SearchLoop, run_search
    from nasctl.search.objectives import Constraints

    monkeypatch.setenv("NASCTL_DATA_DIR", str(shared_data))
    name, marker = usermod
    kw = dict(
        space="nb201",
        device="replay:nb201/fpga",
        out=tmp_path / "run",
        constraints=Constraints(latency_budget_ms=3.5),
        device_budget=4,
        generations=1,
        population=8,
        bootstrap=3,
    )
    res = run_search(SearchConfig(accuracy=f"python:{name}:score", **kw))
    assert res.device_measurements > 0 and marker.exists()  # named: imported and run
    marker.unlink()
    sys.modules.pop(name, None)
    # the stored run names the user's estimator; a command line that does not name it
    # must not import it (resume refuses the other settings instead)
    with pytest.raises(Exception, match="holds a search with accuracy"):
        SearchLoop(SearchConfig(accuracy="nb201:cifar10", **kw))
    assert not marker.exists()
