#!/usr/bin/env bash
# Instructions per simulated request on the CLI path (issue 13), for comparing policies without
# the CPU-time drift of a shared machine: valgrind's cachegrind counts for `equinox simulate` on
# the 2,000- and 10,000-request traces of benchmarks/sim_speed.py; (10k - 2k) / 8000 drops
# start-up and other fixed costs.
#
#   benchmarks/sim_instructions.sh [CORE] [POLICY ...]
#
# CORE is the PYTHONPATH of the core to measure: `src` (pure Python, the default) or a
# `scripts/build_compiled DIR` directory. POLICY defaults to fcfs, vtc and equinox; parameters follow a
# colon, as in sim_speed.py (`equinox:alpha=1,beta=0`). Needs valgrind
# and the traces (`python benchmarks/sim_speed.py --sizes 10000` writes the 10k one; the 2k one is
# its first 2,000 rows). One BLAS thread: numpy's idle BLAS threads spin for a varying while, which
# valgrind counts (up to 50 M instructions a run).
set -euo pipefail
cd "$(dirname "$0")/.."
core=${1:-src}
shift || true
policies=("$@")
[ ${#policies[@]} -gt 0 ] || policies=(fcfs vtc equinox)
python=${PYTHON:-.venv/bin/python}
dir=${EQUINOX_SIM_SPEED_DIR:-/tmp/equinox-sim-speed}
t10=$dir/sharegpt-like-10000-seed0-rate8-t20.csv
t2=$dir/sharegpt-like-2000-seed0-rate8-t20.csv
[ -f "$t10" ] || PYTHONPATH=src "$python" benchmarks/sim_speed.py --sizes 10000 --policies fcfs >/dev/null
[ -f "$t2" ] || head -n 2001 "$t10" > "$t2"
flags=(--gpu a100-80gb --model llama-2-7b --cost-model vidur --engine vllm --max-num-seqs 128
       --max-num-batched-tokens 4096 --block-size 16 --no-progress --no-reference)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
count() {  # policy[:param=value,...], trace -> instructions of the whole run
  local name=${1%%:*} params=() p
  if [[ $1 == *:* ]]; then
    IFS=, read -ra p <<< "${1#*:}"
    for kv in "${p[@]}"; do params+=(--param "$kv"); done
  fi
  rm -rf "$out/run"
  OPENBLAS_NUM_THREADS=1 PYTHONHASHSEED=0 PYTHONPATH=$core valgrind --tool=cachegrind --cache-sim=no \
    --cachegrind-out-file=/dev/null "$python" -m equinox simulate -p "$name" "${params[@]}" -w "$2" "${flags[@]}" \
    -o "$out/run" 2>&1 | awk '/I *refs/ {gsub(",", "", $NF); print $NF}'
}
printf "%-34s %16s %16s %12s %9s\n" policy "2k run" "10k run" per_request vs_first
base=""
for p in "${policies[@]}"; do
  a=$(count "$p" "$t2")
  b=$(count "$p" "$t10")
  per=$(( (b - a) / 8000 ))
  [ -n "$base" ] || base=$per
  printf "%-34s %16d %16d %12d %9.3f\n" "$p" "$a" "$b" "$per" "$(echo "$per / $base" | bc -l)"
done
