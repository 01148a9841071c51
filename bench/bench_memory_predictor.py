"""Issue 14 target: "predicted memory of unseen families within 15 % MAPE".

    PYTHONPATH=$PWD:$PWD/agent nice -n 19 .venv/bin/python bench/bench_memory_predictor.py \
        --db runs/cpu.db [--db ...] --zoo-db /tmp/memzoo/zoo.db --zoo-onnx /tmp/memzoo/onnx \
        [--val DIR/val.jsonl] [--independent FILE] [--no-zoo] [--json FILE]

Training: every row of the ``--db`` stores (search-space networks and single layers measured by
``nasctl profile --device cpu``) with a measured memory, through :meth:`MemoryModel.fit` with
the rows' families (:func:`~nasctl.predictor.memory.families`), the call ``train-predictor``
makes (85 % fit, 15 % held out: its own MAPE is printed; the interval calibrated on families
left out). Validation (``--val``, ``bench/memory_val_set.py``): space networks not trained on,
as nasctl writes them and with their batch norms folded: the set design choices are made on.
Test (skipped with ``--no-zoo``): the classifiers of ``bench/zoo.py`` and
``bench/zoo_more.py`` (families no space contains), measured by the cpu device into
``--zoo-db`` (``nasctl profile --device cpu --db ZOO_DB ZOO_ONNX/*.onnx``). Printed per model:
measured and predicted MB, the 90 % interval, the error; and the MAPE of the model, of its
physical base alone, and of the analytic bound (weights + every activation written) used as a
prediction, for the 12 of ``zoo.py``, the 9 of ``zoo_more.py`` and all. ``--independent``: a
JSON list of ``{"model", "independent_mb"}`` (``bench/peak_rss_fresh.py``'s measurement) printed
beside the device's.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from pathlib import Path

import numpy as np

from nasctl.arch.onnx_io import from_onnx
from nasctl.datasets.store import Store
from nasctl.predictor.memory import MemoryModel, analytic_mb, families, memory_terms

#: the classifiers of bench/zoo_more.py (the rest of the zoo's store: bench/zoo.py's 12)
MORE = ("resnet34", "resnext50_32x4d", "vgg13", "mobilenet_v3_large", "regnet_y_400mf",
        "googlenet", "squeezenet1_0", "shufflenet_v2_x0_5", "mnasnet1_0")  # fmt: skip


def zoo_measured(db: Path) -> dict[str, float]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    rows = con.execute(
        "SELECT a.model, json_extract(m.extra_json, '$.memory.model_peak_bytes') "
        "FROM measurements m JOIN architectures a ON a.hash = m.arch_hash"
    ).fetchall()
    con.close()
    return {Path(str(m)).stem: b / 1e6 for m, b in rows if b is not None}


def evaluate(model: MemoryModel, graphs: list, measured: list[float]) -> list[dict]:
    preds = model.predict(graphs)
    base = np.exp(model._base_log(graphs))
    out = []
    for g, (p, lo, hi), b, y in zip(graphs, preds, base, measured, strict=True):
        out.append({"measured_mb": y, "predicted_mb": p, "low_mb": lo, "high_mb": hi,
                    "base_mb": float(b), "bound_mb": analytic_mb(g)})  # fmt: skip
    return out


def summary(rows: list[dict]) -> str:
    def mape(key: str) -> float:
        return float(np.mean([abs(r[key] - r["measured_mb"]) / r["measured_mb"] for r in rows]))

    worst = max(rows, key=lambda r: abs(r["predicted_mb"] - r["measured_mb"]) / r["measured_mb"])
    werr = 100 * (worst["predicted_mb"] - worst["measured_mb"]) / worst["measured_mb"]
    cover = np.mean([r["low_mb"] <= r["measured_mb"] <= r["high_mb"] for r in rows])
    return (f"MAPE {100 * mape('predicted_mb'):.2f} % (base alone {100 * mape('base_mb'):.2f} %, "
            f"analytic bound {100 * mape('bound_mb'):.2f} %), worst {worst.get('model', '')} "
            f"{werr:+.1f} %, 90 % interval coverage {cover:.2f}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", type=Path, action="append", required=True, help="repeatable")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--zoo-db", type=Path)
    ap.add_argument("--zoo-onnx", type=Path)
    ap.add_argument("--val", type=Path, help="bench/memory_val_set.py's val.jsonl")
    ap.add_argument("--independent", type=Path)
    ap.add_argument("--no-zoo", action="store_true", help="validation only: the zoo unseen")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    rows = []
    for db in args.db:
        with Store(db, readonly=True) as s:
            rows += [r for r in s.training_rows(args.device) if r.memory_mb and r.memory_mb > 0]
    fam = families(rows)
    counts = {f or "single layers / no space": fam.count(f) for f in dict.fromkeys(fam)}
    model, metrics = MemoryModel.fit(
        [r.graph for r in rows], [r.memory_mb for r in rows], seed=args.seed, groups=fam
    )
    print(f"trained on {len(rows)} rows {counts}; held-out MAPE "
          f"{metrics['mape']:.2f} %, coverage {metrics['coverage_90']:.2f}, "
          f"interval x{metrics['interval_factor']:.3f} ({metrics['split'].get('interval')}); "
          f"base (MB per MB) {metrics['base_mb']}")  # fmt: skip
    report: dict = {"train": metrics}
    if args.val:
        recs = [json.loads(line) for line in args.val.read_text().splitlines() if line.strip()]
        for key, path in (("mem_bn", "onnx"), ("mem_folded", "folded")):
            vv = [v for v in recs if v.get(key)]
            res = evaluate(model, [from_onnx(v[path]) for v in vv], [v[key] / 1e6 for v in vv])
            for v, r in zip(vv, res, strict=True):
                r["model"] = f"{v['space']}:{v['genotype']}"
            report[f"val_{key}"] = res
            what = "as nasctl writes them" if key == "mem_bn" else "batch norms folded"
            print(f"validation, {len(vv)} space networks {what}: {summary(res)}")
    if args.zoo_db and args.zoo_onnx and not args.no_zoo:
        measured = zoo_measured(args.zoo_db)
        names = sorted(n for n in measured if (args.zoo_onnx / f"{n}.onnx").is_file())
        indep = {}
        if args.independent:
            indep = {
                r["model"]: r["independent_mb"] for r in json.loads(args.independent.read_text())
            }
        res = evaluate(model, [from_onnx(args.zoo_onnx / f"{n}.onnx") for n in names],
                       [measured[n] for n in names])  # fmt: skip
        print("\n| model | measured MB | independent MB | predicted MB | 90 % interval | error % "
              "| base alone % | analytic bound MB | bound error % |")  # fmt: skip
        print("|---|---:|---:|---:|---|---:|---:|---:|---:|")
        for n, r in zip(names, res, strict=True):
            r["model"], y, p = n, r["measured_mb"], r["predicted_mb"]
            r["terms"] = memory_terms(from_onnx(args.zoo_onnx / f"{n}.onnx"))
            ind = f"{indep[n]:.1f}" if n in indep else "-"
            out = "" if r["low_mb"] <= y <= r["high_mb"] else " (out)"
            print(f"| {n}{' (more)' if n in MORE else ''} | {y:.1f} | {ind} | {p:.1f} "
                  f"| {r['low_mb']:.1f}-{r['high_mb']:.1f}{out} | {100 * (p - y) / y:+.1f} "
                  f"| {100 * (r['base_mb'] - y) / y:+.1f} | {r['bound_mb']:.1f} "
                  f"| {100 * (r['bound_mb'] - y) / y:+.1f} |")  # fmt: skip
        first = [r for r in res if r["model"] not in MORE]
        more = [r for r in res if r["model"] in MORE]
        print()
        for label, part in (("zoo.py", first), ("zoo_more.py", more), ("all", res)):
            if part:
                print(f"unseen families, {label} ({len(part)}): {summary(part)}")
        report["zoo"] = res
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
