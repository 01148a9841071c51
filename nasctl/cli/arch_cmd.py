"""`nasctl arch show|export`: inspect an architecture (ONNX file or search-space genotype), write
a search-space architecture to ONNX."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from nasctl.cli.common import fail, handle_errors, print_json
from nasctl.cli.options import JsonOpt

if TYPE_CHECKING:
    from nasctl.arch.graph import Graph

app = typer.Typer(no_args_is_help=True)

SpaceOpt = Annotated[
    str | None,
    typer.Option(
        "--space",
        help="Search space name (see `nasctl spaces`) or package.module:SPACE (nasctl imports "
        "and runs that module: only name code you trust).",
    ),
]
GenotypeOpt = Annotated[
    str | None, typer.Option("--genotype", help="Genotype string of the space.")
]
SeedOpt = Annotated[
    int | None,
    typer.Option("--seed", help="Sample the space with this seed (same seed, same arch)."),
]


@app.command("show", help="Nodes, MACs, params, bytes and hash of an ONNX file or a genotype.")
@handle_errors
def show(
    file: Annotated[
        Path | None, typer.Argument(help="ONNX model file (or use --space instead).")
    ] = None,
    space: SpaceOpt = None,
    genotype: GenotypeOpt = None,
    seed: SeedOpt = None,
    layers: Annotated[
        bool, typer.Option("--layers", help="Also list every node with its shape and costs.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    graph = load_graph(file, space, genotype, seed)
    info = summarize(graph, layers=layers)
    if json_out:
        print_json(info)
        return
    _render(info)


@app.command("export", help="Write a search-space architecture to ONNX (random weights).")
@handle_errors
def export(
    space: SpaceOpt = None,
    genotype: GenotypeOpt = None,
    seed: SeedOpt = None,
    out: Annotated[Path | None, typer.Option("--out", help="Output .onnx file.")] = None,
    weights_seed: Annotated[
        int, typer.Option("--weights-seed", help="Seed of the random initializers.")
    ] = 0,
    json_out: JsonOpt = False,
) -> None:
    if not space:
        fail("arch export needs --space (and --genotype or --seed)")
    if out is None:
        fail("arch export needs --out FILE.onnx")
    assert out is not None
    graph = load_graph(None, space, genotype, seed)
    from nasctl.arch.hashing import graph_hash
    from nasctl.arch.onnx_io import save_onnx

    path = save_onnx(graph, out, seed=weights_seed)
    info = {
        "path": str(path),
        "space": graph.meta.get("space"),
        "genotype": graph.meta.get("genotype"),
        "nodes": len(graph),
        "hash": graph_hash(graph),
        "file_bytes": path.stat().st_size,
    }
    if json_out:
        print_json(info)
        return
    typer.echo(f"wrote {path} ({info['nodes']} nodes, {info['file_bytes']:,} bytes)")
    typer.echo(f"genotype {info['genotype']}")
    typer.echo(f"hash     {info['hash']}")


# -- library-facing helpers (also usable by other commands) -------------------------------------


def load_graph(
    file: Path | None, space: str | None, genotype: str | None, seed: int | None
) -> Graph:
    """The graph named on the command line: an ONNX file, or a space with a genotype or seed.

    Raises one-line errors (exit 1) for conflicting or missing choices; file and genotype
    problems raise :class:`~nasctl.errors.NasctlError` subclasses.
    """
    if file is not None:
        if space or genotype is not None or seed is not None:
            fail("give either an ONNX file or --space with --genotype/--seed, not both")
        from nasctl.arch.onnx_io import from_onnx

        return from_onnx(file)
    if not space:
        if genotype is not None or seed is not None:
            fail("--genotype and --seed need --space")
        fail("give an ONNX file, or --space S with --genotype G or --seed N")
    if (genotype is None) == (seed is None):
        fail("give exactly one of --genotype and --seed with --space")
    import random

    sp = _space(space)  # type: ignore[arg-type]
    geno = genotype if genotype is not None else sp.sample(random.Random(seed))
    return sp.to_graph(geno)


def _space(name: str) -> Any:
    """get_space, with the working directory importable for ``module:SPACE`` names."""
    import os
    import sys

    from nasctl.spaces import get_space

    if ":" in name and os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())
    return get_space(name)


def summarize(graph: Graph, layers: bool = False) -> dict[str, Any]:
    """Counts, costs and hash of ``graph`` as a JSON-ready dict (bytes are FP32)."""
    from nasctl.arch.costs import graph_costs
    from nasctl.arch.hashing import graph_hash

    costs = graph_costs(graph)
    info: dict[str, Any] = {
        "name": graph.name,
        "space": graph.meta.get("space"),
        "genotype": graph.meta.get("genotype"),
        "resolution": graph.meta.get("resolution"),
        "source": graph.meta.get("model") if graph.meta.get("source") == "onnx" else "space",
        "input_shapes": {k: list(v) for k, v in graph.inputs.items()},
        "nodes": len(graph),
        "edges": len(graph.edges()),
        **{k: int(v) for k, v in costs.total.items()},
        "hash": graph_hash(graph),
        "op_counts": dict(sorted(graph.op_counts().items(), key=lambda kv: (-kv[1], kv[0]))),
    }
    if layers:
        info["layers"] = [
            {"id": n.id, "op": n.op, "out_shape": list(n.out_shape), **costs.per_node[n.id]}
            for n in graph.nodes
        ]
    return info


def _human(n: int, unit: str = "") -> str:
    for div, suffix in ((10**9, "G"), (10**6, "M"), (10**3, "k")):
        if abs(n) >= div:
            return f"{n / div:.3f} {suffix}{unit}"
    return f"{n} {unit}".strip()


def _render(info: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    t = Table("", "", show_header=False, title=info["name"] or "architecture")
    for key in ("space", "genotype", "resolution", "source"):
        if info.get(key) not in (None, ""):
            t.add_row(key, str(info[key]))
    t.add_row("inputs", ", ".join(f"{k} {tuple(v)}" for k, v in info["input_shapes"].items()))
    t.add_row("nodes", f"{info['nodes']} ({info['edges']} edges)")
    t.add_row("MACs", _human(info["macs"]))
    t.add_row("params", _human(info["params"]))
    t.add_row("weights", _human(info["weight_bytes"], "B"))
    t.add_row("activations read", _human(info["act_read_bytes"], "B"))
    t.add_row("activations written", _human(info["act_write_bytes"], "B"))
    t.add_row("hash", info["hash"])
    t.add_row("ops", ", ".join(f"{op} {c}" for op, c in info["op_counts"].items()))
    console.print(t)
    if "layers" in info:
        lt = Table("node", "op", "output", "MACs", "params", title="layers")
        for row in info["layers"]:
            shape = "x".join(str(d) for d in row["out_shape"])
            lt.add_row(row["id"], row["op"], shape, _human(row["macs"]), _human(row["params"]))
        console.print(lt)
