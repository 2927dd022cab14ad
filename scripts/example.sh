#!/usr/bin/env bash
# The main job on the built-in example: build an x86-64 kernel-style address
# space with ptkit and print its mappings and table count.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build --target kernel_layout
./build/examples/kernel_layout
