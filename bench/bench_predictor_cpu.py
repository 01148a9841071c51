"""Predictor benchmarks on the cpu device (issue 4 targets "Own measurements", "Unseen families").

Data: ``bench/collect_cpu_data.sh`` (runs/bench/cpu.db: mbconv, resnet, kernels and the zoo of
``bench/zoo.py`` measured with ``nasctl profile``; runs/bench/spread_<k>.db: the same 5
architectures profiled in 5 separate runs).

1. **Run-to-run spread**: for each architecture in every spread db, the spread of its 5 medians:
   ``spread_mape`` = mean over (architecture, run) of |median_run - mean| / mean (the MAPE a
   perfect predictor of the mean would get against one run's label), plus CV and max/min - 1.
2. **Own measurements**: ``nasctl.predictor.training.train`` on the mbconv + resnet rows (its own
   70/15/15 split), test metrics of gnn, gbdt and ensemble, per space; target: ensemble
   MAPE <= 1.5 x ``spread_mape``. Mean over ``--seeds``.
3. **Unseen families**: ``fit`` on mbconv + resnet + kernels rows (85 % train, 15 % validation
   for the ensemble weights and intervals), predict every zoo model (rows whose ``model`` is an
   ONNX file); per model measured vs predicted (ensemble, gbdt, gnn, per-layer sum), MAPE; target
   MAPE <= 15 %, no model worse than 35 %. Ablation: the same without the kernels rows.

    .venv/bin/python bench/bench_predictor_cpu.py                      # defaults: runs/bench
    .venv/bin/python bench/bench_predictor_cpu.py --seeds 0 --json     # one seed, JSON on stdout

Writes ``<out>.md`` (tables for docs/benchmarks.md) and ``<out>.json``. Timings come from a
shared, loaded 2-core machine; the measurements used the thread-CPU-time clock (see the script).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from nasctl.datasets.store import Store
from nasctl.predictor import inference, training
from nasctl.predictor.metrics import regression_metrics

SPACES = ("mbconv", "resnet")
MEMBERS = ("ensemble", "gbdt", "gnn")
BASELINES = ("layerwise", "roofline")  # per-layer model alone; MACs/bytes roofline alone
KEYS = ("mape", "rmspe", "acc5", "acc10", "spearman", "kendall", "coverage", "n")


# -- data ---------------------------------------------------------------------------------------

_T0 = time.perf_counter()


def log(msg: str) -> None:
    """Progress on stderr with elapsed seconds."""
    print(f"[{time.perf_counter() - _T0:7.1f} s] {msg}", file=sys.stderr, flush=True)


def load_rows(db: Path, device: str) -> tuple[str, list[Any]]:
    """(device id, training rows with a positive latency) of ``db``."""
    with Store(db) as store:
        dev = store.resolve_device_id(device)
        rows = [r for r in store.training_rows(dev) if r.latency_ms and r.latency_ms > 0]
    for r in rows:
        _ = r.graph  # build graphs while the store is known good
    return dev, rows


def to_examples(rows: list[Any]) -> list[inference.Example]:
    """Featurize rows as ``training.train`` does (raw node features kept where layers exist)."""
    return training.featurize_rows(rows, lambda stage, i, n: None)


# -- 1. run-to-run spread -----------------------------------------------------------------------


def spread(dbs: list[Path], device: str) -> dict[str, Any]:
    """Spread of the medians of the architectures measured in every one of ``dbs``."""
    runs: dict[str, list[float]] = {}
    labels: dict[str, str] = {}
    for db in dbs:
        _, rows = load_rows(db, device)
        for r in rows:
            runs.setdefault(r.arch_hash, []).append(float(r.latency_ms))
            labels[r.arch_hash] = f"{r.space}:{r.genotype}"
    per_arch = []
    for h, xs in runs.items():
        if len(xs) != len(dbs):
            continue
        mean = statistics.fmean(xs)
        per_arch.append({
            "arch": labels[h], "medians_ms": xs, "mean_ms": mean,
            "mape_vs_mean": 100 * statistics.fmean(abs(x - mean) / mean for x in xs),
            "cv": 100 * statistics.pstdev(xs) / mean, "max_over_min": 100 * (max(xs) / min(xs) - 1),
        })  # fmt: skip
    if not per_arch:
        return {"runs": len(dbs), "archs": 0}
    agg = {
        k: statistics.fmean(a[k] for a in per_arch) for k in ("mape_vs_mean", "cv", "max_over_min")
    }
    return {"runs": len(dbs), "archs": len(per_arch), **agg, "per_arch": per_arch}


# -- 2. own measurements ------------------------------------------------------------------------


def own(rows: list[Any], dev: str, seeds: list[int]) -> dict[str, Any]:
    """``training.train`` on mbconv + resnet rows; test metrics per model and space, per seed."""
    rows = [r for r in rows if r.space in SPACES]
    per_seed = []
    for seed in seeds:
        log(f"own: training on {len(rows)} mbconv+resnet rows, seed {seed}")
        t0 = time.perf_counter()
        pred, metrics = training.train(rows, dev, seed=seed)
        train_s = time.perf_counter() - t0
        _, _, test = training.split_indices(len(rows), seed)  # the split train() used
        by_space = {}
        for space in SPACES:
            sel = [rows[i] for i in test if rows[i].space == space]
            if sel:
                p = pred.predict([r.graph for r in sel])
                by_space[space] = _metrics([r.latency_ms for r in sel], p)
        per_seed.append(
            {"seed": seed, "train_s": train_s, "metrics": metrics, "by_space": by_space}
        )
    return {"rows": len(rows), "per_seed": per_seed,
            "mean": _mean_metrics([s["metrics"] for s in per_seed], ("gnn", "gbdt", "ensemble")),
            "mean_by_space": _mean_metrics([s["by_space"] for s in per_seed], SPACES)}  # fmt: skip


# -- 3. unseen families -------------------------------------------------------------------------


def unseen(rows: list[Any], dev: str, seeds: list[int], spaces: tuple[str, ...]) -> dict[str, Any]:
    """Fit on rows of ``spaces``; predict the zoo rows (``model`` set, no space)."""
    train_rows = [r for r in rows if r.space in spaces]
    zoo = sorted((r for r in rows if r.space is None and r.model), key=lambda r: r.latency_ms)
    if not zoo:
        return {"error": "no zoo measurements in the db (run bench/collect_cpu_data.sh)"}
    ex_all = to_examples(train_rows)
    y_all = np.array([float(r.latency_ms) for r in train_rows])
    zoo_ex = inference.examples_from_graphs([r.graph for r in zoo], zoo[0].precision)
    y_zoo = np.array([float(r.latency_ms) for r in zoo])
    per_seed = []
    for seed in seeds:
        idx = list(range(len(train_rows)))
        random.Random(seed).shuffle(idx)
        n_val = max(5, len(idx) * 15 // 100)
        va, tr = idx[:n_val], idx[n_val:]
        log(f"unseen: fit on {len(tr)} rows of {'+'.join(spaces)}, seed {seed}")
        t0 = time.perf_counter()
        pred = training.fit([ex_all[i] for i in tr], y_all[tr], [ex_all[i] for i in va], y_all[va],
                       device_id=dev, seed=seed)  # fmt: skip
        train_s = time.perf_counter() - t0
        logs = pred.member_logs(zoo_ex)
        lo, hi = pred.intervals(logs)["ensemble"]
        lw = pred.layerwise.predict_ms([e.feats for e in zoo_ex]) if pred.layerwise else None
        iv = {m: (lo, hi) if m == "ensemble" else (None, None) for m in MEMBERS}
        per_seed.append({
            "seed": seed, "train_s": train_s, "weights": pred.meta["weights"],
            "pred": {m: np.exp(logs[m]).tolist() for m in MEMBERS},
            "low": lo.tolist(), "high": hi.tolist(),
            "layerwise": None if lw is None else np.asarray(lw).tolist(),
            "metrics": {m: regression_metrics(y_zoo, np.exp(logs[m]), *iv[m]) for m in MEMBERS},
        })  # fmt: skip
        if lw is not None:
            per_seed[-1]["metrics"]["layerwise"] = regression_metrics(y_zoo, np.asarray(lw))
            roof = [roofline_ms(r.graph, pred.layerwise.meta) for r in zoo]
            per_seed[-1]["roofline"] = roof
            per_seed[-1]["metrics"]["roofline"] = regression_metrics(y_zoo, np.asarray(roof))
    return {"spaces": list(spaces), "train_rows": len(train_rows),
            "models": _zoo_table(zoo, y_zoo, per_seed), "per_seed": per_seed,
            "mean": _mean_metrics([s["metrics"] for s in per_seed], (*MEMBERS, *BASELINES)),
            }  # fmt: skip


def roofline_ms(graph: Any, meta: dict[str, float]) -> float:
    """Baseline: sum over nodes of max(MACs / peak, bytes / bandwidth) (ms), with the peak and
    bandwidth the per-layer model measured on the device (its ``meta``); no learning."""
    from nasctl.arch.costs import graph_costs

    peak, bw = meta["peak_macs_per_ms"], meta["bytes_per_ms"]
    total = 0.0
    for c in graph_costs(graph).per_node.values():
        nbytes = c["act_read_bytes"] + c["act_write_bytes"] + c["weight_bytes"]
        total += max(c["macs"] / peak, nbytes / bw)
    return total


def _zoo_table(zoo: list[Any], y: np.ndarray, per_seed: list[dict[str, Any]]) -> list[dict]:
    from nasctl.arch.costs import graph_costs

    def mean(i: int, key: str, sub: str | None = None) -> float:
        return float(np.mean([(s[key][sub] if sub else s[key])[i] for s in per_seed]))

    out = []
    for i, r in enumerate(zoo):
        ens = mean(i, "pred", "ensemble")
        row = {"model": Path(r.model).stem, "measured_ms": float(y[i]), "ensemble_ms": ens,
               "err_pct": 100 * (ens - y[i]) / y[i], "gbdt_ms": mean(i, "pred", "gbdt"),
               "gnn_ms": mean(i, "pred", "gnn"),
               "low_ms": mean(i, "low"), "high_ms": mean(i, "high"),
               "gmacs": graph_costs(r.graph).total["macs"] / 1e9, "status": r.status,
               "cv_pct": 100 * (r.cv or 0.0)}  # fmt: skip
        row["layerwise_ms"] = mean(i, "layerwise") if per_seed[0]["layerwise"] else None
        row["roofline_ms"] = mean(i, "roofline") if per_seed[0].get("roofline") else None
        row["in_interval"] = row["low_ms"] <= row["measured_ms"] <= row["high_ms"]
        out.append(row)
    return out


# -- helpers ------------------------------------------------------------------------------------


def _metrics(y: list[float], preds: list[Any]) -> dict[str, Any]:
    return regression_metrics(np.array(y), np.array([p.latency_ms for p in preds]),
                              np.array([p.low_ms for p in preds]),
                              np.array([p.high_ms for p in preds]))  # fmt: skip


def _mean_metrics(items: list[dict[str, Any]], names: tuple[str, ...]) -> dict[str, Any]:
    out = {}
    for name in names:
        got = [it[name] for it in items if name in it]
        if got:
            out[name] = {k: _mean([g.get(k) for g in got]) for k in KEYS}
    return out


def _mean(xs: list[Any]) -> float | None:
    xs = [x for x in xs if x is not None]
    return float(np.mean(xs)) if xs else None


def _worst(u: dict[str, Any]) -> float:
    return max(abs(r["err_pct"]) for r in u["models"])


def _f(x: Any, nd: int = 1) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


# -- report -------------------------------------------------------------------------------------


def markdown(res: dict[str, Any]) -> str:
    sp, own_r = res["spread"], res["own"]
    lines = [f"Device `{res['device_id']}`; db `{res['db']}`; seeds {res['seeds']}; "
             f"load average during collection {res['load']}.", ""]  # fmt: skip
    if sp.get("archs"):
        lines += ["**Run-to-run spread** (same architectures, separate runs):", "",
                  "| architecture | mean ms | spread MAPE % | CV % | max/min-1 % |",
                  "|---|---|---|---|---|"]  # fmt: skip
        lines += [f"| {a['arch'][:60]} | {a['mean_ms']:.2f} | {a['mape_vs_mean']:.2f} | "
                  f"{a['cv']:.2f} | {a['max_over_min']:.2f} |" for a in sp["per_arch"]]  # fmt: skip
        lines += [
            f"| **mean ({sp['archs']} archs x {sp['runs']} runs)** | | "
            f"**{sp['mape_vs_mean']:.2f}** | {sp['cv']:.2f} | {sp['max_over_min']:.2f} |",
            "",
        ]
    if own_r:
        tgt = 1.5 * sp["mape_vs_mean"] if sp.get("archs") else None
        lines += [f"**Own measurements** (mbconv + resnet, {own_r['rows']} rows, held-out test; "
                  f"target MAPE <= 1.5 x spread = {_f(tgt, 2)} %):", "",
                  "| model | MAPE % | RMSPE % | Acc@5 % | Acc@10 % | Spearman | Kendall | "
                  "coverage (90 %) | n |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        rows = [*own_r["mean"].items(), *((f"ensemble, {k} only", v) for k, v in
                                          own_r["mean_by_space"].items())]  # fmt: skip
        for name, m in rows:
            lines.append(f"| {name} | {_f(m['mape'], 2)} | {_f(m['rmspe'], 2)} | {_f(m['acc5'])} "
                         f"| {_f(m['acc10'])} | {_f(m['spearman'], 3)} | {_f(m['kendall'], 3)} "
                         f"| {_f(m['coverage'], 2)} | {_f(m['n'], 0)} |")  # fmt: skip
        lines.append("")
    for key, title in (("unseen", "with kernels"), ("unseen_no_kernels", "ablation: no kernels")):
        u = res.get(key)
        if not u or "error" in u:
            continue
        m = u["mean"]
        lines += [f"**Unseen families** ({title}; trained on {'+'.join(u['spaces'])}, "
                  f"{u['train_rows']} rows): ensemble MAPE {_f(m['ensemble']['mape'])} %, "
                  f"gbdt {_f(m['gbdt']['mape'])} %, gnn {_f(m['gnn']['mape'])} %, per-layer sum "
                  f"{_f(m.get('layerwise', {}).get('mape'))} %, roofline baseline "
                  f"{_f(m.get('roofline', {}).get('mape'))} %, max |error| {_worst(u):.1f} %, "
                  f"Spearman {_f(m['ensemble']['spearman'], 3)}, interval coverage "
                  f"{_f(m['ensemble']['coverage'], 2)}", ""]  # fmt: skip
        if key != "unseen":
            continue
        lines += [
            "| model | GMACs | measured ms | ensemble ms | error % | 90 % interval ms | "
            "gbdt ms | gnn ms | per-layer sum ms | roofline ms |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in sorted(u["models"], key=lambda r: -abs(r["err_pct"])):
            lines.append(f"| {r['model']} | {r['gmacs']:.3f} | {r['measured_ms']:.2f} | "
                         f"{r['ensemble_ms']:.2f} | {r['err_pct']:+.1f} | "
                         f"{r['low_ms']:.1f}-{r['high_ms']:.1f} | {r['gbdt_ms']:.2f} | "
                         f"{r['gnn_ms']:.2f} | {_f(r['layerwise_ms'], 2)} | "
                         f"{_f(r.get('roofline_ms'), 2)} |")  # fmt: skip
        lines.append("")
    return "\n".join(lines)


def load_average(log: Path) -> str:
    """min-max of the 1-minute load averages recorded in the collection log."""
    vals = []
    if log.exists():
        for line in log.read_text().splitlines():
            if line.startswith("###") and " load " in line:
                vals.append(float(line.split(" load ")[1].split()[0]))
    return (
        f"{min(vals):.1f}-{max(vals):.1f} (median {statistics.median(vals):.1f}) on 2 cores"
        if vals
        else "unknown"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", type=Path, default=Path("runs/bench/cpu.db"))
    ap.add_argument("--spread", type=Path, nargs="*", default=None,
                    help="spread dbs (default: spread_*.db beside --db)")  # fmt: skip
    ap.add_argument("--device", default="cpu", help="device name or id in the db")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--skip", nargs="*", default=[], choices=["own", "unseen", "ablation"])
    ap.add_argument("--out", type=Path, default=Path("runs/bench/predictor_cpu"))
    ap.add_argument("--json", action="store_true", help="print the JSON result on stdout")
    args = ap.parse_args(argv)
    if not args.db.exists():
        print(f"error: {args.db} not found; run bench/collect_cpu_data.sh first", file=sys.stderr)
        return 1
    dev, rows = load_rows(args.db, args.device)
    log(f"{len(rows)} rows of {dev} from {args.db}")
    dbs = args.spread if args.spread is not None else sorted(args.db.parent.glob("spread_*.db"))
    res: dict[str, Any] = {"db": str(args.db), "device_id": dev, "seeds": args.seeds,
                           "load": load_average(args.db.parent / "collect.log"),
                           "counts": {str(s): sum(r.space == s for r in rows)
                                      for s in {r.space for r in rows}}}  # fmt: skip
    res["spread"] = spread(dbs, dev)
    res["own"] = None if "own" in args.skip else own(rows, dev, args.seeds)
    if "unseen" not in args.skip:
        res["unseen"] = unseen(rows, dev, args.seeds, (*SPACES, "kernels"))
    if "ablation" not in args.skip:
        res["unseen_no_kernels"] = unseen(rows, dev, args.seeds, SPACES)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    md = markdown(res)
    args.out.with_suffix(".md").write_text(md + "\n")
    print(json.dumps(res, indent=2, default=str) if args.json else md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
