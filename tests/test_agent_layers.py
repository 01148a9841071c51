"""The agent's rules: ``nasctl_agent`` never imports nasctl, torch or graph code; importing it
(and its CLI) loads only the standard library; it stays Python 3.8 compatible (vermin) and
clean under ruff with a py38 target."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

AGENT = Path(__file__).resolve().parents[1] / "agent"
PKG = AGENT / "nasctl_agent"
#: third-party modules a backend may import lazily (everything else must be the stdlib)
ALLOWED = {"numpy", "onnxruntime", "onnx", "tensorrt", "cuda", "pynvml", "celery", "kombu", "redis"}
FORBIDDEN = {"nasctl", "torch", "torch_geometric", "lightgbm", "sklearn", "scipy", "optuna"}


def _imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for n in ast.walk(ast.parse(path.read_text())):
        if isinstance(n, ast.Import):
            roots.update(a.name.split(".")[0] for a in n.names)
        elif isinstance(n, ast.ImportFrom) and not n.level and n.module:
            roots.add(n.module.split(".")[0])
    return roots


def test_agent_imports_no_nasctl_torch_or_graph_code() -> None:
    files = sorted(PKG.rglob("*.py"))
    assert len(files) > 5
    stdlib = set(sys.stdlib_module_names)
    for f in files:
        roots = _imported_roots(f) - {"nasctl_agent", "__future__"}
        assert not roots & FORBIDDEN, f"{f.name} imports {roots & FORBIDDEN}"
        other = roots - stdlib - ALLOWED
        assert not other, f"{f.name} imports {other}: not stdlib and not an agent extra"


def test_importing_the_agent_loads_only_the_standard_library() -> None:
    code = (
        "import sys; import nasctl_agent, nasctl_agent.cli, nasctl_agent.catalog; "
        "nasctl_agent.catalog.device_names(); "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'numpy', 'onnxruntime', 'onnx', 'tensorrt', 'nasctl', 'torch'}); print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _agent_graph() -> dict[str, set[str]]:
    mods = {}
    for p in PKG.rglob("*.py"):
        parts = list(p.relative_to(AGENT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = p
    graph: dict[str, set[str]] = {}
    for mod, path in mods.items():
        deps: set[str] = set()
        for n in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(n, ast.Import):
                names = [a.name for a in n.names]
            elif isinstance(n, ast.ImportFrom) and n.module and not n.level:
                names = [f"{n.module}.{a.name}" for a in n.names] + [n.module]
            for name in names:
                while name and name not in mods:
                    name = name.rpartition(".")[0]
                if name and name != mod and name != "nasctl_agent":
                    deps.add(name)
        graph[mod] = deps
    return graph


def test_agent_has_no_import_circles() -> None:
    """Lazy imports count: a circle inside the agent is a circle (the registry is imported by
    the devices, and ``catalog`` imports them all)."""
    graph = _agent_graph()
    state: dict[str, int] = {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for d in graph.get(m, ()):
            if state.get(d) == 1:
                raise AssertionError("import circle: " + " -> ".join([*stack, m, d]))
            if d not in state:
                visit(d, [*stack, m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])


def test_agent_is_python_38_compatible() -> None:
    vermin = shutil.which("vermin") or str(Path(sys.executable).with_name("vermin"))
    if not Path(vermin).exists():
        pytest.skip("vermin is not installed (pip install vermin)")
    r = subprocess.run(
        [vermin, "--target=3.8-", "--no-tips", "--violations", str(AGENT)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_agent_is_ruff_clean_for_py38() -> None:
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed")
    assert 'target-version = "py38"' in (AGENT / "pyproject.toml").read_text()
    r = subprocess.run([ruff, "check", str(AGENT)], capture_output=True, text=True, cwd=AGENT)
    assert r.returncode == 0, r.stdout + r.stderr


def test_agent_core_has_no_dependencies() -> None:
    """The core installs on a bare Jetson: every library is an optional extra."""
    text = (AGENT / "pyproject.toml").read_text()
    assert "dependencies = []" in text and 'requires-python = ">=3.8"' in text
