#!/usr/bin/env bash
# Builds and runs every test: with g++, with clang++ (both -Wall -Wextra
# -Werror), and once more under AddressSanitizer + UndefinedBehaviorSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
jobs=$(nproc)

phase() {
  local name=$1 dir=$2
  shift 2
  echo "==== $name ($dir)"
  cmake -S . -B "$dir" -G Ninja "$@" >/dev/null
  cmake --build "$dir" -j "$jobs"
  ctest --test-dir "$dir" --output-on-failure -j "$jobs"
}

phase "g++" build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=g++
phase "clang++" build-clang -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++
phase "g++ ASan+UBSan" build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=g++ \
  -DPTKIT_SANITIZE=ON
echo "==== all test phases passed"
