#!/usr/bin/env bash
# Builds the Google Benchmark suite (bench/) in Release and runs it, writing
# the results as JSON (medians over repetitions) so two commits can be
# compared with Google Benchmark's compare.py or any JSON tool.
#
#   scripts/bench.sh                    all scenarios -> bench-results.json
#   scripts/bench.sh BM_Map4G_4K        only the benchmarks matching a regex
#   OUT=base.json REPS=9 scripts/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/deps.sh
filter=${1:-.}
out=${OUT:-bench-results.json}
reps=${REPS:-5}

cmake -S . -B build-bench -G Ninja -DCMAKE_BUILD_TYPE=Release -DPTKIT_BUILD_BENCH=ON \
  -DPTKIT_BUILD_TESTS=OFF >/dev/null
cmake --build build-bench -j 2 --target ptkit_bench

./build-bench/bench/ptkit_bench --benchmark_filter="$filter" \
  --benchmark_repetitions="$reps" --benchmark_report_aggregates_only=true \
  --benchmark_out="$out" --benchmark_out_format=json
echo "bench: results in $out"
