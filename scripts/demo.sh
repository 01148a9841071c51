#!/usr/bin/env bash
# `make demo`: the whole predictor-first loop for real on the `cpu` device (ONNX Runtime, one
# thread), end to end, in a few minutes on 2 cores. Installs nothing (the Makefile does).
#   1. profile a small random sample of NB201 cells on the cpu into runs/demo/cpu.db
#   2. train a latency predictor on it (nasctl train-predictor)
#   3. search NB201 with the predictor, accuracy from the synflow proxy (computed on CPU),
#      latency budget = the sample's median latency, 12 device measurements at most
#   4. the loop validates on the device as it goes and measures the final front; the result,
#      predicted vs measured, and the files are printed at the end.
# Everything is resumable: run it again and what is stored is reused, not re-measured.
set -euo pipefail
cd "$(dirname "$0")/.."

NASCTL=${NASCTL:-.venv/bin/nasctl}
PY=${PY:-.venv/bin/python}
OUT=${DEMO_OUT:-runs/demo}
NUM=${DEMO_NUM:-30}
mkdir -p "$OUT"
start=$(date +%s)

echo "== 1/3 profile $NUM NB201 cells on the cpu device -> $OUT/cpu.db"
"$NASCTL" profile --device cpu --space nb201 --num "$NUM" --seed 0 --db "$OUT/cpu.db" --no-layers

echo "== 2/3 train a latency predictor -> $OUT/predictor"
"$NASCTL" train-predictor --db "$OUT/cpu.db" --device cpu --out "$OUT/predictor"

# The budget is fixed on the first run (the search adds its measurements to the same store, which
# would move the median), so that a re-run resumes the same search.
if [ ! -s "$OUT/budget_ms.txt" ]; then
  "$PY" - "$OUT/cpu.db" > "$OUT/budget_ms.txt" <<'EOF'
import statistics, sys
from nasctl.datasets.store import Store
with Store(sys.argv[1], readonly=True) as s:
    rows = s.training_rows(s.resolve_device_id("cpu"))
print(f"{statistics.median(r.latency_ms for r in rows):.3f}")
EOF
fi
BUDGET=$(cat "$OUT/budget_ms.txt")

echo "== 3/3 search NB201 (proxy:synflow) under a ${BUDGET} ms budget on the cpu, <= 12 device runs"
"$NASCTL" search --use-predictor --predictor "$OUT/predictor" --device cpu --space nb201 \
    --accuracy proxy:synflow --latency-budget "$BUDGET" --device-budget 12 \
    --generations 6 --population 24 --validate-every 3 --refine-top 3 --refine-cap 24 \
    --db "$OUT/cpu.db" --out "$OUT/search"

echo "== done in $(( $(date +%s) - start )) s: $OUT/search/frontier.{csv,json,png}, measurements.jsonl"
