#!/usr/bin/env bash
# Boots a ptkit test kernel under QEMU and checks its serial report.
#   run_kernel.sh QEMU KERNEL EXPECTED CPU [REQUIRED_LINE]
# Passes only if QEMU exits with the kernel's pass status (33: isa-debug-exit
# 0x10), every check named in EXPECTED (one per line, # comments) printed
# `ok <name>`, no line starts with FAIL, and REQUIRED_LINE (e.g. the paging
# mode) appears. A triple fault exits 0, a hang is cut at 60 s: both fail.
set -uo pipefail

if (($# < 4)); then
  echo "usage: $0 QEMU KERNEL EXPECTED CPU [REQUIRED_LINE]" >&2
  exit 2
fi
qemu=$1 kernel=$2 expected=$3 cpu=$4 required=${5-}

log=$(mktemp)
trap 'rm -f "$log"' EXIT

start=${EPOCHREALTIME/./}  # microseconds
timeout 60 "$qemu" -cpu "$cpu" -m 128M -display none -no-reboot -monitor none \
  -device isa-debug-exit,iobase=0xf4,iosize=0x04 -serial "file:$log" \
  -kernel "$kernel" </dev/null
status=$?
end=${EPOCHREALTIME/./}

cat "$log"
echo "---- qemu exit status ${status}, $(((end - start) / 1000)) ms"

fail=0
case $status in
  33) ;;
  35) echo "kernel reported failure (status 35)"; fail=1 ;;
  124) echo "timed out after 60 s"; fail=1 ;;
  0) echo "QEMU exited 0: a triple fault (or reset) before the kernel reported"; fail=1 ;;
  *) echo "QEMU failed with status ${status}"; fail=1 ;;
esac

if grep -q '^FAIL' "$log"; then
  echo "FAIL lines in the report"
  fail=1
fi
while read -r name; do
  name=${name%%#*}
  name=${name//[[:space:]]/}
  [[ -z $name ]] && continue
  if ! grep -qx "ok ${name}" "$log"; then
    echo "missing: ok ${name}"
    fail=1
  fi
done <"$expected"
if [[ -n $required ]] && ! grep -qxF "$required" "$log"; then
  echo "missing line: ${required}"
  fail=1
fi

((fail == 0)) && echo "PASS"
exit "$fail"
