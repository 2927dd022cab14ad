// RISC-V Sv39, Sv48 and Sv57 paging, with the Svpbmt, Svnapot and Svadu
// extensions (RISC-V Privileged Architecture 20211203, ch. 4 "Supervisor-Level
// ISA, Version 1.12": §4.3.1 PTE fields, §4.3.2 translation process, §4.4 Sv39,
// §4.5 Sv48, §4.6 Sv57; ch. 5 "Svnapot"; ch. 6 "Svpbmt"; Svadu, ratified 2023).
//
// ptkit's level L is the spec's level i of §4.3.2 (i = 0 holds 4 KiB pages,
// i = LEVELS-1 is the root whose PPN satp holds), so level_name() gives "L0"
// .. "L4" with the same numbers; leaf_size_name() gives the spec's names for
// the leaves (page, megapage, gigapage, terapage, petapage).
//
// Every encoding the translation process rejects with a page fault (§4.3.2
// steps 3, 4 and 6, ch. 5, ch. 6) maps nothing, so decode() makes it Invalid
// and is_valid_raw() says false for it: reserved R/W/X, reserved bits 60:54,
// PBMT or N without their extension, PBMT = 3, a NAPOT encoding other than
// 64 KiB, a non-leaf PTE with A, D, U, PBMT or N set, a pointer at level 0 and
// a misaligned superpage. The engine thus treats such an entry as a hole and
// may overwrite it; the spec lets a hart cache invalid PTEs anyway (§4.2.1),
// so it owes no more than for any invalid entry.
#pragma once

#include "ptkit/format.hpp"
#include "ptkit/status.hpp"

namespace ptkit::riscv {

/// satp.MODE values of the paging modes (§4.1.11, satp MODE encoding table).
enum class Mode : u8 { Sv39 = 8, Sv48 = 9, Sv57 = 10 };

/// What the hart has and how it is configured.
struct Features {
  bool svpbmt = false;      // page-based memory types (ch. 6), menvcfg.PBMTE = 1
  bool svnapot = false;     // 64 KiB NAPOT translations (ch. 5)
  bool hw_ad = false;       // Svadu with menvcfg.ADUE = 1: the hart sets A and D
  unsigned phys_bits = 56;  // supervisor physical-address bits; Sv39+ have 56
};

/// Page-based memory types, PTE bits 62:61 (ch. 6, PBMT encoding table).
enum class Pbmt : u8 { PMA = 0, NC = 1, IO = 2 };  // 3 is reserved

// PTE fields (§4.4, Sv39 PTE figure; Sv48 and Sv57 share them, §4.5, §4.6).
inline constexpr u64 kValid = u64{1} << 0;
inline constexpr u64 kRead = u64{1} << 1;
inline constexpr u64 kWrite = u64{1} << 2;
inline constexpr u64 kExecute = u64{1} << 3;
inline constexpr u64 kUser = u64{1} << 4;
inline constexpr u64 kGlobal = u64{1} << 5;
inline constexpr u64 kAccessed = u64{1} << 6;
inline constexpr u64 kDirty = u64{1} << 7;
inline constexpr unsigned kRswShift = 8;  // RSW, bits 9:8, for supervisor software
inline constexpr u64 kRsw = u64{0x3} << kRswShift;
inline constexpr unsigned kPpnShift = 10;  // PPN, bits 53:10 (44 bits)
inline constexpr unsigned kPpnBits = 44;
inline constexpr u64 kPpnMask = ((u64{1} << kPpnBits) - 1) << kPpnShift;
inline constexpr u64 kReservedBits = u64{0x7F} << 54;  // bits 60:54, §4.4
inline constexpr unsigned kPbmtShift = 61;             // PBMT, bits 62:61, ch. 6
inline constexpr u64 kPbmtMask = u64{0x3} << kPbmtShift;
inline constexpr u64 kNapot = u64{1} << 63;  // N, ch. 5
inline constexpr u64 kPermBits = kRead | kWrite | kExecute;

/// ch. 5, Svnapot encoding table: the only defined NAPOT size is 64 KiB at
/// level 0, napot_bits = 4, with ppn[0][3:0] = 0b1000.
inline constexpr unsigned kNapotBits = 4;
inline constexpr u64 kNapotPpnLow = 0b1000;

class Paging {
 public:
  static constexpr unsigned kMaxLevels = 5;

  /// Precondition: is_valid_config(mode, features) (make() checks it and
  /// reports BadConfig); a violated one traps, and fails to compile in a
  /// constant expression.
  constexpr explicit Paging(Mode mode, Features features = {}) : mode_(mode), features_(features) {
    PTKIT_INVARIANT(is_valid_config(mode, features));
  }

  /// A mode satp defines for RV64 paging and 12 <= phys_bits <= 56 (§4.4: a
  /// 44-bit PPN above a 12-bit page offset).
  [[nodiscard]] static constexpr bool is_valid_config(Mode mode, const Features& features) {
    const bool mode_ok = mode == Mode::Sv39 || mode == Mode::Sv48 || mode == Mode::Sv57;
    return mode_ok && features.phys_bits >= 12 && features.phys_bits <= 12 + kPpnBits;
  }

  /// The checked constructor. Fails with Op::Create, Error::BadConfig for a
  /// mode value the spec does not define for Sv39/48/57 or phys_bits outside
  /// [12, 56]. (Not constexpr: Result's destructor is not.)
  static Result<Paging> make(Mode mode, Features features) {
    if (!is_valid_config(mode, features))
      return Failure{Op::Create, Error::BadConfig, {}, {}, kNoLevel, 0};
    return Paging(mode, features);
  }

  [[nodiscard]] constexpr Mode mode() const { return mode_; }
  [[nodiscard]] constexpr const Features& features() const { return features_; }
  /// Sv39: 3, Sv48: 4, Sv57: 5 (LEVELS of §4.4-§4.6).
  [[nodiscard]] constexpr unsigned levels() const { return unsigned(mode_) - 5; }
  [[nodiscard]] constexpr unsigned page_shift() const { return 12; }
  /// 512 eight-byte PTEs per table at every level, the root included (§4.4).
  [[nodiscard]] constexpr unsigned index_bits(unsigned) const { return 9; }
  /// 39, 48 or 57.
  [[nodiscard]] constexpr unsigned va_bits() const { return page_shift() + 9 * levels(); }

  /// "Any level of PTE may be a leaf PTE" (§4.4-§4.6): 4K pages, 2M megapages,
  /// 1G gigapages, 512G terapages, 256T petapages as the mode has the level.
  [[nodiscard]] constexpr bool leaf_allowed(unsigned level) const { return level < levels(); }

  /// Bits 63 to VA-1 all equal bit VA-1, or the access page-faults (§4.4-§4.6).
  [[nodiscard]] constexpr bool is_canonical(VirtAddr va) const {
    const unsigned shift = 64 - va_bits();
    const auto sign_extended =
        static_cast<u64>(static_cast<long long>(va.value() << shift) >> shift);
    return sign_extended == va.value();
  }

  [[nodiscard]] constexpr unsigned phys_bits() const { return features_.phys_bits; }

  /// R/W/X encodings (§4.3.1): a leaf needs R or X (X=W=R=0 is a pointer),
  /// and W needs R (W without R is reserved). Execute-only is expressible.
  /// Memory types: WriteBack (PBMT=PMA: the PMAs decide), and with Svpbmt
  /// also WriteCombining (NC) and Device (IO).
  [[nodiscard]] constexpr bool can_express(Attrs a) const {
    const bool r = has(a.perm, Perm::R);
    if (!r && !has(a.perm, Perm::X)) return false;
    if (!r && has(a.perm, Perm::W)) return false;
    return pbmt_of(a.mem) >= 0;
  }

  /// 16 entries (one 64 KiB NAPOT run) at level 0 with Svnapot; 1 elsewhere.
  [[nodiscard]] constexpr unsigned contiguous_entries(unsigned level) const {
    return features_.svnapot && level == 0 ? 1u << kNapotBits : 1u;
  }
  /// The PPN is pa >> 12 at bit 10 (§4.4.1): the next leaf is raw + size / 4.
  /// NAPOT entries all hold their run's base, so they encode per leaf.
  /// The address field is the PPN above the leaf's alignment; the kept bits
  /// are kept_bits(); V, R/W/X/U, G, A/D (without hw_ad), PBMT and N are
  /// attributes.
  [[nodiscard]] constexpr LeafStep leaf_step(unsigned level, bool contiguous) const {
    if (contiguous) return {};
    return LeafStep{true, (u64{1} << (12 + 9 * level)) >> 2, ppn_field(PhysAddr(~u64{0}), level),
                    kept_bits()};
  }

  /// Format-specific bits an entry carries through decode and encode: RSW
  /// always; A and D only with hw_ad, where the hart owns them. Without
  /// hw_ad the format owns A and D (encode always sets both, decode does not
  /// report them), so that no access page-faults for A/D (§4.3.1, first
  /// scheme) and decode(encode(e)) == e.
  [[nodiscard]] constexpr u64 kept_bits() const {
    return kRsw | (features_.hw_ad ? kAccessed | kDirty : 0);
  }

  /// V = 1 and the translation process accepts the entry at this level
  /// (§4.3.2 steps 3, 4, 6; ch. 5; ch. 6): exactly decode(raw, level).valid().
  [[nodiscard]] constexpr bool is_valid_raw(u64 raw, unsigned level) const {
    return (raw & kValid) != 0 && !reserved(raw, level);
  }

  /// Tables: the next table's PPN; G and RSW of a pointer are not reported
  /// (ptkit writes pointers without them). Leaves: R/W/X/U -> Perm, G ->
  /// global, PBMT -> memory type, RSW (and A/D with hw_ad) -> kept. A NAPOT
  /// leaf decodes as contiguous with the run's first page: its PPN with
  /// ppn[3:0] cleared. The PPN is taken whole, not cut to phys_bits: the
  /// walk uses every bit (§4.3.2, "does not admit ... ignoring high-order
  /// PPN bits"), and a cut would alias a real frame.
  [[nodiscard]] constexpr Entry decode(u64 raw, unsigned level) const {
    if (!is_valid_raw(raw, level)) return Entry::invalid();
    const u64 ppn = (raw & kPpnMask) >> kPpnShift;
    if ((raw & kPermBits) == 0) return Entry::table(PhysAddr(ppn << 12));
    Attrs a;
    a.perm = Perm::None;
    if (raw & kRead) a.perm = a.perm | Perm::R;
    if (raw & kWrite) a.perm = a.perm | Perm::W;
    if (raw & kExecute) a.perm = a.perm | Perm::X;
    if (raw & kUser) a.perm = a.perm | Perm::User;
    a.global = (raw & kGlobal) != 0;
    switch (Pbmt((raw & kPbmtMask) >> kPbmtShift)) {
      case Pbmt::PMA: a.mem = MemType::WriteBack; break;
      case Pbmt::NC: a.mem = MemType::WriteCombining; break;
      case Pbmt::IO: a.mem = MemType::Device; break;
    }
    const bool napot = (raw & kNapot) != 0;
    const u64 base_ppn = napot ? ppn & ~((u64{1} << kNapotBits) - 1) : ppn;
    return Entry::leaf(PhysAddr(base_ppn << 12), a, raw & kept_bits(), napot);
  }

  [[nodiscard]] constexpr u64 table_address(u64 raw, unsigned level) const {
    return is_valid_raw(raw, level) && (raw & kPermBits) == 0
               ? ((raw & kPpnMask) >> kPpnShift) << 12
               : kNotTable;
  }

  /// Pointers: V and the PPN only (R=W=X=0; A, D, U, PBMT and N must be
  /// zero in a non-leaf PTE, §4.3.1 and ch. 5-6; G stays 0 so that G on the
  /// leaves alone says what is global). Leaves: V, R/W/X/U, G, PBMT, RSW from
  /// kept, A and D (both set, or from kept with hw_ad). A contiguous leaf at a
  /// level with contiguous_entries() > 1 gets N = 1 and ppn[3:0] = 0b1000,
  /// the same value for all 16 entries of its run; elsewhere the hint is
  /// ignored. Preconditions: pa aligned to the level's leaf size (a pointer:
  /// to 4 KiB) and below 2^56, can_express(attrs). The invalid entry is 0.
  [[nodiscard]] constexpr u64 encode(const Entry& e, unsigned level) const {
    switch (e.kind) {
      case EntryKind::Invalid: return 0;
      case EntryKind::Table: return kValid | ppn_field(e.pa, 0);
      case EntryKind::Leaf: break;
    }
    u64 raw = kValid | ppn_field(e.pa, level) | (e.kept & kept_bits());
    if (!features_.hw_ad) raw |= kAccessed | kDirty;
    if (has(e.attrs.perm, Perm::R)) raw |= kRead;
    if (has(e.attrs.perm, Perm::W)) raw |= kWrite;
    if (has(e.attrs.perm, Perm::X)) raw |= kExecute;
    if (has(e.attrs.perm, Perm::User)) raw |= kUser;
    if (e.attrs.global) raw |= kGlobal;
    const int pbmt = pbmt_of(e.attrs.mem);
    if (pbmt > 0) raw |= u64(pbmt) << kPbmtShift;
    if (e.contiguous && contiguous_entries(level) > 1) {
      const u64 low = ((u64{1} << kNapotBits) - 1) << kPpnShift;
      raw = (raw & ~low) | (kNapotPpnLow << kPpnShift) | kNapot;
    }
    return raw;
  }

  /// Never: RISC-V has no break-before-make. §4.2.1: until an SFENCE.VMA a
  /// hart may use any translation that was valid since the last one ("either
  /// the old translation or the new translation will be used ... The
  /// behavior is otherwise well-defined"), also when a superpage replaces a
  /// non-leaf PTE in place. So a valid entry is rewritten in place and then
  /// fenced. Svnapot (ch. 5) asks to invalidate a NAPOT run before updating
  /// it "unless any inconsistencies are known to be benign": the engine only
  /// rewrites a run whole and alike, or takes it apart into equivalent plain
  /// entries, so every address translates to its old or its new translation
  /// throughout, which is the benign case.
  [[nodiscard]] constexpr bool needs_break(const Entry&, const Entry&, bool) const { return false; }

  /// The spec's level i of §4.3.2 (ptkit's level numbers are the same).
  [[nodiscard]] constexpr const char* level_name(unsigned level) const {
    constexpr const char* kNames[] = {"L0", "L1", "L2", "L3", "L4"};
    return level < levels() ? kNames[level] : "?";
  }

  /// The spec's name for a leaf at `level` (§4.3.1, §4.4-§4.6).
  [[nodiscard]] constexpr const char* leaf_size_name(unsigned level) const {
    constexpr const char* kNames[] = {"page", "megapage", "gigapage", "terapage", "petapage"};
    return level < levels() ? kNames[level] : "?";
  }

  /// The PBMT value for `mem`, or -1 when this hart cannot express it.
  [[nodiscard]] constexpr int pbmt_of(MemType mem) const {
    if (mem == MemType::WriteBack) return int(Pbmt::PMA);
    if (!features_.svpbmt) return -1;
    if (mem == MemType::WriteCombining) return int(Pbmt::NC);
    if (mem == MemType::Device) return int(Pbmt::IO);
    return -1;
  }

 private:
  /// The PPN field for `pa`, with the PPN bits below a level-`level` leaf's
  /// alignment cleared (the precondition says they are zero).
  static constexpr u64 ppn_field(PhysAddr pa, unsigned level) {
    const u64 ppn = (pa.value() >> 12) & ~((u64{1} << (9 * level)) - 1);
    return (ppn << kPpnShift) & kPpnMask;
  }

  /// Whether the translation process page-faults on this V = 1 entry at
  /// `level` for its encoding alone (not for a permission check).
  [[nodiscard]] constexpr bool reserved(u64 raw, unsigned level) const {
    // §4.3.2 step 3: W without R, and bits reserved for future use (60:54;
    // PBMT and N without their extensions, §4.4).
    if ((raw & kWrite) && !(raw & kRead)) return true;
    if (raw & kReservedBits) return true;
    if (!features_.svpbmt && (raw & kPbmtMask)) return true;
    if (!features_.svnapot && (raw & kNapot)) return true;
    const u64 ppn = (raw & kPpnMask) >> kPpnShift;
    if ((raw & kPermBits) == 0) {
      // Step 4: a pointer below level 0 page-faults. A, D, U (§4.3.1), PBMT
      // (ch. 6) and N (ch. 5) are reserved in a non-leaf PTE.
      return level == 0 || (raw & (kAccessed | kDirty | kUser | kPbmtMask | kNapot)) != 0;
    }
    // ch. 6: PBMT = 3 is reserved in a leaf.
    if ((raw & kPbmtMask) == kPbmtMask) return true;
    // ch. 5: N = 1 is defined only at level 0 with ppn[0][3:0] = 0b1000.
    if (raw & kNapot) return level != 0 || (ppn & ((u64{1} << kNapotBits) - 1)) != kNapotPpnLow;
    // Step 6: a misaligned superpage.
    return (ppn & ((u64{1} << (9 * level)) - 1)) != 0;
  }

  Mode mode_;
  Features features_;
};

static_assert(PagingFormat<Paging>);

}  // namespace ptkit::riscv
