"""Issue 15 target: the INT8 accuracy drop on digits, per architecture. NB201 cells trained by
``train:digits`` itself (``DigitsEstimator.train``: the space's proxy-training size, the
estimator's recipe and seeds), then
:func:`nasctl.search.accuracy.quantized.trained_int8_accuracy`: the trained graph written as FP32
and as Q/DQ INT8 (calibrated on 256 training images), both scored by ONNX Runtime on the
estimator's held-out images.

    PYTHONPATH=$PWD:$PWD/agent .venv/bin/python bench/bench_int8_digits.py --num 20
"""

from __future__ import annotations

import argparse
import random
import statistics

from nasctl.search.accuracy.quantized import trained_int8_accuracy
from nasctl.search.accuracy.training import DigitsEstimator
from nasctl.spaces import get_space


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--num", type=int, default=20)
    ap.add_argument("--space", default="nb201")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--activations", default="uint8", choices=("uint8", "int8"))
    args = ap.parse_args(argv)
    est = DigitsEstimator()
    space = get_space(args.space)
    rng = random.Random(args.seed)
    genos: list[str] = []
    while len(genos) < args.num:
        g = space.sample(rng)
        if g not in genos:
            genos.append(g)
    rows = []
    print("| # | genotype | fp32 acc % | int8 acc % | drop (points) |\n|---:|---|---:|---:|---:|")
    for i, g in enumerate(genos, 1):
        f, q = trained_int8_accuracy(est, est.train(g, space), args.activations)
        rows.append((g, f, q))
        print(f"| {i} | `{g.replace('|', '¦')}` | {f:.1f} | {q:.1f} | {f - q:+.1f} |", flush=True)
    drops = [f - q for _, f, q in rows]
    print(
        f"\ndrop (points): median {statistics.median(drops):+.2f}, min {min(drops):+.2f}, "
        f"max {max(drops):+.2f}, stdev {statistics.pstdev(drops):.2f} over {len(rows)} nets"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
