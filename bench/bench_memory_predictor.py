"""Issue 14 target: "predicted memory of unseen families within 15 % MAPE".

    PYTHONPATH=$PWD:$PWD/agent nice -n 19 .venv/bin/python bench/bench_memory_predictor.py \
        --db runs/cpu.db --zoo-db /tmp/memzoo/zoo.db --zoo-onnx /tmp/memzoo/onnx [--json FILE]

Training: every row of ``--db`` (search-space networks measured by ``nasctl profile --device cpu
--space S``) with a measured memory, through :meth:`MemoryModel.fit`, the call
``train-predictor`` makes (70 % train, 15 % interval calibration, 15 % held out: its own MAPE is
printed). Test: the classifiers of ``bench/zoo.py`` (families no space contains), measured by
``bench/bench_memory_zoo.py`` into ``--zoo-db``. Printed per model: measured and predicted MB,
the 90 % interval, the error; and the MAPE of the model, of its physical base alone, and of the
analytic bound (weights + every activation written) used as a prediction.
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
from nasctl.predictor.memory import MemoryModel, analytic_mb, features, memory_terms


def zoo_measured(db: Path) -> dict[str, float]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    rows = con.execute(
        "SELECT a.model, json_extract(m.extra_json, '$.memory.model_peak_bytes') "
        "FROM measurements m JOIN architectures a ON a.hash = m.arch_hash"
    ).fetchall()
    con.close()
    return {Path(str(m)).stem: b / 1e6 for m, b in rows if b is not None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", type=Path, action="append", required=True, help="repeatable")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--zoo-db", type=Path, required=True)
    ap.add_argument("--zoo-onnx", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    rows = []
    for db in args.db:
        with Store(db, readonly=True) as s:
            rows += [r for r in s.training_rows(args.device) if r.memory_mb and r.memory_mb > 0]
    spaces = sorted({str(r.space) for r in rows})
    model, metrics = MemoryModel.fit(
        [r.graph for r in rows], [r.memory_mb for r in rows], seed=args.seed
    )
    print(f"trained on {len(rows)} rows of {', '.join(spaces)}; held-out MAPE "
          f"{metrics['mape']:.2f} %, coverage {metrics['coverage_90']:.2f}, "
          f"interval x{metrics['interval_factor']:.3f}; "
          f"base (MB per MB) {metrics['base_mb']}")  # fmt: skip
    measured = zoo_measured(args.zoo_db)
    names = sorted(n for n in measured if (args.zoo_onnx / f"{n}.onnx").is_file())
    graphs = [from_onnx(args.zoo_onnx / f"{n}.onnx") for n in names]
    preds = model.predict(graphs)
    base = np.exp(model._base_log(graphs, features(graphs)))
    out = []
    print("\n| model | measured MB | predicted MB | 90 % interval | error % | base alone % "
          "| analytic bound MB | bound error % |")  # fmt: skip
    print("|---|---:|---:|---|---:|---:|---:|---:|")
    for n, g, (p, lo, hi), b in zip(names, graphs, preds, base, strict=True):
        y = measured[n]
        bound = analytic_mb(g)
        r = {"model": n, "measured_mb": y, "predicted_mb": p, "low_mb": lo, "high_mb": hi,
             "base_mb": float(b), "bound_mb": bound, "terms": memory_terms(g)}  # fmt: skip
        out.append(r)
        print(f"| {n} | {y:.1f} | {p:.1f} | {lo:.1f}-{hi:.1f}{'' if lo <= y <= hi else ' (out)'} "
              f"| {100 * (p - y) / y:+.1f} | {100 * (b - y) / y:+.1f} | {bound:.1f} "
              f"| {100 * (bound - y) / y:+.1f} |")  # fmt: skip

    def mape(key: str) -> float:
        return float(
            np.mean([abs(r[key] - r["measured_mb"]) / r["measured_mb"] for r in out]) * 100
        )

    cover = np.mean([r["low_mb"] <= r["measured_mb"] <= r["high_mb"] for r in out])
    print(f"\nunseen families ({len(out)}): MAPE {mape('predicted_mb'):.2f} % (base alone "
          f"{mape('base_mb'):.2f} %, analytic bound {mape('bound_mb'):.2f} %), 90 % interval "
          f"coverage {cover:.2f}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"train": metrics, "zoo": out}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
