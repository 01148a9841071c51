"""Predictor speed: `predict` over 10,000 genotypes, and training on 10,000 measured graphs.

    python bench/bench_predictor_speed.py                 # predict timings (trains a small one)
    python bench/bench_predictor_speed.py --train 10000   # also time training on 10,000 graphs
    python bench/bench_predictor_speed.py --repeat 5      # 4 more cold runs on other genotypes

Predict is timed end to end from distinct genotype strings of each space in ``--spaces`` (nb201 and
mbconv; the predictor is trained on NB201 timings, which does not matter for speed), once through
the space's ``to_graph`` and once through its node arrays (``SearchSpace.graph_arrays``, or
scanning graphs where a space has none), with a breakdown of the arrays path: arrays, features,
design + GBDT, GNN (WL quotient + forward), and again warm (every genotype asked before: cached
answers). ``--repeat R`` adds R-1 cold runs on other genotypes in the same process (a fresh
predictor each; the space's cached pieces may be warm) and prints their median and range: on a
shared 2-core machine one run varies by +-20 %. Training is
``nasctl.predictor.training.train`` on NB201 cells with a public latency column (features included,
as `nasctl train-predictor` runs it).
Prints markdown rows.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import statistics
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
    from nasctl.spaces import get_space

    sp = get_space("nb201")
    with open(DATA, newline="") as f:
        table = [(r["arch"], float(r[column])) for r in csv.DictReader(f) if r[column]]
    random.Random(seed).shuffle(table)
    return [Row(sp, a, y) for a, y in table[:n] if y > 0]


def timed(fn, *a, **k):  # noqa: ANN001, ANN202
    t = time.perf_counter()
    out = fn(*a, **k)
    return out, time.perf_counter() - t


def genotypes(space: str, n: int, seed: int = 1) -> list[str]:
    """``n`` distinct genotypes of a space (nb201: sampled from all 15,625 when n allows)."""
    from nasctl.spaces import get_space

    sp, rng = get_space(space), random.Random(seed)
    every = sp.enumerate()
    if every is not None and n <= len(every):
        return rng.sample(every, n)
    out: dict[str, None] = {}
    while len(out) < n:
        out[sp.sample(rng)] = None
    return list(out)


def space_arrays(sp):  # noqa: ANN001, ANN201
    """The space's genotypes -> GraphArrays (``SearchSpace.graph_arrays`` where the space has
    one; else scanning ``to_graph`` graphs)."""
    own = getattr(sp, "graph_arrays", None)
    if own is not None:
        return own
    from nasctl.arch.arrays import graph_arrays

    return lambda gs: graph_arrays([sp.to_graph(g) for g in gs], keep_ids=False)


def bench_predict(pred, space: str, n: int, repeat: int = 1) -> list[str]:  # noqa: ANN001
    """Cold end-to-end ``predict_genotypes`` on ``n`` distinct genotypes (graphs path, and
    arrays path when the space builds arrays), a breakdown of the arrays path measured the way
    the predictor runs it, and warm (cached answers)."""
    from nasctl.predictor import inference
    from nasctl.predictor.batch import featurize_batch
    from nasctl.predictor.gnn import batch_quotient
    from nasctl.predictor.malloc_tuning import reused_heap
    from nasctl.spaces import get_space

    sp = get_space(space)
    genos = genotypes(space, n)
    make = space_arrays(sp)
    fresh = inference.Predictor(
        pred.meta, pred.gbdt, pred.gnn, pred.layerwise, pred.encoder, pred.base
    )
    _, t_cold = timed(fresh.predict_genotypes, space, genos, sp.to_graph)
    _, t_warm = timed(fresh.predict_genotypes, space, genos, sp.to_graph)
    fresh = inference.Predictor(
        pred.meta, pred.gbdt, pred.gnn, pred.layerwise, pred.encoder, pred.base
    )
    _, t_cold_arr = timed(fresh.predict_genotypes, space, genos, sp.to_graph, arrays=make)
    again = []  # more cold runs, each on genotypes never asked before (nb201: may overlap)
    for r in range(1, repeat):
        fresh = inference.Predictor(
            pred.meta, pred.gbdt, pred.gnn, pred.layerwise, pred.encoder, pred.base
        )
        more = genotypes(space, n, seed=1 + r)
        again.append(timed(fresh.predict_genotypes, space, more, sp.to_graph, arrays=make)[1])
    with inference.gc_paused(), reused_heap():  # as predict_genotypes runs it
        arr, t_arr = timed(make, genos)
        fb, t_feat = timed(featurize_batch, arr)
        feats, t_views = timed(fb.views)
        ex = [inference.Example(f, space, g) for f, g in zip(feats, genos, strict=True)]
        X, t_design = timed(pred.design, ex)
        _, t_gbdt = timed(pred.gbdt.predict_log, X)
        q, t_q = timed(batch_quotient, fb, pred.gnn.config["layers"])
        _, t_gnn = timed(pred.gnn.predict_log, feats, X, q)
        _, t_logs = timed(pred.predict_examples, ex, batch=fb)
    after = t_feat + t_views + t_logs
    return [
        f"| predict {n:,} distinct {space} genotypes, cold, end to end (to_graph) | "
        f"{t_cold:.2f} s |",
        f"| predict {n:,} distinct {space} genotypes, cold, end to end (arrays) | "
        f"{t_cold_arr:.2f} s |",
        *(
            [
                f"|   the same, {repeat} cold runs on other genotypes: median, min-max | "
                f"{statistics.median([t_cold_arr, *again]):.2f} s, "
                f"{min(t_cold_arr, *again):.2f}-{max(t_cold_arr, *again):.2f} s |"
            ]
            if again
            else []
        ),
        f"|   of which: genotypes -> node arrays | {t_arr:.2f} s |",
        f"|   of which: features (batch) + per-graph views | {t_feat:.2f} + {t_views:.2f} s |",
        f"|   of which: predict_examples (design, GBDT, GNN, ensemble) | {t_logs:.2f} s |",
        f"|     in it: design matrix + GBDT | {t_design + t_gbdt:.2f} s |",
        f"|     in it: GNN (WL quotient + forward) | {t_q:.2f} + {t_gnn:.2f} s |",
        f"|   everything after the arrays | {after:.2f} s |",
        f"| predict the same {n:,} {space} genotypes again (cached answers) | {t_warm:.3f} s |",
    ]


def bench_train(n: int, column: str) -> list[str]:
    from nasctl.predictor import training

    rs = rows(column, n, 0)
    (_, metrics), t = timed(training.train, rs, "replay-nb201-" + column)
    e = metrics["ensemble"]
    return [
        f"| train-predictor on {len(rs):,} nb201 graphs ({column}; features included) | "
        f"{t:.0f} s (test MAPE {e['mape']:.2f} %, Acc@10 {e['acc10']:.1f} %) |"
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000, help="genotypes to predict")
    ap.add_argument("--spaces", default="nb201,mbconv", help="spaces to predict, comma-separated")
    ap.add_argument("--column", default="fpga")
    ap.add_argument("--repeat", type=int, default=1, help="cold arrays runs (other genotypes)")
    ap.add_argument("--train-n", type=int, default=1000, help="graphs for the predict benchmark")
    ap.add_argument("--train", type=int, default=0, help="also time training on this many graphs")
    args = ap.parse_args()
    from nasctl.predictor import training

    print(f"cpu cores visible: {os.cpu_count()}; load average: {os.getloadavg()[0]:.1f}")
    print("| what | time |\n|---|---|")
    pred, _ = training.train(
        rows(args.column, args.train_n, 0), "replay-nb201-" + args.column, gnn_steps=100
    )
    for space in args.spaces.split(","):
        for line in bench_predict(pred, space.strip(), args.n, args.repeat):
            print(line, flush=True)
    if args.train:
        for line in bench_train(args.train, args.column):
            print(line, flush=True)


if __name__ == "__main__":
    main()
