// The paging-format contract. A format describes one paging mode: its levels,
// which of them may hold leaves, and how neutral entries encode into raw
// descriptors. Generic code never touches an architecture's bits; it asks the
// format. ExampleFormat below documents the contract member by member.
#pragma once

#include <concepts>

#include "ptkit/addr.hpp"
#include "ptkit/attrs.hpp"

namespace ptkit {

enum class EntryKind : u8 { Invalid, Table, Leaf };

/// How the raw value of a leaf advances along consecutive output addresses:
/// with `linear`, the leaf for pa + leaf size at the same level, with the same
/// attributes, kept bits and hint, encodes as raw + `delta` (the address field
/// is a plain shifted copy of pa that no carry can leave). The engine's bulk
/// fill uses it to encode once per stretch of leaves instead of once per leaf.
///
/// With `linear`, a format may also describe the leaf's layout, which lets
/// protect() and walk_ranges() work on raw values: `address`, the raw bits
/// holding the output address, and `kept`, those holding Entry::kept. Every
/// other bit of a leaf depends only on its attributes and hint: two leaves at
/// the same level with the same attributes and hint differ only inside
/// address | kept; a raw value that agrees with a leaf outside those bits is
/// a leaf with the same attributes and hint, whatever it holds inside them;
/// and encode() writes pa and kept into them and nothing else. (A leaf with
/// the hint decodes to its run's first address; the engine checks that a run
/// holds consecutive addresses before it relies on that.) Zero `address`:
/// not described, the engine decodes such leaves one by one.
struct LeafStep {
  bool linear = false;
  u64 delta = 0;
  u64 address = 0;
  u64 kept = 0;
};

/// What the optional `table_address()` of a format returns for a raw entry
/// that does not point to a table (invalid, or a leaf): never a page address.
inline constexpr u64 kNotTable = ~u64{0};

/// A decoded descriptor, independent of the architecture.
struct Entry {
  EntryKind kind = EntryKind::Invalid;
  PhysAddr pa;              // table: the next table; leaf: the output address
  Attrs attrs;              // leaves only
  u64 kept = 0;             // format-specific bits carried through unchanged (accessed,
                            // dirty, software bits, protection keys): protect() and
                            // splits preserve them without knowing what they are
  bool contiguous = false;  // leaf in an aligned run of contiguous_entries()
                            // entries carrying the contiguous hint (Arm
                            // Contiguous bit, RISC-V Svnapot)

  [[nodiscard]] constexpr bool valid() const { return kind != EntryKind::Invalid; }
  [[nodiscard]] constexpr bool is_leaf() const { return kind == EntryKind::Leaf; }
  [[nodiscard]] constexpr bool is_table() const { return kind == EntryKind::Table; }

  static constexpr Entry invalid() { return Entry{}; }
  static constexpr Entry table(PhysAddr pa) { return Entry{EntryKind::Table, pa, {}, 0, false}; }
  static constexpr Entry leaf(PhysAddr pa, Attrs a, u64 kept = 0, bool contiguous = false) {
    return Entry{EntryKind::Leaf, pa, a, kept, contiguous};
  }
  constexpr bool operator==(const Entry&) const = default;
};

// Levels are numbered from the bottom: level 0 holds the smallest pages, level
// levels()-1 is the root. Manual names are available through level_name().
template <class F>
concept PagingFormat = requires(const F f, unsigned level, u64 raw, Entry e, Attrs a, VirtAddr va,
                                bool equivalent) {
  { F::kMaxLevels } -> std::convertible_to<unsigned>;
  { f.levels() } -> std::same_as<unsigned>;
  { f.page_shift() } -> std::same_as<unsigned>;
  { f.index_bits(level) } -> std::same_as<unsigned>;
  { f.leaf_allowed(level) } -> std::same_as<bool>;
  { f.is_canonical(va) } -> std::same_as<bool>;
  { f.phys_bits() } -> std::same_as<unsigned>;
  { f.can_express(a) } -> std::same_as<bool>;
  { f.decode(raw, level) } -> std::same_as<Entry>;
  { f.encode(e, level) } -> std::same_as<u64>;
  { f.is_valid_raw(raw, level) } -> std::same_as<bool>;
  { f.needs_break(e, e, equivalent) } -> std::same_as<bool>;
  { f.level_name(level) } -> std::same_as<const char*>;
  { f.contiguous_entries(level) } -> std::same_as<unsigned>;
};

/// The documented contract. Not a real MMU: a two-level format with 4 KiB
/// pages, 512-entry tables, leaves at both levels.
struct ExampleFormat {
  /// Upper bound on levels() for every configuration of this format; sizes
  /// the engine's per-level arrays.
  static constexpr unsigned kMaxLevels = 2;
  /// Number of table levels for this configuration.
  [[nodiscard]] constexpr unsigned levels() const { return 2; }
  /// log2 of the smallest page, which is also the size of every table.
  [[nodiscard]] constexpr unsigned page_shift() const { return 12; }
  /// Virtual-address bits that index a table at `level`; the root may use
  /// fewer than a full table. A table's entries are 64 bits.
  [[nodiscard]] constexpr unsigned index_bits(unsigned /*level*/) const { return 9; }
  /// Whether an entry at `level` may be a leaf with this CPU. Level 0 always
  /// may; if a level may, every lower level may too. Asked at run time because
  /// large leaves depend on CPU features.
  [[nodiscard]] constexpr bool leaf_allowed(unsigned /*level*/) const { return true; }
  /// Whether `va` lies in the format's address space (x86: canonical form).
  [[nodiscard]] constexpr bool is_canonical(VirtAddr va) const {
    return va.value() < (u64{1} << 30);
  }
  /// Output address bits.
  [[nodiscard]] constexpr unsigned phys_bits() const { return 40; }
  /// Whether a leaf can carry these attributes (memory types through the
  /// caller's layout, permission combinations the format has).
  [[nodiscard]] constexpr bool can_express(Attrs a) const { return has(a.perm, Perm::R); }
  /// Entries in one run of the contiguous hint at `level` (a power of two),
  /// or 1 where the format, the CPU or the configuration has no hint. A run
  /// is aligned in both address spaces and its entries agree in everything
  /// but the output address; the engine sets the hint on runs an update
  /// writes whole and takes a run apart before changing part of it.
  [[nodiscard]] constexpr unsigned contiguous_entries(unsigned /*level*/) const { return 1; }
  /// Raw descriptor -> neutral entry. Total: every raw value decodes. A leaf
  /// with the contiguous hint decodes to the output address of its run's
  /// first entry (all a RISC-V NAPOT entry holds); the engine adds the
  /// entry's offset inside the run.
  [[nodiscard]] constexpr Entry decode(u64 raw, unsigned /*level*/) const {
    if ((raw & 1) == 0) return Entry::invalid();
    if (raw & 2) return Entry::leaf(PhysAddr(raw & ~u64{0xFFF}), Attrs{RW, MemType::WriteBack});
    return Entry::table(PhysAddr(raw & ~u64{0xFFF}));
  }
  /// Neutral entry -> raw descriptor. Precondition: pa aligned for the level,
  /// attributes accepted by can_express(). The invalid entry encodes as 0.
  /// A contiguous leaf is given its own output address, not its run's.
  [[nodiscard]] constexpr u64 encode(const Entry& e, unsigned /*level*/) const {
    if (!e.valid()) return 0;
    return e.pa.value() | 1 | (e.is_leaf() ? 2 : 0);
  }
  /// Optional. How consecutive leaves at `level` (with the contiguous hint
  /// or without) differ in their raw values, and which raw bits hold the
  /// output address and the kept bits (see LeafStep); formats without this
  /// member, or returning linear = false, are encoded and decoded leaf by leaf.
  [[nodiscard]] constexpr LeafStep leaf_step(unsigned level, bool /*contiguous*/) const {
    const unsigned shift = 12 + 9 * level;
    return LeafStep{true, u64{1} << shift, ((u64{1} << 40) - 1) & ~((u64{1} << shift) - 1), 0};
  }
  /// Optional. The next table's address when `raw` at `level` is a valid
  /// table entry, else kNotTable: decode()'s answer without decoding a
  /// leaf's attributes. Single-page updates and batch read-ahead descend
  /// through it; formats without it are descended with decode().
  [[nodiscard]] constexpr u64 table_address(u64 raw, unsigned /*level*/) const {
    return (raw & 3) == 1 ? raw & ~u64{0xFFF} : kNotTable;
  }
  /// Cheap validity test of a raw entry at `level`, used by the engine's scans.
  [[nodiscard]] constexpr bool is_valid_raw(u64 raw, unsigned /*level*/) const {
    return (raw & 1) != 0;
  }
  /// The architecture's rule for replacing a valid entry by another valid one:
  /// true if the old entry must be made invalid and its translations
  /// invalidated before the new one is written (Arm break-before-make).
  /// `equivalent` says that every address translates identically before and
  /// after (a split or merge), which some architectures allow in one write.
  [[nodiscard]] constexpr bool needs_break(const Entry& old_entry, const Entry& new_entry,
                                           bool equivalent) const {
    return old_entry.valid() && new_entry.valid() && !equivalent;
  }
  /// The manual's name for a level, for messages and dumps.
  [[nodiscard]] constexpr const char* level_name(unsigned level) const {
    return level == 0 ? "L0" : "L1";
  }
};
static_assert(PagingFormat<ExampleFormat>);

}  // namespace ptkit
