#!/usr/bin/env bash
# Boots Xen with the Xen PV test guest (boot/xen_pv) as dom0 under QEMU and
# checks the guest's report; run_kernel.sh's contract for Xen's console:
#   run_xen_guest.sh EXPECTED REQUIRED_LINE -- QEMU [QEMU ARGS...]
# The serial log holds Xen's own `(XEN) ` lines and the guest's lines, which
# dom0's console_io writes reach unprefixed; Xen's serial driver ends every
# line with CR LF, so the CRs are dropped before run_kernel.sh's checks.
# Passes only if QEMU exits 33 (the guest's isa-debug-exit 0x10), every check
# named in EXPECTED printed `ok <name>`, no line starts with FAIL, and
# REQUIRED_LINE appears. A Xen panic or dom0 crash reboots after 5 s and
# QEMU exits 0: a failure, with the log shown.
set -uo pipefail

if (($# < 4)) || [[ $3 != -- ]]; then
  echo "usage: $0 EXPECTED REQUIRED_LINE -- QEMU [QEMU ARGS...]" >&2
  exit 2
fi
expected=$1 required=$2
shift 3

raw=$(mktemp)
log=$(mktemp)
trap 'rm -f "$raw" "$log"' EXIT

start=${EPOCHREALTIME/./}  # microseconds
timeout 60 "$@" -display none -no-reboot -monitor none -serial "file:$raw" </dev/null
status=$?
end=${EPOCHREALTIME/./}
tr -d '\r' <"$raw" >"$log"

cat "$log"
echo "---- qemu exit status ${status}, $(((end - start) / 1000)) ms"

fail=0
case $status in
  33) ;;
  35) echo "guest reported failure (status 35)"; fail=1 ;;
  124) echo "timed out after 60 s"; fail=1 ;;
  0) echo "QEMU exited 0: a Xen panic or dom0 crash (reboot) before the guest reported"; fail=1 ;;
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
