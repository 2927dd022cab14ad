// The RISC-V Sv39/Sv48/Sv57 paging format and its SFENCE.VMA sink,
// exhaustively per mode and level (STYLE.md rule 13). Every expected raw value
// is assembled here from the bit positions of the RISC-V Privileged
// Architecture 20211203, never from the format's own constants or helpers, so
// that a wrong bit in the header shows as a mismatch:
//   §4.1.11           satp.MODE encodings (Sv39 = 8, Sv48 = 9, Sv57 = 10)
//   §4.2.1            SFENCE.VMA: the four rs1/rs2 forms, leaf-only rs1≠x0
//   §4.3.1            PTE bits 9:0, the R/W/X encoding table, non-leaf A/D/U
//   §4.3.2            the translation process: reserved encodings (step 3),
//                     pointer at level 0 (step 4), misaligned superpage (step 6)
//   §4.4, §4.5, §4.6  Sv39/Sv48/Sv57 PTE: PPN 53:10, reserved 60:54, canonical VAs
//   ch. 5 (Svnapot)   N = bit 63, 64 KiB: level 0, ppn[3:0] = 0b1000
//   ch. 6 (Svpbmt)    PBMT = bits 62:61: PMA 0, NC 1, IO 2, 3 reserved
#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

#include "ptkit/arch/riscv.hpp"
#include "ptkit/arch/riscv_tlb.hpp"

namespace ptkit::test {
namespace {

using riscv::Features;
using riscv::Mode;
using riscv::Paging;

// ---- Bit positions, straight from the spec ----------------------------------------------
namespace spec {
constexpr u64 bit(unsigned n) { return u64{1} << n; }
/// Bits [lo, hi] inclusive.
constexpr u64 bits(unsigned lo, unsigned hi) {
  u64 m = 0;
  for (unsigned b = lo; b <= hi; ++b) m |= bit(b);
  return m;
}
// §4.3.1 (Sv32 PTE bits 9:0, shared by Sv39/48/57 per §4.4-§4.6).
constexpr u64 V = bit(0);
constexpr u64 R = bit(1);
constexpr u64 W = bit(2);
constexpr u64 X = bit(3);
constexpr u64 U = bit(4);
constexpr u64 G = bit(5);
constexpr u64 A = bit(6);
constexpr u64 D = bit(7);
constexpr u64 RSW = bits(8, 9);
// §4.4, Sv39 PTE: PPN[0] 18:10, PPN[1] 27:19, PPN[2] 53:28 (44 bits in all).
constexpr unsigned PPN_LSB = 10;
constexpr u64 PPN = bits(10, 53);
constexpr u64 RESERVED = bits(54, 60);
// ch. 6 (Svpbmt) and ch. 5 (Svnapot).
constexpr unsigned PBMT_LSB = 61;
constexpr u64 PBMT = bits(61, 62);
constexpr u64 PBMT_PMA = 0, PBMT_NC = 1, PBMT_IO = 2, PBMT_RESERVED = 3;
constexpr u64 N = bit(63);
constexpr u64 NAPOT_64K = 0b1000;  // ppn[0][3:0] of a 64 KiB NAPOT PTE
constexpr unsigned NAPOT_BITS = 4;

/// The PPN field holding the page number of `pa`.
constexpr u64 ppn_field(u64 pa) { return ((pa >> 12) << PPN_LSB) & PPN; }
/// log2 of a leaf at level i: page, megapage, gigapage, terapage, petapage.
constexpr unsigned leaf_shift(unsigned level) { return 12 + 9 * level; }
/// Physical-address bits of a level-`level` leaf below 2^phys_bits.
constexpr u64 addr_bits(unsigned level, unsigned phys_bits) {
  return bits(leaf_shift(level), phys_bits - 1);
}
// §4.1.11: satp.MODE, and the LEVELS / VA width of each (§4.4-§4.6).
constexpr unsigned levels_of(Mode m) {
  switch (m) {
    case Mode::Sv39: return 3;
    case Mode::Sv48: return 4;
    case Mode::Sv57: return 5;
  }
  return 0;
}
constexpr unsigned va_bits_of(Mode m) {
  switch (m) {
    case Mode::Sv39: return 39;
    case Mode::Sv48: return 48;
    case Mode::Sv57: return 57;
  }
  return 0;
}
}  // namespace spec

// The header's constants must sit where the spec puts them.
static_assert(riscv::kValid == spec::V && riscv::kRead == spec::R && riscv::kWrite == spec::W &&
              riscv::kExecute == spec::X && riscv::kUser == spec::U && riscv::kGlobal == spec::G &&
              riscv::kAccessed == spec::A && riscv::kDirty == spec::D && riscv::kRsw == spec::RSW);
static_assert(riscv::kPpnMask == spec::PPN && riscv::kReservedBits == spec::RESERVED &&
              riscv::kPbmtMask == spec::PBMT && riscv::kNapot == spec::N);
static_assert(u8(Mode::Sv39) == 8 && u8(Mode::Sv48) == 9 && u8(Mode::Sv57) == 10);
static_assert(u8(riscv::Pbmt::PMA) == spec::PBMT_PMA && u8(riscv::Pbmt::NC) == spec::PBMT_NC &&
              u8(riscv::Pbmt::IO) == spec::PBMT_IO);
static_assert(PagingFormat<Paging>);
static_assert(Paging::kMaxLevels == 5);

constexpr Mode kModes[] = {Mode::Sv39, Mode::Sv48, Mode::Sv57};

constexpr MemType kAllMemTypes[] = {
    MemType::WriteBack,     MemType::WriteThrough, MemType::WriteCombining, MemType::WriteProtect,
    MemType::UncachedMinus, MemType::Uncached,     MemType::Device,
};
static_assert(sizeof(kAllMemTypes) / sizeof(kAllMemTypes[0]) == kMemTypeCount);

const char* mode_name(Mode m) {
  switch (m) {
    case Mode::Sv39: return "Sv39";
    case Mode::Sv48: return "Sv48";
    case Mode::Sv57: return "Sv57";
  }
  return "?";
}

std::string describe(const Features& f, Mode m, unsigned level) {
  std::ostringstream s;
  s << mode_name(m) << " level " << level << " | svpbmt " << f.svpbmt << " svnapot " << f.svnapot
    << " hw_ad " << f.hw_ad << " phys_bits " << f.phys_bits;
  return s.str();
}

std::string describe(const Features& f, Mode m, unsigned level, PhysAddr pa, const Attrs& a) {
  std::ostringstream s;
  s << describe(f, m, level) << " | pa 0x" << std::hex << pa.value() << std::dec << " perm "
    << (has(a.perm, Perm::R) ? "R" : "-") << (has(a.perm, Perm::W) ? "W" : "-")
    << (has(a.perm, Perm::X) ? "X" : "-") << (has(a.perm, Perm::User) ? "U" : "-") << " mem "
    << int(a.mem) << " global " << a.global;
  return s.str();
}

std::vector<Features> all_features() {
  std::vector<Features> out;
  for (bool svpbmt : {false, true})
    for (bool svnapot : {false, true})
      for (bool hw_ad : {false, true})
        for (unsigned phys_bits : {56u, 40u})
          out.push_back(Features{svpbmt, svnapot, hw_ad, phys_bits});
  return out;
}

// ---- The spec's answers, written independently of the header ---------------------------

/// PBMT value for a memory type (ch. 6), or -1: NC is the write-combining
/// type, IO the device type, PMA leaves the PMAs in charge (write-back RAM).
int expected_pbmt(const Features& f, MemType m) {
  if (m == MemType::WriteBack) return int(spec::PBMT_PMA);
  if (!f.svpbmt) return -1;
  if (m == MemType::WriteCombining) return int(spec::PBMT_NC);
  if (m == MemType::Device) return int(spec::PBMT_IO);
  return -1;
}

/// §4.3.1's R/W/X table: XWR = 000 is a pointer, 010 and 110 are reserved;
/// the five others are leaves (R, RW, X, RX, RWX).
bool expected_perm_ok(Perm p) {
  const bool r = has(p, Perm::R);
  const bool w = has(p, Perm::W);
  const bool x = has(p, Perm::X);
  if (!r && !w && !x) return false;  // pointer
  if (w && !r) return false;         // reserved
  return true;
}

bool expected_can_express(const Features& f, const Attrs& a) {
  return expected_perm_ok(a.perm) && expected_pbmt(f, a.mem) >= 0;
}

/// The raw leaf PTE the spec prescribes. A/D: both 1 unless the hart updates
/// them (Svadu), then as `kept` says; RSW from `kept`; a contiguous leaf at
/// level 0 with Svnapot: N = 1 and ppn[3:0] = 0b1000.
u64 expected_leaf(const Features& f, unsigned level, PhysAddr pa, const Attrs& a, u64 kept = 0,
                  bool contiguous = false) {
  u64 raw = spec::V | spec::ppn_field(pa.value());
  if (has(a.perm, Perm::R)) raw |= spec::R;
  if (has(a.perm, Perm::W)) raw |= spec::W;
  if (has(a.perm, Perm::X)) raw |= spec::X;
  if (has(a.perm, Perm::User)) raw |= spec::U;
  if (a.global) raw |= spec::G;
  raw |= f.hw_ad ? kept & (spec::A | spec::D) : spec::A | spec::D;
  raw |= kept & spec::RSW;
  raw |= u64(expected_pbmt(f, a.mem)) << spec::PBMT_LSB;
  if (contiguous && f.svnapot && level == 0) {
    raw &= ~(spec::bits(0, spec::NAPOT_BITS - 1) << spec::PPN_LSB);
    raw |= (spec::NAPOT_64K << spec::PPN_LSB) | spec::N;
  }
  return raw;
}

/// The translation process of §4.3.2 with ch. 5 and ch. 6, applied to one
/// PTE at level `level`: what the walk makes of it, as a ptkit Entry. Every
/// encoding on which the walk page-faults for the encoding alone maps nothing.
Entry expected_decode(const Features& f, u64 raw, unsigned level) {
  if (!(raw & spec::V)) return Entry::invalid();  // step 3
  if ((raw & spec::W) && !(raw & spec::R)) return Entry::invalid();
  if (raw & spec::RESERVED) return Entry::invalid();
  if (!f.svpbmt && (raw & spec::PBMT)) return Entry::invalid();
  if (!f.svnapot && (raw & spec::N)) return Entry::invalid();
  const u64 ppn = (raw & spec::PPN) >> spec::PPN_LSB;
  const bool pointer = (raw & (spec::R | spec::W | spec::X)) == 0;
  if (pointer) {
    if (level == 0) return Entry::invalid();  // step 4: i < 0
    if (raw & (spec::A | spec::D | spec::U | spec::PBMT | spec::N)) return Entry::invalid();
    return Entry::table(PhysAddr(ppn << 12));
  }
  const u64 pbmt = (raw & spec::PBMT) >> spec::PBMT_LSB;
  if (pbmt == spec::PBMT_RESERVED) return Entry::invalid();
  bool napot = false;
  if (raw & spec::N) {
    if (level != 0) return Entry::invalid();
    if ((ppn & spec::bits(0, spec::NAPOT_BITS - 1)) != spec::NAPOT_64K) return Entry::invalid();
    napot = true;
  } else if (level > 0 && (ppn & spec::bits(0, 9 * level - 1)) != 0) {
    return Entry::invalid();  // step 6: misaligned superpage
  }
  Attrs a;
  a.perm = Perm::None;
  if (raw & spec::R) a.perm = a.perm | Perm::R;
  if (raw & spec::W) a.perm = a.perm | Perm::W;
  if (raw & spec::X) a.perm = a.perm | Perm::X;
  if (raw & spec::U) a.perm = a.perm | Perm::User;
  a.global = (raw & spec::G) != 0;
  a.mem = pbmt == spec::PBMT_NC   ? MemType::WriteCombining
          : pbmt == spec::PBMT_IO ? MemType::Device
                                  : MemType::WriteBack;
  const u64 base_ppn = napot ? ppn & ~spec::bits(0, spec::NAPOT_BITS - 1) : ppn;
  const u64 kept = raw & (spec::RSW | (f.hw_ad ? spec::A | spec::D : 0));
  return Entry::leaf(PhysAddr(base_ppn << 12), a, kept, napot);
}

/// Zero, the first leaf of the level's size, alternating bit patterns and the
/// highest leaf below 2^phys_bits (every address bit set).
std::vector<PhysAddr> sample_addresses(unsigned level, unsigned phys_bits) {
  const u64 mask = spec::addr_bits(level, phys_bits);
  return {PhysAddr(0), PhysAddr(u64{1} << spec::leaf_shift(level)),
          PhysAddr(0x5555'5555'5555'5555 & mask), PhysAddr(0xaaaa'aaaa'aaaa'aaaa & mask),
          PhysAddr(mask)};
}

// ---- Leaves: every attribute combination at every level of every mode -------------------

TEST(RiscvFormat, EveryLeafEncodesToTheSpecBitsAndRoundTrips) {
  unsigned checked = 0;
  unsigned refused = 0;
  for (Mode m : kModes)
    for (const Features& f : all_features()) {
      const Paging fmt(m, f);
      for (unsigned level = 0; level < fmt.levels(); ++level) {
        ASSERT_TRUE(fmt.leaf_allowed(level));
        for (PhysAddr pa : sample_addresses(level, f.phys_bits))
          for (unsigned p = 0; p < 16; ++p)
            for (MemType mem : kAllMemTypes)
              for (bool global : {false, true}) {
                const Attrs a{Perm(p), mem, global};
                const bool expressible = expected_can_express(f, a);
                ASSERT_EQ(fmt.can_express(a), expressible) << describe(f, m, level, pa, a);
                if (!expressible) {
                  ++refused;
                  continue;
                }
                const u64 raw = fmt.encode(Entry::leaf(pa, a), level);
                const u64 want = expected_leaf(f, level, pa, a);
                ASSERT_EQ(raw, want) << describe(f, m, level, pa, a) << std::hex << "\n got      0x"
                                     << raw << "\n expected 0x" << want;
                EXPECT_TRUE(fmt.is_valid_raw(raw, level));
                const Entry e = fmt.decode(raw, level);
                ASSERT_EQ(e, Entry::leaf(pa, a)) << describe(f, m, level, pa, a);
                ++checked;
              }
      }
    }
  EXPECT_GT(checked, 20000u);
  EXPECT_GT(refused, 50000u);
}

TEST(RiscvFormat, DecodeOfHandBuiltPtesFollowsTheTranslationProcess) {
  // Independent of encode(): PTEs assembled from spec bits, every R/W/X/U/G,
  // A/D, RSW and PBMT combination, decode to what §4.3.2 makes of them.
  unsigned leaves = 0;
  unsigned tables = 0;
  unsigned invalid = 0;
  for (Mode m : kModes)
    for (const Features& f : all_features()) {
      const Paging fmt(m, f);
      for (unsigned level = 0; level < fmt.levels(); ++level) {
        const u64 pa = spec::addr_bits(level, f.phys_bits) & 0x00ab'cdef'0123'4000;
        for (u64 low = 0; low < 0x400; ++low)  // bits 9:0: V..D and RSW
          for (u64 pbmt = 0; pbmt < 4; ++pbmt) {
            const u64 raw = low | spec::ppn_field(pa) | (pbmt << spec::PBMT_LSB);
            const Entry want = expected_decode(f, raw, level);
            const Entry got = fmt.decode(raw, level);
            ASSERT_EQ(got, want) << describe(f, m, level) << std::hex << " raw 0x" << raw;
            ASSERT_EQ(fmt.is_valid_raw(raw, level), want.valid()) << std::hex << raw;
            if (want.is_leaf()) {
              ++leaves;
              // The leaf's own encode brings back the bits the format owns.
              if (fmt.can_express(want.attrs)) {
                u64 back = raw;
                if (!f.hw_ad) back |= spec::A | spec::D;
                EXPECT_EQ(fmt.encode(got, level), back) << std::hex << raw;
              }
            } else if (want.is_table()) {
              ++tables;
            } else {
              ++invalid;
            }
          }
      }
    }
  EXPECT_GT(leaves, 50000u);
  EXPECT_GT(tables, 1000u);
  EXPECT_GT(invalid, 100000u);
}

// ---- Permissions ------------------------------------------------------------------------

TEST(RiscvFormat, CanExpressEveryPermissionCombination) {
  for (Mode m : kModes) {
    const Paging fmt(m);
    for (unsigned p = 0; p < 16; ++p) {
      const Attrs a{Perm(p), MemType::WriteBack, false};
      EXPECT_EQ(fmt.can_express(a), expected_perm_ok(Perm(p))) << p;
    }
    // Spelled out (§4.3.1 table).
    EXPECT_FALSE(fmt.can_express(Attrs{Perm::None}));            // 000: pointer
    EXPECT_FALSE(fmt.can_express(Attrs{Perm::User}));            // 000 + U
    EXPECT_FALSE(fmt.can_express(Attrs{Perm::W}));               // 010: reserved
    EXPECT_FALSE(fmt.can_express(Attrs{Perm::W | Perm::X}));     // 110: reserved
    EXPECT_FALSE(fmt.can_express(Attrs{Perm::W | Perm::User}));  // reserved + U
    EXPECT_TRUE(fmt.can_express(Attrs{Perm::R}));                // 001
    EXPECT_TRUE(fmt.can_express(Attrs{RW}));                     // 011
    EXPECT_TRUE(fmt.can_express(Attrs{Perm::X}));                // 100: execute-only
    EXPECT_TRUE(fmt.can_express(Attrs{Perm::X | Perm::User}));   // user execute-only
    EXPECT_TRUE(fmt.can_express(Attrs{RX}));                     // 101
    EXPECT_TRUE(fmt.can_express(Attrs{RWX | Perm::User, MemType::WriteBack, true}));  // 111
  }
}

TEST(RiscvFormat, ExecuteOnlyLeafHasOnlyX) {
  const Paging fmt(Mode::Sv48);
  for (unsigned level = 0; level < 4; ++level) {
    const PhysAddr pa(u64{1} << spec::leaf_shift(level));
    const u64 raw = fmt.encode(Entry::leaf(pa, Attrs{Perm::X}), level);
    EXPECT_EQ(raw, spec::V | spec::X | spec::A | spec::D | spec::ppn_field(pa.value())) << level;
    EXPECT_EQ(u8(fmt.decode(raw, level).attrs.perm), u8(Perm::X));
  }
}

TEST(RiscvFormat, ReservedPermissionEncodingsDecodeInvalid) {
  // §4.3.2 step 3: "if pte.r = 0 and pte.w = 1 ... raise a page-fault exception".
  const Paging fmt(Mode::Sv57, Features{.svpbmt = true, .svnapot = true});
  for (unsigned level = 0; level < 5; ++level)
    for (u64 extra : {u64{0}, spec::X, spec::U, spec::X | spec::U | spec::G | spec::A | spec::D}) {
      const u64 raw =
          spec::V | spec::W | extra | spec::ppn_field(u64{1} << spec::leaf_shift(level));
      EXPECT_EQ(fmt.decode(raw, level), Entry::invalid()) << std::hex << raw;
      EXPECT_FALSE(fmt.is_valid_raw(raw, level)) << std::hex << raw;
    }
}

// ---- Table pointers ------------------------------------------------------------------------

TEST(RiscvFormat, TablePointersAreVAndPpnOnly) {
  for (Mode m : kModes)
    for (const Features& f : all_features()) {
      const Paging fmt(m, f);
      for (unsigned level = 1; level < fmt.levels(); ++level)
        for (u64 addr : {u64{0}, u64{0x1000}, u64{0x0000'0123'4567'8000}, spec::bits(12, 55)}) {
          const u64 raw = fmt.encode(Entry::table(PhysAddr(addr)), level);
          // R = W = X = 0 makes a pointer; A, D, U, PBMT and N must be 0
          // (§4.3.1, ch. 5, ch. 6); G stays 0.
          EXPECT_EQ(raw, spec::V | spec::ppn_field(addr)) << describe(f, m, level);
          EXPECT_TRUE(fmt.is_valid_raw(raw, level));
          EXPECT_EQ(fmt.decode(raw, level), Entry::table(PhysAddr(addr))) << describe(f, m, level);
        }
    }
}

TEST(RiscvFormat, PointerAtLevelZeroIsInvalid) {
  // §4.3.2 step 4: a pointer where i would drop below 0 page-faults.
  for (Mode m : kModes) {
    const Paging fmt(m, Features{.svpbmt = true, .svnapot = true});
    for (u64 raw :
         {spec::V, spec::V | spec::ppn_field(0x1234'5000), spec::V | spec::G | spec::RSW}) {
      EXPECT_EQ(fmt.decode(raw, 0), Entry::invalid()) << std::hex << raw;
      EXPECT_FALSE(fmt.is_valid_raw(raw, 0));
      EXPECT_TRUE(fmt.is_valid_raw(raw, 1));
    }
  }
}

TEST(RiscvFormat, NonLeafReservedBitsMakeThePointerInvalid) {
  const u64 addr = 0x0000'0012'3456'7000;
  for (Mode m : kModes) {
    const Paging fmt(m, Features{.svpbmt = true, .svnapot = true, .hw_ad = true});
    for (unsigned level = 1; level < fmt.levels(); ++level) {
      const u64 base = spec::V | spec::ppn_field(addr);
      // Reserved in a non-leaf PTE: A, D, U (§4.3.1), PBMT (ch. 6), N (ch. 5),
      // and bits 60:54 everywhere (§4.4).
      for (u64 bad : {spec::A, spec::D, spec::U, spec::bit(61), spec::bit(62), spec::PBMT, spec::N,
                      spec::bit(54), spec::bit(60), spec::RESERVED}) {
        EXPECT_EQ(fmt.decode(base | bad, level), Entry::invalid()) << std::hex << bad;
        EXPECT_FALSE(fmt.is_valid_raw(base | bad, level)) << std::hex << bad;
      }
      // G (everything below is global, §4.3.1) and RSW are allowed in a
      // pointer; ptkit does not report them: the entry is the same table.
      for (u64 ok : {spec::G, spec::bit(8), spec::bit(9), spec::G | spec::RSW}) {
        EXPECT_EQ(fmt.decode(base | ok, level), Entry::table(PhysAddr(addr))) << std::hex << ok;
        EXPECT_TRUE(fmt.is_valid_raw(base | ok, level));
      }
    }
  }
}

// ---- Accessed, dirty and RSW ----------------------------------------------------------------

TEST(RiscvFormat, WithoutHwAdEncodeSetsAccessedAndDirty) {
  // §4.3.1: without hardware updating, a clear A (or D on a store) faults;
  // the format sets both and does not report them.
  for (Mode m : kModes) {
    const Paging fmt(m);
    for (unsigned level = 0; level < fmt.levels(); ++level)
      for (u64 kept : {u64{0}, spec::A, spec::D, spec::A | spec::D}) {
        const PhysAddr pa(u64{1} << spec::leaf_shift(level));
        const u64 raw = fmt.encode(Entry::leaf(pa, Attrs{Perm::R}, kept), level);
        EXPECT_EQ(raw & (spec::A | spec::D), spec::A | spec::D) << level << " kept " << kept;
        EXPECT_EQ(fmt.decode(raw, level).kept, 0u);
        // A PTE without A/D (built elsewhere) still decodes, to the same entry.
        const Entry e = fmt.decode(raw & ~(spec::A | spec::D), level);
        EXPECT_EQ(e, Entry::leaf(pa, Attrs{Perm::R}));
      }
  }
}

TEST(RiscvFormat, WithHwAdAccessedAndDirtyAreKept) {
  for (Mode m : kModes) {
    const Paging fmt(m, Features{.hw_ad = true});
    for (unsigned level = 0; level < fmt.levels(); ++level)
      for (u64 kept : {u64{0}, spec::A, spec::D, spec::A | spec::D}) {
        const PhysAddr pa(u64{1} << spec::leaf_shift(level));
        const Attrs a{RW};
        const u64 raw = fmt.encode(Entry::leaf(pa, a, kept), level);
        EXPECT_EQ(raw, spec::V | spec::R | spec::W | kept | spec::ppn_field(pa.value()))
            << level << " kept " << kept;
        EXPECT_EQ(fmt.decode(raw, level), Entry::leaf(pa, a, kept));
      }
  }
}

TEST(RiscvFormat, RswIsKeptThroughDecodeAndEncode) {
  for (Mode m : kModes)
    for (const Features& f : all_features()) {
      const Paging fmt(m, f);
      for (unsigned level = 0; level < fmt.levels(); ++level)
        for (u64 rsw : {spec::bit(8), spec::bit(9), spec::RSW}) {
          const PhysAddr pa(spec::addr_bits(level, f.phys_bits));
          const Attrs a{RX | Perm::User, MemType::WriteBack, true};
          const u64 raw = expected_leaf(f, level, pa, a, rsw);
          const Entry e = fmt.decode(raw, level);
          ASSERT_TRUE(e.is_leaf()) << describe(f, m, level);
          EXPECT_EQ(e.kept, rsw) << describe(f, m, level);
          EXPECT_EQ(e.pa, pa);
          EXPECT_EQ(e.attrs, a);
          EXPECT_EQ(fmt.encode(e, level), raw) << describe(f, m, level);
          // protect() re-encodes other attributes with the same kept bits.
          const Entry changed = Entry::leaf(e.pa, Attrs{Perm::R}, e.kept);
          EXPECT_EQ(fmt.encode(changed, level) & spec::RSW, rsw);
        }
    }
}

TEST(RiscvFormat, EncodeIgnoresNonKeptBitsInKept) {
  // Entry::kept cannot smuggle in V, permissions, PPN, PBMT, N or reserved bits.
  for (const Features& f : all_features()) {
    const Paging fmt(Mode::Sv48, f);
    for (unsigned level = 0; level < 4; ++level) {
      const PhysAddr pa(u64{1} << spec::leaf_shift(level));
      const Attrs a{Perm::R};
      const u64 owned = spec::RSW | (f.hw_ad ? spec::A | spec::D : 0);
      const u64 clean = fmt.encode(Entry::leaf(pa, a), level);
      EXPECT_EQ(fmt.encode(Entry::leaf(pa, a, ~owned), level), clean)
          << describe(f, Mode::Sv48, level);
      EXPECT_EQ(fmt.encode(Entry::leaf(pa, a, ~u64{0}), level), clean | owned);
      EXPECT_EQ(fmt.kept_bits(), owned);
    }
  }
}

// ---- Memory types (Svpbmt) -----------------------------------------------------------------

TEST(RiscvFormat, WithoutSvpbmtOnlyWriteBack) {
  for (Mode m : kModes) {
    const Paging fmt(m, Features{.svnapot = true});
    for (MemType mem : kAllMemTypes)
      EXPECT_EQ(fmt.can_express(Attrs{RW, mem}), mem == MemType::WriteBack) << int(mem);
    // PBMT bits are reserved without Svpbmt (§4.4): a leaf with them faults.
    for (unsigned level = 0; level < fmt.levels(); ++level)
      for (u64 pbmt = 1; pbmt < 4; ++pbmt) {
        const u64 raw = spec::V | spec::R | spec::A | spec::D | (pbmt << spec::PBMT_LSB) |
                        spec::ppn_field(u64{1} << spec::leaf_shift(level));
        EXPECT_EQ(fmt.decode(raw, level), Entry::invalid()) << level << " pbmt " << pbmt;
        EXPECT_FALSE(fmt.is_valid_raw(raw, level));
      }
  }
}

TEST(RiscvFormat, SvpbmtEncodingsPerMemoryType) {
  struct Case {
    MemType mem;
    u64 pbmt;
  };
  const Case cases[] = {{MemType::WriteBack, spec::PBMT_PMA},
                        {MemType::WriteCombining, spec::PBMT_NC},
                        {MemType::Device, spec::PBMT_IO}};
  for (Mode m : kModes) {
    const Paging fmt(m, Features{.svpbmt = true});
    for (MemType mem : kAllMemTypes)
      EXPECT_EQ(fmt.can_express(Attrs{RW, mem}), mem == MemType::WriteBack ||
                                                     mem == MemType::WriteCombining ||
                                                     mem == MemType::Device)
          << int(mem);
    for (unsigned level = 0; level < fmt.levels(); ++level) {
      const PhysAddr pa(u64{3} << spec::leaf_shift(level));
      for (const Case& c : cases) {
        const u64 raw = fmt.encode(Entry::leaf(pa, Attrs{RW, c.mem}), level);
        EXPECT_EQ(raw & spec::PBMT, c.pbmt << spec::PBMT_LSB) << level << " " << int(c.mem);
        EXPECT_EQ(fmt.decode(raw, level).attrs.mem, c.mem);
      }
      // PBMT = 3 is reserved in a leaf (ch. 6): the walk faults.
      const u64 reserved = spec::V | spec::R | spec::A | spec::D |
                           (spec::PBMT_RESERVED << spec::PBMT_LSB) | spec::ppn_field(pa.value());
      EXPECT_EQ(fmt.decode(reserved, level), Entry::invalid()) << level;
      EXPECT_FALSE(fmt.is_valid_raw(reserved, level));
    }
  }
}

// ---- Svnapot ---------------------------------------------------------------------------------

TEST(RiscvFormat, ContiguousEntriesOnlyAtLevelZeroWithSvnapot) {
  for (Mode m : kModes)
    for (const Features& f : all_features()) {
      const Paging fmt(m, f);
      EXPECT_EQ(fmt.contiguous_entries(0), f.svnapot ? 16u : 1u) << describe(f, m, 0);
      for (unsigned level = 1; level < fmt.levels(); ++level)
        EXPECT_EQ(fmt.contiguous_entries(level), 1u) << describe(f, m, level);
    }
}

TEST(RiscvFormat, NapotRunEncodesIdenticallyAndDecodesToItsBase) {
  for (Mode m : kModes)
    for (bool svpbmt : {false, true})
      for (bool hw_ad : {false, true})
        for (unsigned phys_bits : {56u, 40u}) {
          const Features f{svpbmt, true, hw_ad, phys_bits};
          const Paging fmt(m, f);
          const u64 run = u64{16} << 12;  // 64 KiB
          for (u64 base : {u64{0}, run, spec::bits(16, phys_bits - 1),
                           0x0000'00ab'cdef'0000 & spec::bits(16, phys_bits - 1)}) {
            for (const Attrs& a :
                 {Attrs{RWX}, Attrs{Perm::X | Perm::User, MemType::WriteBack, true},
                  Attrs{RW, svpbmt ? MemType::Device : MemType::WriteBack}}) {
              const u64 kept = spec::bit(9) | (hw_ad ? spec::A : 0);
              // ch. 5: N = 1, ppn[3:0] = 0b1000, the rest of the PPN from the
              // run's base: the same PTE in all 16 slots.
              const u64 want = expected_leaf(f, 0, PhysAddr(base), a, kept, true);
              EXPECT_EQ(want & spec::N, spec::N);
              EXPECT_EQ((want & spec::PPN) >> spec::PPN_LSB & 0xF, spec::NAPOT_64K);
              for (unsigned j = 0; j < 16; ++j) {
                const PhysAddr pa(base + j * u64{0x1000});
                const u64 raw = fmt.encode(Entry::leaf(pa, a, kept, true), 0);
                ASSERT_EQ(raw, want) << describe(f, m, 0, pa, a) << " entry " << j << std::hex
                                     << "\n got      0x" << raw << "\n expected 0x" << want;
              }
              const Entry e = fmt.decode(want, 0);
              EXPECT_EQ(e, Entry::leaf(PhysAddr(base), a, kept, true)) << describe(f, m, 0);
              EXPECT_TRUE(fmt.is_valid_raw(want, 0));
              // The run's base entry round-trips.
              EXPECT_EQ(fmt.encode(e, 0), want);
            }
          }
        }
}

TEST(RiscvFormat, ReservedNapotEncodingsDecodeInvalid) {
  const u64 base = 0x0000'0001'2345'0000;
  for (Mode m : kModes) {
    const Paging with(m, Features{.svnapot = true});
    const Paging without(m, Features{.svpbmt = true});
    const u64 leaf = spec::V | spec::R | spec::W | spec::A | spec::D | spec::N;
    // ch. 5 table: at level 0 only ppn[3:0] = 1000 is defined.
    for (u64 low = 0; low < 16; ++low) {
      const u64 raw = leaf | spec::ppn_field(base) | (low << spec::PPN_LSB);
      EXPECT_EQ(with.decode(raw, 0).valid(), low == spec::NAPOT_64K) << low;
      EXPECT_EQ(with.is_valid_raw(raw, 0), low == spec::NAPOT_64K) << low;
      // Without Svnapot bit 63 is reserved (§4.4).
      EXPECT_EQ(without.decode(raw, 0), Entry::invalid()) << low;
      EXPECT_FALSE(without.is_valid_raw(raw, 0));
    }
    // N = 1 at any level above 0 is reserved, whatever the PPN.
    for (unsigned level = 1; level < with.levels(); ++level) {
      const u64 aligned = spec::ppn_field(u64{1} << spec::leaf_shift(level));
      for (u64 raw : {leaf | aligned, leaf | aligned | (spec::NAPOT_64K << spec::PPN_LSB)}) {
        EXPECT_EQ(with.decode(raw, level), Entry::invalid()) << level;
        EXPECT_FALSE(with.is_valid_raw(raw, level));
      }
    }
  }
}

TEST(RiscvFormat, ContiguousHintIgnoredWhereThereIsNoRun) {
  for (Mode m : kModes)
    for (bool svnapot : {false, true}) {
      const Paging fmt(m, Features{.svnapot = svnapot});
      for (unsigned level = 0; level < fmt.levels(); ++level) {
        if (svnapot && level == 0) continue;
        const PhysAddr pa(u64{1} << spec::leaf_shift(level));
        const u64 raw = fmt.encode(Entry::leaf(pa, Attrs{RW}, 0, true), level);
        EXPECT_EQ(raw, fmt.encode(Entry::leaf(pa, Attrs{RW}), level)) << level;
        EXPECT_EQ(raw & spec::N, 0u);
        EXPECT_FALSE(fmt.decode(raw, level).contiguous);
      }
    }
}

// ---- Addresses ---------------------------------------------------------------------------

TEST(RiscvFormat, PpnAtTheTopOfA56BitPhysicalAddress) {
  for (Mode m : kModes) {
    const Paging fmt(m, Features{.svpbmt = true, .svnapot = true});
    EXPECT_EQ(fmt.phys_bits(), 56u);
    for (unsigned level = 0; level < fmt.levels(); ++level) {
      const PhysAddr top(spec::addr_bits(level, 56));  // every PA bit of the level set
      const Attrs a{RW, MemType::Device};
      const u64 raw = fmt.encode(Entry::leaf(top, a), level);
      // PPN bits 53:10 hold PA 55:12; nothing reaches the reserved bits or
      // PBMT/N, and the superpage's low PPN bits stay clear.
      EXPECT_EQ(raw & spec::PPN, spec::ppn_field(top.value())) << level;
      EXPECT_EQ(raw & spec::RESERVED, 0u);
      EXPECT_EQ(raw & spec::PBMT, spec::PBMT_IO << spec::PBMT_LSB);
      EXPECT_EQ(raw & spec::N, 0u);
      EXPECT_EQ(fmt.decode(raw, level), Entry::leaf(top, a)) << level;
    }
    const PhysAddr table(spec::bits(12, 55));
    EXPECT_EQ(fmt.encode(Entry::table(table), 1), spec::V | spec::PPN);
    EXPECT_EQ(fmt.decode(spec::V | spec::PPN, 1), Entry::table(table));
  }
}

TEST(RiscvFormat, DecodeTakesTheWholePpnWhateverPhysBits) {
  // §4.3.2: "The algorithm does not admit the possibility of ignoring
  // high-order PPN bits for implementations with narrower physical addresses."
  const Paging fmt(Mode::Sv39, Features{.phys_bits = 40});
  EXPECT_EQ(fmt.phys_bits(), 40u);
  const u64 pa = spec::bit(50) | 0x1000;
  const Entry e = fmt.decode(spec::V | spec::R | spec::ppn_field(pa), 0);
  EXPECT_EQ(e.pa, PhysAddr(pa));
  EXPECT_EQ(fmt.decode(spec::V | spec::ppn_field(pa), 1).pa, PhysAddr(pa));
}

TEST(RiscvFormat, MisalignedSuperpageDecodesInvalid) {
  // §4.3.2 step 6: "If i > 0 and pte.ppn[i-1:0] != 0, this is a misaligned
  // superpage; stop and raise a page-fault exception".
  for (Mode m : kModes) {
    const Paging fmt(m, Features{.svpbmt = true, .svnapot = true});
    for (unsigned level = 1; level < fmt.levels(); ++level) {
      const u64 aligned = u64{5} << spec::leaf_shift(level);
      const u64 leaf = spec::V | spec::R | spec::X | spec::A | spec::D;
      EXPECT_TRUE(fmt.decode(leaf | spec::ppn_field(aligned), level).is_leaf());
      for (unsigned b = 12; b < spec::leaf_shift(level); ++b) {
        const u64 raw = leaf | spec::ppn_field(aligned | spec::bit(b));
        EXPECT_EQ(fmt.decode(raw, level), Entry::invalid()) << "level " << level << " bit " << b;
        EXPECT_FALSE(fmt.is_valid_raw(raw, level));
        // The same PPN in a pointer is fine: tables are 4 KiB aligned.
        EXPECT_TRUE(
            fmt.decode(spec::V | spec::ppn_field(aligned | spec::bit(b)), level).is_table());
      }
    }
  }
}

TEST(RiscvFormat, EncodeClearsPpnBitsBelowTheLeafAlignment) {
  // Precondition violated (pa not aligned): encode still produces an aligned
  // superpage, never a reserved (misaligned) one.
  const Paging fmt(Mode::Sv48);
  for (unsigned level = 1; level < 4; ++level) {
    const u64 aligned = u64{3} << spec::leaf_shift(level);
    const u64 raw = fmt.encode(Entry::leaf(PhysAddr(aligned | 0x1000), Attrs{Perm::R}), level);
    EXPECT_EQ(raw & spec::PPN, spec::ppn_field(aligned)) << level;
  }
}

TEST(RiscvFormat, ReservedBits60To54DecodeInvalid) {
  for (Mode m : kModes) {
    const Paging fmt(m, Features{.svpbmt = true, .svnapot = true, .hw_ad = true});
    for (unsigned level = 0; level < fmt.levels(); ++level)
      for (unsigned b = 54; b <= 60; ++b) {
        const u64 leaf = spec::V | spec::R | spec::ppn_field(u64{1} << spec::leaf_shift(level));
        EXPECT_EQ(fmt.decode(leaf | spec::bit(b), level), Entry::invalid()) << level << " " << b;
        EXPECT_FALSE(fmt.is_valid_raw(leaf | spec::bit(b), level));
      }
  }
}

TEST(RiscvFormat, InvalidWhateverElseIsSet) {
  // §4.3.1: with V = 0 every other bit is free for software.
  for (Mode m : kModes)
    for (const Features& f : all_features()) {
      const Paging fmt(m, f);
      for (unsigned level = 0; level < fmt.levels(); ++level) {
        for (u64 raw : {u64{0}, ~spec::V, spec::R | spec::W | spec::X | spec::PPN, spec::N}) {
          EXPECT_EQ(fmt.decode(raw, level), Entry::invalid()) << std::hex << raw;
          EXPECT_FALSE(fmt.is_valid_raw(raw, level));
        }
        EXPECT_EQ(fmt.encode(Entry::invalid(), level), 0u);
        EXPECT_EQ(
            fmt.encode(Entry{EntryKind::Invalid, PhysAddr(0x1000), Attrs{RWX}, spec::RSW, true},
                       level),
            0u);
      }
    }
}

/// A small deterministic generator (SplitMix64) for raw PTE values.
struct SplitMix {
  u64 state;
  u64 next() {
    u64 z = (state += 0x9e37'79b9'7f4a'7c15);
    z = (z ^ (z >> 30)) * 0xbf58'476d'1ce4'e5b9;
    z = (z ^ (z >> 27)) * 0x94d0'49bb'1331'11eb;
    return z ^ (z >> 31);
  }
};

TEST(RiscvFormat, RandomPtesDecodeAsTheTranslationProcessSays) {
  // Random raw values, biased towards valid-looking ones by clearing some of
  // the reserved fields: decode agrees with the oracle, is_valid_raw with
  // decode, and decode is a fixed point of encode.
  SplitMix rng{42};
  unsigned valid = 0;
  for (Mode m : kModes)
    for (const Features& f : all_features()) {
      const Paging fmt(m, f);
      for (unsigned level = 0; level < fmt.levels(); ++level)
        for (int i = 0; i < 4000; ++i) {
          u64 raw = rng.next();
          const u64 shape = rng.next();
          if (shape & 1) raw &= ~spec::RESERVED;
          if (shape & 2) raw &= ~spec::N;
          if (shape & 4) raw &= ~spec::PBMT;
          if (shape & 8) raw |= spec::V;
          if (shape & 16) raw &= ~spec::bits(10, 10 + 9 * level + 3);  // aligned PPN
          if (shape & 32) raw = (raw & ~spec::bits(10, 13)) | (spec::NAPOT_64K << 10);
          const Entry want = expected_decode(f, raw, level);
          const Entry got = fmt.decode(raw, level);
          ASSERT_EQ(got, want) << describe(f, m, level) << std::hex << " raw 0x" << raw;
          ASSERT_EQ(fmt.is_valid_raw(raw, level), got.valid()) << std::hex << raw;
          if (got.is_table() || (got.is_leaf() && fmt.can_express(got.attrs))) {
            ++valid;
            EXPECT_EQ(fmt.decode(fmt.encode(got, level), level), got) << std::hex << raw;
          }
        }
    }
  EXPECT_GT(valid, 20000u);
}

// ---- Round trip over every expressible entry ----------------------------------------------

TEST(RiscvFormat, DecodeOfEncodeIsIdentityOverEveryExpressibleEntry) {
  unsigned checked = 0;
  for (Mode m : kModes)
    for (const Features& f : all_features()) {
      const Paging fmt(m, f);
      const u64 owned = spec::RSW | (f.hw_ad ? spec::A | spec::D : 0);
      for (unsigned level = 0; level < fmt.levels(); ++level) {
        // Tables.
        for (PhysAddr pa : sample_addresses(0, f.phys_bits))
          if (level > 0) {
            ASSERT_EQ(fmt.decode(fmt.encode(Entry::table(pa), level), level), Entry::table(pa));
            ++checked;
          }
        // Leaves: every attribute set, every kept value, with and without
        // the contiguous hint where the level has runs.
        for (PhysAddr pa : sample_addresses(level, f.phys_bits))
          for (unsigned p = 0; p < 16; ++p)
            for (MemType mem : kAllMemTypes)
              for (bool global : {false, true}) {
                const Attrs a{Perm(p), mem, global};
                if (!fmt.can_express(a)) continue;
                for (u64 kept = owned;; kept = (kept - 1) & owned) {  // every subset
                  for (bool contiguous : {false, true}) {
                    if (contiguous && fmt.contiguous_entries(level) == 1) continue;
                    const PhysAddr at =
                        contiguous ? PhysAddr(pa.value() & ~spec::bits(12, 15)) : pa;
                    const Entry e = Entry::leaf(at, a, kept, contiguous);
                    ASSERT_EQ(fmt.decode(fmt.encode(e, level), level), e)
                        << describe(f, m, level, at, a) << " kept " << kept;
                    ++checked;
                  }
                  if (kept == 0) break;
                }
              }
      }
    }
  EXPECT_GT(checked, 100000u);
}

// ---- Geometry, names, configuration ---------------------------------------------------------

TEST(RiscvFormat, GeometryPerMode) {
  for (Mode m : kModes) {
    const Paging fmt(m);
    EXPECT_EQ(fmt.mode(), m);
    EXPECT_EQ(fmt.levels(), spec::levels_of(m)) << mode_name(m);
    EXPECT_LE(fmt.levels(), Paging::kMaxLevels);
    EXPECT_EQ(fmt.page_shift(), 12u);
    for (unsigned level = 0; level < fmt.levels(); ++level) {
      EXPECT_EQ(fmt.index_bits(level), 9u);
      EXPECT_TRUE(fmt.leaf_allowed(level)) << level;  // any level may be a leaf
    }
    EXPECT_FALSE(fmt.leaf_allowed(fmt.levels()));
    EXPECT_EQ(fmt.va_bits(), spec::va_bits_of(m));
    EXPECT_EQ(fmt.page_shift() + 9 * fmt.levels(), spec::va_bits_of(m));
    EXPECT_EQ(fmt.phys_bits(), 56u);
    EXPECT_EQ(fmt.features().svpbmt, false);
    EXPECT_EQ(fmt.features().svnapot, false);
    EXPECT_EQ(fmt.features().hw_ad, false);
  }
}

TEST(RiscvFormat, LevelNamesAreTheSpecsLevelNumbers) {
  const Paging sv39(Mode::Sv39);
  const Paging sv48(Mode::Sv48);
  const Paging sv57(Mode::Sv57);
  EXPECT_STREQ(sv39.level_name(0), "L0");
  EXPECT_STREQ(sv39.level_name(2), "L2");
  EXPECT_STREQ(sv39.level_name(3), "?");
  EXPECT_STREQ(sv48.level_name(3), "L3");
  EXPECT_STREQ(sv48.level_name(4), "?");
  EXPECT_STREQ(sv57.level_name(4), "L4");
  EXPECT_STREQ(sv57.level_name(5), "?");
  EXPECT_STREQ(sv57.level_name(100), "?");
  // §4.3.1, §4.4-§4.6: page, megapage, gigapage, terapage, petapage.
  EXPECT_STREQ(sv57.leaf_size_name(0), "page");
  EXPECT_STREQ(sv57.leaf_size_name(1), "megapage");
  EXPECT_STREQ(sv57.leaf_size_name(2), "gigapage");
  EXPECT_STREQ(sv57.leaf_size_name(3), "terapage");
  EXPECT_STREQ(sv57.leaf_size_name(4), "petapage");
  EXPECT_STREQ(sv39.leaf_size_name(3), "?");
}

TEST(RiscvFormat, MakeAcceptsDefinedConfigurations) {
  for (Mode m : kModes)
    for (const Features& f : all_features()) {
      auto r = Paging::make(m, f);
      ASSERT_TRUE(r.ok()) << describe(f, m, 0);
      EXPECT_EQ(r->mode(), m);
      EXPECT_EQ(r->features().phys_bits, f.phys_bits);
    }
  for (unsigned phys_bits : {12u, 32u, 56u})
    EXPECT_TRUE(Paging::make(Mode::Sv39, Features{.phys_bits = phys_bits}).ok());
}

TEST(RiscvFormat, MakeRefusesUndefinedConfigurations) {
  auto expect_bad = [](Mode m, Features f, const char* why) {
    auto r = Paging::make(m, f);
    ASSERT_FALSE(r.ok()) << why;
    EXPECT_EQ(r.failure().op, Op::Create) << why;
    EXPECT_EQ(r.error(), Error::BadConfig) << why;
    EXPECT_EQ(r.failure().level, kNoLevel) << why;
  };
  // §4.1.11: 0 is Bare, 1-7 and 12-13 reserved, 11 Sv64 (not defined yet),
  // 14-15 custom; other values do not fit the 4-bit field.
  for (unsigned mode : {0u, 1u, 7u, 11u, 12u, 15u, 16u, 255u})
    expect_bad(Mode(mode), Features{}, "undefined mode");
  expect_bad(Mode::Sv39, Features{.phys_bits = 57}, "phys_bits 57");
  expect_bad(Mode::Sv48, Features{.phys_bits = 64}, "phys_bits 64");
  expect_bad(Mode::Sv57, Features{.phys_bits = 11}, "phys_bits 11");
  expect_bad(Mode::Sv39, Features{.phys_bits = 0}, "phys_bits 0");
  EXPECT_FALSE(Paging::is_valid_config(Mode(11), Features{}));
  EXPECT_TRUE(Paging::is_valid_config(Mode::Sv57, Features{.phys_bits = 56}));
  static_assert(Paging::is_valid_config(Mode::Sv39, Features{}));
  static_assert(!Paging::is_valid_config(Mode::Sv39, Features{.phys_bits = 57}));
}

TEST(RiscvFormat, TheEngineTestConfigurationsAreValid) {
  // What the typed engine tests run: every mode with Svpbmt and Svnapot, and
  // Sv39 without extensions.
  const Features full{.svpbmt = true, .svnapot = true};
  for (Mode m : kModes) {
    auto r = Paging::make(m, full);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->contiguous_entries(0), 16u);
    EXPECT_TRUE(r->can_express(Attrs{RW, MemType::Device}));
  }
  auto plain = Paging::make(Mode::Sv39, Features{});
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->contiguous_entries(0), 1u);
  EXPECT_FALSE(plain->can_express(Attrs{RW, MemType::Device}));
}

// ---- Canonical addresses ------------------------------------------------------------------

TEST(RiscvFormat, CanonicalAtTheBoundariesOfEachMode) {
  struct Case {
    Mode mode;
    u64 low_top, high_bottom;  // last address of the lower half, first of the upper
  };
  const Case cases[] = {{Mode::Sv39, 0x0000'003f'ffff'ffff, 0xffff'ffc0'0000'0000},
                        {Mode::Sv48, 0x0000'7fff'ffff'ffff, 0xffff'8000'0000'0000},
                        {Mode::Sv57, 0x00ff'ffff'ffff'ffff, 0xff00'0000'0000'0000}};
  for (const Case& c : cases) {
    const Paging fmt(c.mode);
    EXPECT_TRUE(fmt.is_canonical(VirtAddr(0))) << mode_name(c.mode);
    EXPECT_TRUE(fmt.is_canonical(VirtAddr(c.low_top)));
    EXPECT_FALSE(fmt.is_canonical(VirtAddr(c.low_top + 1)));
    EXPECT_FALSE(fmt.is_canonical(VirtAddr(c.high_bottom - 1)));
    EXPECT_TRUE(fmt.is_canonical(VirtAddr(c.high_bottom)));
    EXPECT_TRUE(fmt.is_canonical(VirtAddr(~u64{0})));
    EXPECT_FALSE(fmt.is_canonical(VirtAddr(0x8000'0000'0000'0000)));
    EXPECT_FALSE(fmt.is_canonical(VirtAddr(0x7fff'ffff'ffff'ffff)));
  }
  // Each wider mode makes the narrower one's holes ordinary addresses.
  EXPECT_TRUE(Paging(Mode::Sv48).is_canonical(VirtAddr(0x0000'0040'0000'0000)));
  EXPECT_TRUE(Paging(Mode::Sv57).is_canonical(VirtAddr(0x0000'8000'0000'0000)));
  EXPECT_FALSE(Paging(Mode::Sv39).is_canonical(VirtAddr(0x0000'0040'0000'0000)));
}

TEST(RiscvFormat, CanonicalIsSignExtensionOfTheTopVaBit) {
  for (Mode m : kModes) {
    const Paging fmt(m);
    const unsigned va_bits = spec::va_bits_of(m);
    for (unsigned b = 0; b < 64; ++b) {
      EXPECT_EQ(fmt.is_canonical(VirtAddr(u64{1} << b)), b < va_bits - 1) << "bit " << b;
      EXPECT_EQ(fmt.is_canonical(VirtAddr(~u64{0} << b)), b <= va_bits - 1) << "from " << b;
      const u64 v = (~u64{0} << b) & ~(u64{1} << 63);
      EXPECT_EQ(fmt.is_canonical(VirtAddr(v)), v == 0) << "from " << b << " without 63";
    }
  }
}

// ---- needs_break --------------------------------------------------------------------------

TEST(RiscvFormat, NeedsBreakNever) {
  // §4.2.1: until the SFENCE.VMA either translation is used, "the behavior is
  // otherwise well-defined"; no break-before-make.
  const Paging fmt(Mode::Sv48, Features{.svpbmt = true, .svnapot = true});
  const Entry all[] = {
      Entry::invalid(),
      Entry::leaf(PhysAddr(0x20'0000), Attrs{RW}),
      Entry::leaf(PhysAddr(0x40'0000), Attrs{Perm::R, MemType::Device, true}),
      Entry::leaf(PhysAddr(0x1'0000), Attrs{RX}, 0, true),
      Entry::table(PhysAddr(0x1000)),
      Entry::table(PhysAddr(0x2000)),
  };
  for (const Entry& o : all)
    for (const Entry& n : all)
      for (bool equivalent : {false, true}) EXPECT_FALSE(fmt.needs_break(o, n, equivalent));
}

// ---- The SFENCE.VMA sink ------------------------------------------------------------------

/// One SFENCE.VMA as issued: which registers are x0, and the values of the others.
struct Fence {
  bool rs1_x0;
  bool rs2_x0;
  u64 va = 0;
  u16 asid = 0;
  bool operator==(const Fence&) const = default;
};
std::ostream& operator<<(std::ostream& os, const Fence& f) {
  os << "sfence.vma " << (f.rs1_x0 ? std::string("x0") : std::to_string(f.va)) << ", "
     << (f.rs2_x0 ? std::string("x0") : std::to_string(f.asid));
  return os;
}
Fence at(u64 va, u16 asid) { return Fence{false, false, va, asid}; }
Fence at_all_asids(u64 va) { return Fence{false, true, va, 0}; }
Fence asid_all(u16 asid) { return Fence{true, false, 0, asid}; }
Fence everything() { return Fence{true, true, 0, 0}; }

struct RecordingOps {
  std::vector<Fence>* log;
  void sfence_vma(u64 va, u16 asid) const { log->push_back(at(va, asid)); }
  void sfence_vma_va(u64 va) const { log->push_back(at_all_asids(va)); }
  void sfence_vma_asid(u16 asid) const { log->push_back(asid_all(asid)); }
  void sfence_vma_all() const { log->push_back(everything()); }
};
static_assert(riscv::SfenceOps<RecordingOps>);
static_assert(TlbSink<riscv::SfenceSink<RecordingOps>>);

TlbRange range(u64 first, u64 last, unsigned stride_shift, bool global, bool tables) {
  return TlbRange{VirtAddr(first), VirtAddr(last), stride_shift, global, tables};
}

TEST(RiscvSfenceSink, LeafChangesFenceEachPageWithTheAsid) {
  std::vector<Fence> log;
  riscv::SfenceSink<RecordingOps> sink(RecordingOps{&log}, 7);
  EXPECT_EQ(sink.asid(), 7u);
  sink.invalidate(range(0x40'0000, 0x40'3fff, 12, false, false));
  EXPECT_EQ(log, (std::vector<Fence>{at(0x40'0000, 7), at(0x40'1000, 7), at(0x40'2000, 7),
                                     at(0x40'3000, 7)}));
}

TEST(RiscvSfenceSink, GlobalLeafChangesUseRs2X0) {
  // ASID-tagged fences leave global translations (§4.2.1).
  std::vector<Fence> log;
  riscv::SfenceSink<RecordingOps> sink(RecordingOps{&log}, 7);
  sink.invalidate(range(0xffff'ffc0'0000'0000, 0xffff'ffc0'003f'ffff, 21, true, false));
  EXPECT_EQ(log, (std::vector<Fence>{at_all_asids(0xffff'ffc0'0000'0000),
                                     at_all_asids(0xffff'ffc0'0020'0000)}));
}

TEST(RiscvSfenceSink, StrideIsTheSmallestChangedLeaf) {
  std::vector<Fence> log;
  riscv::SfenceSink<RecordingOps> sink(RecordingOps{&log}, 1);
  sink.invalidate(range(0x4000'0000, 0x7fff'ffff, 30, false, false));  // one gigapage
  EXPECT_EQ(log, (std::vector<Fence>{at(0x4000'0000, 1)}));
  log.clear();
  sink.invalidate(range(0x1'0000, 0x1'ffff, 12, false, false));  // a 64 KiB NAPOT run
  ASSERT_EQ(log.size(), 16u);
  for (unsigned i = 0; i < 16; ++i) EXPECT_EQ(log[i], at(0x1'0000 + i * 0x1000u, 1)) << i;
}

TEST(RiscvSfenceSink, UnalignedFirstStillCoversTheLastPage) {
  std::vector<Fence> log;
  riscv::SfenceSink<RecordingOps> sink(RecordingOps{&log}, 3);
  sink.invalidate(range(0x1800, 0x2000, 12, false, false));
  EXPECT_EQ(log, (std::vector<Fence>{at(0x1000, 3), at(0x2000, 3)}));
}

TEST(RiscvSfenceSink, RangeAtTheTopOfTheAddressSpaceDoesNotWrap) {
  std::vector<Fence> log;
  riscv::SfenceSink<RecordingOps> sink(RecordingOps{&log}, 3);
  sink.invalidate(range(0xffff'ffff'ffff'e000, 0xffff'ffff'ffff'ffff, 12, false, false));
  EXPECT_EQ(log, (std::vector<Fence>{at(0xffff'ffff'ffff'e000, 3), at(0xffff'ffff'ffff'f000, 3)}));
}

TEST(RiscvSfenceSink, NonLeafChangesUseRs1X0) {
  // §4.2.1: rs1≠x0 reaches only leaf PTEs; "If software modifies a non-leaf
  // PTE, it should execute SFENCE.VMA with rs1=x0. If any PTE along the
  // traversal path had its G bit set, rs2 must be x0".
  std::vector<Fence> log;
  riscv::SfenceSink<RecordingOps> sink(RecordingOps{&log}, 9);
  sink.invalidate(range(0x20'0000, 0x3f'ffff, 12, false, true));
  EXPECT_EQ(log, (std::vector<Fence>{asid_all(9)}));
  log.clear();
  sink.invalidate(range(0x20'0000, 0x3f'ffff, 12, true, true));
  EXPECT_EQ(log, (std::vector<Fence>{everything()}));
}

TEST(RiscvSfenceSink, InvalidateAllByAsidOrEverything) {
  std::vector<Fence> log;
  riscv::SfenceSink<RecordingOps> sink(RecordingOps{&log}, 0);
  sink.invalidate_all(false);
  sink.invalidate_all(true);
  // ASID 0 is an ASID in a register, not x0.
  EXPECT_EQ(log, (std::vector<Fence>{asid_all(0), everything()}));
  log.clear();
  sink.invalidate(range(0, 0xfff, 12, false, false));
  EXPECT_EQ(log, (std::vector<Fence>{at(0, 0)}));
}

TEST(RiscvSfenceSink, PublishAndCompleteIssueNothing) {
  std::vector<Fence> log;
  riscv::SfenceSink<RecordingOps> sink(RecordingOps{&log}, 5);
  sink.publish();
  sink.complete();
  EXPECT_TRUE(log.empty());
  sink.publish();
  sink.invalidate(range(0x1000, 0x1fff, 12, false, false));
  sink.complete();
  EXPECT_EQ(log, (std::vector<Fence>{at(0x1000, 5)}));
}

}  // namespace
}  // namespace ptkit::test
