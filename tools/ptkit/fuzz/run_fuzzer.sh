#!/usr/bin/env bash
# Runs one fuzz target for SECONDS from a corpus of real inputs, with a seed
# it prints: the run can be replayed with PTKIT_FUZZ_SEED=<seed>.
#   run_fuzzer.sh FUZZER SECONDS layout|elf|dump PTKIT_TOOL SOURCE_DIR
# Fails (with the input saved and the command to reproduce it) when the
# target crashes, hangs, leaks or trips a sanitizer.
set -euo pipefail
if (($# != 5)); then
  echo "usage: $0 FUZZER SECONDS layout|elf|dump PTKIT_TOOL SOURCE_DIR" >&2
  exit 2
fi
fuzzer=$1 seconds=$2 kind=$3 tool=$4 src=$5
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
corpus=$work/corpus
mkdir -p "$corpus" "$work/artifacts"

# Seeds: the shipped examples, real ELF files, tables built by the tool.
case $kind in
  layout) cp "$src"/examples/*.toml "$corpus"/ ;;
  elf) cp "$tool" "$corpus/ptkit.elf"; cp "$fuzzer" "$corpus/fuzzer.elf" ;;
  dump)
    for format in x86_64-4l x86_64-5l aarch64-4k-48 aarch64-64k-52 riscv-sv39 riscv-sv57; do
      "$tool" build --format "$format" --out "$work/t.bin" >/dev/null
      root=$(sed -n 's/.*"root": "\(0x[0-9a-f]*\)".*/\1/p' "$work/t.bin.json")
      base=$(sed -n 's/.*"base": "\(0x[0-9a-f]*\)".*/\1/p' "$work/t.bin.json")
      { echo "$format $root $base"; cat "$work/t.bin"; } >"$corpus/$format"
    done
    ;;
  *) echo "unknown kind $kind" >&2; exit 2 ;;
esac

seed=${PTKIT_FUZZ_SEED:-$((RANDOM * 32768 + RANDOM + 1))}
echo "fuzz $kind: ${seconds}s, seed $seed (replay: PTKIT_FUZZ_SEED=$seed)"
# -rss_limit_mb: "never exhaust memory" is a property under test.
if "$fuzzer" "$corpus" -seed="$seed" -max_total_time="$seconds" -timeout=10 \
  -rss_limit_mb=2048 -max_len=262144 -print_final_stats=1 \
  -artifact_prefix="$work/artifacts/" 2>"$work/log"; then
  grep -E '^(Done|stat::number_of_executed_units)' "$work/log" || true
  exit 0
fi
tail -60 "$work/log"
keep=${TMPDIR:-/tmp}/ptkit-fuzz-$kind-$seed
mkdir -p "$keep"
cp "$work"/artifacts/* "$keep"/ 2>/dev/null || true
echo "FAILED: inputs kept in $keep; reproduce with: $fuzzer $keep/<file>"
exit 1
