// The x86-64 paging formats (4-level and 5-level), exhaustively per level
// (STYLE.md rule 13). Every expected raw value is assembled here from the bit
// positions the Intel SDM vol. 3A gives, never from the format's own constants
// or helpers, so that a wrong bit in the header shows as a mismatch:
//   §4.5, Tables 4-15..4-20  paging-structure entries for 4-level and 5-level paging
//   §11.12.3                  PAT index = PAT << 2 | PCD << 1 | PWT
//   §11.12.2, Table 11-10     PAT memory-type encodings
//   §11.12.4, Table 11-12     IA32_PAT power-on value
//   §4.5 / §3.3.7.1           canonical addresses
#include <gtest/gtest.h>

#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "ptkit/arch/x86_64.hpp"

namespace ptkit::test {
namespace {

using x86::Features;
using x86::PatLayout;
using x86::PatType;

// ---- Bit positions, straight from the SDM ----------------------------------------------
//
// Tables 4-15..4-20 (PML5E, PML4E, PDPTE (1G page / table), PDE (2M page / table), PTE).
namespace sdm {
constexpr u64 bit(unsigned n) { return u64{1} << n; }
constexpr u64 P = bit(0);           // Present
constexpr u64 RW = bit(1);          // Read/write
constexpr u64 US = bit(2);          // User/supervisor
constexpr u64 PWT = bit(3);         // Page-level write-through
constexpr u64 PCD = bit(4);         // Page-level cache disable
constexpr u64 A = bit(5);           // Accessed
constexpr u64 D = bit(6);           // Dirty (leaves)
constexpr u64 PS = bit(7);          // Page size (PDE, PDPTE); reserved in PML4E/PML5E
constexpr u64 PAT_4K = bit(7);      // PAT (PTE, Table 4-20)
constexpr u64 G = bit(8);           // Global (leaves)
constexpr u64 PAT_LARGE = bit(12);  // PAT (PDE 2M Table 4-18, PDPTE 1G Table 4-16)
constexpr u64 XD = bit(63);         // Execute-disable (if IA32_EFER.NXE = 1)

/// Bits [lo, hi] inclusive.
constexpr u64 bits(unsigned lo, unsigned hi) {
  u64 m = 0;
  for (unsigned b = lo; b <= hi; ++b) m |= bit(b);
  return m;
}
// Ignored bits software may use (11:9, 58:52) and the protection key (62:59),
// plus A and D: what a leaf carries through unchanged.
constexpr u64 AVL_LOW = bits(9, 11);
constexpr u64 AVL_HIGH = bits(52, 58);
constexpr u64 PKEY = bits(59, 62);
constexpr u64 KEPT = A | D | AVL_LOW | AVL_HIGH | PKEY;

/// log2 of the region a leaf at `level` maps: 4K, 2M, 1G (§4.5).
constexpr unsigned leaf_shift(unsigned level) { return 12 + 9 * level; }
/// Address bits (M-1):shift of an entry at `level`, M = MAXPHYADDR.
constexpr u64 addr_bits(unsigned level, unsigned phys_bits) {
  return bits(leaf_shift(level), phys_bits - 1);
}
}  // namespace sdm

// The header's constants must sit where the SDM puts them.
static_assert(x86::kPresent == sdm::P && x86::kReadWrite == sdm::RW &&
              x86::kUserSupervisor == sdm::US && x86::kPwt == sdm::PWT && x86::kPcd == sdm::PCD &&
              x86::kAccessed == sdm::A && x86::kDirty == sdm::D && x86::kPageSize == sdm::PS &&
              x86::kPat4K == sdm::PAT_4K && x86::kGlobal == sdm::G &&
              x86::kPatLarge == sdm::PAT_LARGE && x86::kExecuteDisable == sdm::XD);
static_assert(x86::kKeptBits == sdm::KEPT);

// Table 11-10: the PAT memory-type encodings.
static_assert(u8(PatType::UC) == 0 && u8(PatType::WC) == 1 && u8(PatType::WT) == 4 &&
              u8(PatType::WP) == 5 && u8(PatType::WB) == 6 && u8(PatType::UCMinus) == 7);

// Test-local translation of a PAT type into ptkit's neutral memory type.
constexpr MemType mem_of(PatType t) {
  switch (t) {
    case PatType::UC: return MemType::Uncached;
    case PatType::WC: return MemType::WriteCombining;
    case PatType::WT: return MemType::WriteThrough;
    case PatType::WP: return MemType::WriteProtect;
    case PatType::WB: return MemType::WriteBack;
    case PatType::UCMinus: return MemType::UncachedMinus;
  }
  return MemType::Device;  // unreachable; Device is never a PAT type
}

constexpr MemType kAllMemTypes[] = {
    MemType::WriteBack,     MemType::WriteThrough, MemType::WriteCombining, MemType::WriteProtect,
    MemType::UncachedMinus, MemType::Uncached,     MemType::Device,
};
static_assert(sizeof(kAllMemTypes) / sizeof(kAllMemTypes[0]) == kMemTypeCount);

// Layouts: the power-on value (Table 11-12), Linux's (WB, WC, UC-, UC, WB, WP,
// UC-, WT), and one where PAT index 4 differs from index 0 so that a PAT bit in
// the wrong place shows.
constexpr PatLayout kPowerOn{};
constexpr PatLayout kLinux{{PatType::WB, PatType::WC, PatType::UCMinus, PatType::UC, PatType::WB,
                            PatType::WP, PatType::UCMinus, PatType::WT}};
constexpr PatLayout kDistinct{{PatType::WB, PatType::WT, PatType::UCMinus, PatType::UC, PatType::WC,
                               PatType::WP, PatType::UC, PatType::UC}};

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

std::string describe(const Features& f, unsigned level, PhysAddr pa, const Attrs& a) {
  std::ostringstream s;
  s << "level " << level << " pa 0x" << std::hex << pa.value() << std::dec << " perm "
    << (has(a.perm, Perm::R) ? "R" : "-") << (has(a.perm, Perm::W) ? "W" : "-")
    << (has(a.perm, Perm::X) ? "X" : "-") << (has(a.perm, Perm::User) ? "U" : "-") << " mem "
    << mem_name(a.mem) << " global " << a.global << " | page_1g " << f.page_1g << " nx " << f.nx
    << " phys_bits " << f.phys_bits << " pat";
  for (PatType t : f.pat.entry) s << ' ' << int(t);
  return s.str();
}

/// The first PAT index holding `mem` in the layout, or -1 (§11.12.3: the
/// format must pick an index whose entry has the type).
int expected_pat_index(const PatLayout& layout, MemType mem) {
  for (int i = 0; i < 8; ++i)
    if (mem_of(layout.entry[i]) == mem) return i;
  return -1;
}

/// Whether x86 can express these attributes under `f`, and the SDM's reasons
/// when not: no encoding of a non-readable present page (§4.6: R/W and U/S
/// only restrict writes and user access), no execute-disable without
/// IA32_EFER.NXE (§4.6.2), no device type in the PAT, and only the layout's
/// types.
bool expected_can_express(const Features& f, const Attrs& a) {
  if (!has(a.perm, Perm::R)) return false;
  if (!has(a.perm, Perm::X) && !f.nx) return false;
  if (a.mem == MemType::Device) return false;
  return expected_pat_index(f.pat, a.mem) >= 0;
}

/// The raw leaf descriptor the SDM prescribes for (pa, a) at `level`.
u64 expected_leaf(const Features& f, unsigned level, PhysAddr pa, const Attrs& a) {
  u64 raw = sdm::P | (pa.value() & sdm::addr_bits(level, f.phys_bits));
  if (level > 0) raw |= sdm::PS;  // Tables 4-16/4-18: PS = 1 maps a page
  if (has(a.perm, Perm::W)) raw |= sdm::RW;
  if (has(a.perm, Perm::User)) raw |= sdm::US;
  if (!has(a.perm, Perm::X)) raw |= sdm::XD;
  if (a.global) raw |= sdm::G;
  const int index = expected_pat_index(f.pat, a.mem);
  if (index & 1) raw |= sdm::PWT;
  if (index & 2) raw |= sdm::PCD;
  if (index & 4) raw |= level == 0 ? sdm::PAT_4K : sdm::PAT_LARGE;
  return raw;
}

/// Physical addresses to try at a leaf level: zero, the first page of the
/// level's size, an alternating bit pattern and the highest page below
/// MAXPHYADDR (every address bit set).
std::vector<PhysAddr> sample_addresses(unsigned level, unsigned phys_bits) {
  const u64 mask = sdm::addr_bits(level, phys_bits);
  return {PhysAddr(0), PhysAddr(u64{1} << sdm::leaf_shift(level)),
          PhysAddr(0x5555'5555'5555'5555 & mask), PhysAddr(0xaaaa'aaaa'aaaa'aaaa & mask),
          PhysAddr(mask)};
}

std::vector<Features> all_features() {
  std::vector<Features> out;
  for (bool page_1g : {false, true})
    for (bool nx : {true, false})
      for (unsigned phys_bits : {52u, 46u, 36u})
        for (const PatLayout& pat : {kPowerOn, kLinux, kDistinct})
          out.push_back(Features{page_1g, nx, phys_bits, pat});
  return out;
}

template <class F>
class X86Format : public ::testing::Test {};
using Formats = ::testing::Types<x86::Paging4, x86::Paging5>;
TYPED_TEST_SUITE(X86Format, Formats);

// ---- Leaves: every attribute combination at every leaf level -----------------------------

TYPED_TEST(X86Format, EveryLeafEncodesToTheSdmBitsAndRoundTrips) {
  unsigned checked = 0, refused = 0;
  for (const Features& f : all_features()) {
    const TypeParam fmt(f);
    for (unsigned level = 0; level < fmt.levels(); ++level) {
      if (!fmt.leaf_allowed(level)) continue;
      for (PhysAddr pa : sample_addresses(level, f.phys_bits)) {
        for (unsigned p = 0; p < 16; ++p) {
          for (MemType mem : kAllMemTypes) {
            for (bool global : {false, true}) {
              const Attrs a{Perm(p), mem, global};
              const bool expressible = expected_can_express(f, a);
              ASSERT_EQ(fmt.can_express(a), expressible) << describe(f, level, pa, a);
              if (!expressible) {
                ++refused;
                continue;
              }
              const u64 raw = fmt.encode(Entry::leaf(pa, a), level);
              ASSERT_EQ(raw, expected_leaf(f, level, pa, a))
                  << describe(f, level, pa, a) << std::hex << "\n got      0x" << raw
                  << "\n expected 0x" << expected_leaf(f, level, pa, a);
              EXPECT_TRUE(fmt.is_valid_raw(raw, level));
              const Entry e = fmt.decode(raw, level);
              ASSERT_EQ(e.kind, EntryKind::Leaf) << describe(f, level, pa, a);
              EXPECT_EQ(e.pa, pa) << describe(f, level, pa, a);
              EXPECT_EQ(e.attrs, a) << describe(f, level, pa, a);
              EXPECT_EQ(e.kept, 0u) << describe(f, level, pa, a);
              ++checked;
            }
          }
        }
      }
    }
  }
  // The loops really ran: both branches are well populated.
  EXPECT_GT(checked, 10000u);
  EXPECT_GT(refused, 10000u);
}

TYPED_TEST(X86Format, DecodeOfHandBuiltLeafGivesTheAttributes) {
  // Independent of encode(): a descriptor assembled from SDM bits decodes to
  // exactly the attributes it says.
  for (const Features& f : all_features()) {
    const TypeParam fmt(f);
    for (unsigned level = 0; level < 3; ++level) {
      if (!fmt.leaf_allowed(level)) continue;
      const PhysAddr pa(sdm::addr_bits(level, f.phys_bits) & 0x0000'0123'4567'8000);
      for (unsigned index = 0; index < 8; ++index)
        for (unsigned flags = 0; flags < 16; ++flags) {
          const bool w = flags & 1, u = flags & 2, xd = flags & 4, g = flags & 8;
          if (xd && !f.nx) continue;  // bit 63 is reserved without NXE
          u64 raw = sdm::P | pa.value() | (level ? sdm::PS : 0) | (w ? sdm::RW : 0) |
                    (u ? sdm::US : 0) | (xd ? sdm::XD : 0) | (g ? sdm::G : 0);
          if (index & 1) raw |= sdm::PWT;
          if (index & 2) raw |= sdm::PCD;
          if (index & 4) raw |= level == 0 ? sdm::PAT_4K : sdm::PAT_LARGE;
          const Entry e = fmt.decode(raw, level);
          ASSERT_EQ(e.kind, EntryKind::Leaf);
          Perm want = Perm::R;
          if (w) want = want | Perm::W;
          if (u) want = want | Perm::User;
          if (!xd) want = want | Perm::X;
          EXPECT_EQ(u8(e.attrs.perm), u8(want)) << std::hex << raw;
          EXPECT_EQ(e.attrs.global, g) << std::hex << raw;
          EXPECT_EQ(e.attrs.mem, mem_of(f.pat.entry[index])) << std::hex << raw;
          EXPECT_EQ(e.pa, pa);
          EXPECT_EQ(e.kept, 0u);
          // And back to the same bits when this index is the first of its
          // type (encode picks the first; a later duplicate cannot come back).
          if (expected_pat_index(f.pat, e.attrs.mem) == int(index)) {
            EXPECT_EQ(fmt.encode(e, level), raw) << std::hex << raw;
          }
        }
    }
  }
}

// ---- can_express: each refusal for exactly its reason -------------------------------------

TYPED_TEST(X86Format, CanExpressRefusesWithoutRead) {
  const TypeParam fmt;  // power-on PAT, NX on
  for (unsigned p = 0; p < 16; ++p) {
    const Attrs a{Perm(p), MemType::WriteBack, false};
    EXPECT_EQ(fmt.can_express(a), has(Perm(p), Perm::R)) << p;
  }
  EXPECT_FALSE(fmt.can_express(Attrs{Perm::W | Perm::X | Perm::User, MemType::WriteBack, true}));
  EXPECT_FALSE(fmt.can_express(Attrs{Perm::None, MemType::WriteBack, false}));
  EXPECT_TRUE(fmt.can_express(Attrs{Perm::R, MemType::WriteBack, false}));
}

TYPED_TEST(X86Format, CanExpressRefusesDeviceWhateverTheLayout) {
  for (const PatLayout& pat : {kPowerOn, kLinux, kDistinct}) {
    const TypeParam fmt(Features{.pat = pat});
    EXPECT_FALSE(fmt.can_express(Attrs{RWX, MemType::Device, false}));
    EXPECT_FALSE(fmt.can_express(Attrs{Perm::R, MemType::Device, true}));
    EXPECT_TRUE(fmt.can_express(Attrs{RWX, MemType::Uncached, false}));
  }
}

TYPED_TEST(X86Format, CanExpressRefusesTypesAbsentFromThePat) {
  // Power-on layout: WB, WT, UC-, UC only (Table 11-12).
  const TypeParam power_on;
  EXPECT_TRUE(power_on.can_express(Attrs{RW, MemType::WriteBack}));
  EXPECT_TRUE(power_on.can_express(Attrs{RW, MemType::WriteThrough}));
  EXPECT_TRUE(power_on.can_express(Attrs{RW, MemType::UncachedMinus}));
  EXPECT_TRUE(power_on.can_express(Attrs{RW, MemType::Uncached}));
  EXPECT_FALSE(power_on.can_express(Attrs{RW, MemType::WriteCombining}));
  EXPECT_FALSE(power_on.can_express(Attrs{RW, MemType::WriteProtect}));

  // Linux's layout adds WC and WP.
  const TypeParam linux_pat(Features{.pat = kLinux});
  for (MemType m : kAllMemTypes)
    EXPECT_EQ(linux_pat.can_express(Attrs{RW, m}), m != MemType::Device) << mem_name(m);

  // A layout of only UC: nothing else.
  PatLayout only_uc;
  for (PatType& t : only_uc.entry) t = PatType::UC;
  const TypeParam uc(Features{.pat = only_uc});
  for (MemType m : kAllMemTypes)
    EXPECT_EQ(uc.can_express(Attrs{RW, m}), m == MemType::Uncached) << mem_name(m);
}

TYPED_TEST(X86Format, CanExpressNeedsExecuteWithoutNx) {
  const TypeParam no_nx(Features{.nx = false});
  const TypeParam nx(Features{.nx = true});
  for (unsigned p = 0; p < 16; ++p) {
    const Perm perm = Perm(p);
    const Attrs a{perm, MemType::WriteBack, false};
    EXPECT_EQ(nx.can_express(a), has(perm, Perm::R)) << p;
    EXPECT_EQ(no_nx.can_express(a), has(perm, Perm::R) && has(perm, Perm::X)) << p;
  }
  // Without NXE bit 63 is reserved (§4.6.2): never written.
  EXPECT_EQ(no_nx.encode(Entry::leaf(PhysAddr(0x1000), Attrs{RWX}), 0) & sdm::XD, 0u);
  EXPECT_NE(nx.encode(Entry::leaf(PhysAddr(0x1000), Attrs{RW}), 0) & sdm::XD, 0u);
}

// ---- PAT layouts ------------------------------------------------------------------------

TYPED_TEST(X86Format, LinuxPatEveryIndexDecodesToItsType) {
  const TypeParam fmt(Features{.page_1g = true, .pat = kLinux});
  const MemType want[8] = {MemType::WriteBack,     MemType::WriteCombining, MemType::UncachedMinus,
                           MemType::Uncached,      MemType::WriteBack,      MemType::WriteProtect,
                           MemType::UncachedMinus, MemType::WriteThrough};
  for (unsigned level = 0; level < 3; ++level) {
    const u64 pat_bit = level == 0 ? sdm::PAT_4K : sdm::PAT_LARGE;
    for (unsigned index = 0; index < 8; ++index) {
      const u64 raw = sdm::P | (level ? sdm::PS : 0) | (index & 1 ? sdm::PWT : 0) |
                      (index & 2 ? sdm::PCD : 0) | (index & 4 ? pat_bit : 0) |
                      (u64{1} << sdm::leaf_shift(level));
      const Entry e = fmt.decode(raw, level);
      ASSERT_TRUE(e.is_leaf());
      EXPECT_EQ(e.attrs.mem, want[index]) << "level " << level << " index " << index;
      EXPECT_EQ(e.pa.value(), u64{1} << sdm::leaf_shift(level)) << "PAT bit taken as address";
    }
  }
}

TYPED_TEST(X86Format, LinuxPatEncodesTheFirstMatchingIndex) {
  const TypeParam fmt(Features{.page_1g = true, .pat = kLinux});
  struct Case {
    MemType mem;
    unsigned index;
  };
  // WB sits at 0 and 4, UC- at 2 and 6: the lower index wins.
  const Case cases[] = {{MemType::WriteBack, 0},     {MemType::WriteCombining, 1},
                        {MemType::UncachedMinus, 2}, {MemType::Uncached, 3},
                        {MemType::WriteProtect, 5},  {MemType::WriteThrough, 7}};
  for (unsigned level = 0; level < 3; ++level) {
    const u64 pat_bit = level == 0 ? sdm::PAT_4K : sdm::PAT_LARGE;
    for (const Case& c : cases) {
      const u64 raw = fmt.encode(Entry::leaf(PhysAddr(0), Attrs{RW, c.mem}), level);
      const u64 want =
          (c.index & 1 ? sdm::PWT : 0) | (c.index & 2 ? sdm::PCD : 0) | (c.index & 4 ? pat_bit : 0);
      EXPECT_EQ(raw & (sdm::PWT | sdm::PCD | pat_bit), want)
          << "level " << level << " " << mem_name(c.mem);
    }
  }
}

TYPED_TEST(X86Format, EveryPatIndexIsReachableByEncode) {
  // For each index i a layout whose only WB entry is i: encoding WB must
  // produce exactly i's PWT/PCD/PAT bits at every leaf level.
  for (unsigned i = 0; i < 8; ++i) {
    PatLayout pat;
    for (PatType& t : pat.entry) t = PatType::UC;
    pat.entry[i] = PatType::WB;
    const TypeParam fmt(Features{.page_1g = true, .pat = pat});
    for (unsigned level = 0; level < 3; ++level) {
      const u64 pat_bit = level == 0 ? sdm::PAT_4K : sdm::PAT_LARGE;
      const PhysAddr pa(u64{1} << sdm::leaf_shift(level));
      const u64 raw = fmt.encode(Entry::leaf(pa, Attrs{RW, MemType::WriteBack}), level);
      const u64 want = sdm::P | sdm::RW | sdm::XD | pa.value() | (level ? sdm::PS : 0) |
                       (i & 1 ? sdm::PWT : 0) | (i & 2 ? sdm::PCD : 0) | (i & 4 ? pat_bit : 0);
      EXPECT_EQ(raw, want) << "index " << i << " level " << level;
      EXPECT_EQ(fmt.decode(raw, level).attrs.mem, MemType::WriteBack);
      // UC is first found at 0, or at 1 when WB took 0.
      const unsigned uc = i == 0 ? 1 : 0;
      const u64 raw_uc = fmt.encode(Entry::leaf(pa, Attrs{RW, MemType::Uncached}), level);
      EXPECT_EQ(raw_uc & (sdm::PWT | sdm::PCD | pat_bit), uc & 1 ? sdm::PWT : 0) << i;
    }
  }
}

TYPED_TEST(X86Format, PowerOnPatLayoutIsTheSdmDefault) {
  // Table 11-12: PAT0..7 after reset = WB, WT, UC-, UC, WB, WT, UC-, UC.
  const PatType want[8] = {PatType::WB, PatType::WT, PatType::UCMinus, PatType::UC,
                           PatType::WB, PatType::WT, PatType::UCMinus, PatType::UC};
  const TypeParam fmt;
  for (int i = 0; i < 8; ++i) EXPECT_EQ(fmt.features().pat.entry[i], want[i]) << i;
  EXPECT_FALSE(fmt.features().page_1g);
  EXPECT_TRUE(fmt.features().nx);
  EXPECT_EQ(fmt.phys_bits(), 52u);
}

// ---- Kept bits --------------------------------------------------------------------------

TYPED_TEST(X86Format, KeptBitsSurviveDecodeEncodeAtEveryLeafLevel) {
  const TypeParam fmt(Features{.page_1g = true, .pat = kDistinct});
  const unsigned kept_bits[] = {5, 6, 9, 10, 11, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62};
  for (unsigned level = 0; level < 3; ++level) {
    const Features& f = fmt.features();
    for (const Attrs& a : {Attrs{Perm::R}, Attrs{RWX | Perm::User, MemType::WriteCombining, true},
                           Attrs{RW, MemType::Uncached, false}}) {
      const PhysAddr pa(sdm::addr_bits(level, 52));  // every address bit set
      const u64 base = expected_leaf(f, level, pa, a);
      auto check = [&](u64 extra) {
        const u64 raw = base | extra;
        const Entry e = fmt.decode(raw, level);
        ASSERT_TRUE(e.is_leaf());
        EXPECT_EQ(e.kept, extra) << std::hex << "level " << level << " raw 0x" << raw;
        EXPECT_EQ(e.pa, pa) << std::hex << "kept bits leaked into the address, raw 0x" << raw;
        EXPECT_EQ(e.attrs, a) << std::hex << "kept bits changed the attributes, raw 0x" << raw;
        EXPECT_EQ(fmt.encode(e, level), raw) << std::hex << "level " << level;
        // protect() rewrites attributes with the same kept bits: they stay.
        const Entry changed = Entry::leaf(e.pa, Attrs{Perm::R, MemType::WriteBack}, e.kept);
        EXPECT_EQ(fmt.encode(changed, level) & sdm::KEPT, extra);
      };
      for (unsigned b : kept_bits) check(u64{1} << b);
      check(sdm::A | sdm::D);
      check(sdm::AVL_LOW);
      check(sdm::AVL_HIGH);
      check(sdm::PKEY);
      check(sdm::KEPT);
    }
  }
}

TYPED_TEST(X86Format, EncodeIgnoresNonKeptBitsInKept) {
  // Entry::kept is masked: it cannot smuggle in present, XD, PS, PAT or address bits.
  const TypeParam fmt(Features{.page_1g = true});
  for (unsigned level = 0; level < 3; ++level) {
    const Attrs a{RWX};
    const PhysAddr pa(u64{1} << sdm::leaf_shift(level));
    const u64 clean = fmt.encode(Entry::leaf(pa, a), level);
    const u64 dirty = fmt.encode(Entry::leaf(pa, a, ~sdm::KEPT), level);
    EXPECT_EQ(dirty, clean) << "level " << level;
    const u64 all = fmt.encode(Entry::leaf(pa, a, ~u64{0}), level);
    EXPECT_EQ(all, clean | sdm::KEPT) << "level " << level;
  }
}

// ---- Table entries ------------------------------------------------------------------------

TYPED_TEST(X86Format, TableEntriesGrantEverythingAndDecodeAsTables) {
  for (bool page_1g : {false, true}) {
    const TypeParam fmt(Features{.page_1g = page_1g});
    for (unsigned level = 1; level < fmt.levels(); ++level) {
      for (u64 addr : {u64{0x1000}, u64{0x0000'0123'4567'8000}, sdm::addr_bits(0, 52)}) {
        const PhysAddr pa(addr);
        const u64 raw = fmt.encode(Entry::table(pa), level);
        // P | R/W | U/S | A plus the address: the leaf alone restricts access.
        EXPECT_EQ(raw, sdm::P | sdm::RW | sdm::US | sdm::A | addr) << "level " << level;
        EXPECT_EQ(raw & (sdm::PS | sdm::XD | sdm::G | sdm::PWT | sdm::PCD), 0u);
        const Entry e = fmt.decode(raw, level);
        EXPECT_EQ(e.kind, EntryKind::Table) << "level " << level;
        EXPECT_EQ(e.pa, pa) << "level " << level;
        EXPECT_EQ(e, Entry::table(pa));
        EXPECT_TRUE(fmt.is_valid_raw(raw, level));
      }
    }
  }
}

TYPED_TEST(X86Format, TableDecodeTakesOnlyTheAddressBits) {
  const TypeParam fmt(Features{.phys_bits = 46});
  const u64 addr = 0x0000'2345'6789'a000;
  // Everything else a table entry may hold: flags, ignored bits, XD.
  const u64 noise = sdm::RW | sdm::US | sdm::PWT | sdm::PCD | sdm::A | sdm::bits(8, 11) |
                    sdm::bits(52, 62) | sdm::XD;
  for (unsigned level = 1; level < fmt.levels(); ++level) {
    if (level <= 2) continue;  // PS would make a leaf at levels 1-2; tested elsewhere
    const Entry e = fmt.decode(sdm::P | addr | noise | sdm::bits(46, 51), level);
    EXPECT_EQ(e, Entry::table(PhysAddr(addr))) << "level " << level;
  }
  for (unsigned level = 1; level <= 2; ++level) {
    const Entry e = fmt.decode(sdm::P | addr | (noise & ~sdm::PS) | sdm::bits(46, 51), level);
    EXPECT_EQ(e, Entry::table(PhysAddr(addr))) << "level " << level;
  }
}

TYPED_TEST(X86Format, PsIsALeafOnlyAtPdAndPdpt) {
  const TypeParam fmt(Features{.page_1g = true});
  const u64 raw = sdm::P | sdm::RW | sdm::PS | 0x4000'0000;
  EXPECT_TRUE(fmt.decode(raw, 1).is_leaf());  // PDE, 2M page (Table 4-18)
  EXPECT_TRUE(fmt.decode(raw, 2).is_leaf());  // PDPTE, 1G page (Table 4-16)
  EXPECT_EQ(fmt.decode(raw & ~sdm::PS, 1).kind, EntryKind::Table);
  EXPECT_EQ(fmt.decode(raw & ~sdm::PS, 2).kind, EntryKind::Table);
  // PML4E and PML5E have no PS (bit 7 reserved): still tables.
  for (unsigned level = 3; level < fmt.levels(); ++level) {
    const Entry e = fmt.decode(raw, level);
    EXPECT_EQ(e.kind, EntryKind::Table) << "level " << level;
    EXPECT_EQ(e.pa, PhysAddr(0x4000'0000));
  }
}

TYPED_TEST(X86Format, PteBit7IsPatNotPageSize) {
  // Table 4-20: in a PTE bit 7 is PAT; the entry is a 4K leaf with PAT index 4.
  const TypeParam fmt(Features{.pat = kDistinct});
  const Entry e = fmt.decode(sdm::P | sdm::PAT_4K | 0x7000, 0);
  ASSERT_TRUE(e.is_leaf());
  EXPECT_EQ(e.pa, PhysAddr(0x7000));
  EXPECT_EQ(e.attrs.mem, MemType::WriteCombining);  // kDistinct[4]
  EXPECT_EQ(e.kept, 0u);
  // Bit 12 in a PTE is address, not PAT.
  const Entry e12 = fmt.decode(sdm::P | sdm::PAT_LARGE, 0);
  EXPECT_EQ(e12.pa, PhysAddr(0x1000));
  EXPECT_EQ(e12.attrs.mem, MemType::WriteBack);
}

TYPED_TEST(X86Format, NotPresentIsInvalidWhateverElseIsSet) {
  const TypeParam fmt(Features{.page_1g = true});
  for (unsigned level = 0; level < fmt.levels(); ++level) {
    for (u64 raw : {u64{0}, ~sdm::P, sdm::PS | 0x20'0000, sdm::RW | sdm::US | sdm::XD}) {
      EXPECT_EQ(fmt.decode(raw, level), Entry::invalid()) << std::hex << raw;
      EXPECT_FALSE(fmt.is_valid_raw(raw, level));
    }
    EXPECT_TRUE(fmt.is_valid_raw(sdm::P, level));
    EXPECT_EQ(fmt.encode(Entry::invalid(), level), 0u);
    // An invalid entry with stray fields still encodes as 0.
    EXPECT_EQ(fmt.encode(Entry{EntryKind::Invalid, PhysAddr(0x1000), Attrs{RWX}, sdm::KEPT}, level),
              0u);
  }
}

// ---- Levels and addresses -----------------------------------------------------------------

TYPED_TEST(X86Format, LeafAllowedPerLevel) {
  const TypeParam without(Features{.page_1g = false});
  const TypeParam with(Features{.page_1g = true});
  EXPECT_TRUE(without.leaf_allowed(0));   // PTE: 4K
  EXPECT_TRUE(without.leaf_allowed(1));   // PDE: 2M
  EXPECT_FALSE(without.leaf_allowed(2));  // PDPTE: 1G only with CPUID Page1GB
  EXPECT_TRUE(with.leaf_allowed(0));
  EXPECT_TRUE(with.leaf_allowed(1));
  EXPECT_TRUE(with.leaf_allowed(2));
  for (unsigned level = 3; level < TypeParam::kMaxLevels + 2; ++level) {
    EXPECT_FALSE(without.leaf_allowed(level)) << level;
    EXPECT_FALSE(with.leaf_allowed(level)) << level;
  }
  // The contract: if a level may hold a leaf, so may every lower level.
  for (const TypeParam& fmt : {without, with})
    for (unsigned level = 1; level < fmt.levels(); ++level)
      if (fmt.leaf_allowed(level)) {
        EXPECT_TRUE(fmt.leaf_allowed(level - 1)) << level;
      }
}

TYPED_TEST(X86Format, Geometry) {
  const TypeParam fmt;
  EXPECT_EQ(fmt.levels(), TypeParam::kMaxLevels);
  EXPECT_EQ(fmt.page_shift(), 12u);
  for (unsigned level = 0; level < fmt.levels(); ++level) EXPECT_EQ(fmt.index_bits(level), 9u);
  // 12 + 9 * levels = the linear-address width (§4.5).
  EXPECT_EQ(fmt.page_shift() + 9 * fmt.levels(), TypeParam::kVaBits);
}

TEST(X86FormatNames, LevelNamesFollowTheSdm) {
  const x86::Paging4 p4;
  EXPECT_STREQ(p4.level_name(0), "PT");
  EXPECT_STREQ(p4.level_name(1), "PD");
  EXPECT_STREQ(p4.level_name(2), "PDPT");
  EXPECT_STREQ(p4.level_name(3), "PML4");
  EXPECT_STREQ(p4.level_name(4), "?");
  EXPECT_STREQ(p4.level_name(100), "?");
  const x86::Paging5 p5;
  EXPECT_STREQ(p5.level_name(3), "PML4");
  EXPECT_STREQ(p5.level_name(4), "PML5");
  EXPECT_STREQ(p5.level_name(5), "?");
  EXPECT_EQ(x86::Paging4::kVaBits, 48u);
  EXPECT_EQ(x86::Paging5::kVaBits, 57u);
}

TYPED_TEST(X86Format, AddressMaskPerLevelAndPhysBits) {
  const TypeParam p52(Features{.phys_bits = 52});
  EXPECT_EQ(p52.phys_bits(), 52u);
  EXPECT_EQ(p52.address_mask(0), 0x000f'ffff'ffff'f000u);
  EXPECT_EQ(p52.address_mask(1), 0x000f'ffff'ffe0'0000u);
  EXPECT_EQ(p52.address_mask(2), 0x000f'ffff'c000'0000u);
  const TypeParam p46(Features{.phys_bits = 46});
  EXPECT_EQ(p46.phys_bits(), 46u);
  EXPECT_EQ(p46.address_mask(0), 0x0000'3fff'ffff'f000u);
  EXPECT_EQ(p46.address_mask(1), 0x0000'3fff'ffe0'0000u);
  EXPECT_EQ(p46.address_mask(2), 0x0000'3fff'c000'0000u);
  for (unsigned phys_bits = 32; phys_bits <= 52; ++phys_bits) {
    const TypeParam fmt(Features{.phys_bits = phys_bits});
    for (unsigned level = 0; level < 3; ++level)
      EXPECT_EQ(fmt.address_mask(level), sdm::addr_bits(level, phys_bits))
          << "phys_bits " << phys_bits << " level " << level;
  }
}

TYPED_TEST(X86Format, EncodeDropsAddressBitsAbovePhysBits) {
  for (unsigned phys_bits : {46u, 52u}) {
    const TypeParam fmt(Features{.page_1g = true, .phys_bits = phys_bits});
    for (unsigned level = 0; level < 3; ++level) {
      const u64 in_range = u64{1} << sdm::leaf_shift(level);
      // Every bit from MAXPHYADDR to 62: none may reach the descriptor, in
      // particular not the ignored/protection-key bits 52-62.
      for (unsigned b = phys_bits; b < 63; ++b) {
        const PhysAddr pa(in_range | (u64{1} << b));
        const Attrs a{RWX};
        const u64 raw = fmt.encode(Entry::leaf(pa, a), level);
        EXPECT_EQ(raw, sdm::P | sdm::RW | (level ? sdm::PS : 0) | in_range)
            << "phys_bits " << phys_bits << " level " << level << " bit " << b;
        const u64 table = fmt.encode(Entry::table(pa), level + 1);
        EXPECT_EQ(table, sdm::P | sdm::RW | sdm::US | sdm::A | in_range) << b;
      }
    }
  }
}

TYPED_TEST(X86Format, LargeLeafDecodeIgnoresLowAddressBitsButPat) {
  const TypeParam fmt(Features{.page_1g = true, .pat = kDistinct});
  // 2M page: bits 20:13 are reserved and bit 12 is PAT (Table 4-18).
  {
    const u64 pa = 0x0000'0001'2340'0000;
    const Entry plain = fmt.decode(sdm::P | sdm::PS | pa | sdm::bits(13, 20), 1);
    ASSERT_TRUE(plain.is_leaf());
    EXPECT_EQ(plain.pa, PhysAddr(pa));
    EXPECT_EQ(plain.attrs.mem, MemType::WriteBack);  // index 0
    EXPECT_EQ(plain.kept, 0u);
    const Entry pat = fmt.decode(sdm::P | sdm::PS | pa | sdm::bits(12, 20), 1);
    EXPECT_EQ(pat.pa, PhysAddr(pa));
    EXPECT_EQ(pat.attrs.mem, MemType::WriteCombining);  // index 4
  }
  // 1G page: bits 29:13 are reserved and bit 12 is PAT (Table 4-16).
  {
    const u64 pa = 0x0000'0012'c000'0000;
    const Entry plain = fmt.decode(sdm::P | sdm::PS | pa | sdm::bits(13, 29), 2);
    ASSERT_TRUE(plain.is_leaf());
    EXPECT_EQ(plain.pa, PhysAddr(pa));
    EXPECT_EQ(plain.attrs.mem, MemType::WriteBack);
    const Entry pat = fmt.decode(sdm::P | sdm::PS | sdm::PCD | pa | sdm::bits(12, 29), 2);
    EXPECT_EQ(pat.pa, PhysAddr(pa));
    EXPECT_EQ(pat.attrs.mem, MemType::Uncached);  // index 6
  }
}

TYPED_TEST(X86Format, DecodeDropsAddressBitsAbovePhysBits) {
  const TypeParam fmt(Features{.page_1g = true, .phys_bits = 40});
  for (unsigned level = 0; level < 3; ++level) {
    const u64 addr = u64{1} << sdm::leaf_shift(level);
    const Entry e = fmt.decode(sdm::P | (level ? sdm::PS : 0) | addr | sdm::bits(40, 51), level);
    EXPECT_EQ(e.pa, PhysAddr(addr)) << level;
  }
}

// ---- Canonical addresses -------------------------------------------------------------------

TEST(X86Canonical, FourLevel48Bit) {
  const x86::Paging4 fmt;
  EXPECT_TRUE(fmt.is_canonical(VirtAddr(0)));
  EXPECT_TRUE(fmt.is_canonical(VirtAddr(0x0000'7fff'ffff'ffff)));
  EXPECT_FALSE(fmt.is_canonical(VirtAddr(0x0000'8000'0000'0000)));
  EXPECT_FALSE(fmt.is_canonical(VirtAddr(0xffff'7fff'ffff'ffff)));
  EXPECT_TRUE(fmt.is_canonical(VirtAddr(0xffff'8000'0000'0000)));
  EXPECT_TRUE(fmt.is_canonical(VirtAddr(0xffff'ffff'ffff'ffff)));
  EXPECT_FALSE(fmt.is_canonical(VirtAddr(0x8000'0000'0000'0000)));
  EXPECT_FALSE(fmt.is_canonical(VirtAddr(0x7fff'ffff'ffff'ffff)));
  EXPECT_FALSE(fmt.is_canonical(VirtAddr(0x00ff'ffff'ffff'ffff)));  // 57-bit only
  EXPECT_FALSE(fmt.is_canonical(VirtAddr(0xff00'0000'0000'0000)));
}

TEST(X86Canonical, FiveLevel57Bit) {
  const x86::Paging5 fmt;
  EXPECT_TRUE(fmt.is_canonical(VirtAddr(0)));
  EXPECT_TRUE(fmt.is_canonical(VirtAddr(0x00ff'ffff'ffff'ffff)));
  EXPECT_FALSE(fmt.is_canonical(VirtAddr(0x0100'0000'0000'0000)));
  EXPECT_FALSE(fmt.is_canonical(VirtAddr(0xfeff'ffff'ffff'ffff)));
  EXPECT_TRUE(fmt.is_canonical(VirtAddr(0xff00'0000'0000'0000)));
  EXPECT_TRUE(fmt.is_canonical(VirtAddr(0xffff'ffff'ffff'ffff)));
  // The 48-bit holes are ordinary addresses with 5-level paging.
  EXPECT_TRUE(fmt.is_canonical(VirtAddr(0x0000'8000'0000'0000)));
  EXPECT_TRUE(fmt.is_canonical(VirtAddr(0xffff'7fff'ffff'ffff)));
  EXPECT_FALSE(fmt.is_canonical(VirtAddr(0x8000'0000'0000'0000)));
  EXPECT_FALSE(fmt.is_canonical(VirtAddr(0x7fff'ffff'ffff'ffff)));
}

TYPED_TEST(X86Format, CanonicalIsSignExtensionOfTheTopVaBit) {
  const TypeParam fmt;
  const unsigned va_bits = TypeParam::kVaBits;
  for (unsigned b = 0; b < 64; ++b) {
    // One bit set: canonical only below the sign bit.
    EXPECT_EQ(fmt.is_canonical(VirtAddr(u64{1} << b)), b < va_bits - 1) << "bit " << b;
    // Ones from bit b up: canonical when the run covers the sign bit.
    EXPECT_EQ(fmt.is_canonical(VirtAddr(~u64{0} << b)), b <= va_bits - 1) << "from bit " << b;
    // Ones from bit b up, but bit 63 cleared: never canonical unless empty.
    const u64 v = (~u64{0} << b) & ~(u64{1} << 63);
    EXPECT_EQ(fmt.is_canonical(VirtAddr(v)), v == 0) << "from bit " << b << " without 63";
  }
}

// ---- needs_break -------------------------------------------------------------------------

TYPED_TEST(X86Format, NeedsBreakOnlyWhenLeafAndTableSwapNonEquivalently) {
  const TypeParam fmt;
  const Entry invalid = Entry::invalid();
  const Entry leaf_a = Entry::leaf(PhysAddr(0x20'0000), Attrs{RW});
  const Entry leaf_b = Entry::leaf(PhysAddr(0x40'0000), Attrs{Perm::R, MemType::Uncached, true});
  const Entry table_a = Entry::table(PhysAddr(0x1000));
  const Entry table_b = Entry::table(PhysAddr(0x2000));
  const Entry all[] = {invalid, leaf_a, leaf_b, table_a, table_b};
  for (const Entry& o : all)
    for (const Entry& n : all)
      for (bool equivalent : {false, true}) {
        // §4.10.2.3 (page-size change) and AMD APM §5.5.2: only a change
        // between a page and a table that is not a pure split/merge.
        const bool want = o.valid() && n.valid() && o.kind != n.kind && !equivalent;
        EXPECT_EQ(fmt.needs_break(o, n, equivalent), want)
            << int(o.kind) << "->" << int(n.kind) << " equivalent " << equivalent;
      }
  // Spelled out.
  EXPECT_FALSE(fmt.needs_break(invalid, leaf_a, false));
  EXPECT_FALSE(fmt.needs_break(leaf_a, invalid, false));
  EXPECT_FALSE(fmt.needs_break(invalid, table_a, false));
  EXPECT_FALSE(fmt.needs_break(table_a, invalid, false));
  EXPECT_FALSE(fmt.needs_break(leaf_a, leaf_b, false));
  EXPECT_FALSE(fmt.needs_break(table_a, table_b, false));
  EXPECT_TRUE(fmt.needs_break(leaf_a, table_a, false));
  EXPECT_TRUE(fmt.needs_break(table_a, leaf_a, false));
  EXPECT_FALSE(fmt.needs_break(leaf_a, table_a, true));
  EXPECT_FALSE(fmt.needs_break(table_a, leaf_a, true));
}

static_assert(PagingFormat<x86::Paging4> && PagingFormat<x86::Paging5>);

}  // namespace
}  // namespace ptkit::test
