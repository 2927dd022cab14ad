// The rule checker on hand-made traces: for every rule, traces that break it
// are flagged with exactly that rule, and the corrected traces with nothing.
// Then hostile traces: errors, never crashes or unbounded memory.
#include <gtest/gtest.h>

#include <functional>

#include "ptkit/sim/checker.hpp"

namespace ptkit::sim {
namespace {

using Kind = TraceEvent::Kind;

/// A trace in the text format: the header plus `body`.
Trace parse(const std::string& format, u64 root, const std::string& body) {
  char head[96];
  std::snprintf(head, sizeof head, "ptkit-trace 1\nformat %s\nroot %#llx\n", format.c_str(),
                static_cast<unsigned long long>(root));
  Trace t;
  ParseError err;
  EXPECT_TRUE(parse_trace(head + body, t, err)) << "line " << err.line << ": " << err.message;
  return t;
}

std::string dump(const CheckResult& r) {
  std::string s = r.error.empty() ? "" : "error: " + r.error + "\n";
  for (const Violation& v : r.violations) s += describe(v) + "\n";
  return s;
}

/// Exactly the rules in `expected` (each at least once), nothing else.
void expect_rules(const Trace& t, std::vector<std::string> expected, const char* what) {
  const CheckResult r = check(t);
  EXPECT_TRUE(r.error.empty()) << what << ": " << r.error;
  std::vector<std::string> got = r.rules();
  std::sort(got.begin(), got.end());
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(got, expected) << what << "\n" << dump(r) << print_trace(t);
  for (const Violation& v : r.violations) {
    if (v.event < t.events.size()) {
      EXPECT_GT(v.line, 0u) << describe(v);
    }
    EXPECT_FALSE(v.section.empty()) << describe(v);
  }
}

std::string hexs(u64 v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%#llx", static_cast<unsigned long long>(v));
  return buf;
}
std::string write(u64 table, unsigned index, unsigned level, u64 raw) {
  return "write " + hexs(table) + " " + std::to_string(index) + " " + std::to_string(level) + " " +
         hexs(raw) + "\n";
}
/// A fresh table at `pa` whose 512 entries are gen(i).
std::string table(u64 pa, unsigned level, const std::function<u64(unsigned)>& gen) {
  std::string s = "alloc " + hexs(pa) + "\n";
  for (unsigned i = 0; i < 512; ++i) s += write(pa, i, level, gen(i));
  return s;
}

// ---- x86-64 -------------------------------------------------------------------------
// PML4 0x1000 -> PDPT 0x2000 -> PD 0x3000 -> PT 0x4000; 0x1000 -> 0x100000 RW;
// PD[1] (2M..4M) a 2M leaf at 0x200000.
constexpr u64 kP = 1, kRW = 2, kUS = 4, kPS = 0x80, kG = 0x100;
const std::string kX86Base =
    "alloc 0x2000\nalloc 0x3000\nalloc 0x4000\n" + write(0x1000, 0, 3, 0x2000 | kP | kRW) +
    write(0x2000, 0, 2, 0x3000 | kP | kRW) + write(0x3000, 0, 1, 0x4000 | kP | kRW) +
    write(0x4000, 1, 0, 0x100000 | kP | kRW) + write(0x3000, 1, 1, 0x200000 | kP | kRW | kPS) +
    "sync\n";
Trace x86(const std::string& body, const std::string& features = "") {
  return parse("x86_64-4l" + features, 0x1000, kX86Base + body);
}

TEST(CheckerX86, BaseTraceIsClean) { expect_rules(x86(""), {}, "base"); }

TEST(CheckerX86, StaleTranslation) {
  expect_rules(x86(write(0x4000, 1, 0, 0) + "sync\n"), {"stale-translation"}, "unmap, no INVLPG");
  expect_rules(x86(write(0x4000, 1, 0, 0) + "invalidate 0x1000 0x1fff 12\nsync\n"), {},
               "unmap + INVLPG");
  // Restricting needs one too; adding rights does not.
  expect_rules(x86(write(0x4000, 1, 0, 0x100000 | kP) + "sync\n"), {"stale-translation"},
               "read-only, no INVLPG");
  expect_rules(x86(write(0x4000, 1, 0, 0x100000 | kP | kRW | kUS) + "sync\n"), {},
               "user added, no INVLPG");
  expect_rules(x86(write(0x4000, 2, 0, 0x5000 | kP) + "sync\n"), {}, "new page, no INVLPG");
  // The invalidation must reach the page: a 2M stride from 0 misses 0x1000.
  expect_rules(x86(write(0x4000, 1, 0, 0) + "invalidate 0x0 0x1fff 21\nsync\n"),
               {"stale-translation"}, "stride misses");
  // Invalidation before the write does not count.
  expect_rules(x86("invalidate 0x1000 0x1fff 12\n" + write(0x4000, 1, 0, 0) + "sync\n"),
               {"stale-translation"}, "INVLPG first");
  // Global: a CR3 reload spares it, INVLPG does not.
  const std::string global_page = write(0x4000, 3, 0, 0x103000 | kP | kRW | kG) + "sync\n";
  expect_rules(x86(global_page + write(0x4000, 3, 0, 0) + "invalidate-all\nsync\n"),
               {"stale-translation"}, "global, CR3 reload");
  expect_rules(x86(global_page + write(0x4000, 3, 0, 0) + "invalidate-all global\nsync\n"), {},
               "global, full flush");
  expect_rules(x86(global_page + write(0x4000, 3, 0, 0) + "invalidate 0x3000 0x3fff 12\nsync\n"),
               {}, "global, INVLPG");
}

TEST(CheckerX86, StaleTranslationOnUseIsPerAddressAndAccess) {
  expect_rules(x86(write(0x4000, 1, 0, 0) + "use 0x1000\n"), {"stale-translation"}, "use");
  expect_rules(x86(write(0x4000, 1, 0, 0) + "use 0x2000\n"), {}, "another page");
  // Read-only now: a read may use the stale entry harmlessly, a write may not.
  expect_rules(x86(write(0x4000, 1, 0, 0x100000 | kP) + "use 0x1234 r\n"), {}, "read");
  expect_rules(x86(write(0x4000, 1, 0, 0x100000 | kP) + "use 0x1234 w\n"), {"stale-translation"},
               "write");
}

TEST(CheckerX86, SizeAndAttributesInOneWrite) {
  auto split = [](u64 frame, u64 flags) {
    return table(0x5000, 0, [=](unsigned i) { return (frame + i * 0x1000) | flags; }) +
           write(0x3000, 1, 1, 0x5000 | kP | kRW) + "invalidate 0x200000 0x3fffff 21\nsync\n";
  };
  expect_rules(x86(split(0x200000, kP | kRW)), {}, "equivalent split");
  expect_rules(x86(split(0x400000, kP | kRW)), {"x86-size-and-attrs"}, "other frame");
  expect_rules(x86(split(0x200000, kP)), {"x86-size-and-attrs"}, "read-only");
  expect_rules(x86(split(0x200000, kP | kRW | 0x10)), {"x86-size-and-attrs"}, "PCD");
  // Merging back: the table's leaves against the new 2M leaf.
  const std::string merged = split(0x200000, kP | kRW) + write(0x3000, 1, 1, 0x600000 | kP | kPS);
  expect_rules(x86(merged + "invalidate 0x200000 0x3fffff 12 tables\nsync\n"),
               {"x86-size-and-attrs"}, "merge to another frame");
}

TEST(CheckerX86, LiveRange) {
  expect_rules(
      x86("live 0x1000 0x1fff\n" + write(0x4000, 1, 0, 0) + "invalidate 0x1000 0x1fff 12\nsync\n"),
      {"live-range"}, "live page unmapped");
  // Transiently: the break itself counts.
  expect_rules(x86("live 0x200000 0x200fff\n" + write(0x3000, 1, 1, 0) +
                   write(0x3000, 1, 1, 0x200000 | kP | kRW | kPS) +
                   "invalidate 0x200000 0x3fffff 21\nsync\n"),
               {"live-range"}, "live superpage broken and remade");
  expect_rules(
      x86("live 0x5000 0x5fff\n" + write(0x4000, 1, 0, 0) + "invalidate 0x1000 0x1fff 12\nsync\n"),
      {}, "another page live");
  expect_rules(x86("live 0x1000 0x1fff\n" + write(0x4000, 1, 0, 0x100000 | kP) +
                   "invalidate 0x1000 0x1fff 12\nsync\n"),
               {}, "live page made read-only");
}

TEST(CheckerX86, TableFreed) {
  const std::string unlink = write(0x4000, 1, 0, 0) + write(0x3000, 0, 1, 0);
  expect_rules(x86("free 0x4000\n"), {"table-freed-reachable"}, "linked");
  expect_rules(x86(unlink + "free 0x4000\ninvalidate 0x0 0x1fffff 12 tables\nsync\n"),
               {"table-freed-before-invalidation"}, "freed, then invalidated");
  expect_rules(x86(unlink + "invalidate 0x0 0x1fffff 12 tables\nfree 0x4000\nsync\n"), {},
               "invalidated, then freed");
  // A table below an unlinked table is reachable through the cached pointer.
  const std::string unlink_pd = write(0x2000, 0, 2, 0);
  expect_rules(x86(unlink_pd + "free 0x4000\ninvalidate-all global\nsync\n"),
               {"table-freed-before-invalidation"}, "grandchild freed");
  expect_rules(x86(unlink_pd + "invalidate-all\nfree 0x4000\nfree 0x3000\nsync\n"), {},
               "grandchild freed after a full flush");
}

TEST(CheckerX86, TraceProblemsAreReportedNotCrashes) {
  expect_rules(x86(write(0x3000, 2, 1, 0x9000 | kP | kRW) + "sync\n"), {"undefined-memory"},
               "link to a page never written");
  expect_rules(x86("write 0x4000 1 0 0x0 old 0x5\ninvalidate 0x1000 0x1fff 12\nsync\n"),
               {"trace-mismatch"}, "old differs");
  expect_rules(x86("write 0x4000 1 2 0x0\ninvalidate 0x1000 0x1fff 12\nsync\n"),
               {"trace-bad-entry"}, "level differs from the link");
  expect_rules(x86("write 0x4000 600 0 0x3\nsync\n"), {"trace-bad-entry"}, "index past 511");
  expect_rules(x86("write 0x4001 1 0 0x3\nsync\n"), {"trace-bad-entry"}, "misaligned table");
}

TEST(CheckerXen, Rules) {
  const std::string xen = " xen-pv";
  // The base maps a 2M page: that alone breaks the large-page rule.
  expect_rules(x86("", xen), {"xen-large-page"}, "base");
  const std::string small =
      "alloc 0x2000\nalloc 0x3000\nalloc 0x4000\n" + write(0x1000, 0, 3, 0x2000 | kP | kRW) +
      write(0x2000, 0, 2, 0x3000 | kP | kRW) + write(0x3000, 0, 1, 0x4000 | kP | kRW) +
      write(0x4000, 1, 0, 0x100000 | kP | kRW) + "sync\n";
  auto xen_trace = [&](const std::string& body) {
    return parse("x86_64-4l xen-pv", 0x1000, small + body);
  };
  expect_rules(xen_trace(""), {}, "4K only");
  expect_rules(xen_trace(write(0x4000, 2, 0, 0x4000 | kP | kRW) + "sync\n"), {"xen-writable-table"},
               "PT mapped writable");
  expect_rules(xen_trace(write(0x4000, 2, 0, 0x4000 | kP) + "sync\n"), {}, "PT mapped read-only");
  expect_rules(xen_trace(write(0x4000, 2, 0, 0x7000 | kP | kRW) + "alloc 0x7000\nsync\n"),
               {"xen-writable-table"}, "a writable page becomes a table");
  expect_rules(
      xen_trace(write(0x4000, 1, 0, 0x101000 | kP | kRW) + "invalidate 0x1000 0x1fff 12\nsync\n"),
      {"xen-overwrite"}, "overwrite");
  expect_rules(xen_trace(write(0x4000, 1, 0, 0) + "invalidate 0x1000 0x1fff 12\n" +
                         write(0x4000, 1, 0, 0x101000 | kP | kRW) + "sync\n"),
               {}, "invalidate first");
  expect_rules(xen_trace(write(0x4000, 1, 0, 0x100000 | kP | kRW | 0x60) + "sync\n"), {},
               "A/D set");
  expect_rules(xen_trace(write(0x3000, 1, 1, 0x200000 | kP | kPS) + "sync\n"), {"xen-large-page"},
               "2M leaf");
}

// ---- AArch64, 4K granule, 48-bit ----------------------------------------------------
// L0 0x40000000 -> L1 0x40001000 -> L2 0x40002000 -> L3 0x40003000; page 0x1000 ->
// 0x80001000. Page/block attributes: AF | SH inner | AttrIndx 0.
constexpr u64 kArmAttr = 0x400 | 0x300;
constexpr u64 kArmPage = 3 | kArmAttr, kArmBlock = 1 | kArmAttr, kArmTable = 3;
constexpr u64 kArmRo = u64{1} << 7, kArmNg = u64{1} << 11, kArmCont = u64{1} << 52;
const std::string kArmBase = "alloc 0x40001000\nalloc 0x40002000\nalloc 0x40003000\n" +
                             write(0x40000000, 0, 3, 0x40001000 | kArmTable) +
                             write(0x40001000, 0, 2, 0x40002000 | kArmTable) +
                             write(0x40002000, 0, 1, 0x40003000 | kArmTable) +
                             write(0x40003000, 1, 0, 0x80001000 | kArmPage) +
                             write(0x40002000, 1, 1, 0x80200000 | kArmBlock) + "publish\nsync\n";
Trace arm(const std::string& body, const std::string& features = "") {
  return parse("aarch64-4k-48" + features, 0x40000000, kArmBase + body);
}
const std::string kTlbi1000 = "invalidate 0x1000 0x1fff 12\n";

TEST(CheckerArm, BaseTraceIsClean) { expect_rules(arm(""), {}, "base"); }

TEST(CheckerArm, BreakBeforeMake) {
  const std::string remap = write(0x40003000, 1, 0, 0x80002000 | kArmPage);
  const std::string tail = "publish\n" + kTlbi1000 + "complete\nsync\n";
  expect_rules(arm(remap + tail), {"arm-bbm"}, "OA changed in place");
  expect_rules(arm(write(0x40003000, 1, 0, 0) + "publish\n" + kTlbi1000 + "complete\n" + remap +
                   "publish\nsync\n"),
               {}, "break, TLBI, complete, make");
  expect_rules(arm(write(0x40003000, 1, 0, 0) + kTlbi1000 + "publish\ncomplete\n" + remap + tail),
               {"arm-bbm"}, "TLBI before the DSB");
  expect_rules(arm(write(0x40003000, 1, 0, 0) + "publish\n" + kTlbi1000 + remap + tail),
               {"arm-bbm"}, "new entry before the completing DSB");
  expect_rules(arm(write(0x40003000, 1, 0, 0) + "publish\n" + remap + tail), {"arm-bbm"},
               "no TLBI between break and make");
  // What needs no break: permissions and AF.
  expect_rules(arm(write(0x40003000, 1, 0, 0x80001000 | kArmPage | kArmRo) + tail), {},
               "read-only in place");
  expect_rules(arm(write(0x40003000, 1, 0, (0x80001000 | kArmPage) & ~u64{0x400}) + tail), {},
               "AF cleared in place");
  // Memory type, shareability, nG 1 -> 0 do.
  expect_rules(arm(write(0x40003000, 1, 0, 0x80001000 | kArmPage | (1 << 2)) + tail), {"arm-bbm"},
               "AttrIndx");
  expect_rules(arm(write(0x40003000, 1, 0, (0x80001000 | kArmPage) & ~u64{0x100}) + tail),
               {"arm-bbm"}, "shareability");
  const std::string ng = write(0x40003000, 2, 0, 0x80002000 | kArmPage | kArmNg) + "publish\n";
  expect_rules(arm(ng + write(0x40003000, 2, 0, 0x80002000 | kArmPage) +
                   "publish\ninvalidate 0x2000 0x2fff 12\ncomplete\nsync\n"),
               {"arm-bbm"}, "nG 1 -> 0");
  expect_rules(arm(write(0x40003000, 2, 0, 0x80002000 | kArmPage) + "publish\n" +
                   write(0x40003000, 2, 0, 0x80002000 | kArmPage | kArmNg) +
                   "publish\ninvalidate 0x2000 0x2fff 12\ncomplete\nsync\n"),
               {}, "nG 0 -> 1");
}

TEST(CheckerArm, SplitNeedsBreakUnlessBbm2) {
  const std::string split =
      table(0x40004000, 0, [](unsigned i) { return (0x80200000 + i * 0x1000) | kArmPage; }) +
      "publish\n" + write(0x40002000, 1, 1, 0x40004000 | kArmTable) +
      "publish\ninvalidate 0x200000 0x3fffff 21\ncomplete\nsync\n";
  expect_rules(arm(split), {"arm-bbm"}, "block -> table in place");
  expect_rules(arm(split, " bbm2"), {}, "block -> equivalent table with FEAT_BBM level 2");
  const std::string other =
      table(0x40004000, 0, [](unsigned i) { return (0x80400000 + i * 0x1000) | kArmPage; }) +
      "publish\n" + write(0x40002000, 1, 1, 0x40004000 | kArmTable) +
      "publish\ninvalidate 0x200000 0x3fffff 21\ncomplete\nsync\n";
  expect_rules(arm(other, " bbm2"), {"arm-bbm"}, "block -> other table even with level 2");
  const std::string broken =
      table(0x40004000, 0, [](unsigned i) { return (0x80200000 + i * 0x1000) | kArmPage; }) +
      "publish\n" + write(0x40002000, 1, 1, 0) +
      "publish\ninvalidate 0x200000 0x3fffff 21\ncomplete\n" +
      write(0x40002000, 1, 1, 0x40004000 | kArmTable) + "publish\nsync\n";
  expect_rules(arm(broken), {}, "block -> table with a break");
}

TEST(CheckerArm, StaleAndTables) {
  expect_rules(arm(write(0x40003000, 1, 0, 0) + "publish\nsync\n"), {"stale-translation"},
               "no TLBI");
  expect_rules(arm(write(0x40003000, 1, 0, 0) + "publish\n" + kTlbi1000 + "sync\n"),
               {"stale-translation"}, "TLBI without the completing DSB");
  expect_rules(arm(write(0x40003000, 1, 0, 0) + kTlbi1000 + "complete\nsync\n"),
               {"stale-translation"}, "TLBI before the store was published");
  expect_rules(arm(write(0x40003000, 1, 0, 0) + "publish\n" + kTlbi1000 + "complete\nsync\n"), {},
               "correct");
  // Unlinking a table needs the walk caches invalidated (TLBI VAE1, `tables`).
  const std::string unlink = write(0x40003000, 1, 0, 0) + write(0x40002000, 0, 1, 0) + "publish\n";
  expect_rules(arm(unlink + "invalidate 0x0 0x1fffff 12\ncomplete\nfree 0x40003000\nsync\n"),
               {"table-freed-before-invalidation"}, "VALE1 only");
  expect_rules(arm(unlink + "invalidate 0x0 0x1fffff 12 tables\ncomplete\nfree 0x40003000\nsync\n"),
               {}, "VAE1");
  expect_rules(arm(unlink + "invalidate 0x0 0x1fffff 12 tables\nfree 0x40003000\ncomplete\nsync\n"),
               {"table-freed-before-invalidation"}, "freed before the DSB");
}

TEST(CheckerArm, ContiguousRuns) {
  auto run = [](std::function<u64(unsigned)> raw) {
    std::string s;
    for (unsigned k = 0; k < 16; ++k) s += write(0x40003000, 16 + k, 0, raw(k));
    return s + "publish\n";
  };
  const auto good = [](unsigned k) { return (0x80100000 + k * 0x1000) | kArmPage | kArmCont; };
  expect_rules(arm(run(good) + "sync\n"), {}, "a good run");
  expect_rules(arm(run([&](unsigned k) { return k == 5 ? good(k) + 0x1000 : good(k); }) + "sync\n"),
               {"arm-contiguous"}, "one entry maps elsewhere");
  expect_rules(
      arm(run([&](unsigned k) { return k == 9 ? good(k) & ~kArmCont : good(k); }) + "sync\n"),
      {"arm-contiguous"}, "one entry without the hint");
  expect_rules(arm(run([&](unsigned k) { return k == 0 ? good(k) | kArmRo : good(k); }) + "sync\n"),
               {"arm-contiguous"}, "one entry read-only");
  expect_rules(arm(run([&](unsigned k) { return good(k) + 0x1000; })), {"arm-contiguous"},
               "misaligned output, at the end of the trace");
  // Changing one entry of a run in place needs a break (the hint changes).
  expect_rules(arm(run(good) + "sync\n" + write(0x40003000, 20, 0, good(4) & ~kArmCont) +
                   "publish\ninvalidate 0x10000 0x1ffff 12\ncomplete\nsync\n"),
               {"arm-bbm", "arm-contiguous"}, "hint dropped from one entry");
  // Breaking one entry of a run and invalidating only it leaves the run's TLB
  // entry able to serve it.
  std::string whole;
  for (unsigned k = 0; k < 16; ++k) whole += write(0x40003000, 16 + k, 0, 0);
  expect_rules(arm(run(good) + "sync\n" + write(0x40003000, 20, 0, 0) +
                   "publish\ninvalidate 0x10000 0x10fff 12\ncomplete\nsync\n"),
               {"stale-translation", "arm-contiguous"}, "partial break");
  expect_rules(arm(run(good) + "sync\n" + whole +
                   "publish\ninvalidate 0x10000 0x1ffff 12\ncomplete\nsync\n"),
               {}, "whole run broken");
}

// ---- RISC-V Sv39 ------------------------------------------------------------------------
// Root (level 2) 0x80000000 -> 0x80001000 -> 0x80002000; page 0x1000 -> 0x90001000.
constexpr u64 kV = 1, kR = 2, kW = 4, kA = 0x40, kD = 0x80, kRvG = 0x20;
constexpr u64 pte(u64 pa, u64 flags) { return ((pa >> 12) << 10) | flags; }
const std::string kRvBase =
    "alloc 0x80001000\nalloc 0x80002000\n" + write(0x80000000, 0, 2, pte(0x80001000, kV)) +
    write(0x80001000, 0, 1, pte(0x80002000, kV)) +
    write(0x80002000, 1, 0, pte(0x90001000, kV | kR | kW | kA | kD)) +
    write(0x80002000, 2, 0, pte(0x90002000, kV | kR | kW | kA | kD | kRvG)) + "sync\n";
Trace rv(const std::string& body, const std::string& features = "") {
  return parse("riscv-sv39" + features, 0x80000000, kRvBase + body);
}

TEST(CheckerRiscV, StaleGlobalAndTables) {
  expect_rules(rv(""), {}, "base");
  expect_rules(rv(write(0x80002000, 1, 0, 0) + "sync\n"), {"stale-translation"}, "no fence");
  expect_rules(rv(write(0x80002000, 1, 0, 0) + kTlbi1000 + "sync\n"), {}, "sfence.vma va, asid");
  expect_rules(rv(write(0x80002000, 2, 0, 0) + "invalidate 0x2000 0x2fff 12\nsync\n"),
               {"stale-translation"}, "global page, ASID-tagged fence");
  expect_rules(rv(write(0x80002000, 2, 0, 0) + "invalidate 0x2000 0x2fff 12 global\nsync\n"), {},
               "global page, rs2=x0");
  const std::string unlink =
      write(0x80002000, 1, 0, 0) + write(0x80002000, 2, 0, 0) + write(0x80001000, 0, 1, 0);
  expect_rules(rv(unlink + "invalidate 0x0 0x1fffff 12 global\nfree 0x80002000\nsync\n"),
               {"table-freed-before-invalidation"}, "leaf fences only");
  expect_rules(rv(unlink + "invalidate 0x0 0x1fffff 12 global tables\nfree 0x80002000\nsync\n"), {},
               "rs1=x0");
}

TEST(CheckerRiscV, NapotRuns) {
  auto run = [](std::function<u64(unsigned)> raw) {
    std::string s;
    for (unsigned k = 0; k < 16; ++k) s += write(0x80002000, 16 + k, 0, raw(k));
    return s + "sync\n";
  };
  constexpr u64 kN = u64{1} << 63;
  const auto good = [](unsigned) {
    return pte(0x90100000, kV | kR | kW | kA | kD) | (u64{8} << 10) | kN;
  };
  expect_rules(rv(run(good), " svnapot"), {}, "a good NAPOT run");
  expect_rules(rv(run([&](unsigned k) { return k == 3 ? good(k) & ~kW : good(k); }), " svnapot"),
               {"riscv-napot"}, "one entry read-only");
}

// ---- Hostile input ------------------------------------------------------------------------

TEST(CheckerHostile, HugeAddressesCyclesAndBoundsAreErrorsNotCrashes) {
  // Tables and frames at the top of the physical space, a table linking itself.
  expect_rules(x86("alloc 0xffffffffff000\n" + write(0x4000, 5, 0, 0xffffffffff000 | kP) +
                   write(0x1000, 511, 3, 0x1000 | kP | kRW) + write(0x1000, 510, 3, 0) + "sync\n"),
               {}, "self-link");
  // Writing far more distinct chunks than allowed stops with an error.
  std::string many;
  for (u64 i = 0; i < 64; ++i) many += write(0x100000000 + (i << 32), 0, 0, 1);
  CheckOptions small;
  small.max_memory_chunks = 16;
  CheckResult r = check(x86(many), small);
  EXPECT_NE(r.error.find("memory bound"), std::string::npos) << r.error;
  EXPECT_GT(r.error_line, 0u);
  // An alias tree (every entry of every level pointing at the same table)
  // reaches 512^3 leaves; the work bound stops the check.
  std::string alias = "alloc 0x7000\n";
  for (unsigned i = 0; i < 512; ++i) alias += write(0x7000, i, 0, 0x100000 | kP | kRW);
  alias += "alloc 0x6000\n";
  for (unsigned i = 0; i < 512; ++i) alias += write(0x6000, i, 1, 0x7000 | kP | kRW);
  alias += "alloc 0x5000\n";
  for (unsigned i = 0; i < 512; ++i) alias += write(0x5000, i, 2, 0x6000 | kP | kRW);
  alias += write(0x1000, 1, 3, 0x5000 | kP | kRW) + write(0x1000, 1, 3, 0) + "sync\n";
  CheckOptions bounded;
  bounded.max_work = 1'000'000;
  r = check(x86(alias), bounded);
  EXPECT_NE(r.error.find("work bound"), std::string::npos) << r.error;
}

TEST(CheckerRules, EveryRuleHasASectionAndATest) {
  for (const RuleInfo& r : checker_rules()) {
    EXPECT_NE(std::string(r.section), "") << r.id;
    EXPECT_NE(std::string(r.summary), "") << r.id;
  }
  EXPECT_EQ(checker_rules().size(), 14u);
}

}  // namespace
}  // namespace ptkit::sim
