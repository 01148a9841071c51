"""Adaptive vs uniform kernel sampling at the same budget (issue 16, nn-Meter's adaptive sampling).

Both arms start from the same uniform kernels (``nasctl profile --kernels N``) and add the same
number of kernels: *uniform* with another seed (``nasctl profile --kernels M --seed 1``),
*adaptive* picked here from a seeded pool of sampler draws where the kernel model is unsure (the
spread of bootstrap models' answers) or wrong on held-out kernels (its cross-validated error on
the kernel's type), then measured with the same defaults as ``nasctl profile``. Scored on
kernels neither arm trained on (``--kernels K --seed 3``) and on the spaces' whole graphs.

    python bench/bench_kernels_adaptive.py pick --base runs/q/kernels.db --n 400 \
        --out runs/q/adaptive.json
    flock /work/notes/cpu0.lock taskset -c 0 python bench/bench_kernels_adaptive.py measure \
        --picks runs/q/adaptive.json --db runs/q/kernels_ad.db
    python bench/bench_kernels_adaptive.py compare --base runs/q/kernels.db \
        --uniform runs/q/kernels_u1.db --adaptive runs/q/kernels_ad.db \
        --test runs/q/kernels_test.db --graphs runs/q/cpu.db --out runs/q/adaptive_cmp
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_kernels_unseen import load  # noqa: E402

from nasctl.predictor import training  # noqa: E402
from nasctl.predictor.kernel_model import (  # noqa: E402
    KernelModel,
    _kernel_labels,
    fit_from_examples,
    kernel_row_index,
)
from nasctl.predictor.kernel_units import unit_rows  # noqa: E402

BOOTSTRAP = 5
FOLDS = 5


def _examples(dbs: list[Path]) -> tuple[list[Any], np.ndarray]:
    _, rows = load(dbs, "cpu")
    ex = training.featurize_rows(rows, lambda *a: None)
    for e, r in zip(ex, rows, strict=True):  # whole graphs alone get no units there
        if e.units is None:
            e.units = unit_rows(r.graph)
    return ex, np.array([r.latency_ms for r in rows], float)


def _main_type(units: tuple[np.ndarray, list[str]]) -> str:
    return next(t for t in units[1] if t != "reorder")


def pick(args: argparse.Namespace) -> None:
    from nasctl.spaces.kernels import KernelsSpace

    ex, y = _examples(args.base)
    idx = kernel_row_index(ex)
    rows, types, labels = _kernel_labels(ex, y, idx)
    x, lab = np.vstack(rows), np.asarray(labels)
    rng = np.random.default_rng(args.seed)
    members = []
    for b in range(BOOTSTRAP):  # spread of bootstrap models: where the model is unsure
        s = rng.integers(0, len(lab), len(lab))
        members.append(KernelModel.fit(x[s], [types[i] for i in s], lab[s], seed=b))
    err: dict[str, list[float]] = {}  # held-out error per kernel type: where it is wrong
    order = rng.permutation(len(idx))
    for f in range(FOLDS):
        test = {idx[i] for i in order[f::FOLDS]}
        m = fit_from_examples(
            [e for i, e in enumerate(ex) if i not in test],
            y[[i not in test for i in range(len(ex))]],
        )
        for i in sorted(test):
            p = m.sum_ms([ex[i].units])[0]
            err.setdefault(_main_type(ex[i].units), []).append(abs(np.log(p / y[i])))
    type_err = {t: float(np.mean(v)) for t, v in err.items()}
    space, prng = KernelsSpace(), random.Random(args.pool_seed)
    known = {e.genotype for e in ex}
    pool: list[str] = []
    while len(pool) < args.pool:
        g = space.sample(prng)
        if g not in known and g not in pool:
            pool.append(g)
    units = [unit_rows(space.to_graph(g)) for g in pool]
    logs = np.log(np.maximum(np.array([m.sum_ms(units) for m in members]), 1e-9))
    spread = logs.std(0)
    # each type's share of the budget: its share of the pool times its held-out error (a type
    # the model gets wrong gets more); within a type, the candidates the models disagree on most
    kind = [_main_type(u) for u in units]
    worst = max(type_err.values())
    weight = {t: kind.count(t) * type_err.get(t, worst) for t in set(kind)}
    total = sum(weight.values())
    quota = {t: int(round(args.n * w / total)) for t, w in weight.items()}
    chosen = []
    for t, q in quota.items():
        idx = [i for i in np.argsort(-spread) if kind[i] == t][:q]
        chosen += [pool[i] for i in idx]
    chosen = chosen[: args.n]
    kinds: dict[str, int] = {}
    for g in chosen:
        kinds[g.split("-")[0]] = kinds.get(g.split("-")[0], 0) + 1
    out = {"picks": chosen, "type_err": type_err, "kinds": kinds, "pool": args.pool}
    args.out.write_text(json.dumps(out, indent=1))
    print(json.dumps({k: v for k, v in out.items() if k != "picks"}, indent=1))


def measure(args: argparse.Namespace) -> None:
    """Measure the picks as ``nasctl profile --kernels`` measures (cpu, fp32, batch 1, per-layer
    times, the device's noise gate)."""
    from nasctl.datasets.collect import collect
    from nasctl.datasets.store import Store
    from nasctl.datasets.transfer_data import genotype_jobs
    from nasctl.profiler import get_device
    from nasctl.profiler.gate import gate_options, load_gate
    from nasctl.spaces.kernels import KernelsSpace

    picks = json.loads(args.picks.read_text())["picks"]
    dev = get_device("cpu", precision="fp32")
    options = gate_options(load_gate(dev.device_id), {})
    with Store(args.db) as store:
        jobs = genotype_jobs(store, KernelsSpace(), picks)
        s = collect(store, dev, jobs, len(jobs), per_layer=True, options=options)
    print(json.dumps(s.to_dict())[:400])


def _stats(e: np.ndarray) -> list[float]:
    """MAPE %, share within +-10 % and count of relative errors ``e``."""
    return [float(100 * np.abs(e).mean()), float(100 * np.mean(np.abs(e) <= 0.1)), len(e)]


def _score(m: KernelModel, ex: list[Any], y: np.ndarray) -> dict[str, Any]:
    idx = kernel_row_index(ex)
    p = m.sum_ms([ex[i].units for i in idx])
    e = p / y[idx] - 1
    out = {"all": _stats(e)}
    for t in sorted({_main_type(ex[i].units) for i in idx}):
        out[t] = _stats(e[np.array([_main_type(ex[i].units) == t for i in idx])])
    return out


def compare(args: argparse.Namespace) -> None:
    test, yt = _examples(args.test)
    graphs, yg = _examples(args.graphs)
    res: dict[str, Any] = {}
    for arm, extra in (("uniform", args.uniform), ("adaptive", args.adaptive)):
        ex, y = _examples([*args.base, *extra])
        m = fit_from_examples(ex, y)
        res[arm] = {"kernels": _score(m, test, yt), "n_kernels": len(kernel_row_index(ex))}
        order = np.random.default_rng(0).permutation(len(graphs))
        pred = np.zeros(len(graphs))
        for f in range(FOLDS):  # whole graphs of the spaces, 5-fold (graph term on the others)
            te = set(order[f::FOLDS].tolist())
            tr = [g for i, g in enumerate(graphs) if i not in te]
            mm = fit_from_examples(ex + tr, np.r_[y, yg[[i not in te for i in range(len(graphs))]]])
            ti = sorted(te)
            pred[ti] = mm.predict_ms([graphs[i].units for i in ti])
        for sp in sorted({str(g.space) for g in graphs}):
            k = np.array([str(g.space) == sp for g in graphs])
            res[arm][f"graphs:{sp}"] = _stats(pred[k] / yg[k] - 1)
    args.out.with_suffix(".json").write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pick")
    p.add_argument("--base", type=Path, nargs="+", required=True)
    p.add_argument("--n", type=int, default=400)
    p.add_argument("--pool", type=int, default=6000)
    p.add_argument("--pool-seed", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    m = sub.add_parser("measure")
    m.add_argument("--picks", type=Path, required=True)
    m.add_argument("--db", type=Path, required=True)
    c = sub.add_parser("compare")
    for name in ("base", "uniform", "adaptive", "test", "graphs"):
        c.add_argument(f"--{name}", type=Path, nargs="+", required=True)
    c.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    {"pick": pick, "measure": measure, "compare": compare}[args.cmd](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
