"""`nasctl train-predictor --transfer`: a new device's predictor from its few rows and the other
devices in the store (the flags live on `train-predictor`; this module does the work)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer

from nasctl.cli.common import print_json


def parse_from(value: str | None) -> list[str] | None:
    """``--from D1,D2`` -> ["D1", "D2"] (None: every other device)."""
    if not value:
        return None
    names = [v.strip() for v in value.split(",") if v.strip()]
    return names or None


def train_transfer(
    db: Path, device: str, out: Path, sources: str | None, seed: int, json_out: bool, say: Any
) -> None:
    """Fit, save and report a transferred predictor (see :mod:`nasctl.predictor.transfer`)."""
    from nasctl.datasets.store import Store
    from nasctl.datasets.transfer_data import source_rows, target_rows
    from nasctl.predictor.transfer import fit_transfer

    with Store(db, readonly=True) as store:
        dev, target = target_rows(store, device)
        src = source_rows(store, dev, parse_from(sources))
    t0 = time.perf_counter()
    pred, report = fit_transfer(target, src, device_id=dev, seed=seed, progress=say)
    pred.save(out)
    report["train_s"] = round(time.perf_counter() - t0, 2)
    (out / "metrics.json").write_text(json.dumps(report, indent=1, sort_keys=True))
    if json_out:
        print_json({"predictor": str(out), **report})
        return
    w = ", ".join(f"{d} {v:+.2f}" for d, v in report["weights"].items())
    typer.echo(
        f"{dev}: transferred from {len(report['sources'])} devices with {report['n_target']} "
        f"rows of its own in {report['train_s']:.1f} s; head weights (standardized): {w}; "
        f"90% interval x/÷ {2.718281828 ** report['interval_log_half_width']:.2f}"
    )
    typer.echo(f"predictor written to {out} (metrics in {out / 'metrics.json'})")
