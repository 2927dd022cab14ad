// The AArch64 VMSAv8-64 stage 1 format, exhaustively per granule and level
// (STYLE.md rule 13), and the TLBI sink. Every expected raw value is assembled
// here from the bit positions the Arm ARM (DDI 0487 K.a) gives, never from the
// header's constants or helpers, so a wrong bit in the header shows:
//   D8.2      translation process: granules, levels, initial lookup level
//   D8.3.1    table descriptor format (NLTA, NSTable, APTable, UXNTable, PXNTable)
//   D8.3.2    block and page descriptor formats (OA, AttrIndx, AP, SH, AF, nG,
//             GP, DBM, Contiguous, PXN, UXN, software bits)
//   D8.4      access permissions (AP[2:1], PXN, UXN)
//   D8.6.1    the Contiguous bit (run lengths)
//   D8.16.1   break-before-make
//   MAIR_EL1  Attr<n> encodings
//   C5.5      TLBI operands
#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

#include "ptkit/arch/aarch64.hpp"
#include "ptkit/arch/aarch64_tlb.hpp"

namespace ptkit {
// Readable failures: gtest finds this by argument-dependent lookup.
[[maybe_unused]] static void PrintTo(const Entry& e, std::ostream* os) {
  const char* kinds[] = {"invalid", "table", "leaf"};
  *os << kinds[int(e.kind)] << " pa 0x" << std::hex << e.pa.value() << " perm " << std::dec
      << int(e.attrs.perm) << " mem " << int(e.attrs.mem) << " global " << e.attrs.global
      << " kept 0x" << std::hex << e.kept << " contiguous " << e.contiguous << std::dec;
}
}  // namespace ptkit

namespace ptkit::test {
namespace {

using aarch64::Features;
using aarch64::Granule;
using aarch64::Half;
using aarch64::MairLayout;
using aarch64::MairSlot;
using aarch64::Paging;
using aarch64::Shareability;

// ---- Bit positions, straight from the Arm ARM ------------------------------------------
namespace arm {
constexpr u64 bit(unsigned n) { return u64{1} << n; }
/// Bits [lo, hi] inclusive.
constexpr u64 bits(unsigned lo, unsigned hi) {
  u64 m = 0;
  for (unsigned b = lo; b <= hi; ++b) m |= bit(b);
  return m;
}
// D8.3.1 / D8.3.2, descriptor type: bit 0 valid, bit 1 table/page vs block.
constexpr u64 VALID = bit(0);
constexpr u64 TABLE = bit(1);  // 0b11 table at levels 0-2 (and -1), page at level 3
// D8.3.2, lower attributes of block and page descriptors.
constexpr unsigned ATTRINDX = 2;  // AttrIndx[2:0] at bits 4:2
constexpr u64 NS = bit(5);
constexpr u64 AP1 = bit(6);  // AP[1]: EL0 access
constexpr u64 AP2 = bit(7);  // AP[2]: read-only
constexpr unsigned SH = 8;   // SH[1:0] at bits 9:8 (TCR_ELx.DS == 0)
constexpr u64 AF = bit(10);
constexpr u64 NG = bit(11);
constexpr u64 NT = bit(16);  // FEAT_BBM, block descriptors
// D8.3.2, upper attributes.
constexpr u64 GP = bit(50);
constexpr u64 DBM = bit(51);
constexpr u64 CONTIGUOUS = bit(52);
constexpr u64 PXN = bit(53);
constexpr u64 UXN = bit(54);
constexpr u64 SOFTWARE = bits(55, 58);
constexpr u64 PBHA = bits(59, 62);  // FEAT_HPDS2, else ignored
// D8.3.1, table descriptor attributes.
constexpr u64 PXNTABLE = bit(59);
constexpr u64 UXNTABLE = bit(60);
constexpr u64 APTABLE = bits(61, 62);
constexpr u64 NSTABLE = bit(63);
// SH encodings (D8.6): 00 Non-shareable, 10 Outer, 11 Inner.
constexpr u64 SH_NON = 0, SH_OUTER = 2, SH_INNER = 3;
// MAIR_EL1 Attr<n>.
constexpr u8 DEVICE_nGnRnE = 0x00, DEVICE_nGnRE = 0x04, NORMAL_NC = 0x44, NORMAL_WT = 0xBB,
             NORMAL_WB = 0xFF;

/// D8.2: granule size log2, and bits one full table resolves (8-byte entries).
constexpr unsigned granule_shift(Granule g) {
  return g == Granule::K4 ? 12 : g == Granule::K16 ? 14 : 16;
}
constexpr unsigned table_bits(Granule g) { return granule_shift(g) - 3; }
/// log2 of what an entry at ptkit `level` (Arm level 3 - level) maps.
constexpr unsigned entry_shift(Granule g, unsigned level) {
  return granule_shift(g) + table_bits(g) * level;
}
}  // namespace arm

/// What ptkit keeps: software bits, PBHA, GP, DBM.
constexpr u64 kKept = arm::SOFTWARE | arm::PBHA | arm::GP | arm::DBM;

// The header's constants must sit where the Arm ARM puts them.
static_assert(aarch64::kValid == arm::VALID && aarch64::kTableOrPage == arm::TABLE &&
              aarch64::kNs == arm::NS && aarch64::kApUser == arm::AP1 &&
              aarch64::kApRdOnly == arm::AP2 && aarch64::kAf == arm::AF &&
              aarch64::kNg == arm::NG && aarch64::kNt == arm::NT && aarch64::kGp == arm::GP &&
              aarch64::kDbm == arm::DBM && aarch64::kContiguous == arm::CONTIGUOUS &&
              aarch64::kPxn == arm::PXN && aarch64::kUxn == arm::UXN &&
              aarch64::kPxnTable == arm::PXNTABLE && aarch64::kUxnTable == arm::UXNTABLE &&
              aarch64::kApTableMask == arm::APTABLE && aarch64::kNsTable == arm::NSTABLE);
static_assert(aarch64::kKeptBits == kKept);
static_assert(u8(Shareability::Non) == arm::SH_NON && u8(Shareability::Outer) == arm::SH_OUTER &&
              u8(Shareability::Inner) == arm::SH_INNER);

constexpr MemType kAllMemTypes[] = {
    MemType::WriteBack,     MemType::WriteThrough, MemType::WriteCombining, MemType::WriteProtect,
    MemType::UncachedMinus, MemType::Uncached,     MemType::Device,
};
static_assert(sizeof(kAllMemTypes) / sizeof(kAllMemTypes[0]) == kMemTypeCount);

/// Test-local MAIR byte of a neutral type, or -1 where Arm has none.
constexpr int mair_byte(MemType m) {
  switch (m) {
    case MemType::WriteBack: return arm::NORMAL_WB;
    case MemType::WriteThrough: return arm::NORMAL_WT;
    case MemType::WriteCombining: return arm::NORMAL_NC;
    case MemType::Uncached: return arm::DEVICE_nGnRnE;
    case MemType::Device: return arm::DEVICE_nGnRE;
    case MemType::WriteProtect:
    case MemType::UncachedMinus: return -1;
  }
  return -1;
}

const char* mem_name(MemType m) {
  switch (m) {
    case MemType::WriteBack: return "WB";
    case MemType::WriteThrough: return "WT";
    case MemType::WriteCombining: return "WC";
    case MemType::WriteProtect: return "WP";
    case MemType::UncachedMinus: return "UC-";
    case MemType::Uncached: return "UC";
    case MemType::Device: return "Device";
  }
  return "?";
}

// Layouts: Linux's default; one with every slot used in a different order
// (so a wrong AttrIndx shows); a sparse one using slots 5-7 only.
constexpr MairLayout kLinux{};
constexpr MairLayout kShuffled{{{true, MemType::WriteThrough},
                                {true, MemType::Device},
                                {true, MemType::WriteBack},
                                {true, MemType::Uncached},
                                {true, MemType::WriteCombining},
                                {true, MemType::WriteBack},
                                {true, MemType::Device},
                                {true, MemType::WriteThrough}}};
constexpr MairLayout kSparse{{{},
                              {},
                              {},
                              {},
                              {},
                              {true, MemType::Device},
                              {true, MemType::WriteBack},
                              {true, MemType::WriteCombining}}};

struct Config {
  const char* name;
  Granule granule;
  unsigned va_bits;
  Half half;
  Features f;
};

std::string describe(const Config& c) {
  std::ostringstream s;
  s << c.name << " (" << arm::granule_shift(c.granule) << "-bit granule, " << c.va_bits
    << "-bit VA, " << (c.half == Half::Lower ? "TTBR0" : "TTBR1") << ", lpa " << c.f.lpa << " lva "
    << c.f.lva << " lpa2 " << c.f.lpa2 << " phys " << c.f.phys_bits << ")";
  return s.str();
}

/// The configurations the typed engine tests use, then more corners.
std::vector<Config> engine_configs() {
  return {
      {"4K/39", Granule::K4, 39, Half::Lower, {}},
      {"4K/48", Granule::K4, 48, Half::Lower, {}},
      {"16K/39", Granule::K16, 39, Half::Lower, {}},
      {"16K/48", Granule::K16, 48, Half::Lower, {}},
      {"64K/39", Granule::K64, 39, Half::Lower, {}},
      {"64K/48", Granule::K64, 48, Half::Lower, {}},
      {"64K/52", Granule::K64, 52, Half::Lower,
       Features{.lpa = true, .lva = true, .phys_bits = 52}},
      {"4K/52", Granule::K4, 52, Half::Lower, Features{.lpa2 = true, .phys_bits = 52}},
  };
}

std::vector<Config> all_configs() {
  std::vector<Config> out = engine_configs();
  out.push_back(
      {"16K/52 lpa2", Granule::K16, 52, Half::Lower, Features{.lpa2 = true, .phys_bits = 52}});
  out.push_back({"4K/48 lpa2 pa48", Granule::K4, 48, Half::Upper, Features{.lpa2 = true}});
  out.push_back(
      {"16K/47 lpa2 pa52", Granule::K16, 47, Half::Upper, Features{.lpa2 = true, .phys_bits = 52}});
  out.push_back({"64K/48 lpa pa52", Granule::K64, 48, Half::Upper,
                 Features{.lpa = true, .phys_bits = 52, .mair = kShuffled}});
  out.push_back({"4K/39 pa40 outer", Granule::K4, 39, Half::Upper,
                 Features{.phys_bits = 40, .normal_sh = Shareability::Outer, .mair = kShuffled}});
  out.push_back({"16K/42 non-shareable sparse", Granule::K16, 42, Half::Lower,
                 Features{.normal_sh = Shareability::Non, .mair = kSparse}});
  out.push_back({"64K/42 no contiguous", Granule::K64, 42, Half::Lower,
                 Features{.contiguous = false, .phys_bits = 44}});
  out.push_back({"4K/25", Granule::K4, 25, Half::Lower, {}});
  return out;
}

Paging make(const Config& c) {
  auto r = Paging::make(c.granule, c.va_bits, c.half, c.f);
  if (!r.ok()) ADD_FAILURE() << "config refused: " << describe(c);
  return r.ok() ? r.value() : Paging();
}

bool ds(const Config& c) { return c.f.lpa2 && c.granule != Granule::K64; }

/// D8.3.2: which Arm levels may hold a block/page for this configuration.
bool expected_leaf_allowed(const Config& c, unsigned level, unsigned levels) {
  if (level >= levels) return false;
  const int arm_level = 3 - int(level);
  switch (c.granule) {
    case Granule::K4:  // 4K pages, 2M and 1G blocks; 512G at level 0 with DS
      return arm_level >= 1 || (arm_level == 0 && ds(c));
    case Granule::K16:  // 16K pages, 32M blocks; 64G at level 1 with DS
      return arm_level >= 2 || (arm_level == 1 && ds(c));
    case Granule::K64:  // 64K pages, 512M blocks; 4T at level 1 with FEAT_LPA
      return arm_level >= 2 || (arm_level == 1 && c.f.lpa);
  }
  return false;
}

/// D8.6.1: entries per Contiguous run, where ptkit uses the hint.
unsigned expected_run(Granule g, unsigned level) {
  switch (g) {
    case Granule::K4: return level <= 2 ? 16 : 1;                      // 64K, 32M, 16G
    case Granule::K16: return level == 0 ? 128 : level == 1 ? 32 : 1;  // 2M, 1G
    case Granule::K64: return level <= 1 ? 32 : 1;                     // 2M, 16G
  }
  return 1;
}

/// D8.3.1 / D8.3.2: address bits of an (output or next-level table) address
/// aligned to 2^low in the descriptor.
u64 expected_address_bits(const Config& c, u64 pa, unsigned low) {
  pa &= arm::bits(low, c.f.phys_bits - 1);
  if (ds(c)) return (pa & arm::bits(low, 49)) | (((pa >> 50) & 3) << 8);  // OA[51:50] at 9:8
  u64 raw = pa & arm::bits(low, 47);
  if (c.granule == Granule::K64 && c.f.lpa) raw |= ((pa >> 48) & 0xF) << 12;  // OA[51:48] at 15:12
  return raw;
}

int expected_index(const MairLayout& layout, MemType m) {
  for (int i = 0; i < 8; ++i)
    if (layout.slot[i].used && layout.slot[i].mem == m) return i;
  return -1;
}

bool expected_can_express(const Config& c, const Attrs& a) {
  return has(a.perm, Perm::R) && expected_index(c.f.mair, a.mem) >= 0;
}

u64 expected_sh(const Config& c, MemType m) {
  if (m == MemType::WriteBack || m == MemType::WriteThrough) return u64(c.f.normal_sh);
  return arm::SH_OUTER;  // Device and Normal-NC are Outer Shareable whatever SH says
}

/// The leaf descriptor the Arm ARM prescribes.
u64 expected_leaf(const Config& c, unsigned level, PhysAddr pa, const Attrs& a, u64 kept,
                  bool contiguous) {
  u64 raw = arm::VALID | arm::AF |
            expected_address_bits(c, pa.value(), arm::entry_shift(c.granule, level));
  if (level == 0) raw |= arm::TABLE;  // page descriptor; blocks have bit 1 clear
  raw |= u64(expected_index(c.f.mair, a.mem)) << arm::ATTRINDX;
  if (!has(a.perm, Perm::W)) raw |= arm::AP2;
  if (has(a.perm, Perm::User)) {
    raw |= arm::AP1 | arm::PXN;
    if (!has(a.perm, Perm::X)) raw |= arm::UXN;
  } else {
    raw |= arm::UXN;
    if (!has(a.perm, Perm::X)) raw |= arm::PXN;
  }
  if (!a.global) raw |= arm::NG;
  if (!ds(c)) raw |= expected_sh(c, a.mem) << arm::SH;
  if (contiguous) raw |= arm::CONTIGUOUS;
  return raw | (kept & kKept);
}

/// Zero, the first block of the level, two bit patterns, and the highest
/// address below the output size.
std::vector<u64> sample_addresses(const Config& c, unsigned level) {
  const u64 mask = arm::bits(arm::entry_shift(c.granule, level), c.f.phys_bits - 1);
  return {0, u64{1} << arm::entry_shift(c.granule, level), 0x5555'5555'5555'5555 & mask,
          0xaaaa'aaaa'aaaa'aaaa & mask, mask};
}

std::string perm_name(Perm p) {
  std::string s;
  s += has(p, Perm::R) ? 'R' : '-';
  s += has(p, Perm::W) ? 'W' : '-';
  s += has(p, Perm::X) ? 'X' : '-';
  s += has(p, Perm::User) ? 'U' : '-';
  return s;
}

// ---- Configuration and geometry ----------------------------------------------------------

struct Geometry {
  Granule granule = Granule::K4;
  unsigned va_bits = 0;
  Features f;
  unsigned levels = 0;
  unsigned root_bits = 0;
  int start_level = 0;  // the Arm ARM's initial lookup level
};

// D8.2: levels and initial lookup level for each granule and VA size. The
// root resolves what is left above the full tables (no concatenation at
// stage 1).
const Geometry kGeometries[] = {
    {Granule::K4, 25, {}, 2, 4, 2},
    {Granule::K4, 39, {}, 3, 9, 1},
    {Granule::K4, 42, {}, 4, 3, 0},
    {Granule::K4, 47, {}, 4, 8, 0},
    {Granule::K4, 48, {}, 4, 9, 0},
    {Granule::K4, 52, Features{.lpa2 = true, .phys_bits = 52}, 5, 4, -1},
    {Granule::K16, 25, {}, 1, 11, 3},
    {Granule::K16, 39, {}, 3, 3, 1},
    {Granule::K16, 42, {}, 3, 6, 1},
    {Granule::K16, 47, {}, 3, 11, 1},
    {Granule::K16, 48, {}, 4, 1, 0},
    {Granule::K16, 52, Features{.lpa2 = true}, 4, 5, 0},
    {Granule::K64, 25, {}, 1, 9, 3},
    {Granule::K64, 39, {}, 2, 10, 2},
    {Granule::K64, 42, {}, 2, 13, 2},
    {Granule::K64, 47, {}, 3, 5, 1},
    {Granule::K64, 48, {}, 3, 6, 1},
    {Granule::K64, 52, Features{.lva = true}, 3, 10, 1},
};

TEST(Aarch64Config, LevelsIndexBitsAndStartLevelPerGranuleAndVaSize) {
  for (const Geometry& g : kGeometries) {
    for (Half half : {Half::Lower, Half::Upper}) {
      auto r = Paging::make(g.granule, g.va_bits, half, g.f);
      ASSERT_TRUE(r.ok()) << arm::granule_shift(g.granule) << "/" << g.va_bits;
      const Paging& p = r.value();
      const std::string what =
          std::to_string(arm::granule_shift(g.granule)) + "/" + std::to_string(g.va_bits);
      EXPECT_EQ(p.levels(), g.levels) << what;
      EXPECT_EQ(p.start_level(), g.start_level) << what;
      EXPECT_EQ(p.page_shift(), arm::granule_shift(g.granule)) << what;
      EXPECT_EQ(p.index_bits(g.levels - 1), g.root_bits) << what;
      unsigned total = p.page_shift();
      for (unsigned level = 0; level < p.levels(); ++level) {
        if (level + 1 < p.levels()) {
          EXPECT_EQ(p.index_bits(level), arm::table_bits(g.granule));
        }
        total += p.index_bits(level);
      }
      EXPECT_EQ(total, g.va_bits) << what;
      EXPECT_EQ(p.index_bits(p.levels()), 0u);
      EXPECT_LE(p.levels(), Paging::kMaxLevels);
      EXPECT_EQ(p.tnsz(), 64 - g.va_bits);
      EXPECT_EQ(p.va_bits(), g.va_bits);
      EXPECT_EQ(p.half(), half);
      EXPECT_EQ(p.granule(), g.granule);
    }
  }
  // The 52-bit sizes exist only with the feature.
  for (Granule gr : {Granule::K4, Granule::K16, Granule::K64})
    EXPECT_FALSE(Paging::make(gr, 52).ok()) << arm::granule_shift(gr);
}

TEST(Aarch64Config, EngineConfigsConstruct) {
  for (const Config& c : engine_configs()) {
    auto r = Paging::make(c.granule, c.va_bits, c.half, c.f);
    ASSERT_TRUE(r.ok()) << describe(c);
    EXPECT_EQ(Paging::config_problem(c.granule, c.va_bits, c.f), nullptr) << describe(c);
    EXPECT_EQ(r.value().phys_bits(), c.f.phys_bits);
    EXPECT_EQ(r.value().features().phys_bits, c.f.phys_bits);
  }
}

TEST(Aarch64Config, LevelNamesAreTheArmNames) {
  const Paging p4(Granule::K4, 52, Half::Lower, Features{.lpa2 = true, .phys_bits = 52});
  EXPECT_STREQ(p4.level_name(0), "L3");
  EXPECT_STREQ(p4.level_name(1), "L2");
  EXPECT_STREQ(p4.level_name(2), "L1");
  EXPECT_STREQ(p4.level_name(3), "L0");
  EXPECT_STREQ(p4.level_name(4), "L-1");
  EXPECT_STREQ(p4.level_name(5), "?");
  const Paging p64(Granule::K64, 42);
  EXPECT_STREQ(p64.level_name(0), "L3");
  EXPECT_STREQ(p64.level_name(1), "L2");
  EXPECT_STREQ(p64.level_name(2), "?");  // a 2-level space has no L1
  EXPECT_EQ(Paging::arm_level(0), 3);
  EXPECT_EQ(Paging::arm_level(4), -1);
}

struct BadCase {
  const char* what = "";
  Granule granule = Granule::K4;
  unsigned va_bits = 0;
  Features f;
  const char* reason_has = "";  // a word the reason must contain
};

TEST(Aarch64Config, BadConfigsAreRefusedWithAReason) {
  MairLayout wp = kLinux;
  wp.slot[6] = MairSlot{true, MemType::WriteProtect};
  MairLayout ucm = kLinux;
  ucm.slot[0] = MairSlot{true, MemType::UncachedMinus};
  MairLayout unused_wp = kLinux;  // an unused slot's type does not matter
  unused_wp.slot[7] = MairSlot{false, MemType::WriteProtect};
  const BadCase cases[] = {
      {"va 24", Granule::K4, 24, {}, "25"},
      {"va 0", Granule::K64, 0, {}, "25"},
      {"va 53", Granule::K4, 53, Features{.lpa2 = true, .phys_bits = 52}, "52"},
      {"va 64", Granule::K64, 64, Features{.lpa = true, .lva = true}, "52"},
      {"4K va 49 without lpa2", Granule::K4, 49, {}, "lpa2"},
      {"16K va 52 without lpa2", Granule::K16, 52, {}, "lpa2"},
      {"4K va 52 with only lva", Granule::K4, 52, Features{.lva = true}, "lpa2"},
      {"64K va 52 without lva", Granule::K64, 52, {}, "lva"},
      {"64K va 52 with only lpa2", Granule::K64, 52, Features{.lpa2 = true}, "lva"},
      {"4K pa 52 without lpa2", Granule::K4, 48, Features{.phys_bits = 52}, "lpa2"},
      {"16K pa 52 with only lpa", Granule::K16, 48, Features{.lpa = true, .phys_bits = 52}, "lpa2"},
      {"64K pa 52 without lpa", Granule::K64, 48, Features{.phys_bits = 52}, "lpa"},
      {"64K pa 52 with only lpa2", Granule::K64, 48, Features{.lpa2 = true, .phys_bits = 52},
       "lpa"},
      {"pa 56", Granule::K64, 48, Features{.lpa = true, .lpa2 = true, .phys_bits = 56}, "IPS"},
      {"pa 64", Granule::K4, 48, Features{.lpa2 = true, .phys_bits = 64}, "IPS"},
      {"pa 46 (no IPS encoding)", Granule::K4, 48, Features{.phys_bits = 46}, "IPS"},
      {"pa 0", Granule::K4, 48, Features{.phys_bits = 0}, "IPS"},
      {"SH 0b01", Granule::K4, 48, Features{.normal_sh = Shareability(1)}, "reserved"},
      {"MAIR with WriteProtect", Granule::K4, 48, Features{.mair = wp}, "MAIR"},
      {"MAIR with UncachedMinus", Granule::K16, 48, Features{.mair = ucm}, "MAIR"},
  };
  for (const BadCase& bc : cases) {
    const char* reason = Paging::config_problem(bc.granule, bc.va_bits, bc.f);
    ASSERT_NE(reason, nullptr) << bc.what;
    EXPECT_NE(std::string(reason).find(bc.reason_has), std::string::npos)
        << bc.what << ": " << reason;
    for (Half half : {Half::Lower, Half::Upper}) {
      auto r = Paging::make(bc.granule, bc.va_bits, half, bc.f);
      ASSERT_FALSE(r.ok()) << bc.what;
      EXPECT_EQ(r.failure().op, Op::Create) << bc.what;
      EXPECT_EQ(r.error(), Error::BadConfig) << bc.what;
      EXPECT_EQ(r.failure().level, kNoLevel) << bc.what;
    }
  }
  EXPECT_TRUE(Paging::make(Granule::K4, 48, Half::Lower, Features{.mair = unused_wp}).ok());
  // Every IPS size is accepted (52 with the feature).
  for (unsigned pa : {32u, 36u, 40u, 42u, 44u, 48u}) {
    EXPECT_TRUE(Paging::make(Granule::K16, 48, Half::Lower, Features{.phys_bits = pa}).ok()) << pa;
  }
  // The boundaries that are fine.
  EXPECT_TRUE(Paging::make(Granule::K4, 25).ok());
  EXPECT_TRUE(Paging::make(Granule::K64, 48).ok());
  EXPECT_TRUE(Paging::make(Granule::K16, 49, Half::Lower, Features{.lpa2 = true}).ok());
  EXPECT_TRUE(Paging::make(Granule::K64, 49, Half::Upper, Features{.lva = true}).ok());
  // A 64K CPU with LPA2 runs 48-bit spaces: DS does nothing for 64K.
  EXPECT_TRUE(Paging::make(Granule::K64, 48, Half::Lower, Features{.lpa2 = true}).ok());
}

TEST(Aarch64Config, ConstantEvaluableChecks) {
  static_assert(Paging::config_problem(Granule::K4, 48, {}) == nullptr);
  static_assert(Paging::config_problem(Granule::K4, 52, {}) != nullptr);
  static_assert(Paging(Granule::K16, 48).levels() == 4);
  static_assert(Paging(Granule::K64, 52, Half::Lower, Features{.lva = true}).index_bits(2) == 10);
  constexpr Paging p;  // 4K/48, TTBR0
  static_assert(p.levels() == 4 && p.page_shift() == 12 && p.half() == Half::Lower);
}

// ---- leaf_allowed and contiguous_entries ----------------------------------------------

TEST(Aarch64Levels, LeafAllowedPerGranuleLevelAndFeature) {
  struct Want {
    Granule g = Granule::K4;
    unsigned va = 0;
    Features f;
    bool allowed[5] = {};
  };
  const Want wants[] = {
      // 4K: 4K, 2M, 1G; L0 512G only with LPA2; L-1 never.
      {Granule::K4, 48, {}, {true, true, true, false, false}},
      {Granule::K4, 48, Features{.lpa2 = true}, {true, true, true, true, false}},
      {Granule::K4, 52, Features{.lpa2 = true}, {true, true, true, true, false}},
      {Granule::K4, 48, Features{.lpa = true, .lva = true}, {true, true, true, false, false}},
      {Granule::K4, 39, {}, {true, true, true, false, false}},  // 1G at the L1 root
      {Granule::K4, 25, {}, {true, true, false, false, false}},
      // 16K: 16K, 32M; L1 64G only with LPA2; L0 never.
      {Granule::K16, 48, {}, {true, true, false, false, false}},
      {Granule::K16, 48, Features{.lpa = true}, {true, true, false, false, false}},
      {Granule::K16, 48, Features{.lpa2 = true}, {true, true, true, false, false}},
      {Granule::K16, 52, Features{.lpa2 = true}, {true, true, true, false, false}},
      // 64K: 64K, 512M; L1 4T only with LPA.
      {Granule::K64, 48, {}, {true, true, false, false, false}},
      {Granule::K64, 48, Features{.lpa2 = true}, {true, true, false, false, false}},
      {Granule::K64, 48, Features{.lpa = true, .phys_bits = 52}, {true, true, true, false, false}},
      {Granule::K64, 52, Features{.lpa = true, .lva = true}, {true, true, true, false, false}},
      {Granule::K64, 42, Features{.lpa = true}, {true, true, false, false, false}},  // no L1
  };
  for (const Want& w : wants) {
    const Paging p(w.g, w.va, Half::Lower, w.f);
    for (unsigned level = 0; level < 5; ++level)
      EXPECT_EQ(p.leaf_allowed(level), w.allowed[level])
          << arm::granule_shift(w.g) << "/" << w.va << " lpa " << w.f.lpa << " lpa2 " << w.f.lpa2
          << " level " << level;
    EXPECT_FALSE(p.leaf_allowed(5));
    EXPECT_FALSE(p.leaf_allowed(100));
    // The contract: a level that may hold a leaf implies every lower one may.
    for (unsigned level = 1; level < p.levels(); ++level)
      if (p.leaf_allowed(level)) {
        EXPECT_TRUE(p.leaf_allowed(level - 1));
      }
  }
}

TEST(Aarch64Levels, ContiguousEntriesPerGranuleAndLevel) {
  for (const Config& c : all_configs()) {
    const Paging p = make(c);
    for (unsigned level = 0; level < 6; ++level) {
      unsigned want = 1;
      if (c.f.contiguous && expected_leaf_allowed(c, level, p.levels()))
        want = expected_run(c.granule, level);
      EXPECT_EQ(p.contiguous_entries(level), want) << describe(c) << " level " << level;
      // Runs are powers of two that the engine can hold.
      EXPECT_EQ(want & (want - 1), 0u);
      EXPECT_LE(want, 128u);
    }
  }
  // Spelled out for the three granules (4K/48, 16K/48, 64K/48).
  const Paging k4;
  const Paging k16(Granule::K16, 48);
  const Paging k64(Granule::K64, 48);
  EXPECT_EQ(k4.contiguous_entries(0), 16u);    // 16 x 4K = 64K
  EXPECT_EQ(k4.contiguous_entries(1), 16u);    // 16 x 2M = 32M
  EXPECT_EQ(k4.contiguous_entries(2), 16u);    // 16 x 1G = 16G
  EXPECT_EQ(k4.contiguous_entries(3), 1u);     // L0: table only
  EXPECT_EQ(k16.contiguous_entries(0), 128u);  // 128 x 16K = 2M
  EXPECT_EQ(k16.contiguous_entries(1), 32u);   // 32 x 32M = 1G
  EXPECT_EQ(k16.contiguous_entries(2), 1u);
  EXPECT_EQ(k64.contiguous_entries(0), 32u);  // 32 x 64K = 2M
  EXPECT_EQ(k64.contiguous_entries(1), 32u);  // 32 x 512M = 16G
  EXPECT_EQ(k64.contiguous_entries(2), 1u);
  // Levels whose blocks need LPA/LPA2: no hint from ptkit.
  const Paging k4ds(Granule::K4, 52, Half::Lower, Features{.lpa2 = true});
  EXPECT_TRUE(k4ds.leaf_allowed(3));
  EXPECT_EQ(k4ds.contiguous_entries(3), 1u);
  const Paging k16ds(Granule::K16, 48, Half::Lower, Features{.lpa2 = true});
  EXPECT_TRUE(k16ds.leaf_allowed(2));
  EXPECT_EQ(k16ds.contiguous_entries(2), 1u);
  const Paging k64lpa(Granule::K64, 48, Half::Lower, Features{.lpa = true, .phys_bits = 52});
  EXPECT_TRUE(k64lpa.leaf_allowed(2));
  EXPECT_EQ(k64lpa.contiguous_entries(2), 1u);
  // Hint off: 1 everywhere.
  const Paging off(Granule::K16, 48, Half::Lower, Features{.contiguous = false});
  for (unsigned level = 0; level < 5; ++level) EXPECT_EQ(off.contiguous_entries(level), 1u);
}

// ---- Canonical addresses --------------------------------------------------------------------

TEST(Aarch64Canonical, BothHalvesAtTheBoundaries) {
  for (unsigned va : {25u, 39u, 42u, 47u, 48u, 52u}) {
    const Features f{.lva = true, .lpa2 = true};
    const Paging lower(Granule::K64, va, Half::Lower, f);
    const Paging upper(Granule::K64, va, Half::Upper, f);
    const u64 size = u64{1} << va;
    // TTBR0: [0, 2^va).
    EXPECT_TRUE(lower.is_canonical(VirtAddr(0))) << va;
    EXPECT_TRUE(lower.is_canonical(VirtAddr(size - 1))) << va;
    EXPECT_FALSE(lower.is_canonical(VirtAddr(size))) << va;
    EXPECT_FALSE(lower.is_canonical(VirtAddr(0 - size))) << va;
    EXPECT_FALSE(lower.is_canonical(VirtAddr(~u64{0}))) << va;
    EXPECT_FALSE(lower.is_canonical(VirtAddr(u64{1} << 63))) << va;
    // TTBR1: [2^64 - 2^va, 2^64).
    EXPECT_TRUE(upper.is_canonical(VirtAddr(0 - size))) << va;
    EXPECT_TRUE(upper.is_canonical(VirtAddr(~u64{0}))) << va;
    EXPECT_FALSE(upper.is_canonical(VirtAddr(0 - size - 1))) << va;
    EXPECT_FALSE(upper.is_canonical(VirtAddr(0))) << va;
    EXPECT_FALSE(upper.is_canonical(VirtAddr(size - 1))) << va;
    EXPECT_FALSE(upper.is_canonical(VirtAddr((u64{1} << 63) - 1))) << va;
    // Each single bit: lower accepts bits below va only; upper accepts none.
    for (unsigned b = 0; b < 64; ++b) {
      EXPECT_EQ(lower.is_canonical(VirtAddr(u64{1} << b)), b < va) << va << " bit " << b;
      EXPECT_FALSE(upper.is_canonical(VirtAddr(u64{1} << b))) << va << " bit " << b;
      // Ones from bit b up: upper when the run reaches down to va.
      EXPECT_EQ(upper.is_canonical(VirtAddr(~u64{0} << b)), b <= va) << va << " from " << b;
    }
  }
  // The 4K/48 kernel half, as Linux uses it.
  const Paging kernel(Granule::K4, 48, Half::Upper);
  EXPECT_TRUE(kernel.is_canonical(VirtAddr(0xffff'0000'0000'0000)));
  EXPECT_FALSE(kernel.is_canonical(VirtAddr(0xfffe'ffff'ffff'ffff)));
  EXPECT_FALSE(kernel.is_canonical(VirtAddr(0x0000'7fff'ffff'f000)));
}

// ---- Leaves ---------------------------------------------------------------------------------

TEST(Aarch64Leaves, EveryLeafEncodesToTheArmBitsAndRoundTrips) {
  unsigned checked = 0;
  unsigned refused = 0;
  for (const Config& c : all_configs()) {
    const Paging p = make(c);
    for (unsigned level = 0; level < p.levels(); ++level) {
      ASSERT_EQ(p.leaf_allowed(level), expected_leaf_allowed(c, level, p.levels()))
          << describe(c) << " level " << level;
      if (!p.leaf_allowed(level)) continue;
      const unsigned run = p.contiguous_entries(level);
      for (u64 addr : sample_addresses(c, level)) {
        for (unsigned perm = 0; perm < 16; ++perm)
          for (MemType mem : kAllMemTypes)
            for (bool global : {false, true})
              for (bool contiguous : {false, true}) {
                if (contiguous && run == 1) continue;
                const Attrs a{Perm(perm), mem, global};
                const std::string what = describe(c) + " level " + std::to_string(level) +
                                         " perm " + perm_name(a.perm) + " mem " + mem_name(mem) +
                                         " global " + std::to_string(int(global));
                const bool expressible = expected_can_express(c, a);
                ASSERT_EQ(p.can_express(a), expressible) << what;
                if (!expressible) {
                  ++refused;
                  continue;
                }
                const PhysAddr pa(addr);
                const u64 raw = p.encode(Entry::leaf(pa, a, 0, contiguous), level);
                const u64 want = expected_leaf(c, level, pa, a, 0, contiguous);
                ASSERT_EQ(raw, want)
                    << what << std::hex << "\n got      0x" << raw << "\n expected 0x" << want;
                EXPECT_TRUE(p.is_valid_raw(raw, level)) << what;
                // Contiguous leaves decode to their run's first address.
                const u64 run_bytes = u64{contiguous ? run : 1u}
                                      << arm::entry_shift(c.granule, level);
                const Entry e = p.decode(raw, level);
                ASSERT_EQ(e, Entry::leaf(PhysAddr(align_down(addr, run_bytes)), a, 0, contiguous))
                    << what;
                ++checked;
              }
      }
    }
  }
  EXPECT_GT(checked, 20000u);
  EXPECT_GT(refused, 10000u);
}

TEST(Aarch64Leaves, DecodeOfHandBuiltLeafGivesTheAttributes) {
  // Independent of encode(): every AP[2:1] x PXN x UXN x nG x AttrIndx.
  for (const Config& c : all_configs()) {
    const Paging p = make(c);
    for (unsigned level = 0; level < p.levels(); ++level) {
      if (!p.leaf_allowed(level)) continue;
      const u64 pa =
          arm::bits(arm::entry_shift(c.granule, level), c.f.phys_bits - 1) & 0x0000'0123'4567'8000;
      const u64 oa = expected_address_bits(c, pa, arm::entry_shift(c.granule, level));
      for (unsigned index = 0; index < 8; ++index)
        for (unsigned flags = 0; flags < 32; ++flags) {
          const bool ro = (flags & 1) != 0;
          const bool el0 = (flags & 2) != 0;
          const bool pxn = (flags & 4) != 0;
          const bool uxn = (flags & 8) != 0;
          const bool ng = (flags & 16) != 0;
          u64 raw = arm::VALID | arm::AF | oa | (u64{index} << arm::ATTRINDX) |
                    (level == 0 ? arm::TABLE : 0) | (ro ? arm::AP2 : 0) | (el0 ? arm::AP1 : 0) |
                    (pxn ? arm::PXN : 0) | (uxn ? arm::UXN : 0) | (ng ? arm::NG : 0);
          if (!ds(c)) raw |= arm::SH_INNER << arm::SH;
          const Entry e = p.decode(raw, level);
          ASSERT_EQ(e.kind, EntryKind::Leaf) << std::hex << raw;
          // D8.4: AP[2] = 1 read-only, AP[1] = 1 EL0 may access; the neutral X
          // is the execute right at the level the page belongs to.
          Perm want = Perm::R;
          if (!ro) want = want | Perm::W;
          if (el0) want = want | Perm::User;
          if (el0 ? !uxn : !pxn) want = want | Perm::X;
          EXPECT_EQ(u8(e.attrs.perm), u8(want)) << describe(c) << std::hex << " raw 0x" << raw;
          EXPECT_EQ(e.attrs.global, !ng);
          const MairSlot& slot = c.f.mair.slot[index];
          EXPECT_EQ(e.attrs.mem, slot.used ? slot.mem : MemType::Uncached)
              << describe(c) << " AttrIndx " << index;
          EXPECT_EQ(e.pa, PhysAddr(pa));
          EXPECT_EQ(e.kept, 0u);
          EXPECT_FALSE(e.contiguous);
        }
    }
  }
}

TEST(Aarch64Leaves, PermissionEncodingsSpelledOut) {
  const Paging p;  // 4K/48, Linux MAIR (WB = 3), inner shareable
  const u64 base = arm::VALID | arm::TABLE | arm::AF | (3u << arm::ATTRINDX) |
                   (arm::SH_INNER << arm::SH) | 0x1000;
  auto enc = [&](Perm perm) { return p.encode(Entry::leaf(PhysAddr(0x1000), Attrs{perm}), 0); };
  // Kernel: UXN always, PXN unless X.
  EXPECT_EQ(enc(Perm::R), base | arm::NG | arm::AP2 | arm::PXN | arm::UXN);
  EXPECT_EQ(enc(RW), base | arm::NG | arm::PXN | arm::UXN);
  EXPECT_EQ(enc(RX), base | arm::NG | arm::AP2 | arm::UXN);
  EXPECT_EQ(enc(RWX), base | arm::NG | arm::UXN);
  // User: PXN always, UXN unless X.
  EXPECT_EQ(enc(Perm::R | Perm::User), base | arm::NG | arm::AP1 | arm::AP2 | arm::PXN | arm::UXN);
  EXPECT_EQ(enc(RW | Perm::User), base | arm::NG | arm::AP1 | arm::PXN | arm::UXN);
  EXPECT_EQ(enc(RX | Perm::User), base | arm::NG | arm::AP1 | arm::AP2 | arm::PXN);
  EXPECT_EQ(enc(RWX | Perm::User), base | arm::NG | arm::AP1 | arm::PXN);
  // Global: nG clear.
  EXPECT_EQ(p.encode(Entry::leaf(PhysAddr(0x1000), Attrs{RW, MemType::WriteBack, true}), 0),
            base | arm::PXN | arm::UXN);
  // Never: NS, nT.
  for (unsigned perm = 0; perm < 16; ++perm) EXPECT_EQ(enc(Perm(perm)) & (arm::NS | arm::NT), 0u);
}

TEST(Aarch64Leaves, CanExpressNeedsReadAndALayoutSlot) {
  const Paging linux_layout;
  for (unsigned perm = 0; perm < 16; ++perm)
    for (MemType m : kAllMemTypes) {
      const bool want = has(Perm(perm), Perm::R) && mair_byte(m) >= 0;
      EXPECT_EQ(linux_layout.can_express(Attrs{Perm(perm), m}), want)
          << perm_name(Perm(perm)) << " " << mem_name(m);
    }
  const Paging sparse(Granule::K4, 48, Half::Lower, Features{.mair = kSparse});
  for (MemType m : kAllMemTypes)
    EXPECT_EQ(sparse.can_express(Attrs{RW, m}),
              m == MemType::Device || m == MemType::WriteBack || m == MemType::WriteCombining)
        << mem_name(m);
  EXPECT_FALSE(linux_layout.can_express(Attrs{Perm::W | Perm::X | Perm::User}));
  EXPECT_FALSE(linux_layout.can_express(Attrs{Perm::None}));
}

TEST(Aarch64Leaves, EveryMairSlotIsTheAttrIndx) {
  for (unsigned slot = 0; slot < 8; ++slot)
    for (MemType m : kAllMemTypes) {
      if (mair_byte(m) < 0) continue;
      MairLayout layout;
      for (MairSlot& s : layout.slot) s = MairSlot{};
      layout.slot[slot] = MairSlot{true, m};
      const Paging p(Granule::K16, 48, Half::Lower, Features{.mair = layout});
      ASSERT_EQ(Paging::config_problem(Granule::K16, 48, Features{.mair = layout}), nullptr);
      for (unsigned level = 0; level < 2; ++level) {
        const Attrs a{RW, m, false};
        const u64 raw = p.encode(Entry::leaf(PhysAddr(0), a), level);
        EXPECT_EQ((raw >> arm::ATTRINDX) & 7, slot) << mem_name(m);
        EXPECT_EQ(p.decode(raw, level).attrs, a);
      }
      // Only that type exists in this layout.
      for (MemType other : kAllMemTypes) EXPECT_EQ(p.can_express(Attrs{RW, other}), other == m);
      EXPECT_EQ(layout.mair_value(), u64(mair_byte(m)) << (8 * slot));
    }
}

TEST(Aarch64Leaves, FirstSlotOfATypeIsUsedAndDuplicatesDecode) {
  const Paging p(Granule::K4, 48, Half::Lower, Features{.mair = kShuffled});
  // kShuffled: WB at 2 and 5, Device at 1 and 6, WT at 0 and 7.
  EXPECT_EQ((p.encode(Entry::leaf(PhysAddr(0), Attrs{RW}), 0) >> 2) & 7, 2u);
  EXPECT_EQ((p.encode(Entry::leaf(PhysAddr(0), Attrs{RW, MemType::Device}), 0) >> 2) & 7, 1u);
  EXPECT_EQ((p.encode(Entry::leaf(PhysAddr(0), Attrs{RW, MemType::WriteThrough}), 0) >> 2) & 7, 0u);
  const u64 base = arm::VALID | arm::TABLE | arm::AF;
  EXPECT_EQ(p.decode(base | (5u << 2), 0).attrs.mem, MemType::WriteBack);
  EXPECT_EQ(p.decode(base | (6u << 2), 0).attrs.mem, MemType::Device);
  EXPECT_EQ(p.decode(base | (7u << 2), 0).attrs.mem, MemType::WriteThrough);
  // An unused slot (Linux layout 5-7) reads as Device-nGnRnE, as mair_value() programs it.
  const Paging linux_layout;
  for (unsigned i = 5; i < 8; ++i)
    EXPECT_EQ(linux_layout.decode(base | (u64{i} << 2), 0).attrs.mem, MemType::Uncached);
}

TEST(Aarch64Leaves, MairValueFromTheLayout) {
  // Linux: Attr0 0x00, Attr1 0x04, Attr2 0x44, Attr3 0xFF, Attr4 0xBB.
  EXPECT_EQ(kLinux.mair_value(), 0x0000'00bb'ff44'0400u);
  u64 want = 0;
  for (unsigned i = 0; i < 8; ++i) want |= u64(mair_byte(kShuffled.slot[i].mem)) << (8 * i);
  EXPECT_EQ(kShuffled.mair_value(), want);
  // kShuffled: WT, Device, WB, UC, WC, WB, Device, WT from Attr0 up.
  EXPECT_EQ(kShuffled.mair_value(), 0xbb04'ff44'00ff'04bbu);
  EXPECT_EQ(kSparse.mair_value(), 0x44ff'0400'0000'0000u);
}

TEST(Aarch64Leaves, ShareabilityFollowsTheType) {
  for (Shareability sh : {Shareability::Non, Shareability::Outer, Shareability::Inner}) {
    const Paging p(Granule::K4, 48, Half::Lower, Features{.normal_sh = sh});
    for (MemType m : kAllMemTypes) {
      if (mair_byte(m) < 0) continue;
      const u64 raw = p.encode(Entry::leaf(PhysAddr(0x2000), Attrs{RW, m}), 0);
      const u64 want =
          (m == MemType::WriteBack || m == MemType::WriteThrough) ? u64(sh) : arm::SH_OUTER;
      EXPECT_EQ((raw >> arm::SH) & 3, want) << mem_name(m) << " normal_sh " << int(sh);
    }
  }
  // Under DS bits 9:8 are OA[51:50]: no SH written, whatever the type.
  const Paging ds(Granule::K16, 48, Half::Lower, Features{.lpa2 = true});
  for (MemType m : {MemType::WriteBack, MemType::Device, MemType::WriteCombining})
    EXPECT_EQ(ds.encode(Entry::leaf(PhysAddr(0x4000), Attrs{RW, m}), 0) & arm::bits(8, 9), 0u);
}

TEST(Aarch64Leaves, KeptBitsAreCarriedThroughAndNothingElse) {
  for (const Config& c : all_configs()) {
    const Paging p = make(c);
    for (unsigned level = 0; level < p.levels(); ++level) {
      if (!p.leaf_allowed(level)) continue;
      const PhysAddr pa(u64{1} << arm::entry_shift(c.granule, level));
      const Attrs a{RX, MemType::WriteBack, true};
      const u64 clean = p.encode(Entry::leaf(pa, a), level);
      for (unsigned b = 0; b < 64; ++b) {
        const u64 extra = u64{1} << b;
        const u64 raw = p.encode(Entry::leaf(pa, a, extra), level);
        if (kKept & extra) {
          EXPECT_EQ(raw, clean | extra) << describe(c) << " bit " << b;
          const Entry e = p.decode(raw, level);
          EXPECT_EQ(e, Entry::leaf(pa, a, extra)) << describe(c) << " bit " << b;
          // protect() rewrites attributes with the same kept bits: they stay.
          EXPECT_EQ(p.encode(Entry::leaf(e.pa, Attrs{Perm::R}, e.kept), level) & kKept, extra);
        } else {
          EXPECT_EQ(raw, clean) << describe(c) << " bit " << b << " leaked from kept";
        }
      }
      EXPECT_EQ(p.encode(Entry::leaf(pa, a, ~u64{0}), level), clean | kKept);
      // AF is always set and not kept: a decoded entry never reports it.
      EXPECT_NE(clean & arm::AF, 0u);
      EXPECT_EQ(p.decode(clean, level).kept, 0u);
    }
  }
}

TEST(Aarch64Leaves, OutputAddressAtTheTopOfEachPhysicalSize) {
  // 48-bit PA, 4K: OA[47:12] in bits 47:12.
  {
    const Paging p;
    const u64 pa = 0x0000'ffff'ffff'f000;
    const u64 raw = p.encode(Entry::leaf(PhysAddr(pa), Attrs{RW}), 0);
    EXPECT_EQ(raw & arm::bits(12, 49), pa);
    EXPECT_EQ(p.decode(raw, 0).pa, PhysAddr(pa));
    // 1G block: OA[47:30].
    const u64 g = 0x0000'ffff'c000'0000;
    EXPECT_EQ(p.encode(Entry::leaf(PhysAddr(g), Attrs{RW}), 2) & arm::bits(12, 49), g);
  }
  // 52-bit PA with FEAT_LPA on 64K: OA[51:48] in bits 15:12.
  {
    const Paging p(Granule::K64, 52, Half::Lower,
                   Features{.lpa = true, .lva = true, .phys_bits = 52});
    const u64 pa = 0x000f'ffff'ffff'0000;
    const u64 raw = p.encode(Entry::leaf(PhysAddr(pa), Attrs{RW}), 0);
    EXPECT_EQ(raw & arm::bits(16, 47), pa & arm::bits(16, 47));
    EXPECT_EQ(raw & arm::bits(12, 15), 0xfu << 12);
    EXPECT_EQ(raw & arm::bits(48, 49), 0u);
    EXPECT_EQ(p.decode(raw, 0).pa, PhysAddr(pa));
    const u64 only_high = 0x000a'0000'0000'0000;  // OA[51:48] = 0b1010
    EXPECT_EQ(p.encode(Entry::leaf(PhysAddr(only_high), Attrs{RW}), 1) & arm::bits(12, 15),
              u64{0xa} << 12);
    // 4T block at L1 (bits 51:42).
    const u64 t4 = 0x000f'fc00'0000'0000;
    const u64 raw4t = p.encode(Entry::leaf(PhysAddr(t4), Attrs{RW}), 2);
    EXPECT_EQ(raw4t & arm::TABLE, 0u);
    EXPECT_EQ(p.decode(raw4t, 2).pa, PhysAddr(t4));
    // Tables: NLTA[51:48] in bits 15:12 too.
    const u64 table = 0x0009'0000'0001'0000;
    const u64 traw = p.encode(Entry::table(PhysAddr(table)), 1);
    EXPECT_EQ(traw, arm::VALID | arm::TABLE | (u64{9} << 12) | 0x1'0000);
    EXPECT_EQ(p.decode(traw, 1), Entry::table(PhysAddr(table)));
  }
  // 52-bit PA with FEAT_LPA2 on 4K and 16K: OA[49:n] in 49:n, OA[51:50] in 9:8.
  for (Granule g : {Granule::K4, Granule::K16}) {
    const Paging p(g, 52, Half::Lower, Features{.lpa2 = true, .phys_bits = 52});
    const unsigned ps = arm::granule_shift(g);
    const u64 pa = arm::bits(ps, 51);
    const u64 raw = p.encode(Entry::leaf(PhysAddr(pa), Attrs{RW}), 0);
    EXPECT_EQ(raw & arm::bits(ps, 49), arm::bits(ps, 49)) << ps;
    EXPECT_EQ(raw & arm::bits(8, 9), arm::bits(8, 9)) << ps;
    EXPECT_EQ(raw & arm::bits(50, 51), 0u) << ps;
    EXPECT_EQ(p.decode(raw, 0).pa, PhysAddr(pa));
    const u64 bit50 = u64{1} << 50;
    const u64 bit51 = u64{1} << 51;
    EXPECT_EQ(p.encode(Entry::leaf(PhysAddr(bit50), Attrs{RW}), 1) & arm::bits(8, 9), arm::bit(8));
    EXPECT_EQ(p.encode(Entry::leaf(PhysAddr(bit51), Attrs{RW}), 1) & arm::bits(8, 9), arm::bit(9));
    const u64 table = bit51 | (u64{1} << 49) | (u64{1} << ps);
    const u64 traw = p.encode(Entry::table(PhysAddr(table)), 2);
    EXPECT_EQ(traw, arm::VALID | arm::TABLE | arm::bit(9) | (u64{1} << 49) | (u64{1} << ps));
    EXPECT_EQ(p.decode(traw, 2), Entry::table(PhysAddr(table)));
  }
  // 4K LPA2 512G block at L0.
  {
    const Paging p(Granule::K4, 52, Half::Lower, Features{.lpa2 = true, .phys_bits = 52});
    const u64 pa = 0x000f'ff80'0000'0000;
    const u64 raw = p.encode(Entry::leaf(PhysAddr(pa), Attrs{RW}), 3);
    EXPECT_EQ(raw & (arm::VALID | arm::TABLE), arm::VALID);
    EXPECT_EQ(p.decode(raw, 3).pa, PhysAddr(pa));
  }
}

TEST(Aarch64Leaves, AddressBitsAbovePhysBitsAreDropped) {
  for (const Config& c : all_configs()) {
    const Paging p = make(c);
    for (unsigned level = 0; level < p.levels(); ++level) {
      if (!p.leaf_allowed(level)) continue;
      const u64 in_range = u64{1} << arm::entry_shift(c.granule, level);
      const u64 clean = p.encode(Entry::leaf(PhysAddr(in_range), Attrs{RWX}), level);
      for (unsigned b = c.f.phys_bits; b < 64; ++b) {
        const PhysAddr pa(in_range | (u64{1} << b));
        EXPECT_EQ(p.encode(Entry::leaf(pa, Attrs{RWX}), level), clean)
            << describe(c) << " level " << level << " bit " << b;
      }
      // And the low bits below the block size.
      if (level > 0) {
        const PhysAddr low(in_range | (in_range >> 1));
        EXPECT_EQ(p.encode(Entry::leaf(low, Attrs{RWX}), level), clean) << describe(c);
      }
    }
  }
}

TEST(Aarch64Leaves, ContiguousLeafDecodesToTheFirstOfItsRun) {
  for (const Config& c : all_configs()) {
    const Paging p = make(c);
    for (unsigned level = 0; level < p.levels(); ++level) {
      const unsigned run = p.contiguous_entries(level);
      if (run == 1) continue;
      const unsigned shift = arm::entry_shift(c.granule, level);
      const u64 start = (u64{run} << shift) * 3;  // an aligned run
      if (start >> c.f.phys_bits) continue;
      for (unsigned i = 0; i < run; ++i) {
        const PhysAddr pa(start + (u64{i} << shift));
        const Attrs a{RW, MemType::WriteBack, true};
        const u64 raw = p.encode(Entry::leaf(pa, a, 0, true), level);
        // encode writes the entry's own output address and the Contiguous bit.
        EXPECT_EQ(raw, expected_leaf(c, level, pa, a, 0, true)) << describe(c) << " " << i;
        EXPECT_NE(raw & arm::CONTIGUOUS, 0u);
        const Entry e = p.decode(raw, level);
        EXPECT_TRUE(e.contiguous);
        EXPECT_EQ(e.pa, PhysAddr(start)) << describe(c) << " level " << level << " entry " << i;
        // Without the bit the entry's own address comes back.
        EXPECT_EQ(p.decode(raw & ~arm::CONTIGUOUS, level).pa, pa);
      }
    }
  }
  // Hint off in the features: a raw Contiguous bit still decodes (the hardware
  // honours it), aligned by the architecture's run.
  const Paging off(Granule::K4, 48, Half::Lower, Features{.contiguous = false});
  const u64 raw = arm::VALID | arm::TABLE | arm::AF | arm::CONTIGUOUS | 0x1'5000;
  const Entry e = off.decode(raw, 0);
  EXPECT_TRUE(e.contiguous);
  EXPECT_EQ(e.pa, PhysAddr(0x1'0000));
}

// ---- Tables and reserved encodings ---------------------------------------------------------

TEST(Aarch64Tables, TableEntriesCarryOnlyAddressAndType) {
  for (const Config& c : all_configs()) {
    const Paging p = make(c);
    const unsigned ps = arm::granule_shift(c.granule);
    for (unsigned level = 1; level < p.levels(); ++level) {
      const u64 phys = arm::bits(ps, c.f.phys_bits - 1);
      for (u64 addr : {u64{1} << ps, u64{0x0000'0123'4567'0000} & phys, phys}) {
        const PhysAddr pa(addr);
        const u64 raw = p.encode(Entry::table(pa), level);
        EXPECT_EQ(raw, arm::VALID | arm::TABLE | expected_address_bits(c, addr, ps))
            << describe(c) << " level " << level << std::hex << " addr 0x" << addr;
        EXPECT_EQ(raw & (arm::NSTABLE | arm::APTABLE | arm::UXNTABLE | arm::PXNTABLE), 0u);
        EXPECT_EQ(p.decode(raw, level), Entry::table(pa)) << describe(c);
        EXPECT_TRUE(p.is_valid_raw(raw, level));
        EXPECT_EQ(Paging::table_limits(raw), aarch64::TableLimits{});
      }
    }
  }
}

TEST(Aarch64Tables, TableDecodeIgnoresAttributeBits) {
  const Paging p;  // 4K/48
  const u64 addr = 0x0000'8765'4321'0000;
  const u64 noise = arm::bits(2, 11) | arm::bits(52, 63);  // ignored / hierarchical
  const Entry e = p.decode(arm::VALID | arm::TABLE | addr | noise, 2);
  EXPECT_EQ(e, Entry::table(PhysAddr(addr)));
}

TEST(Aarch64Tables, TableLimitsDecodeTheHierarchicalBits) {
  using aarch64::TableLimits;
  for (unsigned bitsv = 0; bitsv < 32; ++bitsv) {
    const bool ns = (bitsv & 1) != 0;
    const bool uxn = (bitsv & 8) != 0;
    const bool pxn = (bitsv & 16) != 0;
    const unsigned ap = (bitsv >> 1) & 3;
    const u64 raw = arm::VALID | arm::TABLE | 0x5000 | (ns ? arm::NSTABLE : 0) | (u64{ap} << 61) |
                    (uxn ? arm::UXNTABLE : 0) | (pxn ? arm::PXNTABLE : 0);
    const TableLimits t = Paging::table_limits(raw);
    EXPECT_EQ(t.ns_table, ns) << bitsv;
    EXPECT_EQ(t.ap_table, ap) << bitsv;
    EXPECT_EQ(t.uxn_table, uxn) << bitsv;
    EXPECT_EQ(t.pxn_table, pxn) << bitsv;
  }
  static_assert(Paging::table_limits(arm::NSTABLE).ns_table);
  static_assert(Paging::table_limits(arm::bit(62)).ap_table == 2);
}

TEST(Aarch64Tables, ReservedAndMisplacedEncodingsAreInvalid) {
  for (const Config& c : all_configs()) {
    const Paging p = make(c);
    for (unsigned level = 0; level < p.levels(); ++level) {
      const u64 block = arm::VALID | arm::AF | (u64{1} << arm::entry_shift(c.granule, level));
      // 0b01 at level 3 is reserved; at a level without blocks it faults: both invalid.
      const bool block_ok = level > 0 && p.leaf_allowed(level);
      EXPECT_EQ(p.is_valid_raw(block, level), block_ok) << describe(c) << " level " << level;
      EXPECT_EQ(p.decode(block, level).kind, block_ok ? EntryKind::Leaf : EntryKind::Invalid)
          << describe(c) << " level " << level;
      // 0b11: page at level 3, table above.
      const u64 t = block | arm::TABLE;
      EXPECT_EQ(p.decode(t, level).kind, level == 0 ? EntryKind::Leaf : EntryKind::Table);
      // Bit 0 clear: invalid whatever else is set.
      for (u64 raw : {u64{0}, ~arm::VALID, arm::TABLE, arm::AF | arm::TABLE | 0x1000}) {
        EXPECT_FALSE(p.is_valid_raw(raw, level));
        EXPECT_EQ(p.decode(raw, level), Entry::invalid());
      }
      EXPECT_EQ(p.encode(Entry::invalid(), level), 0u);
      EXPECT_EQ(
          p.encode(Entry{EntryKind::Invalid, PhysAddr(0x1000), Attrs{RWX}, kKept, true}, level),
          0u);
    }
  }
  // The classic cases spelled out.
  const Paging k4;
  EXPECT_EQ(k4.decode(arm::VALID | 0x80'0000'0000, 3), Entry::invalid());  // 4K L0 block
  EXPECT_EQ(k4.decode(arm::VALID | 0x1000, 0), Entry::invalid());          // L3 0b01
  const Paging k64(Granule::K64, 48);
  EXPECT_EQ(k64.decode(arm::VALID | 0x400'0000'0000, 2), Entry::invalid());  // 64K L1 no LPA
}

// ---- Round trip ---------------------------------------------------------------------------

TEST(Aarch64RoundTrip, DecodeOfEncodeIsIdentityForEveryExpressibleEntry) {
  unsigned n = 0;
  const u64 kept_samples[] = {0, arm::SOFTWARE, arm::DBM | arm::GP, arm::PBHA | arm::bit(55),
                              kKept};
  for (const Config& c : all_configs()) {
    const Paging p = make(c);
    for (unsigned level = 0; level < p.levels(); ++level) {
      const unsigned ps = arm::granule_shift(c.granule);
      if (level > 0) {
        for (u64 addr : {u64{0}, arm::bits(ps, c.f.phys_bits - 1)}) {
          const Entry t = Entry::table(PhysAddr(addr));
          ASSERT_EQ(p.decode(p.encode(t, level), level), t) << describe(c);
        }
      }
      if (!p.leaf_allowed(level)) continue;
      const unsigned run = p.contiguous_entries(level);
      const u64 run_mask = ~((u64{run} << arm::entry_shift(c.granule, level)) - 1);
      for (u64 addr : sample_addresses(c, level))
        for (unsigned perm = 0; perm < 16; ++perm)
          for (MemType mem : kAllMemTypes)
            for (bool global : {false, true})
              for (bool contiguous : {false, true})
                for (u64 kept : kept_samples) {
                  const Attrs a{Perm(perm), mem, global};
                  if (!p.can_express(a)) continue;
                  if (contiguous && run == 1) continue;  // the engine writes no hint there
                  const Entry e = Entry::leaf(PhysAddr(contiguous ? addr & run_mask : addr), a,
                                              kept, contiguous);
                  ASSERT_EQ(p.decode(p.encode(e, level), level), e)
                      << describe(c) << " level " << level << " " << perm_name(a.perm);
                  ++n;
                }
    }
  }
  EXPECT_GT(n, 100000u);
}

// ---- needs_break ----------------------------------------------------------------------------

TEST(Aarch64BreakBeforeMake, ExhaustiveOverAttributeClasses) {
  // Each class differs from the base leaf in exactly one property.
  enum Class {
    Invalid,
    TableA,
    TableB,
    Leaf,
    LeafPa,
    LeafMem,
    LeafPerm,
    LeafGlobal,
    LeafCont,
    LeafKept,
    kClasses
  };
  const char* names[] = {"invalid",         "tableA",   "tableB",    "leaf",
                         "leaf/pa",         "leaf/mem", "leaf/perm", "leaf/global",
                         "leaf/contiguous", "leaf/kept"};
  const Attrs base{RW, MemType::WriteBack, false};
  const PhysAddr pa(0x20'0000);
  Entry e[kClasses];
  e[Invalid] = Entry::invalid();
  e[TableA] = Entry::table(PhysAddr(0x1000));
  e[TableB] = Entry::table(PhysAddr(0x2000));
  e[Leaf] = Entry::leaf(pa, base);
  e[LeafPa] = Entry::leaf(PhysAddr(0x40'0000), base);
  e[LeafMem] = Entry::leaf(pa, Attrs{RW, MemType::Device, false});
  e[LeafPerm] = Entry::leaf(pa, Attrs{Perm::R | Perm::User, MemType::WriteBack, false});
  e[LeafGlobal] = Entry::leaf(pa, Attrs{RW, MemType::WriteBack, true});
  e[LeafCont] = Entry::leaf(pa, base, 0, true);
  e[LeafKept] = Entry::leaf(pa, base, arm::DBM | arm::bit(56));
  auto is_leaf = [](int k) { return k >= Leaf; };
  unsigned cases = 0;
  for (bool bbm2 : {false, true}) {
    const Paging p(Granule::K4, 48, Half::Lower, Features{.bbm2 = bbm2});
    for (int o = 0; o < kClasses; ++o)
      for (int n = 0; n < kClasses; ++n)
        for (bool equivalent : {false, true}) {
          // D8.16.1, written out per pair of classes.
          bool want = false;
          if (o == Invalid || n == Invalid) {
            want = false;  // making or removing a translation
          } else if (is_leaf(o) != is_leaf(n)) {
            want = !(bbm2 && equivalent);  // block size (table <-> block)
          } else if (!is_leaf(o)) {
            want = o != n;  // another next-level table
          } else {
            const bool pa_or_mem =
                (o == LeafPa) != (n == LeafPa) || (o == LeafMem) != (n == LeafMem);
            const bool to_global = o != LeafGlobal && n == LeafGlobal;
            const bool contiguity = (o == LeafCont) != (n == LeafCont);
            want = pa_or_mem || to_global || (contiguity && !(bbm2 && equivalent));
          }
          EXPECT_EQ(p.needs_break(e[o], e[n], equivalent), want)
              << names[o] << " -> " << names[n] << " bbm2 " << bbm2 << " equivalent " << equivalent;
          ++cases;
        }
  }
  EXPECT_EQ(cases, 2u * kClasses * kClasses * 2);
  // Spelled out.
  const Paging p;
  EXPECT_FALSE(p.needs_break(e[Leaf], e[LeafPerm], false));  // permissions: in place
  EXPECT_FALSE(p.needs_break(e[LeafPerm], e[Leaf], false));
  EXPECT_FALSE(p.needs_break(e[LeafGlobal], e[Leaf], false));  // global -> nG: in place
  EXPECT_TRUE(p.needs_break(e[Leaf], e[LeafGlobal], false));   // nG -> global: break
  EXPECT_TRUE(p.needs_break(e[Leaf], e[LeafGlobal], true));
  EXPECT_TRUE(p.needs_break(e[Leaf], e[LeafMem], false));
  EXPECT_TRUE(p.needs_break(e[Leaf], e[LeafPa], false));
  EXPECT_TRUE(p.needs_break(e[Leaf], e[LeafCont], false));
  EXPECT_TRUE(p.needs_break(e[Leaf], e[TableA], true));  // a split still breaks without BBM2
  EXPECT_FALSE(p.needs_break(e[Leaf], e[LeafKept], false));
  const Paging bbm2(Granule::K4, 48, Half::Lower, Features{.bbm2 = true});
  EXPECT_FALSE(bbm2.needs_break(e[Leaf], e[TableA], true));
  EXPECT_FALSE(bbm2.needs_break(e[TableA], e[Leaf], true));
  EXPECT_TRUE(bbm2.needs_break(e[Leaf], e[TableA], false));
  EXPECT_TRUE(bbm2.needs_break(e[TableA], e[TableB], true));
}

// ---- TLBI sink ------------------------------------------------------------------------------

struct Recorder {
  std::vector<std::string> log;
  void add(const char* op, u64 operand) {
    std::ostringstream s;
    s << op << " 0x" << std::hex << operand;
    log.push_back(s.str());
  }
};

struct RecordingOps {
  Recorder* r;
  void dsb_ishst() const { r->log.emplace_back("dsb ishst"); }
  void dsb_ish() const { r->log.emplace_back("dsb ish"); }
  void isb() const { r->log.emplace_back("isb"); }
  void tlbi_vae1is(u64 op) const { r->add("tlbi vae1is", op); }
  void tlbi_vale1is(u64 op) const { r->add("tlbi vale1is", op); }
  void tlbi_vaae1is(u64 op) const { r->add("tlbi vaae1is", op); }
  void tlbi_vaale1is(u64 op) const { r->add("tlbi vaale1is", op); }
  void tlbi_aside1is(u16 asid) const { r->add("tlbi aside1is", asid); }
  void tlbi_vmalle1is() const { r->log.emplace_back("tlbi vmalle1is"); }
};
static_assert(aarch64::TlbiOps<RecordingOps>);
static_assert(TlbSink<aarch64::TlbiSink<RecordingOps>>);

/// C5.5: Xt = ASID[63:48] | VA[55:12] in bits 43:0.
u64 operand(u64 va, u64 asid) { return (asid << 48) | ((va >> 12) & arm::bits(0, 43)); }

std::string op(const char* name, u64 v) {
  std::ostringstream s;
  s << name << " 0x" << std::hex << v;
  return s.str();
}

TEST(Aarch64Tlbi, BarriersAroundInvalidation) {
  Recorder rec;
  aarch64::TlbiSink<RecordingOps> sink(RecordingOps{&rec}, 0x42);
  sink.publish();
  sink.invalidate(TlbRange{VirtAddr(0x40'0000), VirtAddr(0x40'2fff), 12, false, false});
  sink.complete();
  const std::vector<std::string> want = {
      "dsb ishst",
      op("tlbi vale1is", operand(0x40'0000, 0x42)),
      op("tlbi vale1is", operand(0x40'1000, 0x42)),
      op("tlbi vale1is", operand(0x40'2000, 0x42)),
      "dsb ish",
      "isb",
  };
  EXPECT_EQ(rec.log, want);
  EXPECT_EQ(sink.asid(), 0x42);
}

TEST(Aarch64Tlbi, FormPerGlobalAndTables) {
  struct Case {
    bool global, tables;
    const char* name;
  };
  for (const Case& c : {Case{false, false, "tlbi vale1is"}, Case{false, true, "tlbi vae1is"},
                        Case{true, false, "tlbi vaale1is"}, Case{true, true, "tlbi vaae1is"}}) {
    Recorder rec;
    aarch64::TlbiSink<RecordingOps> sink(RecordingOps{&rec}, 0xbeef);
    // Two 2M strides in the TTBR1 half; the first address is not stride aligned.
    sink.invalidate(TlbRange{VirtAddr(0xffff'8000'0020'1000), VirtAddr(0xffff'8000'005f'ffff), 21,
                             c.global, c.tables});
    const u64 asid = c.global ? 0 : 0xbeef;
    const std::vector<std::string> want = {op(c.name, operand(0xffff'8000'0020'0000, asid)),
                                           op(c.name, operand(0xffff'8000'0040'0000, asid))};
    EXPECT_EQ(rec.log, want) << c.name;
  }
}

TEST(Aarch64Tlbi, OperandLayout) {
  EXPECT_EQ(aarch64::tlbi_va_operand(VirtAddr(0xffff'ffff'ffff'f000), 0xffff),
            0xffff'0fff'ffff'ffffu);
  EXPECT_EQ(aarch64::tlbi_va_operand(VirtAddr(0x1234'5000), 1), (u64{1} << 48) | 0x12345);
  EXPECT_EQ(aarch64::tlbi_va_operand(VirtAddr(0x00ff'ffff'ffff'f000), 0), arm::bits(0, 43));
}

TEST(Aarch64Tlbi, InvalidateAll) {
  Recorder rec;
  aarch64::TlbiSink<RecordingOps> sink(RecordingOps{&rec}, 7);
  sink.invalidate_all(false);
  sink.invalidate_all(true);
  const std::vector<std::string> want = {op("tlbi aside1is", 7), "tlbi vmalle1is"};
  EXPECT_EQ(rec.log, want);
}

TEST(Aarch64Tlbi, LongRangesFallBackWhenAsked) {
  Recorder rec;
  aarch64::TlbiSink<RecordingOps> sink(RecordingOps{&rec}, 3, 4);
  sink.invalidate(TlbRange{VirtAddr(0), VirtAddr(0x3fff), 12, false, false});  // 4: by VA
  EXPECT_EQ(rec.log.size(), 4u);
  rec.log.clear();
  sink.invalidate(TlbRange{VirtAddr(0), VirtAddr(0x4fff), 12, false, true});  // 5: by ASID
  EXPECT_EQ(rec.log, std::vector<std::string>{op("tlbi aside1is", 3)});
  rec.log.clear();
  sink.invalidate(TlbRange{VirtAddr(0), VirtAddr(0x4fff), 12, true, false});
  EXPECT_EQ(rec.log, std::vector<std::string>{"tlbi vmalle1is"});
  // The top of the address space does not wrap.
  rec.log.clear();
  aarch64::TlbiSink<RecordingOps> unlimited(RecordingOps{&rec}, 3);
  unlimited.invalidate(
      TlbRange{VirtAddr(0xffff'ffff'ffff'e000), VirtAddr(0xffff'ffff'ffff'ffff), 12, true, false});
  EXPECT_EQ(rec.log.size(), 2u);
}

static_assert(PagingFormat<Paging>);

}  // namespace
}  // namespace ptkit::test
