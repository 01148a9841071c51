"""Issue 15 target: the INT8 accuracy drop on digits, per architecture. NB201 cells built as
``train:digits`` builds them (8 px, 8 channels, one cell per stage, 10 classes), trained with the
estimator's recipe (SGD lr 0.05 momentum 0.9 wd 5e-4, batch 64, 3 epochs over 768 images, seed 0;
the loop is repeated here because the estimator does not hand its trained net out yet), then
:func:`nasctl.search.accuracy.quantized.int8_accuracy`: FP32 and Q/DQ INT8 (calibrated on the
768 training images) both run by ONNX Runtime on the 384 held-out images.

    PYTHONPATH=$PWD:$PWD/agent .venv/bin/python bench/bench_int8_digits.py --num 20
"""

from __future__ import annotations

import argparse
import random
import statistics

import torch
from torch import nn

from nasctl.arch.torch_module import to_torch
from nasctl.search.accuracy.digits import DigitsEstimator, _digits
from nasctl.search.accuracy.quantized import int8_accuracy
from nasctl.spaces.nb201 import NB201Space


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--num", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--activations", default="uint8", choices=("uint8", "int8"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    est = DigitsEstimator()
    space = NB201Space(resolution=est.resolution, num_classes=10, **DigitsEstimator.SMALL)
    rng = random.Random(args.seed)
    genos: list[str] = []
    while len(genos) < args.num:
        g = space.sample(rng)
        if g not in genos:
            genos.append(g)
    x, y = _digits(est.resolution, 3)
    xt, yt = x[: est.train_size], y[: est.train_size]
    xv = x[est.train_size : est.train_size + est.val_size]
    yv = y[est.train_size : est.train_size + est.val_size]
    rows = []
    print("| genotype | fp32 acc % | int8 acc % | drop (points) |\n|---|---:|---:|---:|")
    for g in genos:
        torch.manual_seed(est.seed)
        net = to_torch(space.to_graph(g))
        opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
        loss_fn = nn.CrossEntropyLoss()
        net.train()
        for _ in range(est.epochs):
            perm = torch.randperm(len(yt))
            for i in range(0, len(yt), est.batch):
                idx = perm[i : i + est.batch]
                opt.zero_grad()
                loss_fn(net(xt[idx]), yt[idx]).backward()
                opt.step()
        f, q = int8_accuracy(net, xt.numpy(), xv.numpy(), yv.numpy(), args.activations)
        rows.append((g, f, q))
        print(f"| `{g}` | {f:.1f} | {q:.1f} | {f - q:+.1f} |", flush=True)
    drops = [f - q for _, f, q in rows]
    print(
        f"\ndrop (points): median {statistics.median(drops):+.2f}, min {min(drops):+.2f}, "
        f"max {max(drops):+.2f}, stdev {statistics.pstdev(drops):.2f} over {len(rows)} nets"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
