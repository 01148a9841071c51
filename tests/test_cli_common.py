"""CLI plumbing shared by every command: library errors in the command's flags, one progress bar."""

from __future__ import annotations

import ast
import re
import sys
import typing
from pathlib import Path

import pytest

from nasctl.cli.common import flags_of, name_flags
from nasctl.cli.progress import ProgressBar

PACKAGE = Path(__file__).resolve().parents[1] / "nasctl"
FLAG = re.compile(r"(?<![\w-])--[a-z]")
OTHER_PROGRAM = re.compile(r"\b(?:nasctl-agent|redis-server) ")


def test_flags_of_reads_the_options_of_a_command() -> None:
    from nasctl.cli.profile_cmd import profile
    from nasctl.cli.search_cmd import search

    flags = flags_of(profile)
    assert flags["data_dir"] == "--data-dir" and flags["json_out"] == "--json"
    assert flags["layers"] == "--layers" and "models" not in flags  # an argument has no flag
    assert flags_of(search)["use_predictor"] == "--use-predictor"


def _commands() -> list[tuple[str, object]]:
    from nasctl.cli.main import app

    out = [(c.name or "", c.callback) for c in app.registered_commands]
    for group in app.registered_groups:
        sub = group.typer_instance
        assert sub is not None
        out += [(f"{group.name} {c.name}", c.callback) for c in sub.registered_commands]
    return out


def test_every_command_has_the_shared_json_option() -> None:
    from nasctl.cli.options import JsonOpt

    names = [name for name, _ in _commands()]
    assert {"profile", "search", "dataset import", "arch show"} <= set(names)
    for name, callback in _commands():
        hints = typing.get_type_hints(callback, include_extras=True)
        assert hints.get("json_out") == JsonOpt, name  # the one definition, not a copy
        assert flags_of(callback)["json_out"] == "--json", name


def test_data_dir_trtexec_and_threads_mean_the_same_everywhere() -> None:
    from nasctl.cli import options

    shared = {"--data-dir": options.DataDirOpt, "--trtexec": options.TrtexecOpt}
    shared["--threads"] = options.ThreadsOpt
    seen = set()
    for name, callback in _commands():
        hints = typing.get_type_hints(callback, include_extras=True)
        for param, flag in flags_of(callback).items():
            if flag in shared:
                assert hints[param] == shared[flag], (name, flag)
                seen.add(flag)
    assert seen == set(shared)


@pytest.mark.parametrize(
    "message, expected",
    [
        ("num must be >= 1; got 0", "--num must be >= 1; got 0"),
        ("device_budget must be >= 0", "--device-budget must be >= 0"),
        ("latency_budget_ms must be > 0 ms", "--latency-budget must be > 0 ms"),  # an alias
        ("set data_dir=DIR or NASCTL_DATA_DIR", "set --data-dir DIR or NASCTL_DATA_DIR"),
        ("no table at /x/data_dir/t.csv", "no table at /x/data_dir/t.csv"),  # a path stays
        ("space 'x' has 3; asked for num", "space 'x' has 3; asked for num"),  # plain words stay
        ("refine_cap must be > 0", "refine_cap must be > 0"),  # not a flag of this command
    ],
)
def test_library_keywords_become_flags(message: str, expected: str) -> None:
    flags = {
        "num": "--num",
        "space": "--space",
        "data_dir": "--data-dir",
        "device_budget": "--device-budget",
        "latency_budget": "--latency-budget",
    }
    assert name_flags(message, flags) == expected


def _raised_strings(tree: ast.AST) -> list[tuple[int, str]]:
    """String pieces of raised messages. A command line of another program that a message
    suggests (``nasctl-agent worker --broker ...``, ``redis-server --port ...``) is left out,
    in an f-string with the pieces after it: those are that program's flags."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and node.exc is not None:
            agent_cmd: set[int] = set()
            for sub in ast.walk(node.exc):
                if isinstance(sub, ast.JoinedStr):
                    after = False
                    for v in sub.values:
                        if after:
                            agent_cmd.add(id(v))
                        if isinstance(v, ast.Constant) and OTHER_PROGRAM.search(str(v.value)):
                            after = True
            for sub in ast.walk(node.exc):
                if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                    text = OTHER_PROGRAM.split(sub.value)[0]
                    if id(sub) not in agent_cmd:
                        out.append((sub.lineno, text))
    return out


def test_library_errors_do_not_name_cli_flags() -> None:
    """Outside nasctl/cli an error names a keyword (``data_dir=DIR``), never a flag: the CLI
    maps keywords to its flags, and a library user has no flags."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "cli" in path.relative_to(PACKAGE).parts:
            continue
        for line, text in _raised_strings(ast.parse(path.read_text())):
            if FLAG.search(text):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {text!r}")
    assert not found, "\n".join(found)


def test_progress_bar_shows_done_total_and_eta(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    with ProgressBar() as bar:
        assert bar.enabled
        tick = bar.ticker(bar.add("measuring", total=3))
        assert tick is not None
        for i in range(1, 4):
            tick(i, 3, f"arch {i}")
    err = capsys.readouterr().err
    assert "measuring" in err and "3/3" in err and "ETA" in err


def test_progress_bar_is_silent_for_json(capsys: pytest.CaptureFixture[str]) -> None:
    with ProgressBar(quiet=True) as bar:
        task = bar.add("measuring", total=3)
        assert bar.ticker(task) is None and task is None
        bar.update(task, completed=1)
    assert capsys.readouterr().err == ""
