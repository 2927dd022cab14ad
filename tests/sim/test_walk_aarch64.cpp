// The AArch64 reference walker (sim/src/aarch64_walker.cpp): first on tables
// built by hand from the Arm ARM's descriptor layouts (D8.3), bit patterns
// written out here; then against the core, whose random map/unmap/protect
// batches must leave tables that the walker translates exactly as a plain
// interval map says.
#include <chrono>
#include <functional>

#include "ptkit/sim/mmu.hpp"
#include "sim_support.hpp"
#include "support.hpp"

namespace ptkit::sim {
namespace {

const ArchOps& kOps = aarch64_ops();

constexpr u64 K = 1024, M = K * K, G = M * K, T = G * K;
constexpr u64 bit(unsigned n) { return u64{1} << n; }

// ---- Descriptor bits, D8.3 (VMSAv8-64 stage 1, 64-bit descriptors) -----------
constexpr u64 kTableDesc = 0b11;  // levels above 3
constexpr u64 kPageDesc = 0b11;   // level 3
constexpr u64 kBlockDesc = 0b01;  // levels with blocks
constexpr u64 kAttrIndx5 = 5 << 2;
constexpr u64 kAp1 = bit(6);  // AP[1]: EL0 access
constexpr u64 kAp2 = bit(7);  // AP[2]: read-only
constexpr u64 kShInner = 3 << 8;
constexpr u64 kAf = bit(10);
constexpr u64 kNg = bit(11);
constexpr u64 kCont = bit(52);
constexpr u64 kPxn = bit(53);
constexpr u64 kUxn = bit(54);
constexpr u64 kPxnTable = bit(59);
constexpr u64 kUxnTable = bit(60);
constexpr u64 kApTableNoEl0 = bit(61);
constexpr u64 kApTableRo = bit(62);

MmuConfig arm(unsigned granule, unsigned va_bits, bool upper = false, bool ds = false,
              bool lpa = false, unsigned phys_bits = 48) {
  MmuConfig c;
  c.arch = Arch::AArch64;
  c.arm_granule = granule;
  c.arm_va_bits = va_bits;
  c.arm_upper = upper;
  c.arm_ds = ds;
  c.arm_lpa = lpa;
  c.phys_bits = phys_bits;
  return c;
}

unsigned gbits(const MmuConfig& c) {
  return c.arm_granule == 4096 ? 12 : c.arm_granule == 16384 ? 14 : 16;
}
// D8.2: a level resolves granule-3 bits; ptkit level l maps 2^(g + (g-3)l).
unsigned shift_of(const MmuConfig& c, unsigned level) { return gbits(c) + (gbits(c) - 3) * level; }

/// Tables built by hand in simulated memory: `slot(va, level)` creates the
/// table chain down to `level` (table descriptors written by `table_desc`)
/// and returns the physical address of the descriptor there.
struct Hand {
  MmuConfig c;
  PhysMemory m;
  u64 root;
  u64 next;
  unsigned levels;

  Hand(MmuConfig cfg, unsigned lv, u64 table_base = 0x8000'0000)
      : c(cfg), root(table_base), next(table_base + 65536), levels(lv) {}

  // D8.3.1 table descriptor: NextLevelTableAddress in bits[47:g]; with DS
  // bits[49:48] hold address bits 49:48 and bits[9:8] bits 51:50; with 64K
  // and FEAT_LPA bits[15:12] hold address bits 51:48.
  [[nodiscard]] u64 table_desc(u64 pa) const {
    u64 d = (pa & (bit(48) - 1)) | kTableDesc;
    if (c.arm_granule == 65536 && c.arm_lpa) d |= ((pa >> 48) & 0xF) << 12;
    if (c.arm_granule != 65536 && c.arm_ds) d |= (pa & (3 * bit(48))) | ((pa >> 50) & 3) << 8;
    return d;
  }
  u64 index(u64 va, unsigned level) const {
    const unsigned s = shift_of(c, level);
    const unsigned width = level + 1 == levels ? c.arm_va_bits - s : gbits(c) - 3;
    return (va >> s) & (bit(width) - 1);
  }
  u64 slot(u64 va, unsigned level) {
    u64 table = root;
    for (unsigned l = levels - 1; l > level; --l) {
      const u64 at = table + 8 * index(va, l);
      if (m.read64(at) == 0) {
        m.write64(at, table_desc(next));
        next += 65536;
      }
      const Descriptor d = kOps.decode(c, m.read64(at), l);
      EXPECT_EQ(d.kind, Descriptor::Kind::Table);
      table = d.pa;
    }
    return table + 8 * index(va, level);
  }
  void set(u64 va, unsigned level, u64 raw) { m.write64(slot(va, level), raw); }
  Translation walk(u64 va) const { return kOps.translate(c, m, root, va); }
};

// ---- Geometry --------------------------------------------------------------------

TEST(Aarch64Geometry, StartLevelAndRootSizeFollowGranuleAndInputSize) {
  struct Row {
    unsigned granule, va;
    bool ds;
    unsigned levels;
    u64 root_entries;
  };
  // D8.2: start level 3 - (va - 1 - g) / (g - 3); the root resolves the rest.
  const Row rows[] = {
      {4096, 48, false, 4, 512},   {4096, 39, false, 3, 512},   {4096, 40, false, 4, 2},
      {4096, 52, true, 5, 16},     {4096, 25, false, 2, 16},    {4096, 30, false, 2, 512},
      {16384, 48, false, 4, 2},    {16384, 47, false, 3, 2048}, {16384, 39, false, 3, 8},
      {16384, 52, true, 4, 32},    {16384, 25, false, 1, 2048}, {65536, 48, false, 3, 64},
      {65536, 52, false, 3, 1024}, {65536, 42, false, 2, 8192}, {65536, 39, false, 2, 1024},
      {65536, 29, false, 1, 8192},
  };
  for (const Row& r : rows) {
    const MmuConfig c = arm(r.granule, r.va, false, r.ds, false, r.ds ? 52 : 48);
    SCOPED_TRACE(::testing::Message() << r.granule << "/" << r.va);
    ASSERT_EQ(kOps.levels(c), r.levels);
    EXPECT_EQ(kOps.entries(c, r.levels - 1), r.root_entries);
    for (unsigned l = 0; l + 1 < r.levels; ++l) EXPECT_EQ(kOps.entries(c, l), r.granule / 8);
    for (unsigned l = 0; l < r.levels; ++l) EXPECT_EQ(kOps.entry_shift(c, l), shift_of(c, l));
  }
  // Without DS a 4K/16K input size above 48 bits acts as 48 (TnSZ minimum).
  EXPECT_EQ(kOps.levels(arm(4096, 52)), 4u);
}

TEST(Aarch64Geometry, ContiguousRunsPerGranuleAndLevel) {
  // D8.6.1: 4K 16 entries at levels 3, 2, 1; 16K 128 at level 3, 32 at level
  // 2; 64K 32 at levels 3 and 2; none at the LPA/LPA2-only block levels.
  const MmuConfig k4 = arm(4096, 52, false, true, false, 52);
  EXPECT_EQ(kOps.run_entries(k4, 0), 16u);
  EXPECT_EQ(kOps.run_entries(k4, 1), 16u);
  EXPECT_EQ(kOps.run_entries(k4, 2), 16u);
  EXPECT_EQ(kOps.run_entries(k4, 3), 1u);  // 512G blocks: Contiguous is RES0
  EXPECT_EQ(kOps.run_entries(k4, 4), 1u);
  const MmuConfig k16 = arm(16384, 52, false, true, false, 52);
  EXPECT_EQ(kOps.run_entries(k16, 0), 128u);
  EXPECT_EQ(kOps.run_entries(k16, 1), 32u);
  EXPECT_EQ(kOps.run_entries(k16, 2), 1u);
  EXPECT_EQ(kOps.run_entries(k16, 3), 1u);
  const MmuConfig k64 = arm(65536, 52, false, false, true, 52);
  EXPECT_EQ(kOps.run_entries(k64, 0), 32u);
  EXPECT_EQ(kOps.run_entries(k64, 1), 32u);
  EXPECT_EQ(kOps.run_entries(k64, 2), 1u);
}

// ---- Leaves of every size ---------------------------------------------------------

struct LeafCase {
  MmuConfig c;
  unsigned levels;
  std::vector<unsigned> leaf_levels;  // ptkit levels with a page or block
};

std::vector<LeafCase> leaf_cases() {
  return {
      {arm(4096, 48), 4, {0, 1, 2}},                             // 4K, 2M, 1G
      {arm(4096, 52, false, true, false, 52), 5, {0, 1, 2, 3}},  // + 512G (DS)
      {arm(16384, 48), 4, {0, 1}},                               // 16K, 32M
      {arm(16384, 52, false, true, false, 52), 4, {0, 1, 2}},    // + 64G (DS)
      {arm(65536, 48), 3, {0, 1}},                               // 64K, 512M
      {arm(65536, 52, false, false, true, 52), 3, {0, 1, 2}},    // + 4T (LPA)
  };
}

TEST(Aarch64Walk, EveryPageAndBlockSizeOfEveryGranule) {
  for (const LeafCase& lc : leaf_cases()) {
    ASSERT_EQ(kOps.levels(lc.c), lc.levels);
    for (unsigned level : lc.leaf_levels) {
      SCOPED_TRACE(::testing::Message()
                   << lc.c.arm_granule << "/" << lc.c.arm_va_bits << " level " << level);
      Hand h(lc.c, lc.levels);
      const u64 size = bit(shift_of(lc.c, level));
      const u64 va = 3 * size;
      const u64 pa = 5 * size;
      h.set(va, level, pa | (level == 0 ? kPageDesc : kBlockDesc) | kAf | kAttrIndx5);
      const u64 off = size / 2 + 0x18;
      const Translation t = h.walk(va + off);
      ASSERT_EQ(t.fault, FaultKind::None);
      EXPECT_EQ(t.level, int(level));
      EXPECT_EQ(t.va, va + off);
      EXPECT_EQ(t.pa, pa + off);
      EXPECT_EQ(t.leaf_size, size);
      EXPECT_EQ(t.mem_index, 5u);
      EXPECT_EQ(h.walk(va + size).fault, FaultKind::NotPresent);
    }
  }
}

TEST(Aarch64Walk, InvalidDescriptorFaultsAtItsLevel) {
  for (const LeafCase& lc : leaf_cases()) {
    for (unsigned level = 0; level < lc.levels; ++level) {
      SCOPED_TRACE(::testing::Message() << lc.c.arm_granule << " level " << level);
      Hand h(lc.c, lc.levels);
      const u64 va = (level + 1 == lc.levels ? 1 : 7) * bit(shift_of(lc.c, level));
      // bit[0] = 0 whatever else is set.
      h.set(va, level, 0xFFFF'FFFF'FFFF'FFFEull);
      const Translation t = h.walk(va);
      EXPECT_EQ(t.fault, FaultKind::NotPresent);
      EXPECT_EQ(t.level, int(level));
      EXPECT_EQ(kOps.decode(lc.c, 0xFFFF'FFFF'FFFF'FFFEull, level).kind, Descriptor::Kind::Invalid);
    }
  }
}

TEST(Aarch64Walk, BlocksWhereTheManualHasNoneAreTranslationFaults) {
  // DecodeDescriptorType: 0b01 at level 3, or at a level BlockDescSupported
  // rejects, is an invalid descriptor: a translation fault (NotPresent).
  struct Case {
    MmuConfig c;
    unsigned levels, level;
  };
  const Case cases[] = {
      {arm(4096, 48), 4, 0},                            // 0b01 at level 3
      {arm(4096, 48), 4, 3},                            // 4K level 0 without DS
      {arm(4096, 52, false, true, false, 52), 5, 4},    // level -1
      {arm(16384, 48), 4, 2},                           // 16K level 1 without DS
      {arm(16384, 48), 4, 3},                           // 16K level 0
      {arm(16384, 52, false, true, false, 52), 4, 3},   // 16K level 0 with DS
      {arm(65536, 48), 3, 2},                           // 64K level 1 without LPA
      {arm(65536, 52, false, false, false, 48), 3, 2},  // still none
  };
  for (const Case& k : cases) {
    SCOPED_TRACE(::testing::Message()
                 << k.c.arm_granule << "/" << k.c.arm_va_bits << " level " << k.level);
    Hand h(k.c, k.levels);
    const u64 va = bit(shift_of(k.c, k.level));
    h.set(va, k.level, kBlockDesc | kAf);
    const Translation t = h.walk(va);
    EXPECT_EQ(t.fault, FaultKind::NotPresent);
    EXPECT_EQ(t.level, int(k.level));
    EXPECT_EQ(kOps.decode(k.c, kBlockDesc | kAf, k.level).kind, Descriptor::Kind::Reserved);
  }
}

TEST(Aarch64Walk, AddressesBeyondTheOutputSizeAreAddressSizeFaults) {
  const MmuConfig c = arm(4096, 48, false, false, false, 40);  // IPS = 40 bits
  {
    Hand h(c, 4);
    h.m.write64(h.root + 8, bit(40) | kTableDesc);  // level 0 entry -> table at 1T
    const Translation t = h.walk(bit(39));
    EXPECT_EQ(t.fault, FaultKind::AddressSize);
    EXPECT_EQ(t.level, 3);
  }
  {
    Hand h(c, 4);
    h.set(0x1000, 0, bit(40) | 0x3000 | kPageDesc | kAf);  // page at 1T + 12K
    const Translation t = h.walk(0x1000);
    EXPECT_EQ(t.fault, FaultKind::AddressSize);
    EXPECT_EQ(t.level, 0);
    h.set(0x4000'0000, 2, bit(41) | kBlockDesc | kAf);  // 1G block at 2T
    EXPECT_EQ(h.walk(0x4000'0000).fault, FaultKind::AddressSize);
    EXPECT_EQ(h.walk(0x4000'0000).level, 2);
    h.set(0x8000'0000, 2, (bit(40) - bit(30)) | kBlockDesc | kAf);  // just below
    EXPECT_EQ(h.walk(0x8000'0000).pa, bit(40) - bit(30));
  }
  {
    Hand h(c, 4, bit(40));  // TTBR itself beyond the output size
    EXPECT_EQ(h.walk(0).fault, FaultKind::AddressSize);
  }
  // 64K: bits[15:12] are OA[51:48] with FEAT_LPA. With IPS = 48 a nonzero
  // value there is an address size fault; without FEAT_LPA they are not part
  // of the address at all.
  {
    Hand h(arm(65536, 48, false, false, true, 48), 3);
    h.set(0x10000, 0, 0x20000 | (1 << 12) | kPageDesc | kAf);
    EXPECT_EQ(h.walk(0x10000).fault, FaultKind::AddressSize);
  }
  {
    Hand h(arm(65536, 48), 3);
    h.set(0x10000, 0, 0x20000 | (1 << 12) | kPageDesc | kAf);
    EXPECT_EQ(h.walk(0x10000).fault, FaultKind::None);
    EXPECT_EQ(h.walk(0x10000).pa, 0x20000u);
  }
}

TEST(Aarch64Walk, AddressesOutsideTheConfiguredHalfAreNonCanonical) {
  {
    Hand h(arm(4096, 48), 4);
    h.set(0x1000, 0, 0x5000 | kPageDesc | kAf);
    EXPECT_EQ(h.walk(0x1000).fault, FaultKind::None);
    EXPECT_EQ(h.walk(bit(48) | 0x1000).fault, FaultKind::NonCanonical);
    EXPECT_EQ(h.walk(0xFFFF'0000'0000'1000ull).fault, FaultKind::NonCanonical);
    EXPECT_EQ(h.walk(bit(63)).fault, FaultKind::NonCanonical);
  }
  {
    // TTBR1, 39 bits: [0xFFFF'FF80'0000'0000, 2^64).
    Hand h(arm(4096, 39, true), 3);
    const u64 va = 0xFFFF'FF80'0000'1000ull;
    h.set(va, 0, 0x7000 | kPageDesc | kAf);
    EXPECT_EQ(h.walk(va).pa, 0x7000u);
    EXPECT_EQ(h.walk(0x1000).fault, FaultKind::NonCanonical);
    EXPECT_EQ(h.walk(0xFFFF'FF7F'FFFF'F000ull).fault, FaultKind::NonCanonical);
    // The index comes from va[38:12] only: the top entry of the root.
    h.set(~u64{0}, 0, 0x9000 | kPageDesc | kAf);
    EXPECT_EQ(h.m.read64(h.root + 511 * 8) & 3, kTableDesc);
    EXPECT_EQ(h.walk(~u64{0}).pa, 0x9FFFu);
  }
  {
    Hand h(arm(65536, 42, true), 2);  // 64K TTBR1, 42 bits: root of 8192 entries
    const u64 va = 0xFFFF'FC00'0000'0000ull + 0x2000'0000;
    h.set(va, 1, 0x4000'0000 | kBlockDesc | kAf);
    EXPECT_EQ(h.m.read64(h.root + 8 * 1), (0x4000'0000 | kBlockDesc | kAf));
    EXPECT_EQ(h.walk(va + 0x1234).pa, 0x4000'1234u);
  }
}

TEST(Aarch64Walk, AccessFlagZeroFaultsEveryAccessAfterTheWalk) {
  Hand h(arm(16384, 48), 4);
  h.set(0x4000, 0, 0x8000 | kPageDesc | kAp1);  // AF = 0
  const Translation t = h.walk(0x4000);
  ASSERT_EQ(t.fault, FaultKind::None);
  EXPECT_FALSE(t.accessed);
  for (AccessType a : {AccessType::Read, AccessType::Write, AccessType::Execute})
    for (bool user : {false, true}) EXPECT_EQ(t.check({a, user}), FaultKind::AccessFlag);
  h.set(0x8000, 0, 0x8000 | kPageDesc | kAf);
  EXPECT_TRUE(h.walk(0x8000).accessed);
}

// ---- Permissions -----------------------------------------------------------------------

struct Rights {
  bool pr, pw, px, ur, uw, ux;
  bool operator==(const Rights&) const = default;
};
Rights rights_of(const Translation& t) {
  return {t.read[0], t.write[0], t.exec[0], t.read[1], t.write[1], t.exec[1]};
}
// Rights through Translation::check, to see the two agree.
Rights checked(const Translation& t) {
  auto ok = [&](AccessType a, bool u) { return t.check({a, u}) == FaultKind::None; };
  return {ok(AccessType::Read, false), ok(AccessType::Write, false), ok(AccessType::Execute, false),
          ok(AccessType::Read, true),  ok(AccessType::Write, true),  ok(AccessType::Execute, true)};
}

TEST(Aarch64Walk, LeafPermissionsFromApUxnPxn) {
  // D8.4.1 stage 1 AP[2:1]: 00 EL1 RW; 01 EL1 RW, EL0 RW; 10 EL1 RO; 11 EL1
  // RO, EL0 RO. UXN/PXN: execute-never at EL0/EL1; EL0 execution needs only
  // UXN = 0 (AP 00 with UXN 0 is execute-only at EL0); AP = 01 implies PXN.
  const Rights data[4] = {{true, true, false, false, false, false},
                          {true, true, false, true, true, false},
                          {true, false, false, false, false, false},
                          {true, false, false, true, false, false}};
  Hand h(arm(4096, 39), 3);
  for (unsigned ap = 0; ap < 4; ++ap) {
    for (unsigned xn = 0; xn < 4; ++xn) {
      const bool pxn = xn & 1, uxn = xn & 2;
      const u64 va = (ap * 4 + xn + 1) * 0x1000;
      h.set(va, 0,
            0x10'0000 | kPageDesc | kAf | u64{ap} << 6 | (pxn ? kPxn : 0) | (uxn ? kUxn : 0));
      const Translation t = h.walk(va);
      ASSERT_EQ(t.fault, FaultKind::None);
      Rights want = data[ap];
      want.px = !pxn && ap != 1;
      want.ux = !uxn;
      EXPECT_EQ(rights_of(t), want) << "AP " << ap << " PXN " << pxn << " UXN " << uxn;
      EXPECT_EQ(checked(t), want);
    }
  }
}

TEST(Aarch64Walk, TableBitsRestrictEveryLevelBelow) {
  // D8.4.2 hierarchical controls: APTable[0] removes EL0 access, APTable[1]
  // write access, PXNTable/UXNTable execution, for everything below the
  // table descriptor; ORed along the walk; the implicit PXN of EL0-writable
  // memory follows the combined AP.
  const u64 leaf_bits[] = {0, kAp1, kAp2, kAp1 | kAp2};
  for (unsigned at_level : {1u, 2u}) {  // which table descriptor carries the bits
    for (unsigned tb = 0; tb < 16; ++tb) {
      const u64 table_bits = (tb & 1 ? kApTableNoEl0 : 0) | (tb & 2 ? kApTableRo : 0) |
                             (tb & 4 ? kPxnTable : 0) | (tb & 8 ? kUxnTable : 0);
      for (u64 lb : leaf_bits) {
        Hand h(arm(4096, 39), 3);
        const u64 va = 0x40'0000'0000 / 8 + 0x20'1000;  // 8G + 2M + 4K
        h.set(va, 0, 0x30'0000 | kPageDesc | kAf | lb);
        const u64 at = h.slot(va, at_level);
        h.m.write64(at, h.m.read64(at) | table_bits);
        const Translation t = h.walk(va);
        ASSERT_EQ(t.fault, FaultKind::None);
        const bool ap1 = (lb & kAp1) && !(tb & 1), ap2 = (lb & kAp2) || (tb & 2);
        const Rights want{true, !ap2, !(tb & 4) && !(ap1 && !ap2), ap1, ap1 && !ap2, !(tb & 8)};
        EXPECT_EQ(rights_of(t), want)
            << "table bits " << tb << " at level " << at_level << " leaf " << std::hex << lb;
        const Descriptor d = kOps.decode(h.c, h.m.read64(at), at_level);
        EXPECT_EQ(d.kind, Descriptor::Kind::Table);
        EXPECT_EQ(d.user, !(tb & 1));
        EXPECT_EQ(d.write, !(tb & 2));
        EXPECT_EQ(d.exec_priv, !(tb & 4));
        EXPECT_EQ(d.exec_user, !(tb & 8));
      }
    }
  }
  // Restrictions from two levels add up.
  Hand h(arm(4096, 48), 4);
  const u64 va = 0x1000;
  h.set(va, 0, 0x2000 | kPageDesc | kAf | kAp1);
  h.m.write64(h.slot(va, 3), h.m.read64(h.slot(va, 3)) | kUxnTable);
  h.m.write64(h.slot(va, 1), h.m.read64(h.slot(va, 1)) | kApTableRo);
  const Translation t = h.walk(va);
  EXPECT_EQ(rights_of(t), (Rights{true, false, true, true, false, false}));
}

// ---- Attributes ---------------------------------------------------------------------

TEST(Aarch64Walk, GlobalAttrIndxShareabilityAndContiguous) {
  Hand h(arm(4096, 48), 4);
  h.set(0x1000, 0, 0x2000 | kPageDesc | kAf | kNg | (7 << 2) | kShInner | kCont);
  const Translation t = h.walk(0x1000);
  EXPECT_FALSE(t.global);
  EXPECT_EQ(t.mem_index, 7u);
  EXPECT_EQ(t.shareability, 3u);
  const Descriptor d = kOps.decode(h.c, h.m.read64(h.slot(0x1000, 0)), 0);
  EXPECT_TRUE(d.contiguous);
  EXPECT_EQ(d.pa, 0x2000u);
  h.set(0x2000, 0, 0x2000 | kPageDesc | kAf | (2 << 8));
  EXPECT_TRUE(h.walk(0x2000).global);
  EXPECT_EQ(h.walk(0x2000).shareability, 2u);
  // Under DS bits[9:8] are OA[51:50]: no SH.
  const MmuConfig ds = arm(4096, 48, false, true, false, 52);
  const Descriptor dd = kOps.decode(ds, 0x2000 | kPageDesc | kAf | kShInner, 0);
  EXPECT_EQ(dd.shareability, 0u);
  EXPECT_EQ(dd.pa, 0x2000 | (u64{3} << 50));
  // Contiguous is RES0 on 16K level 1 (64G) blocks under DS.
  const MmuConfig k16 = arm(16384, 52, false, true, false, 52);
  EXPECT_FALSE(kOps.decode(k16, kBlockDesc | kAf | kCont, 2).contiguous);
  EXPECT_TRUE(kOps.decode(k16, kBlockDesc | kAf | kCont, 1).contiguous);
}

TEST(Aarch64Walk, ContiguousRunTakesTheOutputFromTheRunBase) {
  // StageOA with the Contiguous bit: OA bits above the run come from the
  // descriptor, the rest from the input address. A run programmed right
  // translates as without the bit; a stray entry translates with its run.
  Hand h(arm(4096, 48), 4);
  for (u64 i = 0; i < 16; ++i)
    h.set(0x10'0000 + i * 0x1000, 0, (0x20'0000 + i * 0x1000) | kPageDesc | kAf | kCont);
  for (u64 i = 0; i < 16; ++i)
    EXPECT_EQ(h.walk(0x10'0000 + i * 0x1000 + 8).pa, 0x20'0000 + i * 0x1000 + 8);
  h.set(0x10'3000, 0, 0x50'0000 | kPageDesc | kAf | kCont);
  EXPECT_EQ(h.walk(0x10'3000).pa, 0x50'3000u);
}

// ---- 52-bit addresses -----------------------------------------------------------------

TEST(Aarch64Walk, LargeAddressesAtTheTopOfFiftyTwoBits) {
  {
    // 4K, DS: tables and page at the top of the 52-bit space. Page at PA
    // 0xF'FFFF'FFFF'F000: bits[49:12] = PA[49:12], bits[9:8] = PA[51:50].
    const MmuConfig c = arm(4096, 52, false, true, false, 52);
    Hand h(c, 5, 0xF'FFFF'0000'0000ull);
    const u64 va = 0xF'FFFF'FFFF'F000ull;  // the last page of the space
    const u64 slot = h.slot(va, 0);
    h.m.write64(slot, 0x0003'FFFF'FFFF'F000ull | 0x300 | kPageDesc | kAf);
    const Translation t = h.walk(va + 0xABC);
    ASSERT_EQ(t.fault, FaultKind::None);
    EXPECT_EQ(t.pa, 0xF'FFFF'FFFF'FABCull);
    EXPECT_EQ(t.shareability, 0u);
    // The root's entry for va[51:48] = 0xF is a table descriptor whose
    // address has bits 51:50 in bits[9:8].
    const u64 root_entry = h.m.read64(h.root + 15 * 8);
    EXPECT_EQ(root_entry & 0x300, 0x300u);
    EXPECT_EQ(root_entry & (3 * bit(48)), 3 * bit(48));
    // A 512G level 0 block at the top: OA[51:39].
    h.set(0x0008'0000'0000'0000ull, 3, 0x0003'FF80'0000'0000ull | 0x300 | kBlockDesc | kAf);
    EXPECT_EQ(h.walk(0x0008'0000'0000'0123ull).pa, 0xF'FF80'0000'0123ull);
    EXPECT_EQ(h.walk(0x0008'0000'0000'0123ull).leaf_size, 512 * G);
    EXPECT_EQ(h.walk(0x0008'0000'0000'0123ull).level, 3);
    // The same with IPS = 48: address size fault.
    Hand low(arm(4096, 52, false, true, false, 48), 5);
    low.set(0x1000, 0, 0x100 | 0x1000 | kPageDesc | kAf);  // OA[51:50] = 01
    EXPECT_EQ(low.walk(0x1000).fault, FaultKind::AddressSize);
  }
  {
    // 16K, DS: a 64G level 1 block at PA 0xF'FFF0'0000'0000.
    const MmuConfig c = arm(16384, 52, false, true, false, 52);
    Hand h(c, 4, 0xC'0000'0000'0000ull);
    h.set(0x0004'0000'0000'0000ull, 2,
          0x0003'FFF0'0000'0000ull | 0x300 | kBlockDesc | kAf | kAp1 | kUxn);
    const Translation t = h.walk(0x0004'000F'FFFF'FFFFull);
    ASSERT_EQ(t.fault, FaultKind::None);
    EXPECT_EQ(t.pa, 0xF'FFFF'FFFF'FFFFull);
    EXPECT_EQ(t.leaf_size, 64 * G);
    EXPECT_EQ(rights_of(t), (Rights{true, true, false, true, true, false}));
  }
  {
    // 64K, FEAT_LPA: OA[51:48] in bits[15:12]. Page at 0xF'FFFF'FFFF'0000;
    // a 4T level 1 block at 0xF'FC00'0000'0000; tables above 2^48 too.
    const MmuConfig c = arm(65536, 52, false, false, true, 52);
    Hand h(c, 3, 0xE'0000'0000'0000ull);
    h.set(0x10000, 0, 0x0000'FFFF'FFFF'0000ull | 0xF000 | kPageDesc | kAf);
    EXPECT_EQ(h.walk(0x1FFFF).pa, 0xF'FFFF'FFFF'FFFFull);
    EXPECT_EQ(h.m.read64(h.root) & 0xF000, 0xE000u);  // root entry: table at 0xE...
    h.set(0x000F'FC00'0000'0000ull, 2, 0x0000'FC00'0000'0000ull | 0xF000 | kBlockDesc | kAf);
    const Translation t = h.walk(0x000F'FC00'0000'0000ull - 1);
    EXPECT_EQ(t.fault, FaultKind::NotPresent);  // the entry before the block
    EXPECT_EQ(t.level, 2);
    EXPECT_EQ(h.walk(0x000F'FC00'0000'0000ull + 4 * T).fault, FaultKind::NonCanonical);
    const Translation b = h.walk(0x000F'FC00'0000'0000ull + 3 * T + 7);
    ASSERT_EQ(b.fault, FaultKind::None);
    EXPECT_EQ(b.pa, 0xF'FC00'0000'0000ull + 3 * T + 7);
    EXPECT_EQ(b.leaf_size, 4 * T);
    EXPECT_EQ(b.level, 2);
  }
}

// ---- Differential: the core's tables against an interval map ----------------------

/// Table pages for the core in simulated memory: a free list, then a bump
/// pointer. Freed tables are reused dirty, as a real allocator's would be.
class SimPages {
 public:
  SimPages(u64 base, u64 page) : next_(base), page_(page) {}
  bool reserve(u64) { return true; }
  PhysAddr take() {
    if (!free_.empty()) {
      const u64 pa = free_.back();
      free_.pop_back();
      return PhysAddr(pa);
    }
    const u64 pa = next_;
    next_ += page_;
    return PhysAddr(pa);
  }
  void release(PhysAddr pa) { free_.push_back(pa.value()); }
  void give_back_unused() {}

 private:
  u64 next_, page_;
  std::vector<u64> free_;
};

struct DiffConfig {
  const char* name;
  aarch64::Granule granule;
  unsigned va_bits;
  aarch64::Half half;
  bool wide;  // 52-bit: LPA2 (4K/16K) or LVA + LPA (64K)
};

constexpr u64 kDiffOps = 5000;

struct DiffStats {
  u64 walks = 0, mapped = 0, ops = 0, refused = 0;
  u64 by_level[5] = {};
};

constexpr Perm RWU = Perm::R | Perm::W | Perm::User;

/// What the interval map says an access may do: ptkit's Perm on AArch64
/// (user pages: EL0 and EL1 access per R/W, execution at EL0 per X, never at
/// EL1; privileged pages: no EL0 access, execution at EL1 per X).
Rights expected_rights(Perm p) {
  const bool w = has(p, Perm::W), x = has(p, Perm::X), u = has(p, Perm::User);
  return {true, w, x && !u, u, u && w, x && u};
}

std::string hex(u64 v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%#llx", static_cast<unsigned long long>(v));
  return buf;
}

void run_differential(const DiffConfig& dc, u64 seed, u64 ops, DiffStats& stats) {
  using Space = AddressSpace<aarch64::Paging, test::SimAccess, SimPages&>;
  std::mt19937_64 rng(seed);
  auto pick = [&](u64 n) { return std::uniform_int_distribution<u64>(0, n - 1)(rng); };

  aarch64::Features f;
  MmuConfig c;
  c.arch = Arch::AArch64;
  c.arm_granule = dc.granule == aarch64::Granule::K4    ? 4096
                  : dc.granule == aarch64::Granule::K16 ? 16384
                                                        : 65536;
  c.arm_va_bits = dc.va_bits;
  c.arm_upper = dc.half == aarch64::Half::Upper;
  if (dc.wide) {
    f.phys_bits = 52;
    f.lpa2 = dc.granule != aarch64::Granule::K64;
    f.lva = f.lpa = dc.granule == aarch64::Granule::K64;
  }
  c.phys_bits = f.phys_bits;
  c.arm_ds = f.lpa2;
  c.arm_lpa = f.lpa;
  auto made = aarch64::Paging::make(dc.granule, dc.va_bits, dc.half, f);
  ASSERT_TRUE(made.ok());
  const aarch64::Paging format = made.value();
  const aarch64::MairLayout mair{};

  PhysMemory memory;
  const u64 page = c.arm_granule;
  // Tables near the top of the output size: 52-bit table addresses use the
  // DS/LPA descriptor bits.
  const u64 table_base = (bit(f.phys_bits) - 64 * G) & ~(page - 1);
  SimPages pages(table_base, page);
  auto created = Space::create(format, test::SimAccess{&memory}, pages);
  ASSERT_TRUE(created.ok());
  Space s = std::move(created.value());
  const u64 root = s.root().value();
  ASSERT_EQ(kOps.levels(c), format.levels());

  const unsigned levels = format.levels();
  std::vector<unsigned> leaf_levels;
  for (unsigned l = 0; l < levels; ++l)
    if (format.leaf_allowed(l)) leaf_levels.push_back(l);
  const u64 block = s.leaf_size(1);
  const u64 largest = s.leaf_size(leaf_levels.back());
  const u64 space = bit(dc.va_bits);
  u64 window = std::max({8 * G, 4 * largest, 16 * block});
  if (window > space / 4) window = space / 4;
  const u64 lower_base = c.arm_upper ? ~(space - 1) : 0;
  struct Window {
    u64 base, phys;
  };
  // A quarter into the space and near its end; physical bases at the top of
  // the output size and low in it.
  const u64 phys_top = (bit(f.phys_bits) - 64 * window) & ~(largest - 1);
  const Window windows[2] = {{lower_base + space / 4, phys_top},
                             {lower_base + space - 2 * window, 4 * largest}};
  const Attrs choices[] = {{RW, MemType::WriteBack, false},
                           {Perm::R, MemType::WriteBack, true},
                           {RX, MemType::WriteThrough, false},
                           {RWU, MemType::Uncached, false},
                           {RWX, MemType::WriteBack, true},
                           {RW, MemType::WriteCombining, true},
                           {RWU, MemType::Device, false},
                           {RX | Perm::User, MemType::WriteBack, false},
                           {RWX | Perm::User, MemType::WriteBack, false}};
  const MemType mems[] = {MemType::WriteBack, MemType::WriteThrough, MemType::WriteCombining,
                          MemType::Uncached, MemType::Device};
  test::IntervalMap ref;

  // Compares one walk with the reference; false (and a failure) on the first
  // difference.
  auto check = [&](u64 va) -> bool {
    const Translation t = kOps.translate(c, memory, root, va);
    ++stats.walks;
    const bool canonical =
        c.arm_upper ? (va >> dc.va_bits) == (~u64{0} >> dc.va_bits) : (va >> dc.va_bits) == 0;
    const auto want = ref.lookup(va);
    std::string why;
    if (!canonical) {
      if (t.fault != FaultKind::NonCanonical) why = "expected NonCanonical";
    } else if (!want) {
      if (t.fault != FaultKind::NotPresent)
        why = "unmapped, but the walk gives " + std::string(to_string(t.fault));
    } else if (t.fault != FaultKind::None) {
      why = "mapped, but the walk faults: " + std::string(to_string(t.fault)) + " at level " +
            std::to_string(t.level);
    } else {
      ++stats.mapped;
      ++stats.by_level[t.level];
      const Attrs& a = want->second;
      const aarch64::MairSlot& slot = mair.slot[t.mem_index];
      if (t.pa != want->first)
        why = "pa " + hex(t.pa) + " want " + hex(want->first);
      else if (rights_of(t) != expected_rights(a.perm))
        why = "permissions differ (perm " + std::to_string(unsigned(a.perm)) + ")";
      else if (checked(t) != expected_rights(a.perm))
        why = "check() differs";
      else if (t.global != a.global)
        why = "global differs";
      else if (!slot.used || slot.mem != a.mem)
        why = "AttrIndx " + std::to_string(t.mem_index) + " is not memory type " +
              std::to_string(unsigned(a.mem));
      else if (!t.accessed)
        why = "AF = 0";
      else if (t.shareability == 1)
        why = "reserved SH 0b01";
      else if (t.leaf_size != s.leaf_size(unsigned(t.level)))
        why = "leaf size";
    }
    if (why.empty()) return true;
    ADD_FAILURE() << dc.name << " seed " << seed << ": va " << hex(va) << ": " << why
                  << " (walk: fault " << to_string(t.fault) << " level " << t.level << " pa "
                  << hex(t.pa) << ")";
    return false;
  };

  const u64 batch = 12;
  for (u64 op = 0; op < ops; ++op) {
    const Window& w = windows[pick(2)];
    // Leaf level: pages mostly, then blocks, now and then anything larger.
    const u64 roll = pick(100);
    const unsigned lv = roll < 55 ? 0
                        : roll < 85 || leaf_levels.size() < 3
                            ? leaf_levels[1]
                            : leaf_levels[1 + pick(leaf_levels.size() - 1)];
    const u64 gran = s.leaf_size(lv);
    u64 size = gran * (lv == 0 ? 1 + pick(pick(8) == 0 ? 1024 : 24)
                               : 1 + pick(lv == leaf_levels.back() ? 2 : 4));
    if (pick(4) == 0) size += (1 + pick(s.entries(0) - 1)) * page;
    if (size > window / 2) size = window / 2;
    u64 va = w.base + (pick(window - size) & ~(gran - 1));
    if (pick(3) == 0) va += pick(64) * page;
    if (va + size > w.base + window) va = w.base + window - size;
    const u64 hi = va + size - 1;
    u64 pa = w.phys + (va - w.base);
    const u64 pa_roll = pick(4);
    if (pa_roll == 1) pa += pick(64) * gran;
    if (pa_roll == 2 && size <= 4096 * page) pa += pick(1024) * page;
    const int kind = pick(10) < 5 ? 0 : int(1 + pick(2));
    ++stats.ops;
    if (kind == 0) {
      MapOptions o;
      o.allow_split = true;  // random ops may cut superpages
      const u64 v = pick(4);
      o.existing = v == 0 ? OnExisting::Error : v == 1 ? OnExisting::Keep : OnExisting::Replace;
      o.merge = pick(2) == 0;
      o.contiguous_hint = pick(6) != 0;
      if (pick(8) == 0 && size <= 4096 * page) o.leaf_sizes = page;
      const Attrs a = choices[pick(std::size(choices))];
      const bool clash = o.existing == OnExisting::Error && ref.any_mapped(va, hi);
      auto r = s.map(VirtAddr(va), PhysAddr(pa), size, a, o);
      ASSERT_EQ(r.ok(), !clash) << dc.name << " map " << hex(va) << "+" << hex(size) << ": "
                                << (r.ok() ? "ok" : to_string(r.error()));
      if (!r.ok()) {
        ++stats.refused;
      } else if (o.existing == OnExisting::Keep) {
        ref.insert_holes(va, hi, pa, a);
      } else {
        ref.insert(va, hi, pa, a);
      }
    } else if (kind == 1) {
      auto r = s.unmap(VirtAddr(va), size, UnmapOptions{.allow_split = true});
      ASSERT_TRUE(r.ok()) << dc.name << " unmap " << hex(va) << ": " << to_string(r.error());
      ref.erase(va, hi);
    } else {
      ProtectOptions o;
      o.allow_split = true;  // random ops may cut superpages
      o.holes = OnHole::Skip;
      o.merge = pick(2) == 0;
      AttrChange ch;
      ch.set = Perm(u8(pick(16)) & u8(Perm::W | Perm::X | Perm::User));
      ch.clear = Perm(u8(pick(16)) & u8(Perm::W | Perm::X | Perm::User)) & ~ch.set;
      ch.change_global = pick(3) == 0;
      ch.global = pick(2) == 0;
      ch.change_mem = pick(4) == 0;
      ch.mem = mems[pick(std::size(mems))];
      auto r = s.protect(VirtAddr(va), size, ch, o);
      ASSERT_TRUE(r.ok()) << dc.name << " protect " << hex(va) << ": " << to_string(r.error());
      ref.protect(va, hi, ch);
    }
    if ((op + 1) % batch != 0 && op + 1 != ops) continue;

    // Every mapping boundary +-1 page, then random addresses in and around
    // the windows, the ends of the space, and outside it.
    for (const test::Run& r : ref.runs()) {
      for (u64 probe : {r.va - page, r.va, r.va + page, r.last + 1 - page, r.last + 1})
        if (!check(probe)) return;
      if (!check(r.va + pick(r.last - r.va + 1))) return;
    }
    for (int i = 0; i < 256; ++i) {
      const Window& pw = windows[i & 1];
      if (!check(pw.base + pick(window))) return;
    }
    for (u64 probe :
         {lower_base, lower_base + space - 1, lower_base + pick(space),
          c.arm_upper ? pick(space) : space + pick(space), c.arm_upper ? bit(63) - 1 : ~u64{0}})
      if (!check(probe)) return;
  }
}

TEST(Aarch64Differential, CoreTablesTranslateAsTheReferenceMapSays) {
  const DiffConfig configs[] = {
      {"4K/39", aarch64::Granule::K4, 39, aarch64::Half::Lower, false},
      {"4K/48", aarch64::Granule::K4, 48, aarch64::Half::Lower, false},
      {"4K/48 TTBR1", aarch64::Granule::K4, 48, aarch64::Half::Upper, false},
      {"4K/52 LPA2", aarch64::Granule::K4, 52, aarch64::Half::Lower, true},
      {"16K/39", aarch64::Granule::K16, 39, aarch64::Half::Lower, false},
      {"16K/48", aarch64::Granule::K16, 48, aarch64::Half::Lower, false},
      {"64K/39", aarch64::Granule::K64, 39, aarch64::Half::Lower, false},
      {"64K/48", aarch64::Granule::K64, 48, aarch64::Half::Lower, false},
      {"64K/52 LVA+LPA", aarch64::Granule::K64, 52, aarch64::Half::Lower, true},
  };
  const u64 seed = test::test_seed();
  std::printf("PTKIT_SEED=%llu (set it to replay)\n", static_cast<unsigned long long>(seed));
  RecordProperty("seed", std::to_string(seed));
  u64 total_walks = 0;
  const auto start = std::chrono::steady_clock::now();
  for (size_t i = 0; i < std::size(configs); ++i) {
    const DiffConfig& dc = configs[i];
    DiffStats st;
    const auto t0 = std::chrono::steady_clock::now();
    run_differential(dc, seed + i, kDiffOps, st);
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf(
        "%-15s %6llu ops (%llu refused), %8llu walks (%llu mapped; by level "
        "%llu/%llu/%llu/%llu/%llu), %.2f s\n",
        dc.name, static_cast<unsigned long long>(st.ops),
        static_cast<unsigned long long>(st.refused), static_cast<unsigned long long>(st.walks),
        static_cast<unsigned long long>(st.mapped), static_cast<unsigned long long>(st.by_level[0]),
        static_cast<unsigned long long>(st.by_level[1]),
        static_cast<unsigned long long>(st.by_level[2]),
        static_cast<unsigned long long>(st.by_level[3]),
        static_cast<unsigned long long>(st.by_level[4]), secs);
    total_walks += st.walks;
    if (HasFailure()) return;
    EXPECT_GT(st.by_level[1], 0u) << dc.name << ": no block was walked";
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("%llu walks in %.2f s\n", static_cast<unsigned long long>(total_walks), secs);
  EXPECT_GE(total_walks, 400'000u);
}

}  // namespace
}  // namespace ptkit::sim
