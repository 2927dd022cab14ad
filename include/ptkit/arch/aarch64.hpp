// AArch64 VMSAv8-64 stage 1 translation (Arm ARM DDI 0487, chapter D8), for
// the 4K, 16K and 64K granules, 25- to 52-bit virtual address spaces in either
// half (TTBR0 or TTBR1), with FEAT_LPA, FEAT_LVA and FEAT_LPA2.
//
// ptkit numbers levels from the bottom; the Arm ARM from the top, starting at
// the initial lookup level. ptkit level 0 is Arm level 3 (pages), level 1 is
// Arm level 2, and so on up to Arm level -1 (ptkit level 4, 52-bit VA with the
// 4K granule and FEAT_LPA2). The section numbers below are those of DDI 0487
// K.a; the section titles are quoted so they can be found in other issues.
#pragma once

#include "ptkit/format.hpp"
#include "ptkit/status.hpp"

namespace ptkit::aarch64 {

/// Translation granule (TCR_ELx.TG0/TG1; D8.2 "Translation granule").
enum class Granule : u8 { K4, K16, K64 };

/// Which translation table base register covers the space: TTBR0_ELx maps
/// [0, 2^va_bits), TTBR1_ELx maps [2^64 - 2^va_bits, 2^64) (D8.1 "Address
/// translation", VA ranges).
enum class Half : u8 { Lower, Upper };

/// The SH[1:0] field of a block or page descriptor (D8.6 "Memory region
/// attributes", shareability). 0b01 is reserved.
enum class Shareability : u8 { Non = 0, Outer = 2, Inner = 3 };

// ---- MAIR -------------------------------------------------------------------------------

/// MAIR_ELx Attr<n> bytes for the memory types ptkit maps onto (MAIR_EL1
/// register description, Attr<n> encodings):
///   0x00 Device-nGnRnE, 0x04 Device-nGnRE,
///   0x44 Normal Inner/Outer Non-cacheable,
///   0xBB Normal Inner/Outer Write-Through Non-transient, Read/Write-Allocate,
///   0xFF Normal Inner/Outer Write-Back Non-transient, Read/Write-Allocate.
inline constexpr u8 kMairDeviceNGnRnE = 0x00;
inline constexpr u8 kMairDeviceNGnRE = 0x04;
inline constexpr u8 kMairNormalNonCacheable = 0x44;
inline constexpr u8 kMairNormalWriteThrough = 0xBB;
inline constexpr u8 kMairNormalWriteBack = 0xFF;

/// Whether a MemType has an Arm encoding. WriteProtect and UncachedMinus are
/// x86 PAT types with no MAIR equivalent.
constexpr bool mair_encodable(MemType mem) {
  switch (mem) {
    case MemType::WriteBack:
    case MemType::WriteThrough:
    case MemType::WriteCombining:
    case MemType::Uncached:
    case MemType::Device: return true;
    case MemType::WriteProtect:
    case MemType::UncachedMinus: return false;
  }
  return false;
}

/// The MAIR attribute byte for `mem`. Precondition: mair_encodable(mem).
/// Uncached is the strictest Device type (no gathering, reordering or early
/// write acknowledgement); Device allows early acknowledgement, as Linux's
/// ioremap() does.
constexpr u8 mair_attr(MemType mem) {
  switch (mem) {
    case MemType::WriteBack: return kMairNormalWriteBack;
    case MemType::WriteThrough: return kMairNormalWriteThrough;
    case MemType::WriteCombining: return kMairNormalNonCacheable;
    case MemType::Device: return kMairDeviceNGnRE;
    case MemType::Uncached:
    case MemType::WriteProtect:
    case MemType::UncachedMinus: return kMairDeviceNGnRnE;
  }
  return kMairDeviceNGnRnE;
}

/// One AttrIndx slot: whether the caller uses it, and for which type.
struct MairSlot {
  bool used = false;
  MemType mem = MemType::Uncached;
  constexpr bool operator==(const MairSlot&) const = default;
};

/// Which memory type each of the eight AttrIndx slots holds. The default is
/// Linux's: 0 Device-nGnRnE, 1 Device-nGnRE, 2 Normal-NC, 3 Normal WB,
/// 4 Normal WT; 5-7 unused. Program MAIR_ELx with mair_value() so the
/// hardware and the tables agree.
struct MairLayout {
  MairSlot slot[8] = {
      {true, MemType::Uncached},
      {true, MemType::Device},
      {true, MemType::WriteCombining},
      {true, MemType::WriteBack},
      {true, MemType::WriteThrough},
      {},
      {},
      {},
  };

  /// The first slot holding `mem`, or -1.
  [[nodiscard]] constexpr int index_of(MemType mem) const {
    for (int i = 0; i < 8; ++i)
      if (slot[i].used && slot[i].mem == mem) return i;
    return -1;
  }
  /// Every used slot holds a type MAIR can encode.
  [[nodiscard]] constexpr bool encodable() const {
    bool ok = true;  // a plain loop: <algorithm> is not freestanding
    for (const MairSlot& s : slot) ok = ok && (!s.used || mair_encodable(s.mem));
    return ok;
  }
  /// The MAIR_ELx value: Attr<n> in bits [8n+7:8n]. Unused slots read 0x00
  /// (Device-nGnRnE), the strictest type, should a stray descriptor name them.
  /// Precondition: encodable().
  [[nodiscard]] constexpr u64 mair_value() const {
    u64 v = 0;
    for (unsigned i = 0; i < 8; ++i)
      if (slot[i].used) v |= u64{mair_attr(slot[i].mem)} << (8 * i);
    return v;
  }
  constexpr bool operator==(const MairLayout&) const = default;
};

/// What the CPU has and how the caller configured it.
struct Features {
  bool lpa = false;         // FEAT_LPA: 52-bit PA with the 64K granule, 4T level 1 blocks
  bool lva = false;         // FEAT_LVA: 52-bit VA with the 64K granule
  bool lpa2 = false;        // FEAT_LPA2 with TCR_ELx.DS = 1: 52-bit VA/PA for 4K/16K, the
                            // DS descriptor layout (OA[51:50] in bits 9:8, no SH field),
                            // 512G level 0 blocks (4K), 64G level 1 blocks (16K). No
                            // effect with the 64K granule, which uses lpa/lva.
  bool bbm2 = false;        // FEAT_BBM level 2: block size changes without break-before-make
  bool contiguous = true;   // set the Contiguous hint on runs the engine writes whole
  unsigned phys_bits = 48;  // the output address size TCR_ELx.IPS selects
  Shareability normal_sh = Shareability::Inner;  // SH of cacheable Normal memory
  MairLayout mair{};
};

// ---- Descriptor bits (D8.3 "Translation table descriptor formats") ---------------------
//
// bits[1:0] (D8.3.1, D8.3.2): x0 invalid; 11 table (levels above 3) or page
// (level 3); 01 block at a level that has blocks. 01 at level 3 is reserved
// and, like 01 at a level without blocks, faults as invalid.
inline constexpr u64 kValid = u64{1} << 0;
inline constexpr u64 kTableOrPage = u64{1} << 1;
// Block and page descriptors, lower attributes (D8.3.2).
inline constexpr unsigned kAttrIndxShift = 2;  // AttrIndx[2:0], bits 4:2
inline constexpr u64 kAttrIndxMask = u64{7} << kAttrIndxShift;
inline constexpr u64 kNs = u64{1} << 5;        // NS; ptkit leaves it 0
inline constexpr u64 kApUser = u64{1} << 6;    // AP[1]: EL0 access
inline constexpr u64 kApRdOnly = u64{1} << 7;  // AP[2]: read-only
inline constexpr unsigned kShShift = 8;        // SH[1:0], bits 9:8 (without DS)
inline constexpr u64 kShMask = u64{3} << kShShift;
inline constexpr u64 kAf = u64{1} << 10;  // access flag
inline constexpr u64 kNg = u64{1} << 11;  // not global
inline constexpr u64 kNt = u64{1} << 16;  // nT, FEAT_BBM level 1 (blocks); never set
// Block and page descriptors, upper attributes (D8.3.2).
inline constexpr u64 kGp = u64{1} << 50;          // BTI guarded page
inline constexpr u64 kDbm = u64{1} << 51;         // dirty bit modifier
inline constexpr u64 kContiguous = u64{1} << 52;  // Contiguous hint
inline constexpr u64 kPxn = u64{1} << 53;         // privileged execute-never
inline constexpr u64 kUxn = u64{1} << 54;         // unprivileged execute-never
inline constexpr u64 kSoftware = u64{0xF} << 55;  // reserved for software use, 58:55
inline constexpr u64 kPbha = u64{0xF} << 59;      // PBHA[3:0] (FEAT_HPDS2) / ignored
// Table descriptors, hierarchical attributes (D8.3.1); ptkit writes them 0.
inline constexpr u64 kPxnTable = u64{1} << 59;
inline constexpr u64 kUxnTable = u64{1} << 60;  // XNTable at EL2/EL3
inline constexpr unsigned kApTableShift = 61;   // APTable[1:0], bits 62:61
inline constexpr u64 kApTableMask = u64{3} << kApTableShift;
inline constexpr u64 kNsTable = u64{1} << 63;
// What a leaf carries through unchanged (Entry::kept): the bits the CPU or
// the caller own and that Attrs cannot say. Software bits 58:55 (the Arm ARM
// reserves them for software); DBM (software dirty tracking, or hardware's
// with FEAT_HAFDBS); GP (BTI guarded page, set by a loader per section); PBHA
// 62:59 (implementation-defined hints, ignored without FEAT_HPDS2). AF is not
// kept: encode always sets it. nT, NS and the address bits are never kept.
inline constexpr u64 kKeptBits = kSoftware | kPbha | kGp | kDbm;

/// The hierarchical attributes of a table descriptor (D8.3.1; their effect:
/// D8.4 "Memory access control", hierarchical permissions). They limit every
/// translation below the table.
struct TableLimits {
  bool ns_table = false;   // NSTable: Non-secure below (Secure state only)
  u8 ap_table = 0;         // APTable[1:0]: 1x no write, x1 no EL0 access
  bool uxn_table = false;  // UXNTable (XNTable at EL2/EL3)
  bool pxn_table = false;  // PXNTable
  constexpr bool operator==(const TableLimits&) const = default;
};

class Paging {
 public:
  static constexpr unsigned kMaxLevels = 5;
  static constexpr unsigned kMinVaBits = 25;  // TxSZ = 39; smaller needs FEAT_TTST
  static constexpr unsigned kMaxVaBits = 52;

  /// 4K granule, 48-bit VA, lower half: the configuration every AArch64 CPU has.
  constexpr Paging() : Paging(Granule::K4, 48) {}

  /// Precondition: a valid configuration (config_problem() returns nullptr);
  /// make() is the checked path.
  constexpr Paging(Granule granule, unsigned va_bits, Half half = Half::Lower, Features f = {})
      : granule_(granule), half_(half), va_bits_(va_bits), features_(f) {
    const unsigned resolved = va_bits - page_shift();  // bits the tables translate
    levels_ = (resolved + bits_per_level() - 1) / bits_per_level();
    root_bits_ = resolved - bits_per_level() * (levels_ - 1);
    // encode() runs once per entry written: look the AttrIndx up once here.
    for (unsigned m = 0; m < kMemTypeCount; ++m)
      attr_index_[m] = static_cast<signed char>(f.mair.index_of(MemType(m)));
  }

  /// Why a configuration is not one the architecture defines or the declared
  /// CPU can run, or nullptr when it is.
  static constexpr const char* config_problem(Granule granule, unsigned va_bits, Features f) {
    const bool k64 = granule == Granule::K64;
    if (va_bits < kMinVaBits) return "va_bits below 25 (TxSZ above 39 needs FEAT_TTST)";
    if (va_bits > kMaxVaBits) return "va_bits above 52";
    if (va_bits > 48 && k64 && !f.lva) return "va_bits above 48 with the 64K granule needs lva";
    if (va_bits > 48 && !k64 && !f.lpa2)
      return "va_bits above 48 with the 4K/16K granule needs lpa2";
    switch (f.phys_bits) {  // TCR_ELx.IPS encodings
      case 32:
      case 36:
      case 40:
      case 42:
      case 44:
      case 48:
      case 52: break;
      default: return "phys_bits is not a TCR_ELx.IPS size (32, 36, 40, 42, 44, 48, 52)";
    }
    if (f.phys_bits > 48 && k64 && !f.lpa) return "phys_bits 52 with the 64K granule needs lpa";
    if (f.phys_bits > 48 && !k64 && !f.lpa2)
      return "phys_bits 52 with the 4K/16K granule needs lpa2";
    if (f.normal_sh != Shareability::Non && f.normal_sh != Shareability::Outer &&
        f.normal_sh != Shareability::Inner)
      return "normal_sh is the reserved SH encoding 0b01";
    if (!f.mair.encodable())
      return "the MAIR layout places a memory type Arm cannot encode (WriteProtect, "
             "UncachedMinus)";
    return nullptr;
  }

  /// The checked constructor. Fails with Error::BadConfig (Op::Create) for
  /// the cases config_problem() names. (Not constexpr: Result is not a
  /// literal type; config_problem() is the compile-time check.)
  static Result<Paging> make(Granule granule, unsigned va_bits, Half half = Half::Lower,
                             Features f = {}) {
    if (config_problem(granule, va_bits, f) != nullptr)
      return Failure{Op::Create, Error::BadConfig, {}, {}, kNoLevel, 0};
    return Paging(granule, va_bits, half, f);
  }

  // ---- Configuration ----------------------------------------------------------------
  [[nodiscard]] constexpr Granule granule() const { return granule_; }
  [[nodiscard]] constexpr Half half() const { return half_; }
  [[nodiscard]] constexpr unsigned va_bits() const { return va_bits_; }
  [[nodiscard]] constexpr const Features& features() const { return features_; }
  /// TCR_ELx.T0SZ/T1SZ for this space.
  [[nodiscard]] constexpr unsigned tnsz() const { return 64 - va_bits_; }
  /// TCR_ELx.DS = 1: the FEAT_LPA2 descriptor layout (4K and 16K only).
  [[nodiscard]] constexpr bool ds() const { return features_.lpa2 && granule_ != Granule::K64; }

  // ---- Geometry (D8.2 "Translation process": levels per granule and VA size) --------
  [[nodiscard]] constexpr unsigned levels() const { return levels_; }
  [[nodiscard]] constexpr unsigned page_shift() const {
    return granule_ == Granule::K4 ? 12 : granule_ == Granule::K16 ? 14 : 16;
  }
  /// A full table is one granule of 8-byte descriptors: 9, 11 or 13 bits.
  [[nodiscard]] constexpr unsigned bits_per_level() const { return page_shift() - 3; }
  /// The root (initial lookup level) resolves what is left of the VA; stage 1
  /// has no concatenated tables, so it is never wider than a full table.
  [[nodiscard]] constexpr unsigned index_bits(unsigned level) const {
    if (level >= levels_) return 0;
    return level + 1 == levels_ ? root_bits_ : bits_per_level();
  }
  /// The Arm level of ptkit `level` (3 = pages, -1 = the 52-bit 4K root).
  [[nodiscard]] static constexpr int arm_level(unsigned level) { return 3 - int(level); }
  /// The Arm ARM's initial lookup level for this configuration.
  [[nodiscard]] constexpr int start_level() const { return arm_level(levels_ - 1); }
  /// log2 of the region an entry at `level` maps.
  [[nodiscard]] constexpr unsigned leaf_shift(unsigned level) const {
    return page_shift() + bits_per_level() * level;
  }

  /// D8.3.2: pages at level 3; blocks at level 2 (2M, 32M, 512M); at level 1
  /// with 4K (1G), with 16K only under DS (64G), with 64K only with FEAT_LPA
  /// (4T); at level 0 only with 4K under DS (512G). Level -1 only has tables.
  [[nodiscard]] constexpr bool leaf_allowed(unsigned level) const {
    if (level >= levels_) return false;
    switch (arm_level(level)) {
      case 3:
      case 2: return true;
      case 1:
        return granule_ == Granule::K4 || (granule_ == Granule::K16 && ds()) ||
               (granule_ == Granule::K64 && features_.lpa);
      case 0: return granule_ == Granule::K4 && ds();
      default: return false;
    }
  }

  /// TTBR0: the top 64 - va_bits bits are 0; TTBR1: they are all 1 (D8.1).
  /// Top-byte-ignore is not modelled: tagged addresses are not canonical.
  [[nodiscard]] constexpr bool is_canonical(VirtAddr va) const {
    const u64 top = va.value() >> va_bits_;
    return half_ == Half::Lower ? top == 0 : top == (~u64{0} >> va_bits_);
  }

  [[nodiscard]] constexpr unsigned phys_bits() const { return features_.phys_bits; }

  /// Stage 1 has no write-only or execute-only-without-read encoding in the
  /// AP/XN bits (D8.4: every valid translation is readable at the levels AP
  /// grants); the memory type must have a slot in the MAIR layout.
  [[nodiscard]] constexpr bool can_express(Attrs a) const {
    return has(a.perm, Perm::R) && attr_index(a.mem) >= 0;
  }

  /// Entries in one run of the Contiguous hint (D8.6.1 "The Contiguous bit"):
  /// 4K granule 16 (levels 3, 2 and 1: 64K, 32M, 16G); 16K granule 128 at
  /// level 3 (2M) and 32 at level 2 (1G); 64K granule 32 at levels 3 and 2
  /// (2M, 16G). 1 where the hint is off, where no leaf may sit, and at the
  /// levels whose blocks need LPA/LPA2 (4K level 0, 16K and 64K level 1): the
  /// hint is optional, and ptkit does not use it where we have not checked the
  /// run length against the manual.
  [[nodiscard]] constexpr unsigned contiguous_entries(unsigned level) const {
    return features_.contiguous ? run_entries(level) : 1;
  }
  /// Output addresses sit in place up to bit 47 with the 48-bit layouts; the
  /// 52-bit ones move the top bits elsewhere (LPA2: 51:50 to 9:8; 64K LPA:
  /// 51:48 to 15:12), where a carry would not go, so those encode per leaf.
  /// The Contiguous bit is the same for every entry of a run.
  /// The address field is OA[47:leaf shift] in place (D8.3.2), the kept bits
  /// are kKeptBits, everything else is attributes and the Contiguous bit.
  [[nodiscard]] constexpr LeafStep leaf_step(unsigned level, bool) const {
    if (ds() || (granule_ == Granule::K64 && features_.lpa)) return {};
    return LeafStep{true, u64{1} << leaf_shift(level), pack_address(~u64{0}, leaf_shift(level)),
                    kKeptBits};
  }
  /// The run length the hardware assumes for a set Contiguous bit at `level`,
  /// whether or not ptkit writes the hint; decode() aligns by it.
  [[nodiscard]] constexpr unsigned run_entries(unsigned level) const {
    if (!leaf_allowed(level)) return 1;
    const int arm = arm_level(level);
    switch (granule_) {
      case Granule::K4: return arm >= 1 ? 16 : 1;
      case Granule::K16: return arm == 3 ? 128 : arm == 2 ? 32 : 1;
      case Granule::K64: return arm >= 2 ? 32 : 1;
    }
    return 1;
  }

  /// The SH a leaf of type `mem` gets. Device memory and Normal Non-cacheable
  /// memory are Outer Shareable whatever SH says (D8.6 "Memory region
  /// attributes", shareability of Device and Non-cacheable memory), so ptkit
  /// writes Outer for them, which keeps dumps truthful; cacheable Normal memory
  /// gets Features::normal_sh. Under DS there is no SH field (TCR_ELx.SHn
  /// applies) and nothing is written.
  [[nodiscard]] constexpr Shareability shareability(MemType mem) const {
    switch (mem) {
      case MemType::WriteBack:
      case MemType::WriteThrough: return features_.normal_sh;
      default: return Shareability::Outer;
    }
  }

  /// Valid bit set, and not a reserved encoding: 0b01 at level 3 or at a
  /// level without blocks faults like an invalid descriptor (D8.3.1/D8.3.2).
  [[nodiscard]] constexpr bool is_valid_raw(u64 raw, unsigned level) const {
    if ((raw & kValid) == 0) return false;
    if (raw & kTableOrPage) return true;
    return level != 0 && leaf_allowed(level);
  }

  [[nodiscard]] constexpr Entry decode(u64 raw, unsigned level) const {
    if (!is_valid_raw(raw, level)) return Entry::invalid();
    if (level != 0 && (raw & kTableOrPage))
      return Entry::table(PhysAddr(unpack_address(raw, page_shift())));
    Attrs a;
    a.perm = Perm::R;
    const bool user = (raw & kApUser) != 0;
    if (!(raw & kApRdOnly)) a.perm = a.perm | Perm::W;
    if (user) a.perm = a.perm | Perm::User;
    // The neutral X is the execute right of the level the page belongs to.
    if (!(raw & (user ? kUxn : kPxn))) a.perm = a.perm | Perm::X;
    a.global = (raw & kNg) == 0;
    const MairSlot& slot = features_.mair.slot[(raw & kAttrIndxMask) >> kAttrIndxShift];
    // An unused slot reads as Device-nGnRnE from mair_value().
    a.mem = slot.used ? slot.mem : MemType::Uncached;
    u64 pa = unpack_address(raw, leaf_shift(level));
    const bool contiguous = (raw & kContiguous) != 0;
    if (contiguous) pa = align_down(pa, u64{run_entries(level)} << leaf_shift(level));
    return Entry::leaf(PhysAddr(pa), a, raw & kKeptBits, contiguous);
  }

  [[nodiscard]] constexpr u64 table_address(u64 raw, unsigned level) const {
    return is_valid_raw(raw, level) && level != 0 && (raw & kTableOrPage) != 0
               ? unpack_address(raw, page_shift())
               : kNotTable;
  }

  /// Tables: address and type only; the hierarchical bits stay 0 so the leaf
  /// alone decides access. Leaves: AF set (ptkit maps accessed; no hardware
  /// AF management), NS 0, nT 0. User leaves are never executable at EL1
  /// (PXN = 1; EL0-writable memory is PXN anyway, D8.4); privileged leaves
  /// never at EL0 (UXN = 1).
  [[nodiscard]] constexpr u64 encode(const Entry& e, unsigned level) const {
    switch (e.kind) {
      case EntryKind::Invalid: return 0;
      case EntryKind::Table:
        return pack_address(e.pa.value(), page_shift()) | kValid | kTableOrPage;
      case EntryKind::Leaf: break;
    }
    u64 raw = pack_address(e.pa.value(), leaf_shift(level)) | kValid | kAf | (e.kept & kKeptBits);
    if (level == 0) raw |= kTableOrPage;
    const Attrs& a = e.attrs;
    const int index = attr_index(a.mem);
    raw |= u64(index < 0 ? 0 : index) << kAttrIndxShift;
    if (!has(a.perm, Perm::W)) raw |= kApRdOnly;
    if (has(a.perm, Perm::User)) {
      raw |= kApUser | kPxn;
      if (!has(a.perm, Perm::X)) raw |= kUxn;
    } else {
      raw |= kUxn;
      if (!has(a.perm, Perm::X)) raw |= kPxn;
    }
    if (!a.global) raw |= kNg;
    if (!ds()) raw |= u64(shareability(a.mem)) << kShShift;
    if (e.contiguous) raw |= kContiguous;
    return raw;
  }

  /// Break-before-make (D8.16.1 "Using break-before-make when updating
  /// translation table entries"): replacing a valid entry by another valid
  /// one needs the break when the block size changes (table <-> block, or the
  /// Contiguous bit), the output address, the memory type or shareability
  /// change (attrs.mem selects both), a non-global entry becomes global (the
  /// old nG=1 entry and the new global one could both be cached and conflict;
  /// global -> non-global is safe), or a table is replaced by another table.
  /// Permissions, AF, nG 0 -> 1 and the kept bits may change in place.
  /// With FEAT_BBM level 2 a change of block size or contiguity that keeps
  /// every translation (`equivalent`) may be written in place.
  [[nodiscard]] constexpr bool needs_break(const Entry& old_entry, const Entry& new_entry,
                                           bool equivalent) const {
    if (!old_entry.valid() || !new_entry.valid()) return false;
    const bool size_change_in_place = features_.bbm2 && equivalent;
    if (old_entry.kind != new_entry.kind) return !size_change_in_place;
    if (old_entry.is_table()) return old_entry.pa != new_entry.pa;
    if (old_entry.pa != new_entry.pa || old_entry.attrs.mem != new_entry.attrs.mem) return true;
    if (!old_entry.attrs.global && new_entry.attrs.global) return true;
    if (old_entry.contiguous != new_entry.contiguous) return !size_change_in_place;
    return false;
  }

  [[nodiscard]] constexpr const char* level_name(unsigned level) const {
    constexpr const char* kNames[] = {"L3", "L2", "L1", "L0", "L-1"};
    return level < levels_ ? kNames[level] : "?";
  }

  /// The hierarchical attributes of a raw table descriptor (D8.3.1).
  [[nodiscard]] static constexpr TableLimits table_limits(u64 raw) {
    return TableLimits{(raw & kNsTable) != 0, u8((raw & kApTableMask) >> kApTableShift),
                       (raw & kUxnTable) != 0, (raw & kPxnTable) != 0};
  }

  /// Address bits [phys_bits-1 : low_shift]: those of an output address
  /// aligned to 2^low_shift that fit the configured output size.
  [[nodiscard]] constexpr u64 address_mask(unsigned low_shift) const {
    const u64 top = (u64{1} << features_.phys_bits) - 1;
    return top & ~((u64{1} << low_shift) - 1);
  }

  /// The AttrIndx encode() writes for `mem` (the first slot holding it), or -1.
  [[nodiscard]] constexpr int attr_index(MemType mem) const {
    return unsigned(mem) < kMemTypeCount ? attr_index_[unsigned(mem)] : -1;
  }

  /// Output (or next-level table) address -> descriptor bits (D8.3.1/D8.3.2):
  /// without LPA/LPA2, OA[47:n] in bits 47:n; 64K with FEAT_LPA also OA[51:48]
  /// in bits 15:12; under DS, OA[49:n] in bits 49:n and OA[51:50] in bits 9:8.
  [[nodiscard]] constexpr u64 pack_address(u64 pa, unsigned low_shift) const {
    pa &= address_mask(low_shift);
    if (ds()) return (pa & bit_range(low_shift, 49)) | (((pa >> 50) & 0x3) << 8);
    u64 raw = pa & bit_range(low_shift, 47);
    if (granule_ == Granule::K64 && features_.lpa) raw |= ((pa >> 48) & 0xF) << 12;
    return raw;
  }
  /// The inverse of pack_address().
  [[nodiscard]] constexpr u64 unpack_address(u64 raw, unsigned low_shift) const {
    u64 pa = 0;
    if (ds()) {
      pa = (raw & bit_range(low_shift, 49)) | (((raw >> 8) & 0x3) << 50);
    } else {
      pa = raw & bit_range(low_shift, 47);
      if (granule_ == Granule::K64 && features_.lpa) pa |= ((raw >> 12) & 0xF) << 48;
    }
    return pa & address_mask(low_shift);
  }

 private:
  /// Bits [lo, hi] inclusive; lo <= hi < 63.
  static constexpr u64 bit_range(unsigned lo, unsigned hi) {
    return ((u64{1} << (hi + 1)) - 1) & ~((u64{1} << lo) - 1);
  }

  Granule granule_;
  Half half_;
  unsigned va_bits_;
  unsigned levels_ = 0;
  unsigned root_bits_ = 0;
  Features features_;
  signed char attr_index_[kMemTypeCount] = {};
};

static_assert(PagingFormat<Paging>);
static_assert(Paging::config_problem(Granule::K4, 48, {}) == nullptr);
static_assert(Paging().levels() == 4 && Paging().start_level() == 0);

}  // namespace ptkit::aarch64
