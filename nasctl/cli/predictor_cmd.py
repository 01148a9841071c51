"""`nasctl train-predictor` and `nasctl predict`: fit a latency predictor, ask it questions."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from nasctl.cli.common import handle_errors, print_json
from nasctl.cli.options import DatasetDeviceOpt, JsonOpt
from nasctl.cli.progress import ProgressBar

#: ``train-predictor --db``: one store, or several (the flag repeated)
TrainDbOpt = Annotated[
    list[Path],
    typer.Option(
        "--db",
        help="SQLite measurement store; repeat the flag to train on several (collections kept "
        "apart, e.g. one per `nasctl profile` run or machine: the device id must agree).",
    ),
]


@handle_errors
def train_predictor(
    db: TrainDbOpt,
    device: DatasetDeviceOpt,
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
    drift_correct: Annotated[
        bool,
        typer.Option(
            "--drift-correct",
            help="Learn on labels scaled by the reference probe timed beside each measurement "
            "(`nasctl profile --probe-every K`): predictions in ms at the device's typical speed.",
        ),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Split the device's measurements 70/15/15, train GNN + GBDT (+ per-layer model), write
    the predictor and DIR/metrics.json."""
    import json

    from nasctl.errors import PredictorError
    from nasctl.predictor.training import train

    if drift_correct and transfer:
        raise PredictorError(
            "--drift-correct scales the device's own labels by its probe; it does not combine "
            "with --transfer (other devices have no probe of this one)"
        )
    if sources and not transfer:
        raise PredictorError("--from names the source devices of --transfer; add --transfer")
    if transfer:
        from nasctl.cli.transfer_cmd import train_transfer

        if len(db) != 1:
            raise PredictorError("--transfer reads one store (its --db holds every device)")
        with ProgressBar(quiet=json_out) as bar:
            say = _stages(bar) if bar.enabled else None
            return train_transfer(db[0], device, out, sources, seed, json_out, say)
    device_id, rows = _training_rows(db, device)
    drift_info = None
    if drift_correct:
        from nasctl.datasets.drift import drift_correct as correct

        rows, drift_info = correct(rows)
    t0 = time.perf_counter()
    with ProgressBar(quiet=json_out) as bar:
        say = _stages(bar) if bar.enabled else None
        pred, metrics = train(rows, device_id, seed=seed, train_size=train_size, progress=say)
    pred.save(out)
    metrics["train_s"] = round(time.perf_counter() - t0, 2)
    metrics["dbs"] = [str(p) for p in db]
    if drift_info is not None:
        metrics["drift_correct"] = drift_info
    metrics["memory"] = _memory_model(rows, out, seed)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1, sort_keys=True))
    if json_out:
        print_json({"predictor": str(out), **metrics})
        return
    _print_metrics(metrics, out)


def _training_rows(dbs: list[Path], device: str) -> tuple[str, list[Any]]:
    """The device's training rows from every store, in the order given (an architecture
    measured in two stores counts once: the first store's row)."""
    from nasctl.datasets.store import Store
    from nasctl.errors import PredictorError

    rows: list[Any] = []
    seen: set[str] = set()
    ids: dict[str, Path] = {}
    for db in dbs:
        with Store(db, readonly=True) as store:
            if not store.device_ids():
                raise PredictorError(
                    f"{db} holds no measurements; measure with `nasctl profile --db {db}` or "
                    "import a table with `nasctl dataset import`"
                )
            device_id = store.resolve_device_id(device)
            ids.setdefault(device_id, db)
            if len(ids) > 1:
                where = ", ".join(f"{i} in {p}" for i, p in ids.items())
                raise PredictorError(
                    f"the stores name different devices for {device!r} ({where}); one "
                    "predictor learns one device: pass the stores of one device id"
                )
            for r in store.training_rows(device_id):
                if r.arch_hash not in seen:
                    seen.add(r.arch_hash)
                    rows.append(r)
    return next(iter(ids)), rows


def _memory_model(rows: list[Any], out: Path, seed: int) -> dict[str, Any]:
    """Learn measured memory as a second target when enough rows carry it (else say why)."""
    from nasctl.predictor.memory import MIN_ROWS, MemoryModel, families

    mem = [r for r in rows if r.memory_mb is not None and r.memory_mb > 0]
    if len(mem) < MIN_ROWS:
        return {
            "trained": False,
            "reason": f"{len(mem)} of {len(rows)} rows have a measured memory "
            f"(needs >= {MIN_ROWS})",
        }
    graphs, mb = [r.graph for r in mem], [r.memory_mb for r in mem]
    model, m = MemoryModel.fit(graphs, mb, seed=seed, groups=families(mem))
    model.save(out)
    return {"trained": True, **m}


def _print_metrics(metrics: dict[str, Any], out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    sp = metrics["split"]
    whole = sp.get("test_whole_graphs", sp["test"])
    t = Table(
        title=f"{metrics['device_id']}: test set of {sp['test']} (whole graphs below: {whole}; "
        f"train {sp['train']}, validation {sp['val']})"
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
    if metrics.get("parts"):
        Console().print(_parts_table(metrics["parts"]))
    typer.echo(f"predictor written to {out} (metrics in {out / 'metrics.json'})")


def _parts_table(parts: list[dict[str, Any]]) -> Any:
    """Whole graphs per space and single kernels, each with the model that answers it."""
    from rich.table import Table

    t = Table(title="by part (each with its own 90 % interval)")
    for col in ("part", "answered by", "MAPE %", "Acc@10 %", "90% interval coverage", "n"):
        t.add_column(col, justify="left" if col in ("part", "answered by") else "right")
    for p in parts:
        t.add_row(
            p["part"],
            p["answered_by"],
            _fmt(p["mape"], ".2f"),
            _fmt(p["acc10"], ".1f"),
            _fmt(p["coverage"], ".3f"),
            str(p["n"]),
        )
    return t


def _fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def _stages(bar: ProgressBar) -> Any:
    """``progress(stage, done, total)`` of training: one row for features, one for the models."""
    rows: dict[str, int | None] = {}

    def say(stage: str, done: int, total: int) -> None:
        key = "features" if stage == "features" else "train"
        if key not in rows:
            rows[key] = bar.add(key, total=total)
        desc = "featurizing graphs" if key == "features" else f"training: {stage}"
        bar.update(rows[key], completed=done, total=total, description=desc)

    return say


@handle_errors
def predict(
    predictor: Annotated[Path, typer.Option("--predictor", help="A trained predictor directory.")],
    models: Annotated[
        list[Path] | None, typer.Argument(help="ONNX model files to predict.", show_default=False)
    ] = None,
    space: Annotated[
        str | None,
        typer.Option(
            "--space",
            help="Search space of --genotypes-file (a package.module:SPACE is imported and run).",
        ),
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
        key = "model"
        chunks: Any = [([p.name for p in models], pred.predict(graphs))]
        memory = _memory_predictions(predictor, graphs)
    else:
        if not space:
            raise PredictorError("--genotypes-file needs --space (e.g. --space nb201)")
        from nasctl.datasets.genotype_file import check_genotype_file, genotype_chunks
        from nasctl.spaces import get_space

        sp = get_space(space)
        path: Path = genotypes_file  # type: ignore[assignment]
        check_genotype_file(path, sp.validate)  # every line, before any answer is printed
        key = "genotype"
        chunks = (
            (part, pred.predict_genotypes(sp.name, part, sp.to_graph, arrays=sp.graph_arrays))
            for part in genotype_chunks(path)
        )
        memory = []
    _write_rows(key, chunks, json_out, memory)


def _memory_predictions(predictor: Path, graphs: list[Any]) -> list[dict[str, float]]:
    """Predicted memory (MB, 90 % interval) per model, in order, when the predictor has a
    memory model (else empty)."""
    from nasctl.predictor.memory import MemoryModel

    if not (Path(predictor) / "memory").is_dir():
        return []
    preds = MemoryModel.load(predictor).predict(graphs)
    return [{"memory_mb": mb, "memory_low_mb": lo, "memory_high_mb": hi} for mb, lo, hi in preds]


def _write_rows(
    key: str, chunks: Any, json_out: bool, memory: list[dict[str, float]] | None = None
) -> None:
    """Print ``(names, predictions)`` chunks as they come: memory stays that of one chunk; the
    JSON output is one array, written row by row."""
    import json
    import sys

    first = True
    memory = memory or []
    i = 0
    if json_out:
        sys.stdout.write("[")
    for names, preds in chunks:
        for n, p in zip(names, preds, strict=True):
            r = {key: n, "latency_ms": p.latency_ms, "low_ms": p.low_ms, "high_ms": p.high_ms}
            mem = memory[i] if i < len(memory) else None
            i += 1
            if mem:
                r.update(mem)
            if json_out:
                sys.stdout.write(("\n  " if first else ",\n  ") + json.dumps(r))
                first = False
            else:
                line = f"{n}\t{p.latency_ms:.4g} ms\t[{p.low_ms:.4g}, {p.high_ms:.4g}]"
                if mem:
                    line += (
                        f"\t{mem['memory_mb']:.4g} MB\t[{mem['memory_low_mb']:.4g}, "
                        f"{mem['memory_high_mb']:.4g}]"
                    )
                typer.echo(line)
    if json_out:
        sys.stdout.write("\n]\n")
