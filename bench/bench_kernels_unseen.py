"""Unseen families on the cpu device (issue 16): a predictor trained only on what ``nasctl
profile`` collects (search-space architectures and single kernels), asked about well-known
classifiers it never saw (bench/zoo.py + bench/zoo_more.py, batch 1, 224x224).

    .venv/bin/python bench/bench_kernels_unseen.py --train runs/k16/cpu.db runs/k16/kernels.db \
        --eval runs/k16/zoo.db --out runs/k16/unseen

Reports, per evaluated model and in summary (MAPE, worst error, share within +-10 %): the
whole-graph ensemble (GBDT + GNN members combined, before any out-of-distribution hand-over),
the whole predictor's answer (``Predictor.predict``: the ensemble moved toward the per-kernel
model for graphs outside the training ranges), the per-kernel model (``KernelModel.predict_ms``:
since kernel-units-v5 the sum of the kernels' in-network times plus one per-run cost, with the
per-graph term of ``kernel_model.TERM_RULE``, none), its in-network kernel sum without the
per-run cost, the same model with its in-network correction applied at any feature value (v5:
before the correction was bounded to the ranges it was fitted on), the v4 default for comparison
(the plain sum of kernels labelled with their time alone, fit on the same rows), and the
roofline (MACs over the fitted peak, bytes over the fitted bandwidth, summed over kernels,
times the kernels' median ratio); per model, how many of its units lie outside the in-network
correction's fitted ranges (ratio 1). The evaluated models' rows are read only to score the
answers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from nasctl.datasets.store import Store
from nasctl.predictor import training
from nasctl.predictor.kernel_model import KernelModel, _roof, fit_from_examples
from nasctl.predictor.kernel_units import unit_rows
from nasctl.predictor.training import train

_T0 = time.perf_counter()


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - _T0:7.1f} s] {msg}", file=sys.stderr, flush=True)


def load(dbs: list[Path], device: str) -> tuple[str, list[Any]]:
    rows, dev = [], ""
    for db in dbs:
        with Store(db, readonly=True) as s:
            dev = s.resolve_device_id(device)
            part = [r for r in s.training_rows(dev) if r.latency_ms and r.latency_ms > 0]
            for r in part:
                _ = r.graph
            rows += part
    return dev, rows


def _summary(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    e = p / y - 1
    return {
        "mape": float(100 * np.abs(e).mean()),
        "worst": float(100 * e[np.argmax(np.abs(e))]),
        "within10": float(100 * np.mean(np.abs(e) <= 0.10)),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    dev, rows = load(args.train, args.device)
    _, zoo = load(args.eval, args.device)
    log(f"{len(rows)} training rows ({sum(r.single_layer for r in rows)} kernels), {len(zoo)} eval")
    if args.kernels_only:  # the per-kernel model alone (no ensemble, no test split)
        ex = training.featurize_rows(rows, lambda stage, i, n: None)
        km = fit_from_examples(ex, np.array([r.latency_ms for r in rows]), seed=args.seed)
        pred, metrics = None, {"parts": []}
    else:
        pred, metrics = train(rows, dev, seed=args.seed, gnn_steps=args.gnn_steps)
        km = pred.kernels
    log("trained")
    # the v4 default for comparison: kernels labelled with their time alone (per-run cost
    # included), no in-network correction, plain sum; fit on the same rows as ``km``
    if args.kernels_only:
        plain_rows = list(range(len(rows)))
    else:
        plain_rows = list(training.split_indices(len(rows), args.seed, None)[0])
    ex_p = training.featurize_rows([rows[i] for i in plain_rows], lambda stage, i, n: None)
    y_p = np.array([rows[i].latency_ms for i in plain_rows])
    km_plain = fit_from_examples(ex_p, y_p, seed=args.seed, run_cost=False, innet=False)
    assert km_plain is not None
    graphs = [r.graph for r in zoo]
    units = [unit_rows(g) for g in graphs]
    y = np.array([r.latency_ms for r in zoo])
    answers = {
        "kernel model": km.predict_ms(units),
        "kernel sum (in-network)": km.sum_ms(units),
        "kernel model, no range gate (v5)": _ungated(km).predict_ms(units),
        "plain kernel sum (v4)": km_plain.sum_ms(units),
        "roofline": np.array(
            [
                _roof(u, km.meta["peak_macs_per_ms"], km.meta["bytes_per_ms"], km.block)[1].sum()
                * np.exp(km.meta["median_log_ratio"])
                for u, _ in units
            ]
        ),
    }
    if pred is not None:
        from nasctl.predictor import ensemble
        from nasctl.predictor.inference import examples_from_graphs, members_log

        ex = examples_from_graphs(graphs, pred.meta.get("precision"))
        members = members_log(pred, ex, None)
        whole = ensemble.combine(members, pred.meta["weights"])
        answers = {"whole-graph ensemble": np.exp(whole), **answers}
        answers["predictor"] = np.array([p.latency_ms for p in pred.predict(graphs)])
    names = [str(r.model or r.genotype).removesuffix(".onnx") for r in zoo]
    table = [
        {
            "model": n,
            "measured_ms": float(t),
            **{k: float(v[i]) for k, v in answers.items()},
            **_outside(km, *units[i]),
        }
        for i, (n, t) in enumerate(zip(names, y, strict=True))
    ]
    return {
        "device_id": dev,
        "train_rows": len(rows),
        "kernel_rows": int(sum(r.single_layer for r in rows)),
        "graph_term": km.meta["graph_term"],
        "run_ms": km.meta.get("run_ms"),
        "innet_units": km.meta.get("innet_units"),
        "innet_shrink": km.meta.get("innet_shrink"),
        "rows_per_type": km.meta["rows_per_type"],
        "own_regressor": sorted(k for k in km.boosters if k != "all"),
        "summary": {k: _summary(y, v) for k, v in answers.items()},
        "models": table,
        "parts": metrics["parts"],
        "q_unit": km.meta.get("q_unit"),
        "q_kernel": (pred.meta.get("ood") or {}).get("q_kernel") if pred else None,
    }


def _ungated(km: KernelModel) -> KernelModel:
    """The same model with its in-network correction applied at any feature value (v5)."""
    wide = {
        t: {k: [-np.inf, np.inf] for k in r} for t, r in km.meta.get("innet_ranges", {}).items()
    }
    return KernelModel(km.boosters, {**km.meta, "innet_ranges": wide})


def _outside(km: KernelModel, rows: np.ndarray, types: list[str]) -> dict[str, Any]:
    """A graph's units of a profiled type that lie outside the correction's fitted ranges
    (ratio 1 since v6): how many, of how many profiled-type units, and their share of the
    graph's predicted time alone."""
    typed = np.isin(np.asarray(types), km.meta.get("innet_types", []))
    out = typed & ~km.innet_in_range(rows, types)
    alone = km.unit_ms(rows, types)
    return {
        "units_outside": int(out.sum()),
        "units_typed": int(typed.sum()),
        "outside_share": float(alone[out].sum() / max(alone.sum(), 1e-12)),
    }


def markdown(res: dict[str, Any]) -> str:
    names = list(res["summary"])
    lines = ["| answer | MAPE % | worst % | within +-10 % |", "|---|---|---|---|"]
    for k in names:
        s = res["summary"][k]
        lines.append(f"| {k} | {s['mape']:.1f} | {s['worst']:+.1f} | {s['within10']:.0f} |")
    lines += [
        "",
        "| model | measured ms | " + " | ".join(names) + " |",
        "|---" * (2 + len(names)) + "|",
    ]
    key = names[-1] if "predictor" in names else "kernel model"
    for m in sorted(res["models"], key=lambda m: -abs(m[key] / m["measured_ms"] - 1)):
        cells = [f"{m[k]:.2f} ({100 * (m[k] / m['measured_ms'] - 1):+.1f})" for k in names]
        lines.append(f"| {m['model']} | {m['measured_ms']:.2f} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| model | units outside the correction's ranges / of profiled types | their share of "
        "the predicted time alone |",
        "|---|---|---|",
    ]
    for m in res["models"]:
        if m.get("units_outside"):
            lines.append(
                f"| {m['model']} | {m['units_outside']} / {m['units_typed']} | "
                f"{100 * m['outside_share']:.0f} % |"
            )
    lines += [
        "",
        "| part | answered by | MAPE % | Acc@10 % | coverage | n |",
        "|---|---|---|---|---|---|",
    ]
    for p in res["parts"]:
        cov = "-" if p["coverage"] is None else f"{p['coverage']:.2f}"
        head = f"| {p['part']} | {p['answered_by']} | {p['mape']:.1f} | {p['acc10']:.0f}"
        lines.append(f"{head} | {cov} | {p['n']} |")
    return "\n".join(lines)


def write_report(out: Path, res: dict[str, Any], markdown: Callable[[dict[str, Any]], str]) -> None:
    """``OUT.json`` (the results) and ``OUT.md`` (their tables, also printed)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=1))
    md = markdown(res)
    out.with_suffix(".md").write_text(md + "\n")
    print(md)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=Path, nargs="+", required=True, help="dbs to train on")
    ap.add_argument("--eval", type=Path, nargs="+", required=True, help="dbs of the zoo models")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--gnn-steps", type=int, default=200)
    ap.add_argument("--kernels-only", action="store_true", help="fit the per-kernel model only")
    ap.add_argument("--out", type=Path, default=Path("runs/k16/unseen"))
    args = ap.parse_args(argv)
    write_report(args.out, run(args), markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
