#!/usr/bin/env bash
# `make bench`: every benchmark whose numbers appear in docs/benchmarks.md, with short settings.
# Each script prints the exact command line and a markdown table; see docs/benchmarks.md for
# the full-length settings that produced the published numbers.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
mkdir -p runs/bench
$PY bench/bench_profile.py --json | tee runs/bench/profile.json
[ -f bench/bench_predictor_nb201.py ] && $PY bench/bench_predictor_nb201.py --seeds 1 | tee runs/bench/predictor_nb201.md
[ -f bench/bench_predictor_speed.py ] && $PY bench/bench_predictor_speed.py | tee runs/bench/predictor_speed.txt
[ -f bench/bench_search_nb201.py ] && $PY bench/bench_search_nb201.py --seeds 3 | tee runs/bench/search_nb201.md
echo "bench: done (results under runs/bench/)"
