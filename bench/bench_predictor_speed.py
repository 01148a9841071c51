"""Predictor speed: `predict` over 10,000 genotypes, and training on 10,000 measured graphs.

    python bench/bench_predictor_speed.py                 # predict timings (trains a small one)
    python bench/bench_predictor_speed.py --train 10000   # also time training on 10,000 graphs

Predict is timed end to end from genotype strings (NB201, the space's own ``to_graph``), with a
breakdown: graph construction, features, GBDT, GNN (WL quotient + forward), and again warm (every
genotype asked before: cached answers). Training is ``nasctl.predictor.api.train`` on NB201 cells
with a public latency column (features included, as `nasctl train-predictor` runs it).
Prints markdown rows.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "nb201" / "latency_ms.csv"


class Row:
    """TrainingRow-like record built from the public table."""

    def __init__(self, space, arch: str, latency_ms: float) -> None:
        self.space, self.genotype, self.latency_ms = "nb201", arch, latency_ms
        self._sp, self.layers, self.precision = space, [], "fp32"

    @property
    def graph(self):  # noqa: ANN201
        return self._sp.to_graph(self.genotype)


def rows(column: str, n: int, seed: int) -> list[Row]:
    from nasctl.search.spaces import get_space

    sp = get_space("nb201")
    with open(DATA, newline="") as f:
        table = [(r["arch"], float(r[column])) for r in csv.DictReader(f) if r[column]]
    random.Random(seed).shuffle(table)
    return [Row(sp, a, y) for a, y in table[:n] if y > 0]


def timed(fn, *a, **k):  # noqa: ANN001, ANN202
    t = time.perf_counter()
    out = fn(*a, **k)
    return out, time.perf_counter() - t


def bench_predict(n: int, column: str, train_n: int) -> list[str]:
    from nasctl.predictor import api
    from nasctl.predictor.features import featurize
    from nasctl.search.spaces import get_space

    pred, _ = api.train(rows(column, train_n, 0), "replay-nb201-" + column, gnn_steps=100)
    sp = get_space("nb201")
    rng = random.Random(1)
    every = sp.enumerate()
    genos = rng.sample(every, n) if n <= len(every) else [sp.sample(rng) for _ in range(n)]
    graphs, t_graph = timed(lambda: [sp.to_graph(g) for g in genos])
    feats, t_feat = timed(lambda: [featurize(g) for g in graphs])
    ex = [api.Example(f, "nb201", g) for f, g in zip(feats, genos, strict=True)]
    X, t_design = timed(pred.design, ex)
    _, t_gbdt = timed(pred.gbdt.predict_log, X)
    _, t_gnn = timed(pred.gnn.predict_log, feats, X)
    fresh = api.Predictor(pred.meta, pred.gbdt, pred.gnn, pred.layerwise, pred.encoder)
    _, t_cold = timed(fresh.predict_genotypes, "nb201", genos, sp.to_graph)
    _, t_warm = timed(fresh.predict_genotypes, "nb201", genos, sp.to_graph)
    uniq = len(set(genos))
    return [
        f"| predict {n:,} nb201 genotypes ({uniq:,} distinct), cold, end to end | {t_cold:.2f} s |",
        f"|   of which: to_graph | {t_graph:.2f} s |",
        f"|   of which: features | {t_feat:.2f} s |",
        f"|   of which: design matrix + GBDT | {t_design + t_gbdt:.2f} s |",
        f"|   of which: GNN (WL quotient + forward) | {t_gnn:.2f} s |",
        f"| predict the same {n:,} again (cached answers) | {t_warm:.3f} s |",
    ]


def bench_train(n: int, column: str) -> list[str]:
    from nasctl.predictor import api

    rs = rows(column, n, 0)
    (_, metrics), t = timed(api.train, rs, "replay-nb201-" + column)
    e = metrics["ensemble"]
    return [
        f"| train-predictor on {len(rs):,} nb201 graphs ({column}; features included) | "
        f"{t:.0f} s (test MAPE {e['mape']:.2f} %, Acc@10 {e['acc10']:.1f} %) |"
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000, help="genotypes to predict")
    ap.add_argument("--column", default="fpga")
    ap.add_argument("--train-n", type=int, default=1000, help="graphs for the predict benchmark")
    ap.add_argument("--train", type=int, default=0, help="also time training on this many graphs")
    args = ap.parse_args()
    print(f"cpu cores visible: {os.cpu_count()}; load average: {os.getloadavg()[0]:.1f}")
    print("| what | time |\n|---|---|")
    for line in bench_predict(args.n, args.column, args.train_n):
        print(line, flush=True)
    if args.train:
        for line in bench_train(args.train, args.column):
            print(line, flush=True)


if __name__ == "__main__":
    main()
