#!/usr/bin/env bash
# The main job on the built-in example: `ptkit build --dump` builds an x86-64
# kernel-style address space (examples/kernel.toml: a direct map of RAM, the
# kernel image at -2 GiB with per-section permissions, an uncached MMIO
# window) and prints its mappings like Linux's ptdump, then the tables it
# took.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=g++ >/dev/null
cmake --build build --target ptkit -j 2
./build/tools/ptkit/ptkit build --dump
./build/tools/ptkit/ptkit build
