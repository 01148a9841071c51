#!/usr/bin/env bash
# Collect the cpu-device data for the predictor benchmarks of issue 4 (bench/bench_predictor_cpu.py).
#
#   bench/collect_cpu_data.sh                 # defaults below; resumable (re-run skips stored ones)
#   MBCONV=400 RESNET=150 KERNELS=400 bench/collect_cpu_data.sh   # more data (extends, same seeds)
#   SPREAD_ONLY=6 bench/collect_cpu_data.sh   # one more spread run, into spread_6.db
#   REMEASURE=30 bench/collect_cpu_data.sh    # measure the first 30 mbconv + 10 resnet again
#
# Writes (all under runs/bench/, gitignored):
#   cpu.db              mbconv + resnet + kernels + zoo measurements (one SQLite store)
#   spread_<k>.db       the same 5 architectures (3 mbconv, 2 resnet) profiled in 5 separate runs,
#                       spaced out over the collection so they see the load changing
#   zoo_onnx/*.onnx     the well-known classifiers of bench/zoo.py at 1x3x224x224
#   collect.log         every command, its JSON summary and the load average before it
#
# Device: ONNX Runtime, 1 intra-op thread, with --option clock=thread (the calling thread's CPU
# time, device id cpu-ort<ver>-fp32-t1-cputime): on a shared, oversubscribed machine the wall clock
# counts the time the thread waited for a core, which is load, not the model. CLOCK=wall to change.
# Per-layer times (the separate ORT profiling pass) are ORT's own wall-clock kernel durations
# whatever CLOCK says, so under load their sum exceeds the thread-time label (see the bench notes).
# Collection runs in stages (small first, then extended with the same seeds) so that a cut-short
# run still has every kind of data. With the defaults: 200 mbconv + 80 resnet + 125 kernels + 12
# zoo models, about 45 minutes at a load average of ~6 on 2 cores.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/bench}
DB=$OUT/cpu.db
NASCTL=${NASCTL:-.venv/bin/nasctl}
PY=${PY:-.venv/bin/python}
CLOCK=${CLOCK:-thread}
MBCONV=${MBCONV:-200}
RESNET=${RESNET:-80}
KERNELS=${KERNELS:-125}
LOG=$OUT/collect.log
mkdir -p "$OUT"

run() {  # run <args...>: one nasctl profile call, logged with the load average before it
    echo "### $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg): nasctl profile $*" >>"$LOG"
    "$NASCTL" profile --device cpu --option "clock=$CLOCK" --json "$@" >>"$LOG" 2>&1
    echo "### $(date -u +%FT%TZ) rc=$? load $(cut -d' ' -f1-3 /proc/loadavg)" >>"$LOG"
}

spread() {  # spread <k>: the 5 fixed architectures into spread_<k>.db (no per-layer pass)
    run --space mbconv --num 3 --seed 1000 --no-layers --db "$OUT/spread_$1.db"
    run --space resnet --num 2 --seed 1000 --no-layers --db "$OUT/spread_$1.db"
}

zoo() {
    if [ ! -d "$OUT/zoo_onnx" ] || [ -z "$(ls "$OUT"/zoo_onnx/*.onnx 2>/dev/null)" ]; then
        "$PY" bench/zoo.py --out "$OUT/zoo_onnx" >>"$LOG" 2>&1
    fi
    local args=()
    for f in "$OUT"/zoo_onnx/*.onnx; do args+=(--onnx "$f"); done
    run "${args[@]}" --db "$DB"
}

if [ -n "${SPREAD_ONLY:-}" ]; then  # one more spread run (spread_<k>.db) and nothing else
    spread "$SPREAD_ONLY"
    exit 0
fi
if [ -n "${REMEASURE:-}" ]; then  # a second, separate measurement of the collection's first
    # REMEASURE mbconv and REMEASURE/3 resnet architectures (same seeds) into remeasure.db:
    # run-to-run spread over many architectures (bench_predictor_cpu.py --spread DB remeasure.db)
    run --space mbconv --num "$REMEASURE" --seed 0 --no-layers --db "$OUT/remeasure.db"
    run --space resnet --num $((REMEASURE / 3)) --seed 0 --no-layers --db "$OUT/remeasure.db"
    exit 0
fi

spread 1
run --space mbconv --num $((MBCONV * 5 / 8)) --seed 0 --db "$DB"
spread 2
run --space resnet --num $((RESNET * 5 / 8)) --seed 0 --db "$DB"
run --kernels "$KERNELS" --seed 0 --db "$DB"
spread 3
zoo
spread 4
run --space resnet --num "$RESNET" --seed 0 --db "$DB"
run --space mbconv --num "$MBCONV" --seed 0 --db "$DB"
spread 5
echo "### $(date -u +%FT%TZ) done" >>"$LOG"
