#!/usr/bin/env bash
# Runs the ptkit tool's fuzz targets (tools/ptkit/fuzz) for longer than the
# tests do: SECONDS each (default 300), from the same corpus of real inputs,
# one after the other. Builds them with clang in build-fuzz/. A seed may be
# fixed with PTKIT_FUZZ_SEED to replay a run; TARGETS picks some of
# "layout elf dump".
#   ./scripts/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-300}
targets=${TARGETS:-layout elf dump}
./scripts/deps.sh
cmake -S . -B build-fuzz -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DPTKIT_BUILD_FUZZ=ON -DPTKIT_BUILD_TESTS=OFF -DPTKIT_BUILD_BENCH=OFF -DPTKIT_BUILD_BOOT=OFF \
  >/dev/null
build_targets=(ptkit)
for t in $targets; do build_targets+=("fuzz_$t"); done
cmake --build build-fuzz -j2 --target "${build_targets[@]}"
status=0
for t in $targets; do
  tools/ptkit/fuzz/run_fuzzer.sh "build-fuzz/tools/ptkit/fuzz/fuzz_$t" "$seconds" "$t" \
    build-fuzz/tools/ptkit/ptkit "$PWD" || status=1
done
exit "$status"
