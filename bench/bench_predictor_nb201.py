"""NB201 latency-predictor benchmark on the public tables (``shared/data/nb201/latency_ms.csv``).

For each device column and seed: 900 random cells for training (750 fit the models, 150 are the
validation part that sets the ensemble weights and calibrates the 90 % intervals), every other
cell with a positive latency for testing. Reports MAPE, Acc@10 %, Spearman (and interval coverage)
of gnn / gbdt / ensemble, next to the baseline of the issue: LightGBM (default parameters) on a
one-hot of the six cell ops, trained on the same 900 cells. Mean over seeds.

Cells whose output is cut off by ``none`` ops (341) are included in the test set, as in the
published numbers; their ensemble MAPE is also printed separately (``disc``).

    python bench/bench_predictor_nb201.py --columns titan_rtx_1,gold_6226,fpga,eyeriss --seeds 0
    python bench/bench_predictor_nb201.py            # all columns, seeds 0 1 2

Features used: generic graph features of the NB201 network (nasctl.predictor.features) plus the
genotype one-hot block (nasctl.predictor.genotype_onehot; learned from the arch strings, per
position).
Output: markdown table rows on stdout (and ``--out FILE``).
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "nb201" / "latency_ms.csv"
N_TRAIN, N_VAL = 900, 150
NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")


def load(path: Path) -> tuple[list[str], dict[str, np.ndarray]]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    cols = [c for c in rows[0] if c not in ("nb201_index", "arch")]
    table = {c: np.array([float(r[c]) if r[c] else np.nan for r in rows]) for c in cols}
    return [r["arch"] for r in rows], table


def onehot(archs: list[str]) -> np.ndarray:
    from nasctl.spaces import get_space

    sp = get_space("nb201")
    out = np.zeros((len(archs), 30), dtype=np.float32)
    for i, a in enumerate(archs):
        for k, op in enumerate(sp.parse(a)):
            out[i, 5 * k + NB201_OPS.index(op)] = 1.0
    return out


def examples(archs: list[str]) -> list:
    from nasctl.predictor.features import featurize
    from nasctl.predictor.inference import Example
    from nasctl.spaces import get_space

    sp = get_space("nb201")
    t0 = time.perf_counter()
    out = []
    for i, a in enumerate(archs):
        out.append(Example(featurize(sp.to_graph(a)), "nb201", a))
        if (i + 1) % 3000 == 0:
            print(
                f"  featurized {i + 1}/{len(archs)} ({time.perf_counter() - t0:.0f} s)",
                file=sys.stderr,
            )
    return out


def run_one(ex, oh, y, connected, seed: int, gnn_steps: int, quot) -> dict[str, dict[str, float]]:
    """One column, one seed. ``quot``: the GNN quotient of all cells (labels play no part in it,
    so it is built once and reused by every run)."""
    import lightgbm as lgb

    from nasctl.predictor.metrics import regression_metrics
    from nasctl.predictor.training import fit

    ok = np.flatnonzero(np.isfinite(y) & (y > 0))
    perm = np.random.default_rng(seed).permutation(ok)
    tr, te = perm[:N_TRAIN], perm[N_TRAIN:]
    fit_i, val_i = tr[: N_TRAIN - N_VAL], tr[N_TRAIN - N_VAL :]
    pred = fit(
        [ex[i] for i in fit_i],
        y[fit_i],
        [ex[i] for i in val_i],
        y[val_i],
        device_id="nb201",
        seed=seed,
        gnn_steps=gnn_steps,
    )
    logs = pred.member_logs(ex, quot)  # every cell at once; test rows picked below
    iv = pred.intervals(logs)
    res = {
        m: regression_metrics(y[te], np.exp(logs[m][te]), iv[m][0][te], iv[m][1][te])
        for m in ("gnn", "gbdt", "ensemble")
    }
    base = lgb.train(
        {"objective": "regression", "verbose": -1, "seed": seed, "num_threads": 2},
        lgb.Dataset(oh[tr], y[tr]),
    )
    res["onehot"] = regression_metrics(y[te], base.predict(oh[te]))
    disc = te[~connected[te]]
    if disc.size:
        res["ensemble"]["disc_mape"] = regression_metrics(y[disc], np.exp(logs["ensemble"][disc]))[
            "mape"
        ]
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--columns", default="", help="comma-separated columns (default: all)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--gnn-steps", type=int, default=150)
    ap.add_argument("--out", default="")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 on a shared box)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    from nasctl.spaces import get_space

    archs, table = load(DATA)
    cols = [c for c in args.columns.split(",") if c] or list(table)
    seeds = [int(s) for s in args.seeds.split(",")]
    t0 = time.perf_counter()
    ex = examples(archs)
    oh = onehot(archs)
    sp = get_space("nb201")
    connected = np.array([sp.connected(a) for a in archs])
    from nasctl.predictor.gnn import GNN_DEFAULTS, build_quotient

    quot = build_quotient([e.feats for e in ex], GNN_DEFAULTS["layers"])
    t_feat = time.perf_counter() - t0
    lines = [
        "| column | one-hot LGBM MAPE / Acc@10 / rho | gbdt | gnn | ensemble | ens. 90% cov. "
        "| disc. MAPE |",
        "|---|---|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    for c in cols:
        runs = [run_one(ex, oh, table[c], connected, s, args.gnn_steps, quot) for s in seeds]

        def cell(model: str, runs=runs) -> str:
            m = {
                k: float(np.mean([r[model][k] for r in runs]))
                for k in ("mape", "acc10", "spearman")
            }
            return f"{m['mape']:.2f} / {m['acc10']:.1f} / {m['spearman']:.4f}"

        cov = np.mean([r["ensemble"]["coverage"] for r in runs])
        disc = [r["ensemble"].get("disc_mape") for r in runs if r["ensemble"].get("disc_mape")]
        d = f"{np.mean(disc):.1f}" if disc else "-"
        line = (
            f"| {c} | {cell('onehot')} | {cell('gbdt')} | {cell('gnn')} | "
            f"**{cell('ensemble')}** | {cov:.3f} | {d} |"
        )
        lines.append(line)
        print(line, flush=True)
    total = time.perf_counter() - t0
    foot = (
        f"\n{len(cols)} columns x seeds {seeds}; features of 15,625 graphs {t_feat:.0f} s; "
        f"total {total:.0f} s; MAPE % / Acc@10 % / Spearman, mean over seeds."
    )
    print(foot)
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n" + foot + "\n")


if __name__ == "__main__":
    main()
