"""The ``nasctl`` command line. Commands live in one module each; this file only wires them."""

from __future__ import annotations

from typing import Annotated

import typer

from nasctl.cli import common

app = typer.Typer(
    name="nasctl",
    help="Latency-predictor-first hardware-aware neural architecture search.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks instead of one-line errors.")
    ] = False,
) -> None:
    common.STATE["debug"] = debug


def _register() -> None:
    from nasctl.cli import (
        arch_cmd,
        dataset_cmd,
        devices_cmd,
        export_cmd,
        fleet_cmd,
        predictor_cmd,
        profile_cmd,
        search_cmd,
        spaces_cmd,
    )

    app.command("spaces", help="List the registered search spaces.")(spaces_cmd.spaces)
    app.add_typer(arch_cmd.app, name="arch", help="Inspect and export architectures.")
    app.command("devices", help="List devices and whether each is usable here.")(
        devices_cmd.devices
    )
    app.command("profile", help="Measure architectures on a device into a dataset.")(
        profile_cmd.profile
    )
    app.add_typer(dataset_cmd.app, name="dataset", help="Inspect, import and export datasets.")
    app.add_typer(fleet_cmd.app, name="fleet", help="A device fleet (Celery + Redis): status.")
    app.command("train-predictor", help="Fit a latency predictor for one device.")(
        predictor_cmd.train_predictor
    )
    app.command("predict", help="Predict latency with a trained predictor.")(predictor_cmd.predict)
    app.command("search", help="Search a space for the accuracy-latency frontier.")(
        search_cmd.search
    )
    app.command("export", help="Export a search's winner: ONNX, PyTorch module, card.")(
        export_cmd.export
    )


_register()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
