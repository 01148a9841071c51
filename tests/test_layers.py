"""The package layers of ``../shared/DESIGN.md`` hold: no lower layer imports a higher one, peers
do not import each other, and no import circle exists between modules (imports inside functions
count too: a lazy import is still a dependency)."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "nasctl"

#: layer of each top-level part of ``nasctl``; a module may import only from lower layers (and
#: from its own part). Parts on the same layer are peers and must not import each other.
LAYERS: dict[str, int] = {
    "errors": 0,
    "records": 0,
    "arch": 1,
    "spaces": 2,
    "profiler": 3,
    "predictor": 3,
    "datasets": 4,
    "search": 5,
    "fleet": 5,
    "cli": 6,
}

#: import circles still being taken apart (module sets); empty is the goal.
KNOWN_CIRCLES: list[set[str]] = [
    {"nasctl.predictor.batch", "nasctl.predictor.dedupe", "nasctl.predictor.features"},
]


def _modules() -> dict[str, Path]:
    mods = {}
    for p in PKG.rglob("*.py"):
        parts = list(p.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = p
    return mods


def _resolve(name: str, mods: dict[str, Path]) -> str | None:
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def _imports(mod: str, path: Path, mods: dict[str, Path]) -> set[str]:
    pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    out: set[str | None] = set()
    for n in ast.walk(ast.parse(path.read_text())):
        if isinstance(n, ast.Import):
            out.update(_resolve(a.name, mods) for a in n.names if a.name.startswith("nasctl"))
        elif isinstance(n, ast.ImportFrom):
            if n.level:
                base = pkg.split(".")[: len(pkg.split(".")) - (n.level - 1)]
                name = ".".join(base + ([n.module] if n.module else []))
            else:
                name = n.module or ""
            if name.startswith("nasctl"):
                for a in n.names:
                    full = f"{name}.{a.name}"
                    out.add(_resolve(full if full in mods else name, mods))
    out.discard(None)
    out.discard(mod)
    return {m for m in out if m is not None}


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: _imports(m, p, mods) for m, p in mods.items()}


def _part(mod: str) -> str:
    return mod.split(".")[1] if "." in mod else ""


def _circles(edges: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[set[str]] = []
    counter = 0
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges.get(w, ())))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = set()
                while True:
                    x = stack.pop()
                    on.discard(x)
                    comp.add(x)
                    if x == v:
                        break
                if len(comp) > 1:
                    out.append(comp)
    return out


def test_every_part_has_a_layer() -> None:
    parts = {_part(m) for m in _modules()} - {""}
    assert parts <= set(LAYERS), f"parts without a layer in DESIGN.md: {parts - set(LAYERS)}"


def test_imports_go_down_the_layers() -> None:
    bad = []
    for mod, deps in _graph().items():
        a = _part(mod)
        for dep in deps:
            b = _part(dep)
            if a and b and a != b and LAYERS[b] >= LAYERS[a]:
                bad.append(f"{mod} (layer {LAYERS[a]}) imports {dep} (layer {LAYERS[b]})")
    assert not bad, "imports against the layers:\n" + "\n".join(sorted(bad))


def test_no_import_circles() -> None:
    found = _circles(_graph())
    new = [sorted(c) for c in found if c not in KNOWN_CIRCLES]
    assert not new, f"import circles: {new}"


def test_the_check_sees_circles_and_upward_imports() -> None:
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
    assert _circles({"a": {"b"}, "b": set()}) == []
    graph = _graph()
    assert "nasctl.arch.graph" in graph["nasctl.spaces.base"]  # a real downward edge is seen
