"""`nasctl search`: predictor-first search of a space for the accuracy-latency frontier."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from nasctl.cli.common import handle_errors, print_json
from nasctl.cli.fleet_cmd import FleetOpt, FleetWaitOpt, remote_device
from nasctl.cli.options import (
    DataDirOpt,
    DeviceOpt,
    JsonOpt,
    ThreadsOpt,
    TrtexecOpt,
    device_options,
)
from nasctl.cli.progress import ProgressBar
from nasctl.search.config import config_defaults
from nasctl.search.objectives import Constraints

#: the library's defaults (``SearchConfig``, ``Constraints``): the options below take theirs from
#: here, so what a user runs by default is what the search benchmark runs (no second copy)
D = config_defaults()
C = Constraints()


@handle_errors
def search(
    device: DeviceOpt,
    space: Annotated[
        str,
        typer.Option(
            "--space",
            help="Search space: a name, or package.module:SPACE (nasctl imports and runs "
            "that module: only name code you trust).",
        ),
    ],
    accuracy: Annotated[
        str,
        typer.Option(
            "--accuracy",
            help="Accuracy estimator: nb201:cifar10|cifar100|imagenet16, "
            "proxy:synflow|naswot, train:digits, train:folder (images in --data-dir), "
            "python:module:function (nasctl imports and "
            "runs that module: only name code you trust; a resumed run imports only what the "
            "command line names).",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Output folder (re-run to resume).")],
    use_predictor: Annotated[
        bool,
        typer.Option(
            "--use-predictor/--no-predictor",
            help="Score candidates with a latency predictor and validate on the device "
            "(--no-predictor: measure every candidate).",
        ),
    ] = D["use_predictor"],
    predictor: Annotated[
        Path | None,
        typer.Option(
            "--predictor",
            help="Trained predictor folder (nasctl train-predictor); without it the "
            "loop bootstraps its own from device measurements.",
        ),
    ] = None,
    latency_budget: Annotated[
        float | None, typer.Option("--latency-budget", help="Latency budget (ms) on the device.")
    ] = None,
    confidence: Annotated[
        float,
        typer.Option(
            "--confidence",
            help="Central coverage of the predicted latency interval; predicted "
            "feasible means the interval's upper end is within the budget.",
        ),
    ] = C.confidence,
    min_accuracy: Annotated[
        float | None,
        typer.Option("--min-accuracy", help="Find the fastest net reaching this accuracy."),
    ] = None,
    max_params: Annotated[
        int | None, typer.Option("--max-params", help="Maximum parameter count.")
    ] = None,
    max_memory_mb: Annotated[
        float | None,
        typer.Option(
            "--max-memory-mb",
            help="Maximum peak memory on the device (MiB): predicted with its interval by the "
            "--predictor's memory model (else the analytic bound, weights + activations), "
            "checked on each measured candidate's measured memory.",
        ),
    ] = None,
    device_budget: Annotated[
        int, typer.Option("--device-budget", help="Maximum number of device measurements.")
    ] = D["device_budget"],
    generations: Annotated[int, typer.Option("--generations", help="Generations.")] = D[
        "generations"
    ],
    population: Annotated[int, typer.Option("--population", help="Population size.")] = D[
        "population"
    ],
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = D["seed"],
    strategy: Annotated[
        str,
        typer.Option(
            "--strategy",
            help="nsga2 (Optuna NSGA-II; plain NSGA-II for structured spaces), "
            "nsga2-plain or random.",
        ),
    ] = D["strategy"],
    validate_every: Annotated[
        int, typer.Option("--validate-every", help="Validate on the device every K generations.")
    ] = D["validate_every"],
    bootstrap: Annotated[
        int | None,
        typer.Option(
            "--bootstrap",
            help="Initial random measurements without --predictor "
            "(default: 20% of the device budget, 3..20).",
        ),
    ] = D["bootstrap"],
    refine_top: Annotated[
        int,
        typer.Option(
            "--refine-top",
            help="Before each device measurement, also score the single-change "
            "neighbours of this many top candidates (0: off).",
        ),
    ] = D["refine_top"],
    refine_cap: Annotated[
        int,
        typer.Option(
            "--refine-cap",
            help="At most this many new candidates estimated per refinement "
            "(keep small with slow estimators such as train:digits).",
        ),
    ] = D["refine_cap"],
    db: Annotated[
        Path | None,
        typer.Option(
            "--db",
            help="Measurement store (default OUT/measurements.db); stored measurements "
            "of the same device are reused without a device run.",
        ),
    ] = None,
    reuse_stored: Annotated[
        bool,
        typer.Option(
            "--reuse-stored/--no-reuse-stored",
            help="Reuse a stored measurement of the same architecture (same graph hash) instead "
            "of running the device again. Replay devices always answer from their own row "
            "(isomorphic NB201 cells differ in the tables).",
        ),
    ] = D["reuse_stored"],
    score_all: Annotated[
        bool | None,
        typer.Option(
            "--score-all/--no-score-all",
            help="Enumerable spaces (nb201): also score every genotype with the "
            "predictor before the final device measurements (default: on when the "
            "estimator is a table lookup and the space has <= 100,000 genotypes).",
        ),
    ] = D["score_all"],
    bootstrap_model: Annotated[
        str,
        typer.Option(
            "--bootstrap-model",
            help="Without --predictor: the loop's latency model. gp (a Gaussian process on op "
            "counts, fit near the budget) or gp+nasctl (also trains nasctl's GNN+GBDT predictor "
            "on the measurements once 20 exist, the GP modelling its residual; slower).",
        ),
    ] = D["bootstrap_model"],
    precision: Annotated[
        str,
        typer.Option(
            "--precision",
            help="Precisions to weigh, comma-separated: fp32,int8 on cpu; fp16,int8[,dla] on "
            "TensorRT devices (dla: INT8 on a Jetson's DLA core 0). Each candidate is an "
            "(architecture, precision) pair, measured and scored at its precision; per "
            "architecture the frontier keeps the faster precision unless the other is more "
            "accurate beyond the estimator's noise (then both). Default fp32.",
        ),
    ] = D["precision"],
    int8_drop: Annotated[
        str | None,
        typer.Option(
            "--int8-drop",
            help="INT8 accuracy-drop model for estimators that give FP32 accuracy (nb201 "
            "tables, proxies): points lost by every architecture, or "
            "python:module:function(genotype, graph) -> points.",
        ),
    ] = None,
    threads: ThreadsOpt = None,
    trtexec: TrtexecOpt = None,
    data_dir: DataDirOpt = None,
    fleet: FleetOpt = None,
    fleet_wait: FleetWaitOpt = 60.0,
    json_out: JsonOpt = False,
) -> None:
    from nasctl.search.loop import SearchConfig, SearchLoop
    from nasctl.search.report import write_outputs

    cons = Constraints(
        latency_budget_ms=latency_budget,
        confidence=confidence,
        min_accuracy=min_accuracy,
        max_params=max_params,
        max_memory_mb=max_memory_mb,
    )
    opts = device_options(threads=threads, trtexec=trtexec, data_dir=data_dir)
    if accuracy == "train:folder" and data_dir is not None:
        accuracy = f"train:folder:{data_dir.expanduser().resolve()}"  # kept in the settings
    cfg = SearchConfig(
        space=space,
        device=device,
        accuracy=accuracy,
        out=out,
        constraints=cons,
        device_budget=device_budget,
        generations=generations,
        population=population,
        seed=seed,
        strategy=strategy,
        use_predictor=use_predictor or predictor is not None,
        predictor_dir=str(predictor) if predictor else None,
        validate_every=validate_every,
        bootstrap=bootstrap,
        db=db,
        refine_top=refine_top,
        refine_cap=refine_cap,
        reuse_stored=reuse_stored,
        score_all=score_all,
        bootstrap_model=bootstrap_model,
        device_opts=opts,
    )
    loop: Any
    settings = cfg.settings()
    if precision.strip().lower() != "fp32" or int8_drop is not None:
        from nasctl.search.multiprecision import PrecisionSearch
        from nasctl.search.precisions import measure_precision

        def make_device(p: str) -> Any:
            return remote_device(fleet, device, measure_precision(p), fleet_wait)

        loop = PrecisionSearch(  # checks every setting and precision before anything runs
            cfg, precision, int8_drop=int8_drop, make_device=make_device if fleet else None
        )
        settings = loop.settings()
    else:
        remote = remote_device(fleet, device, "fp32", fleet_wait) if fleet else None
        loop = SearchLoop(cfg, device=remote)  # checks every setting before anything runs
    with ProgressBar(quiet=json_out) as bar:
        loop.progress = _Events(bar)
        result = loop.run()
    label = loop.estimator.unit or "accuracy"
    doc = write_outputs(result, out, cons, device, settings, label)
    if json_out:
        print_json(doc)
    else:
        _render(doc, out, label)
    if result.message:
        typer.echo(f"note: {result.message}", err=True)
    if result.stopped:
        typer.echo(f"error: search stopped: {result.stopped}", err=True)
        raise typer.Exit(1)


class _Events:
    """The loop's ``progress(event, **kw)`` on the bar: generations, plus device use as info."""

    def __init__(self, bar: ProgressBar) -> None:
        self.bar = bar
        self.task = bar.add("generations", total=1)
        self.budget = 0

    def __call__(self, event: str, **kw: Any) -> None:
        if event == "start":
            self.budget = kw["budget"]
            self.bar.update(self.task, total=max(kw["generations"], 1))
        elif event == "generation":
            best = kw.get("best")
            info = f"device {kw['used']}/{self.budget}"
            if kw.get("precision"):
                info = f"{kw['precision']}: {info}"
            if best is not None:
                info += f"  best {best.accuracy:.4g} @ {best.measured_ms:.4g} ms"
            self.bar.update(self.task, completed=kw["generation"] + 1, info=info)
        elif event == "measure":
            self.bar.update(self.task, info=f"device {kw['used']}/{self.budget} ({kw['phase']})")


def _render(doc: dict[str, Any], out: Path, label: str) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console()
    t = Table(title="search result", show_header=False)
    best = doc["best"]
    if best:
        t.add_row("best genotype", str(best["genotype"]))
        if best.get("precision") and best["precision"] != "fp32":
            t.add_row("precision", str(best["precision"]))
        t.add_row(label, f"{best['accuracy']:.4g}")
        t.add_row("measured latency", f"{best['measured_latency_ms']:.4g} ms")
    else:
        t.add_row("best", "none meets the constraints (see note)")
    t.add_row("device measurements", str(doc["device_measurements"]))
    t.add_row("predictor queries", str(doc["predictor_queries"]))
    t.add_row(
        "candidates scored", f"{doc['candidates_scored']} ({doc['unique_candidates']} unique)"
    )
    log = doc["prediction_log"]
    if log.get("n"):
        t.add_row(
            "predicted vs measured",
            f"MAPE {log['mape_pct']:.1f}%, interval coverage "
            f"{log['interval_coverage']:.0%} (n={log['n']})",
        )
    t.add_row("frontier", f"{doc['frontier_size']} points, all measured")
    if doc.get("unverified_size"):
        t.add_row(
            "unverified",
            f"{doc['unverified_size']} more predicted on the frontier, not measured (device "
            "budget spent; unverified.csv)",
        )
    t.add_row(
        "outputs",
        f"{out}/frontier.csv, unverified.csv, frontier.json, frontier.png, measurements.jsonl",
    )
    con.print(t)
