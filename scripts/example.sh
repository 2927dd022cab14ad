#!/usr/bin/env bash
# The main job on the built-in example: build an x86-64 kernel-style address
# space with ptkit (direct map, kernel image with per-section permissions, an
# uncached MMIO window) and print its mappings and the tables it took.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=g++ >/dev/null
cmake --build build --target kernel_layout -j 2
./build/examples/kernel_layout
