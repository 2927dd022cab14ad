#!/usr/bin/env bash
# Boots the x86-64 test kernel with `hold`, has QEMU's monitor dump the guest's
# memory once the kernel has printed its own view of its address space, and
# checks that `ptkit dump` reads the same translation from that memory.
#   dump_guest_memory.sh PTKIT FORMAT REQUIRED_LINE -- QEMU [QEMU ARGS...]
# QEMU ARGS must boot the kernel with `-append hold`; the script adds
# `-display none -no-reboot -monitor stdio -serial file:LOG`.
#
# The kernel (boot/x86_64/space_report.hpp) prints `map VA SIZE PA PERMS USER
# GLOBAL MEM` lines from the core's walk(), `info root`, `info direct-map`,
# `info table-span START END` and `ready for dump`, then halts with interrupts off.
# Then, through the monitor on stdin (a FIFO):
#   dump-guest-memory CORE          an ELF core, PT_LOAD at p_paddr
#   pmemsave START SIZE RAW         the span holding every table, raw
#   quit
# and checks:
#  1. `ptkit dump CORE --json` (the simulator's walker, no code shared with the
#     core's) and the kernel's lines give every page the same translation: pa,
#     permissions (r/w/x), user or kernel, global, memory type.
#  2. `ptkit dump CORE --audit --direct-map BASE` finds exactly what the
#     kernel's lines predict by the audit's rules, and nothing else.
#  3. `ptkit dump RAW --base START` prints exactly what the core gave.
# Fails with the reason and the serial log on any mismatch or timeout.
set -uo pipefail

if (($# < 5)) || [[ $4 != -- ]]; then
  echo "usage: $0 PTKIT FORMAT REQUIRED_LINE -- QEMU [QEMU ARGS...]" >&2
  exit 2
fi
ptkit=$1 format=$2 required=$3
shift 4

readonly kReadySeconds=60  # boot and every check: 2-5 s on TCG here
readonly kQemuSeconds=90   # the whole QEMU run, dump included

work=$(mktemp -d)
qemu_pid=
cleanup() {
  [[ -n $qemu_pid ]] && kill "$qemu_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

log=$work/serial.log
monitor_log=$work/monitor.log
core=$work/guest.core
raw=$work/tables.raw
touch "$log"

fail() {
  echo "---- serial log"
  cat "$log"
  if [[ -s $monitor_log ]]; then
    # Its readline echoes every keystroke with cursor moves: keep what
    # follows the prompt and the last erase (ESC [ K), which is what QEMU and
    # the commands answered.
    echo "---- monitor (commands: ${monitor_commands:-none sent})"
    tr -d '\r' <"$monitor_log" | sed -E 's/^\(qemu\) //; s/.*\x1b\[K//' | grep -av '^$'
  fi
  echo "FAIL: $*"
  exit 1
}

# ---- Boot and dump ----------------------------------------------------------

# The monitor reads commands from a FIFO this shell keeps open read-write, so
# opening it blocks neither side and QEMU never sees end-of-file early.
fifo=$work/monitor.fifo
mkfifo "$fifo"
exec 3<>"$fifo"

start=${EPOCHREALTIME/./}  # microseconds
timeout "$kQemuSeconds" "$@" -display none -no-reboot -monitor stdio -serial "file:$log" \
  <&3 >"$monitor_log" 2>&1 &
qemu_pid=$!

ms_since() { echo $(((${EPOCHREALTIME/./} - $1) / 1000)); }

deadline=$((SECONDS + kReadySeconds))
until grep -qx 'ready for dump' "$log"; do
  if ! kill -0 "$qemu_pid" 2>/dev/null; then
    wait "$qemu_pid"
    status=$?
    qemu_pid=
    fail "QEMU exited with status ${status} before the kernel printed 'ready for dump'" \
      "(a failed check, a crash, or no 'hold' on the command line)"
  fi
  ((SECONDS >= deadline)) && fail "no 'ready for dump' after ${kReadySeconds} s"
  sleep 0.05
done
ready_ms=$(ms_since "$start")

read -r _ _ tables_start tables_end < <(grep -m1 -x 'info table-span 0x[0-9a-f]* 0x[0-9a-f]*' "$log")
[[ -n ${tables_end:-} ]] || fail "no 'info table-span START END' line"
# File names in double quotes: HMP would read `SIZE /tmp/...` as a division.
monitor_commands="dump-guest-memory \"${core}\"; pmemsave ${tables_start}"
monitor_commands+=" $((tables_end - tables_start)) \"${raw}\"; quit"
printf '%s\n' "dump-guest-memory \"${core}\"" \
  "pmemsave ${tables_start} $((tables_end - tables_start)) \"${raw}\"" quit >&3
wait "$qemu_pid"
status=$?
qemu_pid=
exec 3>&-
dumped_ms=$(ms_since "$start")
case $status in
  0) ;;
  124) fail "QEMU still running ${kQemuSeconds} s after it started: the dump or quit hung" ;;
  *) fail "QEMU exited with status ${status} after the monitor's commands" ;;
esac
[[ -s $core ]] || fail "dump-guest-memory wrote no core"
[[ -s $raw ]] || fail "pmemsave wrote nothing"
echo "booted to 'ready for dump' in ${ready_ms} ms, dumped and quit at ${dumped_ms} ms;" \
  "core $(stat -c %s "$core") bytes, tables $(stat -c %s "$raw") bytes at ${tables_start}"

# ---- The kernel's report ----------------------------------------------------

grep -q '^FAIL' "$log" && fail "FAIL lines in the report"
grep -qx 'summary [0-9]* ok, 0 failed' "$log" || fail "no summary with 0 failed"
[[ -z $required ]] || grep -qxF "$required" "$log" || fail "missing line: ${required}"
for name in dump-leaves space-report; do
  grep -qx "ok ${name}" "$log" || fail "missing: ok ${name}"
done
root=$(sed -n 's/^info root \(0x[0-9a-f]*\)$/\1/p' "$log")
direct_map=$(sed -n 's/^info direct-map \(0x[0-9a-f]*\)$/\1/p' "$log")
[[ -n $root && -n $direct_map ]] || fail "no 'info root' or 'info direct-map' line"

# ---- 1. The same translation for every page ---------------------------------

# Each side coalesces by its own rule: the kernel joins leaves whose
# attributes (the core's Attrs) are equal, the tool also splits where the leaf
# level changes (the direct map's 4K and 2M parts, say). So the two lists
# differ in their boundaries even when every page agrees. A
# page-by-page translation (va -> pa, perms, user, global, memory type) has
# exactly one decomposition into maximal runs in which pa advances with va and
# the rest stays the same: both lists are brought to it (sorted, then
# neighbours joined) and compared line by line, which compares every page
# without expanding 128 MiB and more into pages.
#
# Input lines: VA SIZE PA KEY (numbers as 0x hex or decimal); output lines:
# VA SIZE PA KEY in hex, 16 digits. Bash integers are 64-bit and wrap, which is
# what upper-half addresses need; sorting the zero-padded hex text sorts them
# as unsigned numbers.
canonical() {
  local va size pa key
  while read -r va size pa key; do
    printf '%016x %016x %016x %s\n' $((va)) $((size)) $((pa)) "$key"
  done | LC_ALL=C sort | {
    local cva='' csize=0 cpa=0 ckey=''
    while read -r va size pa key; do
      va=$((16#$va)) size=$((16#$size)) pa=$((16#$pa))
      if [[ -n $cva ]] && ((va == cva + csize && pa == cpa + csize)) && [[ $key == "$ckey" ]]; then
        csize=$((csize + size))
        continue
      fi
      [[ -n $cva ]] && printf '%016x %016x %016x %s\n' "$cva" "$csize" "$cpa" "$ckey"
      cva=$va csize=$size cpa=$pa ckey=$key
    done
    [[ -n $cva ]] && printf '%016x %016x %016x %s\n' "$cva" "$csize" "$cpa" "$ckey"
  }
}

# The kernel's lines: map VA SIZE PA PERMS USER GLOBAL MEM.
grep '^map ' "$log" | while read -r _ k_va k_size k_pa k_perms k_user k_global k_mem; do
  echo "$k_va $k_size $k_pa $k_perms/$k_user/$k_global/$k_mem"
done | canonical >"$work/kernel.ranges"
kernel_lines=$(grep -c '^map ' "$log")

# The tool's JSON array (nlohmann's dump(2): one key per line). Its `perms`
# are the kernel's rights and `user` user mode's: on x86-64 without SMEP and
# SMAP, a user page gives the kernel the same rights as user mode, so `user`
# is either `---` or equal to `perms`; anything else is kept as it is and shows
# as a mismatch. So does a `note` (a leaf whose translation faults, or whose
# own bits differ from the rights the whole walk gives): the kernel has none.
t=${EPOCHREALTIME/./}
"$ptkit" dump "$core" --root "$root" --format "$format" --json >"$work/core.json" \
  2>"$work/core.err"
status=$?
((status == 0)) || fail "ptkit dump of the core exited ${status}: $(cat "$work/core.err")"
[[ -s $work/core.err ]] && fail "ptkit dump warned: $(cat "$work/core.err")"
dump_ms=$(ms_since "$t")
declare -A j=()
while IFS= read -r line; do
  if [[ $line =~ ^\ *\"([a-z_]+)\":\ (.*)$ ]]; then
    value=${BASH_REMATCH[2]%,}
    value=${value#\"}
    j[${BASH_REMATCH[1]}]=${value%\"}
  elif [[ $line =~ ^\ *\},?$ ]]; then
    u=${j[user]}
    if [[ $u == --- ]]; then
      u=kern
    elif [[ $u == "${j[perms]}" ]]; then
      u=user
    else
      u=user:$u
    fi
    [[ ${j[global]} == true ]] && g=global || g=-
    note=${j[note]:-}
    echo "${j[va]} ${j[size]} ${j[pa]} ${j[perms]}/$u/$g/${j[mem]}${note:+/note:${note// /_}}"
    j=()
  fi
done <"$work/core.json" | canonical >"$work/tool.ranges"
tool_ranges=$(grep -c '"va"' "$work/core.json")

pages=0
while read -r _ size _ _; do pages=$((pages + 16#$size / 4096)); done <"$work/kernel.ranges"
if ! diff -u --label "kernel (walk)" --label "ptkit dump (core)" "$work/kernel.ranges" \
  "$work/tool.ranges" >"$work/ranges.diff"; then
  echo "---- VA SIZE PA PERMS/USER/GLOBAL/MEM, each side joined to maximal runs"
  cat "$work/ranges.diff"
  fail "the tool's walk of the dumped memory and the kernel's own walk disagree"
fi
echo "same translation: ${kernel_lines} kernel ranges, ${tool_ranges} tool ranges," \
  "$(wc -l <"$work/kernel.ranges") maximal runs, ${pages} pages (4K):"
echo "---- VA SIZE PA PERMS/USER/GLOBAL/MEM"
cat "$work/kernel.ranges"

# ---- 2. The audit ------------------------------------------------------------

# What the audit must find, predicted from the kernel's own lines (the rules
# of docs/ptkit-tool.md, `dump --audit`), and nothing else:
# - wx: a range writable and executable (at either privilege: on x86-64
#   without SMEP and SMAP a user page gives the kernel the same rights);
# - user-kernel: a user range in the upper half (its VA negative as a 64-bit
#   signed number);
# - exec-direct-map: an executable range of the direct map (va == base + pa);
# - writable-table: a writable range outside the direct map whose frames meet
#   the span that holds the tables (`info table-span`).
# This kernel's are in its report: the image's .data/.bss at their physical
# addresses (the table pools are in .bss: the kernel edits its first tables
# through the image, early::ImageAccess), two low-memory mappings its checks
# leave behind, and what space_report.hpp's map_for_dump() adds (a 1G leaf
# over pa 0, a W+X page, a user page in the upper half). The span also holds
# pages that are no table (between the image and the boot allocator); no
# writable range of this kernel maps only those, or the prediction would name
# a finding the tool rightly does not report.
# Both sides are joined into maximal runs per kind, like the translation.
grep '^map ' "$log" | while read -r _ k_va k_size k_pa k_perms k_user _; do
  direct=$((k_va == direct_map + k_pa))
  [[ $k_perms == ?wx ]] && echo "$k_va $k_size $k_va wx"
  [[ $k_user == user ]] && ((k_va < 0)) && echo "$k_va $k_size $k_va user-kernel"
  [[ $k_perms == ??x ]] && ((direct)) && echo "$k_va $k_size $k_va exec-direct-map"
  if [[ $k_perms == ?w? ]] && ((!direct && k_pa < tables_end && k_pa + k_size > tables_start))
  then
    echo "$k_va $k_size $k_va writable-table"
  fi
done | canonical >"$work/audit.expected"
t=${EPOCHREALTIME/./}
"$ptkit" dump "$core" --root "$root" --format "$format" --audit --direct-map "$direct_map" \
  >"$work/audit.txt" 2>&1
status=$?
audit_ms=$(ms_since "$t")
echo "---- ptkit dump --audit --direct-map ${direct_map} (exit ${status})"
cat "$work/audit.txt"
((status == 0 || status == 3)) || fail "ptkit dump --audit exited ${status}"
# Finding lines: KIND 0xVA-0xEND SIZE ...; the last line is the count.
while read -r kind range _; do
  [[ $kind == "${format}:" ]] && continue
  if [[ $range =~ ^(0x[0-9a-f]+)-(0x[0-9a-f]+)$ ]]; then
    echo "${BASH_REMATCH[1]} $((BASH_REMATCH[2] - BASH_REMATCH[1])) ${BASH_REMATCH[1]} ${kind}"
  else
    echo "0 0 0 ${kind}:${range}"  # an entry finding: never expected here
  fi
done <"$work/audit.txt" | canonical >"$work/audit.found"
if ! diff -u --label "predicted from the kernel's lines" --label "ptkit dump --audit" \
  "$work/audit.expected" "$work/audit.found"; then
  fail "the audit's findings are not the ones this kernel's lines predict"
fi
echo "audit: the $(wc -l <"$work/audit.found") findings predicted"

# ---- 3. Raw memory -----------------------------------------------------------

t=${EPOCHREALTIME/./}
"$ptkit" dump "$raw" --base "$tables_start" --root "$root" --format "$format" --json \
  >"$work/raw.json" 2>"$work/raw.err"
status=$?
((status == 0)) || fail "ptkit dump of the raw tables exited ${status}: $(cat "$work/raw.err")"
if ! cmp -s "$work/core.json" "$work/raw.json"; then
  diff -u --label core --label raw "$work/core.json" "$work/raw.json" | head -40
  fail "the raw tables (pmemsave) dump differently from the core"
fi
echo "raw tables (pmemsave ${tables_start}-${tables_end}): the same ${tool_ranges} ranges"
raw_ms=$(ms_since "$t")
echo "PASS ($(ms_since "$start") ms: boot ${ready_ms}, dump and quit $((dumped_ms - ready_ms)),"\
  "ptkit dump of the core ${dump_ms}, --audit ${audit_ms}, of the raw tables ${raw_ms})"
