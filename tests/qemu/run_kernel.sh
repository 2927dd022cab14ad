#!/usr/bin/env bash
# Boots a ptkit test kernel under QEMU and checks its serial report.
#   run_kernel.sh EXPECTED REQUIRED_LINE -- QEMU [QEMU ARGS...]
# The runner adds `-display none -no-reboot -monitor none -serial file:LOG`.
# Every kernel exits with 33 for pass and 35 for fail (x86 and the Xen PV
# guest: isa-debug-exit 0x10/0x11; AArch64: semihosting exit; RISC-V: the test
# finisher). CRs are dropped from the log: Xen's serial driver ends lines with
# CR LF (its own `(XEN)` lines and the guest's, which reach it unprefixed).
# Passes only if QEMU exits 33, every check named in EXPECTED (one per line,
# # comments) printed `ok <name>`, no line starts with FAIL, and REQUIRED_LINE
# (e.g. the paging mode; empty for none) appears. A crash exits 0 (under Xen:
# a panic or dom0 crash reboots after 5 s) or hangs (cut at 60 s): both fail,
# with the serial log shown.
set -uo pipefail

if (($# < 4)) || [[ $3 != -- ]]; then
  echo "usage: $0 EXPECTED REQUIRED_LINE -- QEMU [QEMU ARGS...]" >&2
  exit 2
fi
expected=$1 required=$2
shift 3
if [[ ! -r $expected ]]; then
  echo "cannot read the expected checks file '$expected'" >&2
  exit 2
fi

raw=$(mktemp)
log=$(mktemp)
trap 'rm -f "$raw" "$log"' EXIT

start=${EPOCHREALTIME/./}  # microseconds
timeout 60 "$@" -display none -no-reboot -monitor none -serial "file:$raw" </dev/null
status=$?
tr -d '\r' <"$raw" >"$log"
end=${EPOCHREALTIME/./}

cat "$log"
echo "---- qemu exit status ${status}, $(((end - start) / 1000)) ms"

fail=0
case $status in
  33) ;;
  35) echo "kernel reported failure (status 35)"; fail=1 ;;
  124) echo "timed out after 60 s"; fail=1 ;;
  0) echo "QEMU exited 0: a crash or reset (Xen: panic, dom0 crash) before the kernel reported"; fail=1 ;;
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
