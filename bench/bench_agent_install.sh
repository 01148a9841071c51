#!/usr/bin/env bash
# Issue 11 target: installing the agent and running `nasctl-agent info` takes < 3 s wall.
#   bash bench/bench_agent_install.sh [PYTHON] [ROUNDS]
# A fresh venv is made once (not timed); each round uninstalls the agent, then times
# (a) `pip install ./agent` from the source tree (flit_core build in an isolated env) + info,
# (b) `pip install` of a prebuilt wheel + info (how a Jetson would get it from a host), and
# (c) `nasctl-agent info` alone. Prints a markdown table with the load average.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-python3}
ROUNDS=${2:-3}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
"$PY" -m venv "$TMP/venv"
V="$TMP/venv/bin"
"$V/pip" wheel -q --no-deps ./agent -w "$TMP/wheel" >/dev/null 2>&1
t() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N); echo "$e - $s" | bc; }
echo "\`bash bench/bench_agent_install.sh $PY $ROUNDS\` ($("$PY" --version 2>&1)); load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| round | pip install ./agent + info s | pip install wheel + info s | info alone s |"
echo "|---|---|---|---|"
for r in $(seq "$ROUNDS"); do
  "$V/pip" uninstall -q -y nasctl-agent >/dev/null 2>&1 || true
  a=$(t sh -c "'$V/pip' install -q ./agent && '$V/nasctl-agent' info")
  "$V/pip" uninstall -q -y nasctl-agent >/dev/null 2>&1
  b=$(t sh -c "'$V/pip' install -q --no-index '$TMP'/wheel/*.whl && '$V/nasctl-agent' info")
  c=$(t "$V/nasctl-agent" info)
  printf "| %s | %.2f | %.2f | %.2f |\n" "$r" "$a" "$b" "$c"
done
