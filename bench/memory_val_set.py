"""The validation set of the memory model (issue 14): networks of the built-in spaces that are not
in the training data, each measured twice by the cpu device's fresh-process memory probe
(:func:`nasctl_agent.memprobe.measure_fresh`): as nasctl writes it (batch norms as nodes, which
ONNX Runtime folds into the convolutions when it builds the session) and with the batch norms
already folded (ONNX Runtime's basic graph optimizations, saved: what torch's exporter writes).
Design choices of ``nasctl.predictor.memory`` are made on this set, never on the zoo.

    PYTHONPATH=$PWD:$PWD/agent nice -n 19 .venv/bin/python bench/memory_val_set.py --out DIR

Writes ``DIR/*.onnx`` and appends one JSON line per network to ``DIR/val.jsonl``: ``space``,
``genotype``, ``onnx``, ``folded`` (paths), ``mem_bn``, ``mem_folded`` (model peak bytes; null
where not measured).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

#: networks per space, and the sampling seed (the CLI's collections use small seeds)
COUNTS = {"resnet": 10, "mbconv": 10, "fbnet": 8, "nb201": 6}
SEED = 1000


def main(argv: list[str] | None = None) -> int:
    import onnxruntime as ort
    from nasctl_agent.memprobe import measure_fresh

    from nasctl.arch.onnx_io import save_onnx
    from nasctl.spaces import get_space

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with (args.out / "val.jsonl").open("a") as out:
        for sp, n in COUNTS.items():
            space, rng = get_space(sp), random.Random(SEED)
            for i in range(n):
                geno = space.sample(rng)
                p = args.out / f"v_{sp}{i}.onnx"
                save_onnx(space.to_graph(geno), p)
                so = ort.SessionOptions()
                so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
                folded = p.with_name(f"v_{sp}{i}_fold.onnx")
                so.optimized_model_filepath = str(folded)
                ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"])
                mem = [
                    measure_fresh(str(q), threads=1, batch=1, seed=0, shapes=None).get(
                        "model_peak_bytes"
                    )
                    for q in (p, folded)
                ]
                rec = {"space": sp, "genotype": str(geno), "onnx": str(p),
                       "folded": str(folded), "mem_bn": mem[0], "mem_folded": mem[1]}  # fmt: skip
                out.write(json.dumps(rec) + "\n")
                out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
