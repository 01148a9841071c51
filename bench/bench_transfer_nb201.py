"""Few-shot latency transfer on NB201 under HELP's protocol (issue 13).

Sources: all cells of the source devices; targets: ``--n`` rows drawn from outside NB201 indices
900-1899 (random, or ``informative`` picks from 2,000 random candidates there); test: indices
900-1899 minus the target's bottom and top 10 % latencies; Spearman rho, mean over targets and
seeds. The model is :func:`nasctl.predictor.transfer.fit_transfer`, the code path of
``nasctl train-predictor --transfer``; the source models (and the latent model) are fit once
(they do not depend on the target) and handed to it. ``--pool help`` draws the target rows as
HELP's code does instead (``loader.py``: from indices 0-899 minus the target's bottom and top
10 % there). Reference rows:

* ``ridge only``: the same fit's ridge head without the latent model (the default before);

* ``floor``: ridge (lambda 1, standardized) on the sources' *measured* log latencies (table
  lookups, the issue's floor);
* ``ceiling``: the same ridge fit on every target row outside 900-1899 (what a linear head on the
  sources can reach at best; pixel2's whole-ms latencies cap it near 0.80).

    python bench/bench_transfer_nb201.py --split help --seeds 10
    python bench/bench_transfer_nb201.py --split kinds --seeds 10

Output: markdown rows on stdout; ``--time`` instead times one full transfer (source models
included; run it alone, pinned, under the cpu lock); ``--ceilings`` instead prints what caps rho
per target (label resolution, label noise between cells that compute the same thing, a direct
fit on all of the target's rows outside the test range).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nasctl.predictor import transfer  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "nb201" / "latency_ms.csv"
SPLITS = {
    "help": (
        [
            "1080ti_1",
            "1080ti_32",
            "1080ti_256",
            "silver_4114",
            "silver_4210r",
            "samsung_a50",
            "pixel3",
            "essential_ph_1",
            "samsung_s7",
        ],
        ["titan_rtx_256", "gold_6226", "fpga", "pixel2", "raspi4", "eyeriss"],
    ),
    # sources: GPUs only; targets: CPUs, phones, Raspberry Pi, ASIC, FPGA
    "kinds": (
        [f"{g}_{b}" for g in ("1080ti", "2080ti", "titanx", "titanxp") for b in (1, 32, 256)],
        ["gold_6226", "silver_4114", "pixel3", "samsung_a50", "raspi4", "eyeriss", "fpga"],
    ),
}


def load(path: Path) -> tuple[np.ndarray, list[str], dict[str, np.ndarray]]:
    with open(path) as f:
        rows = list(csv.DictReader(f))
    idx = np.array([int(r["nb201_index"]) for r in rows])
    cols = [c for c in rows[0] if c not in ("nb201_index", "arch")]
    table = {c: np.array([float(r[c] or "nan") for r in rows]) for c in cols}
    return idx, [r["arch"] for r in rows], table


def rows_of(ids: np.ndarray, archs: list[str], ms: np.ndarray) -> list[SimpleNamespace]:
    return [
        SimpleNamespace(
            arch_hash=str(i),
            latency_ms=float(ms[i]),
            space="nb201",
            genotype=archs[i],
            precision="fp32",
            graph=None,
        )
        for i in ids
    ]


def ridge_rho(Z: np.ndarray, tr: np.ndarray, y: np.ndarray, te: np.ndarray) -> float:
    h = transfer.fit_head(Z[tr], y[tr], np.zeros(Z.shape[1]), np.ones(Z.shape[1]), 1.0)
    return float(spearmanr(transfer.head_predict(h, Z[te]), y[te]).statistic)


def _nnls_head(Str: np.ndarray, y: np.ndarray, Ste: np.ndarray, lam: float = 1.0) -> np.ndarray:
    from scipy.optimize import nnls

    mu, sd = Str.mean(0), Str.std(0) + 1e-9
    A, k = (Str - mu) / sd, Str.shape[1]
    w, _ = nnls(np.vstack([A, np.sqrt(lam) * np.eye(k)]), np.r_[y - y.mean(), np.zeros(k)])
    return ((Ste - mu) / sd) @ w + y.mean()


def _ridge(Str: np.ndarray, y: np.ndarray, Ste: np.ndarray, lam: float, ref: np.ndarray) -> Any:
    mu, sd = ref.mean(0), ref.std(0) + 1e-9
    return transfer.head_predict(transfer.fit_head(Str, y, mu, sd, lam), Ste)


def _loo_ridge(Str: np.ndarray, y: np.ndarray, Ste: np.ndarray, ref: np.ndarray) -> Any:
    mu, sd = ref.mean(0), ref.std(0) + 1e-9
    return transfer.head_predict(transfer.fit_head(Str, y, mu, sd), Ste)


def _pc_bayes(Str: np.ndarray, y: np.ndarray, Ste: np.ndarray, ref: np.ndarray) -> Any:
    """Device embedding: the target's weights in the sources' principal-component basis get a
    Gaussian prior fit on the source devices' own coordinates (noise 0.1 in standardized units)."""
    mu, sd = ref.mean(0), ref.std(0) + 1e-9
    Z = (ref - mu) / sd
    _, _, Vt = np.linalg.svd(Z - Z.mean(0), full_matrices=False)
    P_tr, P_te = ((Str - mu) / sd) @ Vt.T, ((Ste - mu) / sd) @ Vt.T
    mw, Cw = Vt.mean(1), np.cov(Vt) + 1e-3 * np.eye(Vt.shape[0])
    t = (y - y.mean()) / (y.std() + 1e-9)
    A = P_tr - P_tr.mean(0)
    Ci = np.linalg.inv(Cw)
    w = np.linalg.solve(A.T @ A / 0.1 + Ci, A.T @ t / 0.1 + Ci @ mw)
    return (P_te - P_tr.mean(0)) @ w


HEADS = {
    "ridge 1": lambda a, y, b, r: _ridge(a, y, b, 1.0, r),
    "ridge 0.1": lambda a, y, b, r: _ridge(a, y, b, 0.1, r),
    "ridge 10": lambda a, y, b, r: _ridge(a, y, b, 10.0, r),
    "ridge, lambda by LOO (kept)": _loo_ridge,
    "non-negative ridge": lambda a, y, b, r: _nnls_head(a, y, b),
    "PC embedding + source prior": _pc_bayes,
}


def heads_table(
    src: Any,
    S_test: np.ndarray,
    table: dict,
    targets: list,
    pool: np.ndarray,
    test_all: np.ndarray,
    archs: list[str],
    seeds: int,
    sizes: list[int],
) -> None:
    """Alternative heads on the same source-model predictions, random picks."""
    ref = np.vstack([S for S, _ in src.own.values()])
    res: dict[tuple[str, int], list[float]] = {}
    for t in targets:
        y = np.log(table[t])
        lat = table[t][test_all]
        lo, hi = np.quantile(lat, [0.1, 0.9])
        keep = (lat > lo) & (lat < hi)
        for seed in range(seeds):
            cand = np.random.default_rng(seed).choice(pool, 2000, replace=False)
            for n in sizes:
                tr = cand[:n]
                rows = rows_of(tr, archs, table[t])
                S_tr = src.logs(transfer.row_features(rows), rows)
                for name, head in HEADS.items():
                    p = head(S_tr, y[tr], S_test[keep], ref)
                    rho = float(spearmanr(p, y[test_all[keep]]).statistic)
                    res.setdefault((name, n), []).append(rho)
    print(f"\n| head (random picks) | {' | '.join(f'@{n}' for n in sizes)} |")
    print("|---" * (len(sizes) + 1) + "|")
    for name in HEADS:
        print(f"| {name} | {' | '.join(f'{np.mean(res[(name, n)]):.3f}' for n in sizes)} |")


def _computation(arch: str) -> str | None:
    """What an NB201 cell computes (None: its output is cut off): edges with ``none`` and
    edges out of dead nodes dropped, terms sorted, so isomorphic cells compare equal."""
    val: dict[int, str | None] = {0: "in"}
    for j, node in enumerate(arch.split("+"), start=1):
        terms = []
        for e in node.strip("|").split("|"):
            op, src = e.split("~")
            if op != "none" and val[int(src)] is not None:
                terms.append(f"{op}({val[int(src)]})")
        val[j] = "+".join(sorted(terms)) or None
    return val[3]


def ceilings(
    targets: list[str], archs: list[str], table: dict, pool: np.ndarray, te: np.ndarray
) -> None:
    """Per target, what caps rho on its test set: (1) the label resolution (rho of a perfect
    predictor against labels rounded to their step), (2) label noise (median |log ratio| of
    cells that compute the same thing), (3) a direct LightGBM fit on all of the target's rows
    outside 900-1899 (graph features + genotype one-hot: what ~14,600 rows of its own give)."""
    from nasctl.predictor.gbdt import GBDTModel
    from nasctl.predictor.genotype_onehot import GenotypeEncoder

    groups: dict[str, list[int]] = {}
    for i, a in enumerate(archs):
        c = _computation(a)
        if c is not None:
            groups.setdefault(c, []).append(i)
    pairs = np.array([g[:2] for g in groups.values() if len(g) > 1])
    rows = rows_of(np.arange(len(archs)), archs, table[targets[0]])
    enc = GenotypeEncoder.fit([r.space for r in rows], [r.genotype for r in rows])
    feats = transfer.row_features(rows)
    X = transfer.design(enc, feats, [r.space for r in rows], [r.genotype for r in rows])
    print(f"\n{len(pairs)} pairs of NB201 cells that compute the same thing")
    print(
        "| target | distinct test labels | rho, perfect vs rounded labels | same-computation "
        "cells, median abs log ratio | direct fit on all its rows outside the test range |"
    )
    print("|---|---|---|---|---|")
    out = []
    for t in targets:
        ms = table[t]
        lat = ms[te]
        lo, hi = np.quantile(lat, [0.1, 0.9])
        keep = te[(lat > lo) & (lat < hi)]
        u = np.unique(ms[keep])
        step = float(np.min(np.diff(u))) if len(u) > 1 else 1.0
        rng = np.random.default_rng(0)
        cap = np.mean(
            [
                spearmanr(
                    ms[keep] + rng.uniform(-step / 2, step / 2, len(keep)), ms[keep]
                ).statistic
                for _ in range(20)
            ]
        )
        noise = float(np.median(np.abs(np.log(ms[pairs[:, 0]] / ms[pairs[:, 1]]))))
        y = np.log(ms)
        m = GBDTModel.fit(X[pool], y[pool], seed=0, rounds=transfer.SOURCE_ROUNDS)
        direct = float(spearmanr(m.predict_log(X[keep]), y[keep]).statistic)
        out.append(direct)
        print(f"| {t} | {len(u)} | {cap:.3f} | {noise:.3f} | {direct:.3f} |", flush=True)
    print(f"| **mean** | | | | **{np.mean(out):.3f}** |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--split", choices=sorted(SPLITS), default="help")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--sizes", default="10,20")
    ap.add_argument("--time", action="store_true", help="only time one full transfer")
    ap.add_argument("--heads", action="store_true", help="only compare heads (random picks)")
    ap.add_argument("--ceilings", action="store_true", help="only what caps rho per target")
    ap.add_argument(
        "--pool", choices=("outside", "help"), default="outside", help="where target rows come from"
    )
    args = ap.parse_args()
    src_names, targets = SPLITS[args.split]
    idx, archs, table = load(DATA)
    n_all = len(idx)
    pool = np.flatnonzero((idx < 900) | (idx >= 1900))
    test_all = np.flatnonzero((idx >= 900) & (idx < 1900))
    every = np.arange(n_all)
    source_rows = {d: rows_of(every, archs, table[d]) for d in src_names}
    print(f"cpu cores visible: {os.cpu_count()}; load average: {os.getloadavg()[0]:.1f}")
    first = np.flatnonzero(idx < 900)
    if args.ceilings:
        ceilings(targets, archs, table, pool, test_all)
        return
    if args.time:
        stages: list[tuple[str, float]] = []
        t0 = time.perf_counter()
        tr = np.random.default_rng(0).choice(pool, 10, replace=False)
        _, rep = transfer.fit_transfer(
            rows_of(tr, archs, table[targets[0]]),
            source_rows,
            device_id=targets[0],
            progress=lambda stage, i, n: stages.append((stage, time.perf_counter())),
        )
        total = time.perf_counter() - t0
        marks = [t0] + [t for _, t in stages] + [t0 + total]
        parts = ", ".join(
            f"{st} {b - a:.1f}"
            for (st, _), a, b in zip(stages, marks[1:-1], marks[2:], strict=True)
        )
        print(f"full transfer (source models + latent model + head): {total:.1f} s ({parts})")
        print(f"load average after: {os.getloadavg()[0]:.1f}")
        return
    t0 = time.perf_counter()
    shared = transfer.shared_sources(source_rows, {"nb201"}, "target")
    src = transfer.fit_sources(shared, seed=0)
    print(f"source models: {time.perf_counter() - t0:.1f} s")
    logZ = np.column_stack([np.log(table[d]) for d in src_names])
    logZ = (logZ - logZ.mean(0)) / logZ.std(0)
    test_rows = rows_of(test_all, archs, table[targets[0]])
    X_test = src.design(transfer.row_features(test_rows), test_rows)
    S_test = src.logs_of(X_test)
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.heads:
        heads_table(src, S_test, table, targets, pool, test_all, archs, args.seeds, sizes)
        return
    res: dict[tuple[str, str, int, str], list[float]] = {}
    cover: dict[str, list[float]] = {}
    for t in targets:
        y_ms = table[t]
        y = np.log(y_ms)
        lat = y_ms[test_all]
        lo, hi = np.quantile(lat, [0.1, 0.9])
        keep = (lat > lo) & (lat < hi)
        te = test_all[keep]
        pool_t = pool
        if args.pool == "help":  # HELP's loader: first 900 minus the target's 10 % tails there
            lo1, hi1 = np.quantile(y_ms[first], [0.1, 0.9])
            pool_t = first[(y_ms[first] > lo1) & (y_ms[first] < hi1)]
        # the ceiling: the ridge on every target row outside 900-1899
        res.setdefault((t, "ceiling", 0, "all"), []).append(ridge_rho(logZ, pool, y, te))
        for seed in range(args.seeds):
            rng = np.random.default_rng(seed)
            cand = rng.choice(pool_t, min(2000, len(pool_t)), replace=False)
            cand_rows = rows_of(cand, archs, y_ms)
            S_cand = src.logs(transfer.row_features(cand_rows), cand_rows)
            for n in sizes:
                for pick in ("random", "informative"):
                    tr = cand[:n] if pick == "random" else cand[transfer.informative(S_cand, n)]
                    pred, _ = transfer.fit_transfer(
                        rows_of(tr, archs, y_ms), device_id=t, seed=seed, sources=src
                    )
                    logs, half = pred.log_ms_half(X_test[keep], S_test[keep])
                    rho = float(spearmanr(logs, y[te]).statistic)
                    res.setdefault((t, "transfer", n, pick), []).append(rho)
                    rho = float(spearmanr(pred.head_log(S_test[keep]), y[te]).statistic)
                    res.setdefault((t, "ridge only", n, pick), []).append(rho)
                    res.setdefault((t, "floor", n, pick), []).append(ridge_rho(logZ, tr, y, te))
                    if pick == "random":
                        inside = np.abs(logs - y[te]) <= half
                        cover.setdefault(f"{t}@{n}", []).append(float(inside.mean()))
                        cover.setdefault(f"{t}@{n}:q", []).append(float(np.mean(half)))
        got = " ".join(
            f"{k[1]}/{k[3]}@{k[2]}={np.mean(v):.3f}" for k, v in res.items() if k[0] == t
        )
        print(f"# {t} done: {got}", file=sys.stderr, flush=True)
    methods = ("transfer", "ridge only", "floor")
    cols = [(m, n, p) for n in sizes for m in methods for p in ("random", "informative")]
    head = " | ".join(f"{m} {p[:4]} @{n}" for m, n, p in cols)
    print(f"\n| target | {head} | ceiling | 90% cover @{sizes[0]} | x/÷ @{sizes[0]} |")
    print("|---" * (len(cols) + 4) + "|")
    means = {c: [] for c in cols}
    ceil = []
    for t in targets:
        vals = []
        for c in cols:
            v = float(np.mean(res[(t, c[0], c[1], c[2])]))
            means[c].append(v)
            vals.append(f"{v:.3f}")
        ceil.append(res[(t, "ceiling", 0, "all")][0])
        cv = np.mean(cover[f"{t}@{sizes[0]}"])
        fac = np.exp(np.mean(cover[f"{t}@{sizes[0]}:q"]))
        print(f"| {t} | {' | '.join(vals)} | {ceil[-1]:.3f} | {cv:.2f} | {fac:.2f} |")
    allcv = np.mean([np.mean(cover[f"{t}@{sizes[0]}"]) for t in targets])
    mv = " | ".join(f"**{np.mean(means[c]):.3f}**" for c in cols)
    print(f"| **mean** | {mv} | {np.mean(ceil):.3f} | {allcv:.2f} | |")


if __name__ == "__main__":
    main()
