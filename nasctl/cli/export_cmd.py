"""`nasctl export`: a search's winner as a deployable folder (ONNX at its precision, a PyTorch
module with initial weights, the TensorRT build command, a model card). Logic in
:mod:`nasctl.search.export`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nasctl.cli.common import handle_errors, print_json
from nasctl.cli.options import CalibDataOpt, JsonOpt, check_calib_data


@handle_errors
def export(
    run: Annotated[Path, typer.Option("--run", help="Output folder of `nasctl search`.")],
    out: Annotated[Path, typer.Option("--out", help="New folder to write (must not exist).")],
    rank: Annotated[
        int | None,
        typer.Option("--rank", help="Frontier point, 1 = most accurate (default 1)."),
    ] = None,
    genotype: Annotated[
        str | None, typer.Option("--genotype", help="Export this genotype of the run's space.")
    ] = None,
    precision: Annotated[
        str | None,
        typer.Option(
            "--precision",
            help="fp32, fp16, int8 or dla (default: the chosen point's precision in the run, "
            "else fp32).",
        ),
    ] = None,
    calib_data: CalibDataOpt = None,
    trt_version: Annotated[
        str | None,
        typer.Option(
            "--trt-version",
            help="TensorRT version of the build command (default: the run's device's, else 10.13).",
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the initial weights.")] = 0,
    json_out: JsonOpt = False,
) -> None:
    """Write model.onnx, model.py + weights.safetensors, trtexec.sh, card.json and README.md."""
    from nasctl.search.export import export_winner

    check_calib_data(calib_data)
    card = export_winner(
        run,
        out,
        rank=rank,
        genotype=genotype,
        precision=precision,
        calib_data=calib_data,
        trt_version=trt_version,
        seed=seed,
    )
    if json_out:
        print_json({"out": str(out), **card})
    else:
        lat = card["latency_ms"]
        typer.echo(
            f"exported {card['genotype']} ({card['precision']}, accuracy {card['accuracy']}, "
            f"measured {lat['measured']} ms) -> {out}"
        )
