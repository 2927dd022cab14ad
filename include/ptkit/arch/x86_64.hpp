// x86-64 4-level and 5-level paging (Intel SDM vol. 3A ch. 4.5; AMD APM vol. 2
// ch. 5.3). Level 0 is the page table (PT), then PD, PDPT, PML4 and PML5.
#pragma once

#include "ptkit/format.hpp"

namespace ptkit::x86 {

/// Memory types a PAT entry can hold (SDM vol. 3A §11.12.2, Table 11-10).
enum class PatType : u8 { UC = 0, WC = 1, WT = 4, WP = 5, WB = 6, UCMinus = 7 };

/// The eight PAT entries as the caller programmed IA32_PAT. The default is the
/// power-on value (SDM Table 11-12).
struct PatLayout {
  PatType entry[8] = {PatType::WB, PatType::WT, PatType::UCMinus, PatType::UC,
                      PatType::WB, PatType::WT, PatType::UCMinus, PatType::UC};
};

/// What the CPU has. 1 GiB pages need CPUID.80000001H:EDX.Page1GB; without
/// IA32_EFER.NXE every page is executable; MAXPHYADDR bounds output addresses.
struct Features {
  bool page_1g = false;
  bool nx = true;
  unsigned phys_bits = 52;
  PatLayout pat{};
};

// Descriptor bits (SDM Tables 4-15 to 4-20; 4-level and 5-level share them).
inline constexpr u64 kPresent = u64{1} << 0;
inline constexpr u64 kReadWrite = u64{1} << 1;
inline constexpr u64 kUserSupervisor = u64{1} << 2;
inline constexpr u64 kPwt = u64{1} << 3;
inline constexpr u64 kPcd = u64{1} << 4;
inline constexpr u64 kAccessed = u64{1} << 5;
inline constexpr u64 kDirty = u64{1} << 6;
inline constexpr u64 kPageSize = u64{1} << 7;  // PS in PDE/PDPTE
inline constexpr u64 kPat4K = u64{1} << 7;     // PAT in a PTE
inline constexpr u64 kGlobal = u64{1} << 8;
inline constexpr u64 kPatLarge = u64{1} << 12;  // PAT in a 2M/1G leaf
inline constexpr u64 kExecuteDisable = u64{1} << 63;
inline constexpr u64 kProtKeyShift = 59;  // bits 62:59, leaves only
// Bits software owns or the CPU sets, which ptkit carries through unchanged:
// accessed, dirty, ignored bits 11:9 and 58:52, protection key.
inline constexpr u64 kKeptBits =
    kAccessed | kDirty | (u64{0x7} << 9) | (u64{0x7F} << 52) | (u64{0xF} << kProtKeyShift);

template <unsigned Levels>
class Paging {
  static_assert(Levels == 4 || Levels == 5, "x86-64 has 4-level and 5-level paging");

 public:
  static constexpr unsigned kMaxLevels = Levels;
  static constexpr unsigned kVaBits = Levels == 4 ? 48 : 57;

  constexpr Paging() = default;
  constexpr explicit Paging(Features f) : features_(f) {}

  [[nodiscard]] constexpr const Features& features() const { return features_; }
  [[nodiscard]] constexpr unsigned levels() const { return Levels; }
  [[nodiscard]] constexpr unsigned page_shift() const { return 12; }
  [[nodiscard]] constexpr unsigned index_bits(unsigned) const { return 9; }

  /// PTEs always map 4K pages, PDEs may map 2M pages (PS=1) in long mode, PDPTEs
  /// 1G pages only with Page1GB; PML4E/PML5E never map (PS is reserved).
  [[nodiscard]] constexpr bool leaf_allowed(unsigned level) const {
    return level == 0 || level == 1 || (level == 2 && features_.page_1g);
  }

  /// Canonical: bits 63 to kVaBits-1 all equal (SDM §3.3.7.1, §4.5).
  [[nodiscard]] constexpr bool is_canonical(VirtAddr va) const {
    constexpr unsigned kShift = 64 - kVaBits;
    const auto sign_extended =
        static_cast<u64>(static_cast<long long>(va.value() << kShift) >> kShift);
    return sign_extended == va.value();
  }

  [[nodiscard]] constexpr unsigned phys_bits() const { return features_.phys_bits; }

  [[nodiscard]] constexpr bool can_express(Attrs a) const {
    if (!has(a.perm, Perm::R)) return false;  // a present page is always readable
    if (!has(a.perm, Perm::X) && !features_.nx) return false;
    return pat_index(a.mem) >= 0;
  }

  [[nodiscard]] constexpr bool is_valid_raw(u64 raw, unsigned) const {
    return (raw & kPresent) != 0;
  }

  [[nodiscard]] constexpr Entry decode(u64 raw, unsigned level) const {
    if (!is_valid_raw(raw, level)) return Entry::invalid();
    const bool leaf = level == 0 || ((level == 1 || level == 2) && (raw & kPageSize) != 0);
    if (!leaf) return Entry::table(PhysAddr(raw & address_mask(0)));
    Attrs a;
    a.perm = Perm::R;
    if (raw & kReadWrite) a.perm = a.perm | Perm::W;
    if (!(raw & kExecuteDisable)) a.perm = a.perm | Perm::X;
    if (raw & kUserSupervisor) a.perm = a.perm | Perm::User;
    a.global = (raw & kGlobal) != 0;
    const u64 pat_bit = level == 0 ? kPat4K : kPatLarge;
    const unsigned index =
        ((raw & kPwt) ? 1u : 0u) | ((raw & kPcd) ? 2u : 0u) | ((raw & pat_bit) ? 4u : 0u);
    a.mem = to_mem_type(features_.pat.entry[index]);
    return Entry::leaf(PhysAddr(raw & address_mask(level)), a, raw & kKeptBits);
  }

  [[nodiscard]] constexpr u64 table_address(u64 raw, unsigned level) const {
    const bool leaf = level == 0 || ((level == 1 || level == 2) && (raw & kPageSize) != 0);
    return (raw & kPresent) != 0 && !leaf ? raw & address_mask(0) : kNotTable;
  }

  /// Table entries grant everything (present, writable, user, executable):
  /// the leaf alone decides, so protect() never has to revisit upper levels.
  [[nodiscard]] constexpr u64 encode(const Entry& e, unsigned level) const {
    switch (e.kind) {
      case EntryKind::Invalid: return 0;
      case EntryKind::Table:
        return (e.pa.value() & address_mask(0)) | kPresent | kReadWrite | kUserSupervisor |
               kAccessed;
      case EntryKind::Leaf: break;
    }
    u64 raw = (e.pa.value() & address_mask(level)) | kPresent | (e.kept & kKeptBits);
    if (level != 0) raw |= kPageSize;
    if (has(e.attrs.perm, Perm::W)) raw |= kReadWrite;
    if (has(e.attrs.perm, Perm::User)) raw |= kUserSupervisor;
    if (!has(e.attrs.perm, Perm::X) && features_.nx) raw |= kExecuteDisable;
    if (e.attrs.global) raw |= kGlobal;
    const int index = pat_index(e.attrs.mem);
    if (index & 1) raw |= kPwt;
    if (index & 2) raw |= kPcd;
    if (index & 4) raw |= level == 0 ? kPat4K : kPatLarge;
    return raw;
  }

  /// SDM §4.10.2.3 and AMD APM §5.5.2: the page size may change only if every
  /// address keeps the same frame and attributes (a split or merge into an
  /// equivalent table); any other valid-to-valid rewrite is done in place and
  /// invalidated afterwards.
  [[nodiscard]] constexpr bool needs_break(const Entry& old_entry, const Entry& new_entry,
                                           bool equivalent) const {
    return old_entry.valid() && new_entry.valid() && old_entry.kind != new_entry.kind &&
           !equivalent;
  }

  /// x86 has no contiguous hint in its entries.
  [[nodiscard]] constexpr unsigned contiguous_entries(unsigned) const { return 1; }
  /// The address bits of every leaf size sit in place (SDM Table 4-15..4-20):
  /// the next leaf is raw + its size. Everything outside the address field
  /// and kKeptBits is attributes (or reserved, which encode() clears).
  [[nodiscard]] constexpr LeafStep leaf_step(unsigned level, bool) const {
    return LeafStep{true, u64{1} << (12 + 9 * level), address_mask(level), kKeptBits};
  }

  [[nodiscard]] constexpr const char* level_name(unsigned level) const {
    constexpr const char* kNames[] = {"PT", "PD", "PDPT", "PML4", "PML5"};
    return level < Levels ? kNames[level] : "?";
  }

  /// Output-address bits of a leaf at `level` (or of a table pointer for 0).
  [[nodiscard]] constexpr u64 address_mask(unsigned level) const {
    const u64 top = (u64{1} << features_.phys_bits) - 1;
    return top & ~((u64{1} << (12 + 9 * level)) - 1);
  }

  /// Which PAT entry holds `mem`, or -1 when the caller's layout lacks it.
  [[nodiscard]] constexpr int pat_index(MemType mem) const {
    for (int i = 0; i < 8; ++i)
      if (to_mem_type(features_.pat.entry[i]) == mem) return i;
    return -1;
  }

  static constexpr MemType to_mem_type(PatType t) {
    switch (t) {
      case PatType::UC: return MemType::Uncached;
      case PatType::WC: return MemType::WriteCombining;
      case PatType::WT: return MemType::WriteThrough;
      case PatType::WP: return MemType::WriteProtect;
      case PatType::WB: return MemType::WriteBack;
      case PatType::UCMinus: return MemType::UncachedMinus;
    }
    return MemType::Uncached;
  }

 private:
  Features features_{};
};

using Paging4 = Paging<4>;
using Paging5 = Paging<5>;
static_assert(PagingFormat<Paging4>);
static_assert(PagingFormat<Paging5>);

}  // namespace ptkit::x86
