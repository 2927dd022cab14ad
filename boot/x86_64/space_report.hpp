// The kernel's own view of its address space, printed for
// tests/qemu/dump_guest_memory.sh (`-append hold`): the script dumps the
// guest's memory from QEMU's monitor and checks that `ptkit dump`, whose
// walker is the simulator's and shares no code with the core's, reads the
// same translation from the tables in RAM. Before it prints, the kernel maps
// a few leaves of kinds its checks leave none of (map_for_dump).
//
// One line per range of leaves that continue one another (the next virtual
// and physical address, the same attributes), in address order, as ptkit's
// walk() gives them:
//   map VA SIZE PA PERMS USER GLOBAL MEM
// e.g. `map 0xffff888000100000 0x7f00000 0x100000 rw- kern global wb`:
// PERMS is r, w, x or - each, USER is `user` or `kern`, GLOBAL is `global` or
// `-`, MEM is the memory type under the tool's names. Then the root the CPU
// runs on (CR3), the direct map's base (for the audit) and the physical span
// [START, END) that holds every table (the image's pools and the boot
// allocator), which the script also saves as raw memory:
//   info root 0x...
//   info direct-map 0x...
//   info table-span 0xSTART 0xEND
#pragma once

#include "checks_demand.hpp"
#include "early_tables.hpp"
#include "kernel_space.hpp"
#include "serial.hpp"

namespace kernel {

/// `ptkit dump`'s names of the memory types (tools/ptkit/formats.cpp).
inline const char* mem_name(MemType m) {
  switch (m) {
    case MemType::WriteBack: return "wb";
    case MemType::WriteThrough: return "wt";
    case MemType::WriteCombining: return "wc";
    case MemType::WriteProtect: return "wp";
    case MemType::UncachedMinus: return "uc-";
    case MemType::Uncached: return "uc";
    case MemType::Device: return "device";
  }
  return "?";
}

/// Under `hold`, before the report: leaves of kinds the checks leave none of,
/// so that the dump compares them too: a 1G leaf, user pages (executable,
/// writable, read-only), each memory type of the default PAT layout, a
/// writable and executable page, and a user page in the upper half. The
/// random phase's window is free again by now; the upper-half page goes just
/// below the direct map. The audit must report the W+X page (`wx`), the user
/// page in the upper half (`user-kernel`) and the 1G leaf, which maps the
/// tables writable (`writable-table`); the script predicts each from the
/// `map` lines.
template <class Format>
void map_for_dump(Space<Format>& space, const VirtualLayout& v) {
  struct Leaf {
    u64 va, size, pa;
    Attrs attrs;
  };
  constexpr Perm kUser = Perm::User;
  const u64 w = v.random_window;
  const u64 page = w + GiB + 4 * MiB;
  const Leaf leaves[] = {
      {w, GiB, 0, {ptkit::RW, MemType::WriteBack, false}},
      {w + GiB, 2 * MiB, 64 * MiB, {ptkit::RX | kUser, MemType::WriteThrough, false}},
      {w + GiB + 2 * MiB, 2 * MiB, 66 * MiB, {ptkit::RW | kUser, MemType::UncachedMinus, false}},
      {page, 4 * KiB, 68 * MiB, {ptkit::RWX, MemType::Uncached, false}},
      {page + 4 * KiB, 4 * KiB, 68 * MiB + 4 * KiB, {Perm::R | kUser, MemType::WriteBack, false}},
      {page + 8 * KiB, 4 * KiB, 68 * MiB + 8 * KiB, {ptkit::RW, MemType::WriteThrough, true}},
      {v.direct_map - 2 * MiB,
       4 * KiB,
       68 * MiB + 12 * KiB,
       {Perm::R | kUser, MemType::WriteBack, false}},
  };
  Check c("dump-leaves");
  for (const Leaf& l : leaves) {
    auto done = space.map(VirtAddr(l.va), PhysAddr(l.pa), l.size, l.attrs);
    if (!c.expect_ok(done, "map")) return;
    auto q = space.query(VirtAddr(l.va));
    c.expect(q.ok() && q->size == l.size && q->attrs == l.attrs, "one leaf as mapped", l.va,
             l.size);
  }
}

/// Prints one `map` line per range of `space`, then the root and the direct
/// map's base; a check (`space-report`) that both walks worked. Called once
/// every check has run: nothing changes the tables after it, so the memory
/// QEMU dumps holds what the lines say.
template <class Format>
void report_space(const Space<Format>& space, const VirtualLayout& v) {
  struct Range {
    u64 va = 0, pa = 0, size = 0;
    Attrs attrs{};
  };
  Range open;
  u64 lines = 0;
  auto print = [&lines](const Range& r) {
    const Perm p = r.attrs.perm;
    char perms[] = "---";
    if (has(p, Perm::R)) perms[0] = 'r';
    if (has(p, Perm::W)) perms[1] = 'w';
    if (has(p, Perm::X)) perms[2] = 'x';
    serial::write("map ");
    serial::hex(r.va);
    serial::write(" ");
    serial::hex(r.size);
    serial::write(" ");
    serial::hex(r.pa);
    serial::write(" ");
    serial::write(perms);
    serial::write(has(p, Perm::User) ? " user " : " kern ");
    serial::write(r.attrs.global ? "global " : "- ");
    serial::write(mem_name(r.attrs.mem));
    serial::write("\n");
    ++lines;
  };
  auto visit = [&](const ptkit::Mapping& leaf) {
    const u64 va = leaf.va.value();
    const u64 pa = leaf.pa.value();
    if (open.size != 0 && va == open.va + open.size && pa == open.pa + open.size &&
        leaf.attrs == open.attrs) {
      open.size += leaf.size;
    } else {
      if (open.size != 0) print(open);
      open = Range{va, pa, leaf.size, leaf.attrs};
    }
    return true;
  };
  // walk() covers one half of the canonical space at a time (SDM §3.3.7.1):
  // [0, 2^(N-1)) and [-2^(N-1), 2^64) for N-bit virtual addresses.
  const u64 half = u64{1} << (Format::kVaBits - 1);
  auto lower = space.walk(VirtAddr(0), half, visit);
  auto upper = space.walk(VirtAddr(0 - half), half, visit);
  if (open.size != 0) print(open);
  {
    Check c("space-report");
    c.expect_ok(lower, "walk the lower half");
    c.expect_ok(upper, "walk the upper half");
    c.expect(lines != 0, "mapped ranges");
  }
  serial::write("info root ");
  serial::hex(space.root().value());
  serial::write("\ninfo direct-map ");
  serial::hex(v.direct_map);
  const u64 pools[][2] = {{addr_of(g_table_pool), addr_of(g_table_pool) + sizeof(g_table_pool)},
                          {addr_of(g_demand_pool), addr_of(g_demand_pool) + sizeof(g_demand_pool)},
                          {kBootTables, kBootTables + kBootTablesSize}};
  u64 start = ~u64{0}, end = 0;
  for (const auto& p : pools) {
    if (p[0] < start) start = p[0];
    if (p[1] > end) end = p[1];
  }
  serial::write("\ninfo table-span ");
  serial::hex(start);
  serial::write(" ");
  serial::hex(end);
  serial::write("\n");
}

}  // namespace kernel
