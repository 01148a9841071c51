"""`nasctl dataset stats|export|import|import-csv`: inspect, export and fill measurement stores."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from nasctl.cli.common import handle_errors, print_json
from nasctl.cli.options import DataDirOpt, DbOpt, JsonOpt, PrecisionOpt
from nasctl.cli.progress import ProgressBar

app = typer.Typer(no_args_is_help=True)


@app.command("stats", help="Counts of architectures and measurements, per device and space.")
@handle_errors
def stats(db: DbOpt, json_out: JsonOpt = False) -> None:
    from nasctl.datasets.store import Store

    with Store(db, readonly=True) as store:
        st = store.stats()
    if json_out:
        print_json(st)
        return
    typer.echo(
        f"{st['path']}: {st['architectures']} architectures, {st['measurements']} measurements, "
        f"{st['layer_measurements']} per-layer rows"
    )
    for dev, c in sorted(st["devices"].items()):
        typer.echo(
            f"  device {dev}: {c['measurements']} (ok {c['ok']}, noisy {c['noisy']}, "
            f"failed {c['failed']}), {c.get('layer_measurements', 0)} per-layer rows"
        )
    for space, c in sorted(st["spaces"].items()):
        typer.echo(
            f"  space {space}: {c['architectures']} architectures, {c['measurements']} measurements"
        )


@app.command("export", help="Write one row per measurement to Parquet or CSV.")
@handle_errors
def export(
    db: DbOpt,
    out: Annotated[Path, typer.Option("--out", help="Output file.")],
    fmt: Annotated[str, typer.Option("--format", help="parquet or csv.")] = "parquet",
    json_out: JsonOpt = False,
) -> None:
    from nasctl.datasets.exporters import export as do_export
    from nasctl.datasets.store import Store

    with Store(db, readonly=True) as store:
        res = do_export(store, fmt, out)
    _report(res, json_out, f"wrote {res['rows']} measurements to {res['out']} ({fmt})")


@app.command("import", help="Import one device column of a public table (nb201, fbnet).")
@handle_errors
def import_table(
    table: Annotated[str, typer.Argument(help="nb201 or fbnet.")],
    column: Annotated[str, typer.Option("--column", help="Device column, e.g. titan_rtx_1.")],
    db: DbOpt,
    data_dir: DataDirOpt = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Import only the first N rows.")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    from nasctl.datasets.importers import import_table as do_import
    from nasctl.datasets.importers import replay_device_id
    from nasctl.datasets.store import Store

    device_id = _replay_id(table, column) or replay_device_id(table, column)
    with Store(db) as store, ProgressBar(quiet=json_out) as bar:
        tick = bar.ticker(bar.add(f"import {table}/{column}"))
        res = do_import(
            store, table, column, data_dir, device_id=device_id, limit=limit, progress=tick
        )
    _report(res, json_out, _summary(res))


@app.command("import-csv", help="Import your own CSV of genotypes and latencies (ms).")
@handle_errors
def import_csv(
    file: Annotated[Path, typer.Argument(help="CSV file with a header row.")],
    space: Annotated[
        str,
        typer.Option(
            "--space",
            help="Search space of the genotypes (a package.module:SPACE is imported and run).",
        ),
    ],
    arch_column: Annotated[str, typer.Option("--arch-column", help="Genotype column.")],
    latency_column: Annotated[str, typer.Option("--latency-column", help="Latency column (ms).")],
    device: Annotated[str, typer.Option("--device", help="Dataset id to record them under.")],
    db: DbOpt,
    precision: PrecisionOpt = "fp32",
    batch: Annotated[int, typer.Option("--batch", min=1, help="Batch size measured.")] = 1,
    json_out: JsonOpt = False,
) -> None:
    from nasctl.datasets.importers import import_csv as do_import
    from nasctl.datasets.store import Store

    with Store(db) as store, ProgressBar(quiet=json_out) as bar:
        tick = bar.ticker(bar.add(f"import {file.name}"))
        res = do_import(
            store,
            file,
            space,
            arch_column,
            latency_column,
            device,
            precision=precision,
            batch=batch,
            progress=tick,
        )
    _report(res, json_out, _summary(res))


def _replay_id(table: str, column: str) -> str | None:
    """The replay device's own id for this column, so imports and replays share one id."""
    try:
        from nasctl.profiler import get_device

        return str(get_device(f"replay:{table}/{column}").device_id)
    except Exception:  # profiler absent or it rejects the column: the importer decides
        return None


def _summary(res: dict[str, Any]) -> str:
    return (
        f"imported {res['imported']} of {res['rows']} rows as {res['device_id']} "
        f"(skipped {res['skipped']} already stored, {res['empty']} empty, "
        f"{res['duplicates']} isomorphic duplicates) in {res['seconds']} s"
    )


def _report(res: dict[str, Any], json_out: bool, line: str) -> None:
    if json_out:
        print_json(res)
    else:
        typer.echo(line)
