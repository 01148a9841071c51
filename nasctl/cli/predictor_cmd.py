"""`nasctl train-predictor` and `nasctl predict`: fit a latency predictor, ask it questions."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from nasctl.cli.common import handle_errors, print_json

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


@handle_errors
def train_predictor(
    db: Annotated[Path, typer.Option("--db", help="SQLite measurement store (one file).")],
    device: Annotated[
        str,
        typer.Option(
            "--device",
            help="Device name given to `profile` (cpu) or a full dataset id; an ambiguous "
            "name lists the matching ids.",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Directory to write the predictor to.")],
    train_size: Annotated[
        int | None,
        typer.Option("--train-size", help="Cap the number of training architectures."),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the split and the models.")] = 0,
    transfer: Annotated[
        bool,
        typer.Option(
            "--transfer", help="Few-shot: learn from the device's few rows plus other devices."
        ),
    ] = False,
    sources: Annotated[
        str | None,
        typer.Option("--from", help="With --transfer: source devices D1,D2 (default: all)."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Split the device's measurements 70/15/15, train GNN + GBDT (+ per-layer model), write
    the predictor and DIR/metrics.json."""
    import json

    from nasctl.datasets.store import Store
    from nasctl.errors import PredictorError
    from nasctl.predictor.training import train

    if sources and not transfer:
        raise PredictorError("--from names the source devices of --transfer; add --transfer")
    if transfer:
        from nasctl.cli.transfer_cmd import train_transfer

        with _progress(json_out) as say:
            return train_transfer(db, device, out, sources, seed, json_out, say)
    with Store(db, readonly=True) as store:
        if not store.device_ids():
            raise PredictorError(
                f"{db} holds no measurements; measure with `nasctl profile --db {db}` or import "
                "a table with `nasctl dataset import`"
            )
        device_id = store.resolve_device_id(device)
        rows = store.training_rows(device_id)
    t0 = time.perf_counter()
    with _progress(json_out) as say:
        pred, metrics = train(rows, device_id, seed=seed, train_size=train_size, progress=say)
    pred.save(out)
    metrics["train_s"] = round(time.perf_counter() - t0, 2)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1, sort_keys=True))
    if json_out:
        print_json({"predictor": str(out), **metrics})
        return
    _print_metrics(metrics, out)


def _print_metrics(metrics: dict[str, Any], out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    sp = metrics["split"]
    t = Table(
        title=f"{metrics['device_id']}: test set of {sp['test']} "
        f"(train {sp['train']}, validation {sp['val']})"
    )
    for col in (
        "model",
        "MAPE %",
        "RMSPE %",
        "Acc@5 %",
        "Acc@10 %",
        "Spearman",
        "Kendall",
        "90% interval coverage",
    ):
        t.add_column(col, justify="right")
    for name in ("gnn", "gbdt", "ensemble"):
        m = metrics[name]
        t.add_row(
            name,
            *(_fmt(m[k], ".2f") for k in ("mape", "rmspe")),
            *(_fmt(m[k], ".1f") for k in ("acc5", "acc10")),
            *(_fmt(m[k], ".3f") for k in ("spearman", "kendall", "coverage")),
        )
    Console().print(t)
    typer.echo(f"predictor written to {out} (metrics in {out / 'metrics.json'})")


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


class _progress:
    """Rich progress bar with ETA on stderr (silent under --json)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def __enter__(self) -> Any:
        if self.quiet:
            return None
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self.bar.__enter__()
        self.tasks: dict[str, Any] = {}

        def say(stage: str, done: int, total: int) -> None:
            key = "features" if stage == "features" else "train"
            if key not in self.tasks:
                self.tasks[key] = self.bar.add_task(key, total=total)
            desc = "featurizing graphs" if key == "features" else f"training: {stage}"
            self.bar.update(self.tasks[key], completed=done, total=total, description=desc)

        return say

    def __exit__(self, *exc: object) -> None:
        if not self.quiet:
            self.bar.__exit__(None, None, None)


@handle_errors
def predict(
    predictor: Annotated[Path, typer.Option("--predictor", help="A trained predictor directory.")],
    models: Annotated[
        list[Path] | None, typer.Argument(help="ONNX model files to predict.", show_default=False)
    ] = None,
    space: Annotated[
        str | None, typer.Option("--space", help="Search space of --genotypes-file.")
    ] = None,
    genotypes_file: Annotated[
        Path | None,
        typer.Option("--genotypes-file", help="File with one genotype per line (needs --space)."),
    ] = None,
    device: Annotated[
        str | None,
        typer.Option("--device", help="Refuse unless the predictor was trained for this id."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Predicted latency (ms) and 90 % interval per ONNX model or genotype."""
    from nasctl.errors import PredictorError
    from nasctl.predictor.loading import load_predictor

    if bool(models) == bool(genotypes_file):
        raise PredictorError("give either ONNX files or --space S --genotypes-file F (not both)")
    pred = load_predictor(predictor)
    pred.check_device(device)
    if models:
        from nasctl.arch.onnx_io import from_onnx

        graphs = [from_onnx(p) for p in models]
        key, names = "model", [p.name for p in models]
    else:
        if not space:
            raise PredictorError("--genotypes-file needs --space (e.g. --space nb201)")
        from nasctl.spaces import get_space

        names = _read_genotypes(genotypes_file)  # type: ignore[arg-type]
        sp = get_space(space)
        for g in names:
            sp.validate(g)
        key = "genotype"
        preds = pred.predict_genotypes(sp.name, names, sp.to_graph, arrays=sp.graph_arrays)
    if models:
        preds = pred.predict(graphs)
    rows = [
        {key: n, "latency_ms": p.latency_ms, "low_ms": p.low_ms, "high_ms": p.high_ms}
        for n, p in zip(names, preds, strict=True)
    ]
    if json_out:
        print_json(rows)
        return
    for r in rows:
        typer.echo(f"{r[key]}\t{r['latency_ms']:.4g} ms\t[{r['low_ms']:.4g}, {r['high_ms']:.4g}]")


def _read_genotypes(path: Path) -> list[str]:
    from nasctl.errors import PredictorError

    lines = [ln.strip() for ln in path.read_text().splitlines()]
    genos = [ln for ln in lines if ln and not ln.startswith("#")]
    if not genos:
        raise PredictorError(f"{path} has no genotypes (expected one per line)")
    return genos
