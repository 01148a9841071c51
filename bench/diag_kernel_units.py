"""Diagnosis (issue 16): per unit type, the per-kernel model's predicted time against a measured
model's own per-layer profile (ORT's kernel times scaled to the measured latency; reorders
grouped). Reads the evaluated rows only to show where the kernel sum goes wrong, never to fit.

    PYTHONPATH=.:bench .venv/bin/python bench/diag_kernel_units.py --train runs/u/kernels.db \\
        runs/u/kernels_u1.db runs/u/cpu.db --eval runs/u/tune.db --models ghostnet_1_0
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_kernels_unseen import load  # noqa: E402

from nasctl.predictor import training  # noqa: E402
from nasctl.predictor.kernel_model import fit_from_examples  # noqa: E402
from nasctl.predictor.kernel_units import graph_units, unit_rows  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=Path, nargs="+", required=True)
    ap.add_argument("--eval", type=Path, nargs="+", required=True)
    ap.add_argument("--models", default="", help="comma-separated model names (default: all)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    _, train = load(args.train, args.device)
    _, evals = load(args.eval, args.device)
    ex = training.featurize_rows(train, lambda stage, i, n: None)
    km = fit_from_examples(ex, np.array([r.latency_ms for r in train]))
    if km is None:
        print("error: too few kernel rows in --train", file=sys.stderr)
        return 1
    want = {m for m in args.models.split(",") if m}
    for r in evals:
        name = str(r.model or r.genotype).removesuffix(".onnx")
        if want and name not in want:
            continue
        g = r.graph
        units = graph_units(g)
        rows, types = unit_rows(g, units)
        pred = km.unit_ms(rows, types)
        owner = {g.nodes[i].id: k for k, u in enumerate(units) for i in u.nodes}
        layers = [la for la in r.layers or [] if la.time_ms > 0]
        total = sum(la.time_ms for la in layers) or 1.0
        meas: collections.Counter[str] = collections.Counter()
        for la in layers:
            op = str((la.extra or {}).get("op", ""))
            ks = [owner[n] for n in la.nodes if n in owner]
            t = "reorder" if op.startswith("Reorder") else types[ks[0]] if ks else f"?{op}"
            meas[t] += la.time_ms * r.latency_ms / total
        p: collections.Counter[str] = collections.Counter()
        for t, v in zip(types, pred, strict=True):
            p[t] += float(v)
        print(f"{name}: measured {r.latency_ms:.2f} ms, predicted {pred.sum():.2f} ms")
        for t in sorted(set(p) | set(meas), key=lambda t: -meas[t]):
            ratio = p[t] / meas[t] if meas[t] > 0 else float("nan")
            print(f"  {t:10s} n={types.count(t):3d}  measured {meas[t]:8.2f}  "
                  f"predicted {p[t]:8.2f}  ratio {ratio:.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
