// The x86-64 reference walker (sim/src/x86_walker.cpp):
// 1. on tables written word by word with bit patterns from the Intel SDM vol.
//    3A §4.5 entry tables (spelled out below, not taken from any header):
//    every leaf size, every fault at every level, access rights with
//    WP/SMEP/SMAP/NXE (§4.6), PAT indices (§4.9.2), G, A/D, reserved bits;
// 2. against the core: random map/unmap/protect batches through
//    ptkit::AddressSpace<x86::Paging4/5> over simulated memory, a plain
//    interval map as the reference, and after every batch walks of every
//    mapping boundary ±1 page and random addresses, which must translate as
//    the reference says or fault NotPresent. PTKIT_SEED replays a run.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <iterator>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "ptkit/arch/x86_64.hpp"
#include "sim_support.hpp"
#include "support.hpp"

namespace ptkit::sim {
namespace {

// SDM vol. 3A §4.5, "Format of a PML5/PML4/PDPTE/PDE/PTE" tables.
namespace pte {
constexpr u64 P = u64{1} << 0;
constexpr u64 RW = u64{1} << 1;
constexpr u64 US = u64{1} << 2;
constexpr u64 PWT = u64{1} << 3;
constexpr u64 PCD = u64{1} << 4;
constexpr u64 A = u64{1} << 5;
constexpr u64 D = u64{1} << 6;
constexpr u64 PS = u64{1} << 7;     // PDPTE, PDE
constexpr u64 PAT4K = u64{1} << 7;  // PTE
constexpr u64 G = u64{1} << 8;
constexpr u64 PATL = u64{1} << 12;  // 2M/1G leaves
constexpr u64 XD = u64{1} << 63;
constexpr u64 kAddr = 0x000F'FFFF'FFFF'F000;  // bits 51:12
}  // namespace pte

constexpr u64 K4 = u64{1} << 12, M2 = u64{1} << 21, G1 = u64{1} << 30;

const ArchOps& ops() { return x86_ops(); }

MmuConfig config(unsigned levels = 4) {
  MmuConfig c;
  c.arch = Arch::X86_64;
  c.x86_levels = levels;
  c.x86_page_1g = true;
  return c;
}

/// Tables built by hand in simulated memory: a root at 1 MiB and further
/// tables allocated upwards from 2 MiB.
struct Tables {
  explicit Tables(MmuConfig c) : cfg(c) {}

  static constexpr u64 kRoot = 0x10'0000;
  MmuConfig cfg;
  PhysMemory mem;
  u64 next = 0x20'0000;

  [[nodiscard]] unsigned levels() const { return ops().levels(cfg); }
  [[nodiscard]] u64 index(u64 va, unsigned level) const {
    return (va >> ops().entry_shift(cfg, level)) & 511;
  }
  /// The address of the entry that translates `va` at `level`, creating the
  /// tables above it (entries P|R/W|U/S) where missing.
  u64 slot(u64 va, unsigned level) {
    u64 table = kRoot;
    for (unsigned l = levels() - 1; l > level; --l) {
      const u64 at = table + index(va, l) * 8;
      u64 raw = mem.read64(at);
      if ((raw & pte::P) == 0) {
        raw = next | pte::P | pte::RW | pte::US;
        next += K4;
        mem.write64(at, raw);
      }
      table = raw & pte::kAddr;
    }
    return table + index(va, level) * 8;
  }
  void put(u64 va, unsigned level, u64 raw) { mem.write64(slot(va, level), raw); }
  /// Changes the flag bits of the existing non-leaf entry at `level`.
  void flags(u64 va, unsigned level, u64 set, u64 clear = 0) {
    const u64 at = slot(va, level);
    mem.write64(at, (mem.read64(at) & ~clear) | set);
  }
  [[nodiscard]] Translation walk(u64 va) const { return ops().translate(cfg, mem, kRoot, va); }
};

constexpr u64 kVa4 = 0x0000'5A5B'5C5D'5E5F;  // non-zero index at every level
constexpr u64 kVa5 = 0x00AB'5A5B'5C5D'5E5F;
constexpr u64 kPa4K = 0x0000'000A'BCDE'F000;
constexpr u64 kPa2M = 0x0000'0012'3440'0000;
constexpr u64 kPa1G = 0x0000'00AB'C000'0000;

u64 leaf_pa(unsigned level) { return level == 0 ? kPa4K : level == 1 ? kPa2M : kPa1G; }
/// A present, writable, user leaf at `level` (PS where it is needed).
u64 leaf(unsigned level, u64 extra = 0) {
  return leaf_pa(level) | pte::P | pte::RW | pte::US | (level > 0 ? pte::PS : 0) | extra;
}

// ---- Geometry --------------------------------------------------------------

TEST(X86Walker, Geometry) {
  for (unsigned n : {4u, 5u}) {
    const MmuConfig c = config(n);
    EXPECT_EQ(ops().levels(c), n);
    for (unsigned l = 0; l < n; ++l) {
      EXPECT_EQ(ops().entry_shift(c, l), 12 + 9 * l);
      EXPECT_EQ(ops().entries(c, l), 512u);
      EXPECT_EQ(ops().run_entries(c, l), 1u);
    }
  }
}

// ---- Leaves of every size ----------------------------------------------------

TEST(X86Walker, EveryLeafSizeTranslatesTheWholeAddress) {
  for (unsigned n : {4u, 5u}) {
    const u64 va = n == 4 ? kVa4 : kVa5;
    for (unsigned level = 0; level < 3; ++level) {
      SCOPED_TRACE(::testing::Message() << n << " levels, leaf at " << level);
      Tables t(config(n));
      t.put(va, level, leaf(level));
      const Translation tr = t.walk(va);
      ASSERT_TRUE(tr.ok()) << to_string(tr.fault);
      const u64 size = u64{1} << (12 + 9 * level);
      EXPECT_EQ(tr.va, va);
      EXPECT_EQ(tr.level, int(level));
      EXPECT_EQ(tr.leaf_size, size);
      EXPECT_EQ(tr.pa, leaf_pa(level) + (va & (size - 1)));
      EXPECT_FALSE(tr.global);
      EXPECT_EQ(tr.mem_index, 0u);
    }
  }
}

TEST(X86Walker, UpperHalfAddressesWalkTheirOwnRootEntries) {
  Tables t(config(4));
  const u64 hi = 0xFFFF'8000'0020'1000;  // PML4 index 256
  t.put(hi, 0, kPa4K | pte::P | pte::RW);
  const Translation tr = t.walk(hi + 0x123);
  ASSERT_TRUE(tr.ok());
  EXPECT_EQ(tr.pa, kPa4K + 0x123);
  EXPECT_EQ(t.mem.read64(Tables::kRoot + 256 * 8) & pte::P, pte::P);
  EXPECT_EQ(t.walk(0x0000'0000'0020'1000).fault, FaultKind::NotPresent);  // index 0 is empty
}

TEST(X86Walker, NonCanonicalAddressesFaultBeforeAnyTableIsRead) {
  Tables t4(config(4));
  t4.put(kVa4, 0, leaf(0));
  for (u64 va : {u64{0x0000'8000'0000'0000}, u64{0xFFFF'7FFF'FFFF'FFFF}, u64{0x0001'0000'0000'0000},
                 u64{0x8000'0000'0000'0000}, kVa4 | (u64{1} << 48)}) {
    EXPECT_EQ(t4.walk(va).fault, FaultKind::NonCanonical) << std::hex << va;
  }
  EXPECT_EQ(t4.walk(0xFFFF'8000'0000'0000).fault, FaultKind::NotPresent);
  EXPECT_EQ(t4.walk(0x0000'7FFF'FFFF'FFFF).fault, FaultKind::NotPresent);
  Tables t5(config(5));
  for (u64 va : {u64{0x0100'0000'0000'0000}, u64{0xFEFF'FFFF'FFFF'FFFF}})
    EXPECT_EQ(t5.walk(va).fault, FaultKind::NonCanonical) << std::hex << va;
  // A 4-level non-canonical address is an ordinary one with 5 levels.
  EXPECT_EQ(t5.walk(0x0000'8000'0000'0000).fault, FaultKind::NotPresent);
  EXPECT_EQ(t5.walk(0xFF00'0000'0000'0000).fault, FaultKind::NotPresent);
}

// ---- Faults at every level ------------------------------------------------------

TEST(X86Walker, NotPresentAtEveryLevel) {
  for (unsigned n : {4u, 5u}) {
    const u64 va = n == 4 ? kVa4 : kVa5;
    for (unsigned level = 0; level < n; ++level) {
      SCOPED_TRACE(::testing::Message() << n << " levels, P=0 at " << level);
      Tables t(config(n));
      t.put(va, 0, leaf(0));
      // Every other bit of a not-present entry is ignored, reserved ones too.
      t.flags(va, level, pte::XD | pte::PS | (u64{1} << 51), pte::P);
      const Translation tr = t.walk(va);
      EXPECT_EQ(tr.fault, FaultKind::NotPresent);
      EXPECT_EQ(tr.level, int(level));
      EXPECT_EQ(tr.check({AccessType::Read, false}), FaultKind::NotPresent);
    }
  }
}

TEST(X86Walker, AddressBitsAboveMaxPhyAddrAreReservedAtEveryLevel) {
  for (unsigned n : {4u, 5u}) {
    const u64 va = n == 4 ? kVa4 : kVa5;
    for (unsigned level = 0; level < n; ++level) {
      for (unsigned b : {40u, 45u, 51u}) {
        SCOPED_TRACE(::testing::Message() << n << " levels, bit " << b << " at " << level);
        MmuConfig c = config(n);
        c.phys_bits = 40;
        Tables t(c);
        t.put(va, 0, leaf(0));
        t.flags(va, level, u64{1} << b);
        const Translation tr = t.walk(va);
        EXPECT_EQ(tr.fault, FaultKind::ReservedBits);
        EXPECT_EQ(tr.level, int(level));
      }
    }
  }
  // Large leaves too, and bit 39 is an address bit with MAXPHYADDR 40.
  for (unsigned level : {1u, 2u}) {
    MmuConfig c = config(4);
    c.phys_bits = 40;
    Tables t(c);
    t.put(kVa4, level, leaf(level, u64{1} << 41));
    EXPECT_EQ(t.walk(kVa4).fault, FaultKind::ReservedBits);
    t.put(kVa4, level, leaf(level, u64{1} << 39));
    const Translation tr = t.walk(kVa4);
    ASSERT_TRUE(tr.ok());
    EXPECT_EQ(tr.pa >> 39, 1u);
  }
}

TEST(X86Walker, XdWithoutNxeIsReservedAtEveryLevel) {
  for (unsigned level = 0; level < 4; ++level) {
    MmuConfig c = config(4);
    c.x86_nxe = false;
    Tables t(c);
    t.put(kVa4, 0, leaf(0));
    EXPECT_TRUE(t.walk(kVa4).ok());
    t.flags(kVa4, level, pte::XD);
    const Translation tr = t.walk(kVa4);
    EXPECT_EQ(tr.fault, FaultKind::ReservedBits) << "level " << level;
    EXPECT_EQ(tr.level, int(level));
  }
}

TEST(X86Walker, PsInPml4eAndPml5eIsReserved) {
  for (unsigned n : {4u, 5u}) {
    const u64 va = n == 4 ? kVa4 : kVa5;
    for (unsigned level = 3; level < n; ++level) {
      Tables t(config(n));
      t.put(va, 0, leaf(0));
      t.flags(va, level, pte::PS);
      const Translation tr = t.walk(va);
      EXPECT_EQ(tr.fault, FaultKind::ReservedBits) << n << " levels, level " << level;
      EXPECT_EQ(tr.level, int(level));
    }
  }
}

TEST(X86Walker, OneGigabytePagesNeedTheCpuFeature) {
  MmuConfig c = config(4);
  c.x86_page_1g = false;
  Tables t(c);
  t.put(kVa4, 2, leaf(2));
  const Translation tr = t.walk(kVa4);
  EXPECT_EQ(tr.fault, FaultKind::ReservedBits);
  EXPECT_EQ(tr.level, 2);
  // 2M pages need no feature.
  Tables t2(c);
  t2.put(kVa4, 1, leaf(1));
  EXPECT_TRUE(t2.walk(kVa4).ok());
}

TEST(X86Walker, MisalignedLargePageAddressBitsAreReserved) {
  // 1G: bits 29:13 reserved, 12 is PAT. 2M: bits 20:13 reserved, 12 is PAT.
  for (unsigned level : {1u, 2u}) {
    const unsigned top = level == 2 ? 29 : 20;
    for (unsigned b = 13; b <= top; ++b) {
      Tables t(config(4));
      t.put(kVa4, level, leaf(level, u64{1} << b));
      const Translation tr = t.walk(kVa4);
      EXPECT_EQ(tr.fault, FaultKind::ReservedBits) << "level " << level << " bit " << b;
      EXPECT_EQ(tr.level, int(level));
    }
    Tables t(config(4));
    t.put(kVa4, level, leaf(level, pte::PATL));
    const Translation tr = t.walk(kVa4);
    ASSERT_TRUE(tr.ok());
    EXPECT_EQ(tr.pa, leaf_pa(level) + (kVa4 & ((u64{1} << (12 + 9 * level)) - 1)));
    EXPECT_EQ(tr.mem_index, 4u);
  }
  // In a PTE every bit of 51:12 is address.
  Tables t(config(4));
  const u64 odd = (u64{1} << 13) | (u64{1} << 20) | (u64{1} << 29);
  t.put(kVa4, 0, odd | pte::P);
  EXPECT_EQ(t.walk(kVa4).pa, odd + (kVa4 & 0xFFF));
}

TEST(X86Walker, IgnoredBitsChangeNothing) {
  // 11:9 and 58:52 everywhere, 62:59 (protection key, CR4.PKE off), bit 6
  // and bit 8 of non-leaf entries.
  const u64 ignored = (u64{7} << 9) | (u64{0x7F} << 52) | (u64{0xF} << 59);
  Tables plain(config(5));
  plain.put(kVa5, 0, leaf(0));
  const Translation want = plain.walk(kVa5);
  ASSERT_TRUE(want.ok());
  Tables t(config(5));
  t.put(kVa5, 0, leaf(0, ignored));
  for (unsigned level = 1; level < 5; ++level) t.flags(kVa5, level, ignored | pte::D | pte::G);
  EXPECT_EQ(t.walk(kVa5), want);
}

// ---- Access rights (§4.6) -----------------------------------------------------

struct RightsCase {
  const char* name;
  u64 leaf;     // flags of the 4K leaf besides P
  u64 table;    // flags of the non-leaf entry at `at` besides P
  unsigned at;  // 1 PDE, 2 PDPTE, 3 PML4E
  bool wp, smep, smap, nxe;
  const char* want;  // supervisor "rwx", a space, user "rwx"; '-' = Permission fault
};

constexpr u64 kRW = pte::RW, kUS = pte::US, kXD = pte::XD;
constexpr RightsCase kRights[] = {
    // clang-format off
    {"supervisor RW",                  kRW,             kRW | kUS,       1, true,  false, false, true,  "rwx ---"},
    {"supervisor RO, WP",              0,               kRW | kUS,       1, true,  false, false, true,  "r-x ---"},
    {"supervisor RO, no WP",           0,               kRW | kUS,       1, false, false, false, true,  "rwx ---"},
    {"user RW",                        kRW | kUS,       kRW | kUS,       1, true,  false, false, true,  "rwx rwx"},
    {"user RO, WP",                    kUS,             kRW | kUS,       1, true,  false, false, true,  "r-x r-x"},
    {"user RO, no WP: user still RO",  kUS,             kRW | kUS,       1, false, false, false, true,  "rwx r-x"},
    {"supervisor XD",                  kRW | kXD,       kRW | kUS,       1, true,  false, false, true,  "rw- ---"},
    {"user XD",                        kRW | kUS | kXD, kRW | kUS,       1, true,  false, false, true,  "rw- rw-"},
    {"user RW, SMEP",                  kRW | kUS,       kRW | kUS,       1, true,  true,  false, true,  "rw- rwx"},
    {"user RW, SMAP",                  kRW | kUS,       kRW | kUS,       1, true,  false, true,  true,  "--x rwx"},
    {"user RW, SMEP and SMAP",         kRW | kUS,       kRW | kUS,       1, true,  true,  true,  true,  "--- rwx"},
    {"user RO XD, SMAP, no WP",        kUS | kXD,       kRW | kUS,       1, false, false, true,  true,  "--- r--"},
    {"user RO, SMEP, no WP",           kUS,             kRW | kUS,       1, false, true,  false, true,  "rw- r-x"},
    {"supervisor, SMEP and SMAP",      kRW,             kRW | kUS,       1, true,  true,  true,  true,  "rwx ---"},
    {"PDE read-only",                  kRW | kUS,       kUS,             1, true,  false, false, true,  "r-x r-x"},
    {"PDE read-only, no WP",           kRW | kUS,       kUS,             1, false, false, false, true,  "rwx r-x"},
    {"PDE supervisor",                 kRW | kUS,       kRW,             1, true,  false, false, true,  "rwx ---"},
    {"PDE supervisor, SMEP and SMAP",  kRW | kUS,       kRW,             1, true,  true,  true,  true,  "rwx ---"},
    {"PDE XD",                         kRW | kUS,       kRW | kUS | kXD, 1, true,  false, false, true,  "rw- rw-"},
    {"PDPTE XD",                       kRW,             kRW | kUS | kXD, 2, true,  false, false, true,  "rw- ---"},
    {"PML4E read-only supervisor",     kRW | kUS,       0,               3, true,  false, false, true,  "r-x ---"},
    {"PML4E read-only, user, SMAP",    kRW | kUS,       kUS,             3, true,  false, true,  true,  "--x r-x"},
    {"no NXE: everything executes",    kRW | kUS,       kRW | kUS,       1, true,  false, false, false, "rwx rwx"},
    {"no NXE, SMEP",                   kUS,             kRW | kUS,       1, true,  true,  false, false, "r-- r-x"},
    // clang-format on
};

std::string rights(const Translation& t) {
  std::string out;
  for (bool user : {false, true}) {
    if (user) out += ' ';
    const char* letters = "rwx";
    for (int i = 0; i < 3; ++i) {
      const FaultKind f = t.check({AccessType(i), user});
      out += f == FaultKind::None ? letters[i] : f == FaultKind::Permission ? '-' : '?';
    }
  }
  return out;
}

TEST(X86Walker, AccessRightsCombineEveryLevel) {
  for (const RightsCase& rc : kRights) {
    MmuConfig c = config(4);
    c.x86_wp = rc.wp;
    c.x86_smep = rc.smep;
    c.x86_smap = rc.smap;
    c.x86_nxe = rc.nxe;
    Tables t(c);
    t.put(kVa4, 0, kPa4K | pte::P | rc.leaf);
    t.flags(kVa4, rc.at, rc.table, pte::RW | pte::US | pte::XD);
    const Translation tr = t.walk(kVa4);
    ASSERT_TRUE(tr.ok()) << rc.name << ": " << to_string(tr.fault);
    EXPECT_EQ(rights(tr), rc.want) << rc.name;
  }
}

// ---- Memory type, global, accessed/dirty ------------------------------------------

TEST(X86Walker, PatIndexIsPatPcdPwtAtEveryLeafSize) {
  for (unsigned level = 0; level < 3; ++level) {
    for (unsigned index = 0; index < 8; ++index) {
      const u64 pat = level == 0 ? pte::PAT4K : pte::PATL;
      const u64 bits =
          (index & 4 ? pat : 0) | (index & 2 ? pte::PCD : 0) | (index & 1 ? pte::PWT : 0);
      Tables t(config(4));
      t.put(kVa4, level, leaf(level, bits));
      const Translation tr = t.walk(kVa4);
      ASSERT_TRUE(tr.ok()) << "level " << level << " index " << index;
      EXPECT_EQ(tr.mem_index, index) << "level " << level;
      EXPECT_EQ(tr.leaf_size, u64{1} << (12 + 9 * level));  // PAT in a PTE is not PS
      EXPECT_EQ(tr.pa, leaf_pa(level) + (kVa4 & (tr.leaf_size - 1)));
      EXPECT_EQ(ops().decode(t.cfg, t.mem.read64(t.slot(kVa4, level)), level).mem_index, index);
    }
  }
  // PCD/PWT of non-leaf entries choose the memory type of the next table, not
  // of the page.
  Tables t(config(4));
  t.put(kVa4, 0, leaf(0));
  for (unsigned level = 1; level < 4; ++level) t.flags(kVa4, level, pte::PCD | pte::PWT);
  EXPECT_EQ(t.walk(kVa4).mem_index, 0u);
}

TEST(X86Walker, GlobalIsTheLeafsGBitOnly) {
  for (unsigned level = 0; level < 3; ++level) {
    Tables t(config(4));
    t.put(kVa4, level, leaf(level, pte::G));
    EXPECT_TRUE(t.walk(kVa4).global) << level;
  }
  Tables t(config(4));
  t.put(kVa4, 0, leaf(0));
  for (unsigned level = 1; level < 4; ++level) t.flags(kVa4, level, pte::G);  // ignored there
  const Translation tr = t.walk(kVa4);
  ASSERT_TRUE(tr.ok());
  EXPECT_FALSE(tr.global);
}

TEST(X86Walker, AccessedAndDirtyNeverFault) {
  Tables t(config(4));
  t.put(kVa4, 0, leaf(0));  // A=0, D=0
  const Translation tr = t.walk(kVa4);
  ASSERT_TRUE(tr.ok());
  EXPECT_TRUE(tr.accessed);
  EXPECT_TRUE(tr.dirty);
  EXPECT_EQ(tr.check({AccessType::Write, true}), FaultKind::None);
  const Descriptor clean = ops().decode(t.cfg, leaf(0), 0);
  EXPECT_FALSE(clean.accessed);
  EXPECT_FALSE(clean.dirty);
  const Descriptor used = ops().decode(t.cfg, leaf(0, pte::A | pte::D), 0);
  EXPECT_TRUE(used.accessed);
  EXPECT_TRUE(used.dirty);
}

TEST(X86Walker, DecodeReadsOneEntryAtItsLevel) {
  MmuConfig c = config(5);
  using K = Descriptor::Kind;
  EXPECT_EQ(ops().decode(c, 0, 0).kind, K::Invalid);
  EXPECT_EQ(ops().decode(c, ~pte::P, 3).kind, K::Invalid);
  // Bit 7 by level: PAT, PS (2M), PS (1G), reserved, reserved.
  const u64 raw = 0x0000'0040'0000'0000 | pte::P | pte::PS;
  const K want[] = {K::Leaf, K::Leaf, K::Leaf, K::Reserved, K::Reserved};
  for (unsigned level = 0; level < 5; ++level) {
    const Descriptor d = ops().decode(c, raw, level);
    EXPECT_EQ(d.kind, want[level]) << level;
    if (d.kind == K::Leaf) {
      EXPECT_EQ(d.pa, 0x0000'0040'0000'0000u);
    }
  }
  const Descriptor d4 = ops().decode(c, raw, 0);
  EXPECT_EQ(d4.mem_index, 4u);
  const Descriptor table = ops().decode(c, 0x1234'5000 | pte::P | pte::RW | pte::XD, 2);
  EXPECT_EQ(table.kind, K::Table);
  EXPECT_EQ(table.pa, 0x1234'5000u);
  EXPECT_TRUE(table.write);
  EXPECT_FALSE(table.user);
  EXPECT_FALSE(table.exec_priv);
  const Descriptor l = ops().decode(c, kPa2M | pte::P | pte::PS | pte::US | pte::G | pte::A, 1);
  EXPECT_EQ(l.kind, K::Leaf);
  EXPECT_EQ(l.pa, kPa2M);
  EXPECT_TRUE(l.read);
  EXPECT_FALSE(l.write);
  EXPECT_TRUE(l.user);
  EXPECT_TRUE(l.exec_priv && l.exec_user);
  EXPECT_TRUE(l.global);
  EXPECT_TRUE(l.accessed);
  EXPECT_FALSE(l.dirty);
  c.x86_page_1g = false;
  EXPECT_EQ(ops().decode(c, raw, 2).kind, K::Reserved);
}

// ---- Differential: the walker against tables the core builds -------------------------

using test::IntervalMap;
using test::SimAccess;
using Alloc = FreeListAllocator<SimAccess>;

constexpr u64 kTableBase = 0x40'0000'0000;
constexpr u64 kTablePages = 16384;
constexpr unsigned kPhysBits = 46;

MemType mem_of(x86::PatType t) {
  // SDM §11.12.2, Table 11-10: PAT memory type encodings.
  switch (static_cast<unsigned>(t)) {
    case 0: return MemType::Uncached;
    case 1: return MemType::WriteCombining;
    case 4: return MemType::WriteThrough;
    case 5: return MemType::WriteProtect;
    case 6: return MemType::WriteBack;
    case 7: return MemType::UncachedMinus;
  }
  ADD_FAILURE() << "reserved PAT type " << unsigned(t);
  return MemType::Device;
}

/// IA32_PAT as the test programs it: the power-on low half, WC and WP in the
/// high half so that the PAT bit itself is exercised.
x86::PatLayout pat_layout() {
  x86::PatLayout p;
  p.entry[4] = x86::PatType::WC;
  p.entry[5] = x86::PatType::WP;
  return p;
}

struct Totals {
  u64 walks = 0, ops = 0, refused = 0, leaves[3] = {0, 0, 0};
};

template <class Format>
void run_differential(unsigned levels, u64 seed, u64 n_ops, Totals& totals) {
  std::mt19937_64 rng(seed);
  auto pick = [&](u64 n) { return std::uniform_int_distribution<u64>(0, n - 1)(rng); };

  x86::Features f;
  f.page_1g = true;
  f.phys_bits = kPhysBits;
  f.pat = pat_layout();
  PhysMemory mem;
  Alloc alloc(SimAccess{&mem}, K4);
  alloc.add_range(PhysAddr(kTableBase), kTablePages);
  using Space = AddressSpace<Format, SimAccess, Alloc&>;
  auto created = Space::create(Format{f}, SimAccess{&mem}, alloc);
  ASSERT_TRUE(created.ok());
  Space s = std::move(created.value());

  MmuConfig cfg = config(levels);
  cfg.phys_bits = kPhysBits;
  IntervalMap ref;

  const unsigned va_bits = 12 + 9 * levels;
  constexpr u64 kWindow = 8 * G1;
  const u64 windows[2] = {u64{1} << (va_bits - 2),                                // low half
                          ~u64{0} << (va_bits - 1) | (u64{1} << (va_bits - 3))};  // high half
  const u64 phys[2] = {0x0000'0002'0000'0000, 0x0000'0010'0000'0000};
  const std::vector<Attrs> choices = {{RW, MemType::WriteBack, false},
                                      {Perm::R, MemType::WriteBack, true},
                                      {RX, MemType::WriteThrough, false},
                                      {RW | Perm::User, MemType::Uncached, false},
                                      {RWX, MemType::UncachedMinus, true},
                                      {RW, MemType::WriteCombining, true},
                                      {RW | Perm::User, MemType::WriteProtect, false},
                                      {RX | Perm::User, MemType::WriteBack, false}};
  const MemType mems[] = {MemType::WriteBack, MemType::WriteThrough,   MemType::UncachedMinus,
                          MemType::Uncached,  MemType::WriteCombining, MemType::WriteProtect};
  for (const Attrs& a : choices) ASSERT_TRUE(s.format().can_express(a));

  auto check = [&](u64 va, u64 op) {
    const Translation t = ops().translate(cfg, mem, s.root().value(), va);
    ++totals.walks;
    const auto want = ref.lookup(va);
    if (!want) {
      ASSERT_EQ(t.fault, FaultKind::NotPresent)
          << std::hex << "va " << va << " unmapped, walker says " << to_string(t.fault) << " pa "
          << t.pa << std::dec << " after op " << op;
      return;
    }
    ASSERT_TRUE(t.ok()) << std::hex << "va " << va << " maps to " << want->first
                        << ", walker: " << to_string(t.fault) << " at level " << std::dec << t.level
                        << " after op " << op;
    ASSERT_EQ(t.va, va);
    ASSERT_EQ(t.pa, want->first) << std::hex << "va " << va << std::dec << " after op " << op;
    ASSERT_LE(t.level, 2);
    ++totals.leaves[t.level];
    const Attrs& a = want->second;
    const bool w = has(a.perm, Perm::W), x = has(a.perm, Perm::X), u = has(a.perm, Perm::User);
    // §4.6 in terms of the mapping's attributes and the walker's registers.
    const bool smap = u && cfg.x86_smap;
    const bool want_read[2] = {!smap, u};
    const bool want_write[2] = {!smap && (w || !cfg.x86_wp), u && w};
    const bool want_exec[2] = {x && !(u && cfg.x86_smep), u && x};
    for (int m = 0; m < 2; ++m) {
      ASSERT_EQ(t.read[m], want_read[m]) << std::hex << va << " mode " << m;
      ASSERT_EQ(t.write[m], want_write[m]) << std::hex << va << " mode " << m;
      ASSERT_EQ(t.exec[m], want_exec[m]) << std::hex << va << " mode " << m;
    }
    ASSERT_EQ(t.global, a.global) << std::hex << va;
    ASSERT_LT(t.mem_index, 8u);
    ASSERT_EQ(mem_of(f.pat.entry[t.mem_index]), a.mem)
        << std::hex << va << " PAT index " << t.mem_index;
  };

  constexpr u64 kBatch = 40;
  for (u64 op = 0; op < n_ops; ++op) {
    const int wi = int(pick(2));
    const u64 base = windows[wi];
    const u64 roll = pick(100);
    const u64 gran = roll < 50 ? K4 : roll < 62 ? 16 * K4 : roll < 92 ? M2 : G1;
    const u64 count = gran == G1   ? 1 + pick(2)
                      : gran == M2 ? 1 + pick(4)
                                   : 1 + pick(pick(8) == 0 ? 2048 : 16);
    u64 size = count * gran;
    if (pick(5) == 0) size += (1 + pick(511)) * K4;
    u64 va = base + align_down(pick(kWindow - size), gran);
    if (pick(3) == 0) va += pick(512) * K4;
    if (va + size > base + kWindow) va = base + kWindow - size;
    u64 pa = phys[wi] + (va - base);
    const u64 pa_roll = pick(4);
    if (pa_roll == 1) pa += pick(1024) * K4;
    if (pa_roll == 2) pa += pick(64) * M2;
    const u64 hi = va + size - 1;
    const u64 kind = pick(10) < 5 ? 0 : 1 + pick(2);
    bool ok = false;
    if (kind == 0) {
      MapOptions o;
      o.allow_split = true;  // random ops may cut superpages
      const u64 v = pick(6);
      o.existing = v < 2 ? OnExisting::Error : v < 4 ? OnExisting::Replace : OnExisting::Keep;
      o.merge = pick(2) == 0;
      if (pick(6) == 0) o.leaf_sizes = K4;
      const Attrs a = choices[pick(choices.size())];
      const bool clash = o.existing == OnExisting::Error && ref.any_mapped(va, hi);
      auto r = s.map(VirtAddr(va), PhysAddr(pa), size, a, o);
      ASSERT_EQ(r.ok(), !clash) << "map " << std::hex << va << "+" << size << ": "
                                << (r.ok() ? "ok" : to_string(r.error()));
      if (r.ok()) {
        ok = true;
        if (o.existing == OnExisting::Keep)
          ref.insert_holes(va, hi, pa, a);
        else
          ref.insert(va, hi, pa, a);
      }
    } else if (kind == 1) {
      UnmapOptions o;
      o.allow_split = true;  // random ops may cut superpages
      o.holes = pick(6) == 0 ? OnHole::Error : OnHole::Skip;
      const bool holes = o.holes == OnHole::Error && !ref.all_mapped(va, hi);
      auto r = s.unmap(VirtAddr(va), size, o);
      ASSERT_EQ(r.ok(), !holes) << "unmap " << std::hex << va << "+" << size << ": "
                                << (r.ok() ? "ok" : to_string(r.error()));
      if (r.ok()) {
        ok = true;
        ref.erase(va, hi);
      }
    } else {
      ProtectOptions o;
      o.allow_split = true;  // random ops may cut superpages
      o.holes = pick(2) == 0 ? OnHole::Error : OnHole::Skip;
      o.merge = pick(2) == 0;
      AttrChange c;
      c.set = Perm(u8(pick(16)) & u8(Perm::W | Perm::X | Perm::User));
      c.clear = Perm(u8(pick(16)) & u8(Perm::W | Perm::X | Perm::User)) & ~c.set;
      c.change_global = pick(3) == 0;
      c.global = pick(2) == 0;
      c.change_mem = pick(4) == 0;
      c.mem = mems[pick(std::size(mems))];
      const bool holes = o.holes == OnHole::Error && !ref.all_mapped(va, hi);
      auto r = s.protect(VirtAddr(va), size, c, o);
      ASSERT_EQ(r.ok(), !holes) << "protect " << std::hex << va << "+" << size << ": "
                                << (r.ok() ? "ok" : to_string(r.error()));
      if (r.ok()) {
        ok = true;
        ref.protect(va, hi, c);
      }
    }
    ++totals.ops;
    if (!ok) ++totals.refused;

    if ((op + 1) % kBatch != 0 && op + 1 != n_ops) continue;
    // The walker's registers change from batch to batch; the tables do not
    // depend on them.
    cfg.x86_wp = pick(4) != 0;
    cfg.x86_smep = pick(2) == 0;
    cfg.x86_smap = pick(2) == 0;
    auto in_windows = [&](u64 v) {
      for (u64 w : windows)
        if (v >= w && v - w < kWindow) return true;
      return false;
    };
    auto probe = [&](u64 v) {
      if (in_windows(v)) check(v + pick(K4), op);  // any byte of the page
    };
    for (const test::Run& r : ref.runs()) {
      for (u64 v : {r.va - K4, r.va, r.last & ~(K4 - 1), r.last + 1}) {
        probe(v);
        if (::testing::Test::HasFatalFailure()) return;
      }
    }
    for (int i = 0; i < 1500; ++i) {
      const u64 base_w = windows[pick(2)];
      probe(base_w + align_down(pick(kWindow), K4));
      if (::testing::Test::HasFatalFailure()) return;
    }
    // Addresses outside the configured space.
    const u64 hole = u64{1} << (va_bits - 1);
    ASSERT_EQ(ops().translate(cfg, mem, s.root().value(), hole + pick(hole)).fault,
              FaultKind::NonCanonical);
    ++totals.walks;
  }
}

TEST(X86Walker, AgreesWithTheCoreOnRandomAddressSpaces) {
  const u64 seed = test::test_seed();
  std::printf("PTKIT_SEED=%llu (set it to replay)\n", static_cast<unsigned long long>(seed));
  RecordProperty("seed", std::to_string(seed));
  const auto start = std::chrono::steady_clock::now();
  Totals totals;
  {
    SCOPED_TRACE("x86_64 4-level, 1G pages");
    run_differential<x86::Paging4>(4, seed, 6000, totals);
    if (HasFatalFailure()) return;
  }
  {
    SCOPED_TRACE("x86_64 5-level, 1G pages");
    run_differential<x86::Paging5>(5, seed ^ 0x5555, 6000, totals);
    if (HasFatalFailure()) return;
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf(
      "%llu walks (leaves seen: %llu 4K, %llu 2M, %llu 1G) over %llu ops (%llu refused) "
      "in %.2f s\n",
      static_cast<unsigned long long>(totals.walks),
      static_cast<unsigned long long>(totals.leaves[0]),
      static_cast<unsigned long long>(totals.leaves[1]),
      static_cast<unsigned long long>(totals.leaves[2]),
      static_cast<unsigned long long>(totals.ops), static_cast<unsigned long long>(totals.refused),
      secs);
  RecordProperty("walks", std::to_string(totals.walks));
  EXPECT_GE(totals.walks, 200'000u);
  for (u64 n : totals.leaves) EXPECT_GT(n, 0u);
}

}  // namespace
}  // namespace ptkit::sim
