// The RISC-V reference walker (sim/src/riscv_walker.cpp):
// 1. on tables written word by word with bit patterns from the privileged
//    spec (§4.4 PTE figure, ch. 5 Svnapot, ch. 6 Svpbmt; spelled out below,
//    not taken from any header): every leaf size of Sv39/48/57, every fault
//    at every level (§4.3.2 steps 3, 4 and 6), rights with SUM/MXR, A/D with
//    and without Svadu, PBMT, NAPOT, global through a non-leaf G;
// 2. against the core: random map/unmap/protect batches through
//    ptkit::AddressSpace<riscv::Paging> over simulated memory, a plain
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

#include "ptkit/arch/riscv.hpp"
#include "sim_support.hpp"
#include "support.hpp"

namespace ptkit::sim {
namespace {

// Privileged spec §4.4, "Sv39 page table entry" (Sv48/Sv57 alike), Svpbmt
// PBMT in 62:61, Svnapot N in 63.
namespace pte {
constexpr u64 V = u64{1} << 0;
constexpr u64 R = u64{1} << 1;
constexpr u64 W = u64{1} << 2;
constexpr u64 X = u64{1} << 3;
constexpr u64 U = u64{1} << 4;
constexpr u64 G = u64{1} << 5;
constexpr u64 A = u64{1} << 6;
constexpr u64 D = u64{1} << 7;
constexpr u64 RSW = u64{3} << 8;
constexpr unsigned kPbmtShift = 61;
constexpr u64 N = u64{1} << 63;
/// A PTE whose PPN is `pa` / 4 KiB (bits 53:10), with `flags`.
constexpr u64 make(u64 pa, u64 flags) { return ((pa >> 12) << 10) | flags; }
constexpr u64 pbmt(u64 type) { return type << kPbmtShift; }
}  // namespace pte

constexpr u64 K4 = u64{1} << 12, K64 = u64{1} << 16, M2 = u64{1} << 21, G1 = u64{1} << 30;

const ArchOps& ops() { return riscv_ops(); }

MmuConfig config(unsigned va_bits = 39, bool svpbmt = true, bool svnapot = true) {
  MmuConfig c;
  c.arch = Arch::RiscV;
  c.phys_bits = 56;
  c.rv_va_bits = va_bits;
  c.rv_svpbmt = svpbmt;
  c.rv_svnapot = svnapot;
  return c;
}

/// Tables built by hand in simulated memory: the root at 1 MiB, further
/// tables from 2 MiB up.
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
  /// The address of the PTE that translates `va` at `level`, creating
  /// pointers (V only) above it where missing.
  u64 slot(u64 va, unsigned level) {
    u64 table = kRoot;
    for (unsigned l = levels() - 1; l > level; --l) {
      const u64 at = table + index(va, l) * 8;
      u64 raw = mem.read64(at);
      if ((raw & pte::V) == 0) {
        raw = pte::make(next, pte::V);
        next += K4;
        mem.write64(at, raw);
      }
      table = ((raw >> 10) & ((u64{1} << 44) - 1)) << 12;
    }
    return table + index(va, level) * 8;
  }
  void put(u64 va, unsigned level, u64 raw) { mem.write64(slot(va, level), raw); }
  void flags(u64 va, unsigned level, u64 set, u64 clear = 0) {
    const u64 at = slot(va, level);
    mem.write64(at, (mem.read64(at) & ~clear) | set);
  }
  [[nodiscard]] Translation walk(u64 va) const { return ops().translate(cfg, mem, kRoot, va); }
};

u64 va_for(unsigned va_bits) {
  return va_bits == 39   ? 0x0000'003A'5B5C'5D5E
         : va_bits == 48 ? 0x0000'5A5B'5C5D'5E5F
                         : 0x00AB'5A5B'5C5D'5E5F;
}
constexpr u64 kLeafPa[] = {0x0000'000A'BCDE'F000, 0x0000'0012'3440'0000, 0x0000'00AB'C000'0000,
                           0x0012'0000'0000'0000, 0x00AB'0000'0000'0000};
constexpr u64 kRWXAD = pte::V | pte::R | pte::W | pte::X | pte::A | pte::D;
u64 leaf(unsigned level, u64 extra = 0) { return pte::make(kLeafPa[level], kRWXAD | extra); }

constexpr unsigned kModes[] = {39, 48, 57};

// ---- Geometry ------------------------------------------------------------------

TEST(RiscvWalker, Geometry) {
  for (unsigned bits : kModes) {
    const MmuConfig c = config(bits, false, false);
    EXPECT_EQ(ops().levels(c), (bits - 12) / 9);
    for (unsigned l = 0; l < ops().levels(c); ++l) {
      EXPECT_EQ(ops().entry_shift(c, l), 12 + 9 * l);
      EXPECT_EQ(ops().entries(c, l), 512u);
      EXPECT_EQ(ops().run_entries(c, l), 1u);
    }
    const MmuConfig n = config(bits, false, true);
    EXPECT_EQ(ops().run_entries(n, 0), 16u);
    EXPECT_EQ(ops().run_entries(n, 1), 1u);
  }
}

// ---- Leaves of every size --------------------------------------------------------

TEST(RiscvWalker, EveryLeafSizeOfEveryMode) {
  for (unsigned bits : kModes) {
    const u64 va = va_for(bits);
    const unsigned n = (bits - 12) / 9;
    for (unsigned level = 0; level < n; ++level) {
      SCOPED_TRACE(::testing::Message() << "Sv" << bits << " leaf at " << level);
      Tables t(config(bits));
      t.put(va, level, leaf(level));
      const Translation tr = t.walk(va);
      ASSERT_TRUE(tr.ok()) << to_string(tr.fault);
      const u64 size = u64{1} << (12 + 9 * level);
      EXPECT_EQ(tr.va, va);
      EXPECT_EQ(tr.level, int(level));
      EXPECT_EQ(tr.leaf_size, size);
      EXPECT_EQ(tr.pa, kLeafPa[level] + (va & (size - 1)));
      EXPECT_FALSE(tr.global);
      EXPECT_EQ(tr.mem_index, 0u);
    }
  }
}

TEST(RiscvWalker, UpperHalfAndNonCanonicalAddresses) {
  for (unsigned bits : kModes) {
    Tables t(config(bits));
    const u64 top = ~u64{0} << (bits - 1);  // lowest upper-half address
    t.put(top + 0x5000, 0, leaf(0));
    const Translation tr = t.walk(top + 0x5123);
    ASSERT_TRUE(tr.ok()) << bits;
    EXPECT_EQ(tr.pa, kLeafPa[0] + 0x123);
    EXPECT_EQ(t.mem.read64(Tables::kRoot + 256 * 8) & pte::V, pte::V);
    for (u64 va : {u64{1} << (bits - 1), top - 1, u64{1} << 63, u64{1} << (bits + 2),
                   va_for(bits) | (u64{1} << bits)}) {
      EXPECT_EQ(t.walk(va).fault, FaultKind::NonCanonical) << "Sv" << bits << std::hex << " " << va;
    }
    EXPECT_EQ(t.walk((u64{1} << (bits - 1)) - K4).fault, FaultKind::NotPresent);
  }
}

// ---- Faults at every level (§4.3.2) ------------------------------------------------

/// Builds a 4K leaf under pointers, applies `edit` at `level`, and expects
/// `want` there.
template <class Edit>
void expect_fault(const MmuConfig& c, unsigned level, FaultKind want, Edit edit, const char* what) {
  Tables t(c);
  const u64 va = va_for(c.rv_va_bits);
  t.put(va, 0, leaf(0));
  ASSERT_TRUE(t.walk(va).ok());
  edit(t, va);
  const Translation tr = t.walk(va);
  EXPECT_EQ(tr.fault, want) << what << ", Sv" << c.rv_va_bits << " level " << level;
  EXPECT_EQ(tr.level, int(level)) << what << ", Sv" << c.rv_va_bits;
}

TEST(RiscvWalker, InvalidEntriesAtEveryLevel) {
  for (unsigned bits : kModes) {
    for (unsigned level = 0; level < (bits - 12) / 9; ++level) {
      // V=0 stops the walk whatever else is set, reserved bits included.
      expect_fault(
          config(bits), level, FaultKind::NotPresent,
          [&](Tables& t, u64 va) {
            t.flags(va, level, pte::W | (u64{0x7F} << 54) | pte::pbmt(3) | pte::N, pte::V);
          },
          "V=0");
    }
  }
}

TEST(RiscvWalker, ReservedEncodingsAtEveryLevel) {
  for (unsigned bits : kModes) {
    const unsigned n = (bits - 12) / 9;
    for (unsigned level = 0; level < n; ++level) {
      const bool nonleaf = level > 0;  // the path's pointers sit above level 0
      for (unsigned b = 54; b <= 60; ++b) {
        expect_fault(
            config(bits), level, FaultKind::ReservedBits,
            [&](Tables& t, u64 va) { t.flags(va, level, u64{1} << b); }, "bit 60:54");
      }
      // W without R: as a leaf (X=1) and where it would be a pointer (X=0).
      expect_fault(
          config(bits), level, FaultKind::ReservedBits,
          [&](Tables& t, u64 va) { t.flags(va, level, pte::W, pte::R); }, "W without R");
      expect_fault(
          config(bits), level, FaultKind::ReservedBits,
          [&](Tables& t, u64 va) { t.flags(va, level, pte::W, pte::R | pte::X); }, "W only");
      // PBMT without Svpbmt; PBMT=3; PBMT in a pointer.
      expect_fault(
          config(bits, false, true), level, FaultKind::ReservedBits,
          [&](Tables& t, u64 va) { t.flags(va, level, pte::pbmt(1)); }, "PBMT, no Svpbmt");
      expect_fault(
          config(bits), level, FaultKind::ReservedBits,
          [&](Tables& t, u64 va) { t.flags(va, level, pte::pbmt(3)); }, "PBMT=3");
      // N without Svnapot (with the 64K pattern in the PPN).
      expect_fault(
          config(bits, true, false), level, FaultKind::ReservedBits,
          [&](Tables& t, u64 va) { t.flags(va, level, pte::N | (u64{8} << 10)); }, "N, no Svnapot");
      if (nonleaf) {
        // Pointers: PBMT, N, A, D and U are reserved.
        expect_fault(
            config(bits), level, FaultKind::ReservedBits,
            [&](Tables& t, u64 va) { t.flags(va, level, pte::pbmt(1)); }, "PBMT pointer");
        expect_fault(
            config(bits), level, FaultKind::ReservedBits,
            [&](Tables& t, u64 va) { t.flags(va, level, pte::N); }, "N in a pointer");
        for (u64 f : {pte::A, pte::D, pte::U}) {
          expect_fault(
              config(bits), level, FaultKind::ReservedBits,
              [&](Tables& t, u64 va) { t.flags(va, level, f); }, "A/D/U in a pointer");
        }
        // A NAPOT leaf above level 0.
        expect_fault(
            config(bits), level, FaultKind::ReservedBits,
            [&](Tables& t, u64 va) { t.put(va, level, leaf(level, pte::N)); }, "N above level 0");
        // Step 6: a misaligned superpage, each bit of ppn[level-1:0].
        for (unsigned b = 0; b < 9 * level; ++b) {
          expect_fault(
              config(bits), level, FaultKind::ReservedBits,
              [&](Tables& t, u64 va) { t.put(va, level, leaf(level, u64{1} << (10 + b))); },
              "misaligned superpage");
        }
      }
    }
    // Step 4: a pointer at level 0.
    expect_fault(
        config(bits), 0, FaultKind::ReservedBits,
        [&](Tables& t, u64 va) { t.flags(va, 0, 0, pte::R | pte::W | pte::X); },
        "pointer at level 0");
    expect_fault(
        config(bits), 0, FaultKind::ReservedBits,
        [&](Tables& t, u64 va) { t.flags(va, 0, 0, pte::R | pte::W | pte::X | pte::A | pte::D); },
        "bare pointer at level 0");
    // Svnapot: the only defined pattern is ppn[3:0] = 1000.
    for (u64 low : {0b0000u, 0b0001u, 0b0100u, 0b1100u, 0b1001u, 0b0111u, 0b1111u}) {
      expect_fault(
          config(bits), 0, FaultKind::ReservedBits,
          [&](Tables& t, u64 va) {
            t.put(va, 0, pte::make(0x1234'0000 | (low << 12), kRWXAD | pte::N));
          },
          "bad NAPOT pattern");
    }
  }
}

TEST(RiscvWalker, IgnoredBitsChangeNothing) {
  // RSW (9:8) anywhere, G on pointers only changes "global".
  Tables plain(config(57));
  const u64 va = va_for(57);
  plain.put(va, 0, leaf(0));
  const Translation want = plain.walk(va);
  ASSERT_TRUE(want.ok());
  Tables t(config(57));
  t.put(va, 0, leaf(0, pte::RSW));
  for (unsigned level = 1; level < 5; ++level) t.flags(va, level, pte::RSW);
  EXPECT_EQ(t.walk(va), want);
}

// ---- Rights (§4.3.1, sstatus.SUM/MXR) -------------------------------------------------

struct RightsCase {
  u64 leaf;  // R/W/X/U of the leaf (A and D set)
  bool sum, mxr;
  const char* want;  // S-mode "rwx", a space, U-mode "rwx"; '-' = Permission fault
};

constexpr u64 kR = pte::R, kW = pte::W, kX = pte::X, kU = pte::U;
constexpr RightsCase kRights[] = {
    // clang-format off
    {kR,                 false, false, "r-- ---"},
    {kR | kW,            false, false, "rw- ---"},
    {kX,                 false, false, "--x ---"},
    {kX,                 false, true,  "r-x ---"},
    {kX,                 true,  true,  "r-x ---"},
    {kR | kX,            false, false, "r-x ---"},
    {kR | kW | kX,       false, false, "rwx ---"},
    {kR | kW | kX,       true,  false, "rwx ---"},
    {kU | kR,            false, false, "--- r--"},
    {kU | kR,            true,  false, "r-- r--"},
    {kU | kR | kW,       false, false, "--- rw-"},
    {kU | kR | kW,       true,  false, "rw- rw-"},
    {kU | kR | kW | kX,  false, false, "--- rwx"},
    {kU | kR | kW | kX,  true,  false, "rw- rwx"},
    {kU | kR | kX,       true,  true,  "r-- r-x"},
    {kU | kX,            false, false, "--- --x"},
    {kU | kX,            false, true,  "--- r-x"},
    {kU | kX,            true,  false, "--- --x"},
    {kU | kX,            true,  true,  "r-- r-x"},
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

TEST(RiscvWalker, RightsWithSumAndMxrAtEveryLeafLevel) {
  for (unsigned level = 0; level < 3; ++level) {
    for (const RightsCase& rc : kRights) {
      MmuConfig c = config(39);
      c.rv_sum = rc.sum;
      c.rv_mxr = rc.mxr;
      Tables t(c);
      const u64 va = va_for(39);
      t.put(va, level, pte::make(kLeafPa[level], pte::V | pte::A | pte::D | rc.leaf));
      const Translation tr = t.walk(va);
      ASSERT_TRUE(tr.ok()) << to_string(tr.fault);
      EXPECT_EQ(rights(tr), rc.want)
          << "level " << level << " flags " << rc.leaf << " sum " << rc.sum << " mxr " << rc.mxr;
    }
  }
}

TEST(RiscvWalker, AccessedAndDirtyFaultUnlessSvadu) {
  const u64 va = va_for(48);
  for (bool svadu : {false, true}) {
    MmuConfig c = config(48);
    c.rv_svadu = svadu;
    Tables t(c);
    t.put(va, 1, pte::make(kLeafPa[1], pte::V | pte::R | pte::W | pte::U));  // A=0, D=0
    Translation tr = t.walk(va);
    ASSERT_TRUE(tr.ok());
    EXPECT_EQ(tr.accessed, svadu);
    EXPECT_EQ(tr.dirty, svadu);
    for (int i = 0; i < 3; ++i) {
      EXPECT_EQ(tr.check({AccessType(i), true}),
                svadu ? (i == 2 ? FaultKind::Permission : FaultKind::None) : FaultKind::AccessFlag);
    }
    t.put(va, 1, pte::make(kLeafPa[1], pte::V | pte::R | pte::W | pte::U | pte::A));  // D=0
    tr = t.walk(va);
    EXPECT_TRUE(tr.accessed);
    EXPECT_EQ(tr.check({AccessType::Read, true}), FaultKind::None);
    EXPECT_EQ(tr.check({AccessType::Write, true}), svadu ? FaultKind::None : FaultKind::AccessFlag);
    // A store to a read-only page is a permission fault, D or not.
    t.put(va, 1, pte::make(kLeafPa[1], pte::V | pte::R | pte::U | pte::A));
    EXPECT_EQ(t.walk(va).check({AccessType::Write, true}), FaultKind::Permission);
  }
  // Decode reports the raw bits.
  const Descriptor d = ops().decode(config(48), pte::make(kLeafPa[0], pte::V | pte::R), 0);
  EXPECT_FALSE(d.accessed);
  EXPECT_FALSE(d.dirty);
}

// ---- Memory type, NAPOT, global ---------------------------------------------------------

TEST(RiscvWalker, PbmtIsTheMemoryIndexAtEveryLeafLevel) {
  for (unsigned level = 0; level < 3; ++level) {
    for (u64 type : {0u, 1u, 2u}) {
      Tables t(config(39));
      const u64 va = va_for(39);
      t.put(va, level, leaf(level, pte::pbmt(type)));
      const Translation tr = t.walk(va);
      ASSERT_TRUE(tr.ok()) << level << " " << type;
      EXPECT_EQ(tr.mem_index, type);
      EXPECT_EQ(tr.pa, kLeafPa[level] + (va & ((u64{1} << (12 + 9 * level)) - 1)));
    }
  }
}

TEST(RiscvWalker, NapotTakesVaBits15To12) {
  for (unsigned bits : kModes) {
    Tables t(config(bits));
    const u64 base_va = va_for(bits) & ~(K64 - 1);
    const u64 base_pa = 0x0000'0123'4567'0000;
    // The run's 16 PTEs all hold ppn = base | 1000.
    for (u64 k = 0; k < 16; ++k)
      t.put(base_va + k * K4, 0, pte::make(base_pa | (u64{8} << 12), kRWXAD | pte::N));
    for (u64 off : {u64{0}, u64{0x1234}, u64{0x8000}, u64{0xFFFF}, u64{0x7ABC}}) {
      const Translation tr = t.walk(base_va + off);
      ASSERT_TRUE(tr.ok()) << to_string(tr.fault);
      EXPECT_EQ(tr.pa, base_pa + off) << std::hex << off;
      EXPECT_EQ(tr.level, 0);
      EXPECT_EQ(tr.leaf_size, K64);
    }
    const Descriptor d =
        ops().decode(t.cfg, pte::make(base_pa | (u64{8} << 12), kRWXAD | pte::N), 0);
    EXPECT_EQ(d.kind, Descriptor::Kind::Leaf);
    EXPECT_TRUE(d.contiguous);
    EXPECT_EQ(d.pa, base_pa);
  }
  // One NAPOT PTE alone still translates with the address's bits 15:12.
  Tables t(config(39));
  const u64 va = 0x0000'0012'3456'5000;  // index 5 within its 64 KiB
  t.put(va, 0, pte::make(0xABC'0000 | (u64{8} << 12), kRWXAD | pte::N));
  const Translation tr = t.walk(va + 0x42);
  ASSERT_TRUE(tr.ok());
  EXPECT_EQ(tr.pa, 0xABC'5042u);
  EXPECT_EQ(t.walk(va + K4).fault, FaultKind::NotPresent);
}

TEST(RiscvWalker, GlobalFromTheLeafOrAnyPointerAboveIt) {
  for (unsigned bits : kModes) {
    const unsigned n = (bits - 12) / 9;
    const u64 va = va_for(bits);
    {
      Tables t(config(bits));
      t.put(va, 0, leaf(0));
      EXPECT_FALSE(t.walk(va).global);
      t.put(va, 0, leaf(0, pte::G));
      EXPECT_TRUE(t.walk(va).global);
    }
    for (unsigned level = 1; level < n; ++level) {
      Tables t(config(bits));
      t.put(va, 0, leaf(0));
      t.flags(va, level, pte::G);  // a G pointer: every mapping below is global
      const u64 sibling = va ^ (u64{1} << (12 + 9 * level));  // beside it, same level
      t.put(sibling, 0, leaf(0));
      const Translation tr = t.walk(va);
      ASSERT_TRUE(tr.ok());
      EXPECT_TRUE(tr.global) << "Sv" << bits << " G at level " << level;
      EXPECT_FALSE(t.walk(sibling).global) << "Sv" << bits << " sibling of level " << level;
      // A superpage under a G pointer too.
      if (level >= 2) {
        const u64 big = va ^ (u64{1} << (12 + 9 * (level - 1)));
        t.put(big, level - 1, leaf(level - 1));
        EXPECT_TRUE(t.walk(big).global);
      }
    }
  }
}

TEST(RiscvWalker, DecodeReadsOneEntryAtItsLevel) {
  const MmuConfig c = config(48);
  using K = Descriptor::Kind;
  EXPECT_EQ(ops().decode(c, 0, 0).kind, K::Invalid);
  EXPECT_EQ(ops().decode(c, ~pte::V, 2).kind, K::Invalid);
  const Descriptor p = ops().decode(c, pte::make(0x8765'4000, pte::V | pte::G), 3);
  EXPECT_EQ(p.kind, K::Table);
  EXPECT_EQ(p.pa, 0x8765'4000u);
  EXPECT_TRUE(p.global);
  EXPECT_EQ(ops().decode(c, pte::make(0x8765'4000, pte::V), 0).kind, K::Reserved);
  const Descriptor l =
      ops().decode(c, pte::make(kLeafPa[1], pte::V | pte::R | pte::U | pte::A | pte::pbmt(2)), 1);
  EXPECT_EQ(l.kind, K::Leaf);
  EXPECT_EQ(l.pa, kLeafPa[1]);
  EXPECT_TRUE(l.read);
  EXPECT_FALSE(l.write);
  EXPECT_TRUE(l.user);
  EXPECT_FALSE(l.exec_priv || l.exec_user);
  EXPECT_EQ(l.mem_index, 2u);
  EXPECT_FALSE(l.contiguous);
  EXPECT_TRUE(l.accessed);
  EXPECT_FALSE(l.dirty);
  EXPECT_EQ(ops().decode(c, pte::make(kLeafPa[1] + K4, pte::V | pte::R), 1).kind, K::Reserved);
}

// ---- Differential: the walker against tables the core builds ------------------------------

using test::IntervalMap;
using test::SimAccess;
using Alloc = FreeListAllocator<SimAccess>;

constexpr u64 kTableBase = 0x40'0000'0000;
constexpr u64 kTablePages = 16384;

/// Svpbmt's types as the core's MemType names them (ch. 6: NC is
/// non-cacheable idempotent main memory, IO non-cacheable strongly ordered).
MemType mem_of(unsigned pbmt) {
  switch (pbmt) {
    case 0: return MemType::WriteBack;  // PMA: the physical memory attributes decide
    case 1: return MemType::WriteCombining;
    case 2: return MemType::Device;
  }
  ADD_FAILURE() << "reserved PBMT " << pbmt;
  return MemType::Uncached;
}

struct Variant {
  const char* name;
  riscv::Mode mode;
  unsigned va_bits;
  bool svpbmt, svnapot, hw_ad;
};

struct Totals {
  u64 walks = 0, ops = 0, refused = 0, leaves[4] = {0, 0, 0, 0}, napot = 0;
};

void run_differential(const Variant& v, u64 seed, u64 n_ops, Totals& totals) {
  std::mt19937_64 rng(seed);
  auto pick = [&](u64 n) { return std::uniform_int_distribution<u64>(0, n - 1)(rng); };

  riscv::Features f;
  f.svpbmt = v.svpbmt;
  f.svnapot = v.svnapot;
  f.hw_ad = v.hw_ad;
  auto format = riscv::Paging::make(v.mode, f);
  ASSERT_TRUE(format.ok());
  PhysMemory mem;
  Alloc alloc(SimAccess{&mem}, K4);
  alloc.add_range(PhysAddr(kTableBase), kTablePages);
  using Space = AddressSpace<riscv::Paging, SimAccess, Alloc&>;
  auto created = Space::create(format.value(), SimAccess{&mem}, alloc);
  ASSERT_TRUE(created.ok());
  Space s = std::move(created.value());

  MmuConfig cfg = config(v.va_bits, v.svpbmt, v.svnapot);
  cfg.rv_svadu = v.hw_ad;
  IntervalMap ref;

  // Two 8 GiB windows, a quarter into each half; with four or more levels a
  // third of 2 TiB (four level-3 entries) where 512 GiB leaves can appear.
  constexpr u64 G512 = u64{1} << 39;
  const bool level3 = v.va_bits > 39;
  const u64 windows[3] = {u64{1} << (v.va_bits - 2),
                          ~u64{0} << (v.va_bits - 1) | (u64{1} << (v.va_bits - 3)),
                          (u64{1} << (v.va_bits - 2)) + 4 * G512};
  const u64 window_size[3] = {8 * G1, 8 * G1, 4 * G512};
  const u64 phys[3] = {0x0000'0002'0000'0000, 0x0000'0010'0000'0000, 0x0000'1000'0000'0000};
  const int n_windows = level3 ? 3 : 2;
  std::vector<Attrs> choices;
  for (const Attrs& a :
       std::initializer_list<Attrs>{{RW, MemType::WriteBack, false},
                                    {Perm::R, MemType::WriteBack, true},
                                    {RX, MemType::WriteBack, false},
                                    {RW | Perm::User, MemType::WriteCombining, false},
                                    {RWX, MemType::Device, true},
                                    {RW, MemType::WriteCombining, true},
                                    {RW | Perm::User, MemType::Device, false},
                                    {RX | Perm::User, MemType::WriteBack, false},
                                    {RWX | Perm::User, MemType::WriteBack, true}})
    if (s.format().can_express(a)) choices.push_back(a);
  ASSERT_GE(choices.size(), 5u);
  std::vector<MemType> mems;
  for (MemType m : {MemType::WriteBack, MemType::WriteCombining, MemType::Device})
    if (s.format().can_express(Attrs{RW, m, false})) mems.push_back(m);

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
    ASSERT_LE(t.level, 3);
    ++totals.leaves[t.level];
    if (t.level == 0 && t.leaf_size == K64) ++totals.napot;
    const Attrs& a = want->second;
    const bool r = has(a.perm, Perm::R), w = has(a.perm, Perm::W), x = has(a.perm, Perm::X);
    const bool u = has(a.perm, Perm::User);
    const bool readable = r || (cfg.rv_mxr && x);
    const bool want_read[2] = {u ? cfg.rv_sum && readable : readable, u && readable};
    const bool want_write[2] = {u ? cfg.rv_sum && w : w, u && w};
    const bool want_exec[2] = {!u && x, u && x};
    for (int m = 0; m < 2; ++m) {
      ASSERT_EQ(t.read[m], want_read[m]) << std::hex << va << " mode " << m;
      ASSERT_EQ(t.write[m], want_write[m]) << std::hex << va << " mode " << m;
      ASSERT_EQ(t.exec[m], want_exec[m]) << std::hex << va << " mode " << m;
    }
    // The core owns A and D (sets both) unless the hart updates them.
    ASSERT_TRUE(t.accessed && t.dirty) << std::hex << va;
    ASSERT_EQ(t.global, a.global) << std::hex << va << " level " << t.level;
    ASSERT_EQ(mem_of(t.mem_index), a.mem) << std::hex << va << " PBMT " << t.mem_index;
  };

  constexpr u64 kBatch = 40;
  for (u64 op = 0; op < n_ops; ++op) {
    const int wi = level3 && pick(10) == 0 ? 2 : int(pick(2));
    const u64 base = windows[wi];
    const u64 kWindow = window_size[wi];
    const u64 roll = pick(100);
    const u64 gran = wi == 2 && roll < 30 ? G512
                     : roll < 50          ? K4
                     : roll < 62          ? K64
                     : roll < 92          ? M2
                                          : G1;
    const u64 count = gran == G512 || gran == G1 ? 1 + pick(2)
                      : gran == M2               ? 1 + pick(4)
                                                 : 1 + pick(pick(8) == 0 ? 2048 : 16);
    u64 size = count * gran;
    if (pick(5) == 0) size += (1 + pick(511)) * K4;
    ASSERT_LT(size, kWindow);
    u64 va = base + align_down(pick(kWindow - size), gran);
    if (pick(3) == 0) va += pick(512) * K4;
    if (va + size > base + kWindow) va = base + kWindow - size;
    u64 pa = phys[wi] + (va - base);
    // Ranges of 512 GiB leaves keep 1 GiB alignment and any leaf size, or
    // they would need hundreds of thousands of page tables.
    const bool big = size > 16 * G1;
    const u64 pa_roll = big ? 0 : pick(4);
    if (pa_roll == 1) pa += pick(1024) * K4;
    if (pa_roll == 2) pa += pick(64) * M2;
    const u64 hi = va + size - 1;
    const u64 kind = pick(10) < 5 ? 0 : 1 + pick(2);
    bool ok = false;
    if (kind == 0) {
      MapOptions o;
      o.allow_split = true;  // random ops may cut superpages
      const u64 e = pick(6);
      o.existing = e < 2 ? OnExisting::Error : e < 4 ? OnExisting::Replace : OnExisting::Keep;
      o.merge = pick(2) == 0;
      if (pick(6) == 0 && !big) o.leaf_sizes = K4;
      o.contiguous_hint = pick(8) != 0;
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
      c.mem = mems[pick(mems.size())];
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
    // sstatus changes from batch to batch; the tables do not depend on it.
    cfg.rv_sum = pick(2) == 0;
    cfg.rv_mxr = pick(2) == 0;
    auto in_windows = [&](u64 a) {
      for (int w = 0; w < n_windows; ++w)
        if (a >= windows[w] && a - windows[w] < window_size[w]) return true;
      return false;
    };
    auto probe = [&](u64 a) {
      if (in_windows(a)) check(a + pick(K4), op);  // any byte of the page
    };
    for (const test::Run& r : ref.runs()) {
      for (u64 a : {r.va - K4, r.va, r.last & ~(K4 - 1), r.last + 1}) {
        probe(a);
        if (::testing::Test::HasFatalFailure()) return;
      }
    }
    for (int i = 0; i < 1500; ++i) {
      const u64 w = pick(n_windows);
      probe(windows[w] + align_down(pick(window_size[w]), K4));
      if (::testing::Test::HasFatalFailure()) return;
    }
    const u64 hole = u64{1} << (v.va_bits - 1);
    ASSERT_EQ(ops().translate(cfg, mem, s.root().value(), hole + pick(hole)).fault,
              FaultKind::NonCanonical);
    ++totals.walks;
  }
}

TEST(RiscvWalker, AgreesWithTheCoreOnRandomAddressSpaces) {
  const u64 seed = test::test_seed();
  std::printf("PTKIT_SEED=%llu (set it to replay)\n", static_cast<unsigned long long>(seed));
  RecordProperty("seed", std::to_string(seed));
  const auto start = std::chrono::steady_clock::now();
  const Variant variants[] = {
      {"Sv39 Svpbmt Svnapot", riscv::Mode::Sv39, 39, true, true, false},
      {"Sv39 plain", riscv::Mode::Sv39, 39, false, false, false},
      {"Sv48 Svpbmt Svnapot Svadu", riscv::Mode::Sv48, 48, true, true, true},
      {"Sv57 Svpbmt Svnapot", riscv::Mode::Sv57, 57, true, true, false},
  };
  Totals totals;
  u64 salt = 0;
  for (const Variant& v : variants) {
    SCOPED_TRACE(v.name);
    run_differential(v, seed ^ (0x9E37'79B9'7F4A'7C15 * salt++), 3000, totals);
    if (HasFatalFailure()) return;
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf(
      "%llu walks (leaves seen: %llu 4K of which %llu NAPOT, %llu 2M, %llu 1G, %llu 512G) over "
      "%llu ops (%llu refused) in %.2f s\n",
      static_cast<unsigned long long>(totals.walks),
      static_cast<unsigned long long>(totals.leaves[0]),
      static_cast<unsigned long long>(totals.napot),
      static_cast<unsigned long long>(totals.leaves[1]),
      static_cast<unsigned long long>(totals.leaves[2]),
      static_cast<unsigned long long>(totals.leaves[3]),
      static_cast<unsigned long long>(totals.ops), static_cast<unsigned long long>(totals.refused),
      secs);
  RecordProperty("walks", std::to_string(totals.walks));
  EXPECT_GE(totals.walks, 200'000u);
  for (u64 n : totals.leaves) EXPECT_GT(n, 0u);
  EXPECT_GT(totals.napot, 0u);
}

}  // namespace
}  // namespace ptkit::sim
