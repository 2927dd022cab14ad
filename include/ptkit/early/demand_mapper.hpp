// The demand mapper (DESIGN.md §5): before real page tables exist, a page-fault
// handler maps a window of memory (typically all of physical memory at a
// direct-map offset) on demand, from a fixed pool of table pages. When the
// pool runs dry, every dynamic mapping of the window goes at once, the TLB is
// flushed whole, and mapping starts over. Memory is O(1): the pool and a few
// counters, no heap.
//
// Everything goes through the core's AddressSpace over the caller's root, so
// the tables the mapper builds obey the same architectural rules as any other
// update, and a reset is one unmap of the window: the engine frees the tables
// it empties back into the pool.
#pragma once

#include "ptkit/access.hpp"
#include "ptkit/alloc.hpp"
#include "ptkit/format.hpp"
#include "ptkit/options.hpp"
#include "ptkit/space.hpp"
#include "ptkit/status.hpp"
#include "ptkit/tlb.hpp"
#include "ptkit/writer.hpp"

namespace ptkit::early {

/// The virtual range the mapper serves and where it maps it: `va + k` maps to
/// `pa + k` for every 0 <= k < size. All three a multiple of the smallest page.
struct DemandWindow {
  VirtAddr va;
  u64 size = 0;
  PhysAddr pa;

  [[nodiscard]] constexpr bool contains(VirtAddr a) const {
    return a.value() - va.value() < size;  // one comparison; wraps below va
  }
};

/// What handle_fault() did with an address inside the window.
enum class FaultResult : u8 {
  Mapped,         // a new leaf now translates the address
  AlreadyMapped,  // the address was translated already (a spurious fault, or
                  // one another CPU served first): nothing changed
};

struct FaultOutcome {
  FaultResult result = FaultResult::Mapped;
  Mapping mapping;     // the leaf that translates the faulting address now
  bool reset = false;  // the pool ran dry and the window was reset first
};

/// Counters since creation.
template <unsigned MaxLevels>
struct DemandStats {
  u64 faults = 0;              // handle_fault() calls
  u64 mapped = 0;              // faults that mapped a new leaf
  u64 already_mapped = 0;      // faults on an address that was translated already
  u64 declined = 0;            // faults outside the window
  u64 resets = 0;              // times every dynamic mapping was dropped
  u64 leaves[MaxLevels] = {};  // leaves mapped, by level (bytes: leaf_size(level))
  /// Tables a reset unlinked that were not the pool's: the precondition that
  /// every static table under the window also maps something outside it was
  /// broken. They are not put into the pool (that would corrupt it).
  u64 foreign_tables_unlinked = 0;
};

/// StaticPoolAllocator<N> that refuses pages it did not hand out. The engine
/// frees every table an unmap empties, and cannot tell the caller's static
/// tables from the pool's; a foreign page must not reach the pool's bitmap.
template <unsigned N>
class DemandPool {
 public:
  constexpr DemandPool(PhysAddr base, u64 page_size)
      : pool_(base, page_size), base_(base), page_size_(page_size) {}

  bool reserve(u64 n) { return pool_.reserve(n); }
  PhysAddr take() { return pool_.take(); }
  void release(PhysAddr pa) {
    if (contains(pa))
      pool_.release(pa);
    else
      ++foreign_;
  }
  void give_back_unused() { pool_.give_back_unused(); }

  [[nodiscard]] bool contains(PhysAddr pa) const {
    return pa >= base_ && (pa - base_) / page_size_ < N;
  }
  [[nodiscard]] u64 pages_in_use() const { return pool_.pages_in_use(); }
  [[nodiscard]] u64 foreign_releases() const { return foreign_; }

 private:
  StaticPoolAllocator<N> pool_;
  PhysAddr base_;
  u64 page_size_;
  u64 foreign_ = 0;
};

/// Serves page faults in a window by mapping the faulting address with the
/// largest leaf possible, from a pool of `PoolPages` table pages.
///
/// Preconditions (the caller's, not checked unless said so):
///  - the root and every static table reachable from it, and the `PoolPages`
///    pages at `pool_base`, are reachable through `access` without touching
///    the window: a fault taken while reaching a table would recurse, and a
///    reset would unmap the very page being written;
///  - the window overlaps no static mapping (checked by create(): a leaf
///    inside the window is AlreadyMapped), and every static table whose span
///    meets the window also maps something outside it (otherwise a reset
///    empties it and the engine unlinks it; counted in
///    stats().foreign_tables_unlinked, never put into the pool);
///  - nothing else edits the tables under the window while the mapper lives;
///  - handle_fault() and reset() are not re-entered: callers on several CPUs
///    hold one lock around them.
///
/// TLB: a new leaf replaces an invalid entry, which needs no invalidation on
/// x86-64 or Arm (the sink's publish() orders the write before the return from
/// the fault). A RISC-V hart without Svvptc may keep the invalid entry cached;
/// a caller there does a local sfence.vma for the address before returning,
/// also on AlreadyMapped, or the fault repeats.
template <PagingFormat Format, TableAccess Access, EntryWriter Writer = PlainWriter,
          TlbSink Sink = NullSink, unsigned PoolPages = 8>
class DemandMapper {
  static_assert(PoolPages >= 1,
                "DemandMapper: the pool needs at least one table page (create() checks the "
                "format's actual need)");

 public:
  using Pool = DemandPool<PoolPages>;
  using Space = AddressSpace<Format, Access, Pool, Writer, Sink>;
  using Stats = DemandStats<Format::kMaxLevels>;

  /// Adopts the caller's tables at `root` (static mappings such as the image
  /// live there and stay) and the pool of `PoolPages` table pages at
  /// `pool_base`, and serves `window` with `attrs`.
  ///
  /// Errors (op Create, subject naming the window or the pool): BadSize (size
  /// zero or wrapping), Unaligned (va, size or pa not a multiple of the
  /// smallest page), NonCanonical (the window leaves the format's space or
  /// crosses halves), PhysTooLarge, AttrUnsupported, AlreadyMapped (a static
  /// leaf inside the window, at `va`), BadConfig (the pool is smaller than
  /// one fault can need: `needed` says how many tables), Unaligned with
  /// subject "demand mapper pool" (`pool_base` not a multiple of a table).
  static Result<DemandMapper> create(Format format, Access access, PhysAddr root,
                                     PhysAddr pool_base, const DemandWindow& window, Attrs attrs,
                                     Writer writer = {}, Sink sink = {}) {
    const u64 page = u64{1} << format.page_shift();
    if (!pool_base.is_aligned(page)) {
      Failure f{Op::Create, Error::Unaligned, window.va, pool_base};
      f.subject = "demand mapper pool";
      f.alignment = page;
      return f;
    }
    DemandMapper mapper(Space(format, access, Pool(pool_base, page), writer, sink, root), window,
                        attrs);
    Space& s = mapper.space_;

    // A dry run of mapping the whole window checks everything about it at
    // once, with the engine's own rules: size, alignment, canonical form,
    // output size, attributes, and that no leaf lies inside it.
    MapOptions whole;
    whole.contiguous_hint = false;
    const Result<OpStats> planned = s.plan_map(window.va, window.pa, window.size, attrs, whole);
    if (!planned) {
      Failure f = planned.failure();
      f.op = Op::Create;
      f.subject = "demand mapper window";
      return f;
    }

    const u64 needed = mapper.worst_case_tables();
    if (needed > PoolPages) {
      Failure f{Op::Create, Error::BadConfig, window.va, window.pa};
      f.needed = needed;
      f.subject = "demand mapper pool (PoolPages)";
      return f;
    }
    return mapper;
  }

  DemandMapper(DemandMapper&&) noexcept = default;

  /// The fault handler's entry. Maps `va` (inside the window) with the
  /// largest leaf that contains it, lies inside the window, keeps pa - va
  /// aligned and that the format and CPU allow. If the pool cannot supply the
  /// tables, resets (see reset()) and tries once more.
  ///
  /// Errors: NotMapped (op Fault, level kNoLevel, subject "outside the demand
  /// window"): `va` lies outside the window; nothing changed, the caller
  /// reports the fault as its own. Other errors only when a precondition is
  /// broken (op Fault, the engine's error, address and level).
  Result<FaultOutcome> handle_fault(VirtAddr va) {
    ++stats_.faults;
    if (!window_.contains(va)) {
      ++stats_.declined;
      return Failure{Op::Fault, Error::NotMapped, va, {}, kNoLevel, 0, "outside the demand window"};
    }
    if (Result<Mapping> present = space_.query(va)) {
      ++stats_.already_mapped;
      return FaultOutcome{FaultResult::AlreadyMapped, present.value(), false};
    }

    const unsigned level = leaf_level(va.value());
    const u64 size = space_.leaf_size(level);
    const VirtAddr base(align_down(va.value(), size));
    const PhysAddr pa = window_.pa + (base - window_.va);
    MapOptions opts;
    opts.leaf_sizes = size;
    opts.contiguous_hint = false;  // one leaf: never a whole run

    bool did_reset = false;
    Result<Outcome> done = space_.map(base, pa, size, attrs_, opts);
    if (!done && done.error() == Error::OutOfTables) {
      const Status cleared = reset();
      if (!cleared) return as_fault(cleared.failure());
      did_reset = true;
      done = space_.map(base, pa, size, attrs_, opts);
    }
    if (!done) return as_fault(done.failure());

    ++stats_.mapped;
    ++stats_.leaves[level];
    // Read back rather than rebuilt, so the caller sees the format's kept bits.
    Result<Mapping> now = space_.query(va);
    PTKIT_INVARIANT(now.ok());  // the map just succeeded
    return FaultOutcome{FaultResult::Mapped, now.value(), did_reset};
  }

  /// Drops every dynamic mapping: unmaps the whole window (the engine frees
  /// the tables that become empty, which are exactly the pool's), then does
  /// one full TLB invalidation (every dynamic translation went, so nothing
  /// finer is worth computing), and only then returns the tables to the pool.
  /// Static mappings outside the window are untouched.
  ///
  /// The reset issues exactly one invalidate_all() and no invalidation by
  /// address when PoolPages <= FlushToken::kMaxPendingFrees; with a larger
  /// pool the engine may flush early to free the first 32 tables.
  /// Errors: none when the preconditions hold (op Fault, the engine's error).
  Status reset() {
    UnmapOptions opts;
    opts.tlb = TlbMode::Defer;  // the mapper does the flush itself, whole
    Result<Outcome> cleared = space_.unmap(window_.va, window_.size, opts);
    if (!cleared) return as_fault(cleared.failure());
    FlushToken owed(static_cast<FlushToken&&>(cleared.value().token));
    // The engine has published the invalid entries; now no CPU may keep a
    // translation or a cached walk through the freed tables.
    space_.sink().invalidate_all(attrs_.global || owed.batch().global());
    space_.sink().complete();
    const u64 foreign_before = space_.allocator().foreign_releases();
    space_.release_after_own_flush(static_cast<FlushToken&&>(owed));
    stats_.foreign_tables_unlinked += space_.allocator().foreign_releases() - foreign_before;
    ++stats_.resets;
    return Ok{};
  }

  [[nodiscard]] const Stats& stats() const { return stats_; }
  [[nodiscard]] const DemandWindow& window() const { return window_; }
  [[nodiscard]] Attrs attrs() const { return attrs_; }
  /// Table pages of the pool linked into the tables now.
  [[nodiscard]] u64 pool_in_use() const { return pool().pages_in_use(); }
  [[nodiscard]] const Pool& pool() const {
    return const_cast<Space&>(space_).allocator();  // NOLINT: read-only use
  }
  /// The address space over the caller's root, for queries and walks.
  [[nodiscard]] const Space& space() const { return space_; }
  Sink& sink() { return space_.sink(); }
  Writer& writer() { return space_.writer(); }
  /// Bytes a leaf at `level` maps (to read stats().leaves).
  [[nodiscard]] u64 leaf_size(unsigned level) const { return space_.leaf_size(level); }

  /// Tables one fault can need when the pool is empty, assuming no static
  /// table on its path: one per level from below the root down to the level
  /// of the smallest leaf the window ever gets.
  [[nodiscard]] u64 worst_case_tables() const {
    const unsigned top = space_.format().levels() - 1;
    return top - smallest_leaf_level();
  }

 private:
  DemandMapper(Space&& space, const DemandWindow& window, Attrs attrs)
      : space_(static_cast<Space&&>(space)), window_(window), attrs_(attrs) {}

  /// The largest level whose leaf, aligned around `va`, lies inside the
  /// window, keeps pa - va aligned and is allowed by the format and CPU.
  [[nodiscard]] unsigned leaf_level(u64 va) const {
    const Format& f = space_.format();
    const u64 delta = window_.pa.value() - window_.va.value();
    const u64 first = window_.va.value();
    const u64 last = first + (window_.size - 1);
    for (unsigned level = f.levels(); level-- > 1;) {
      const u64 size = space_.leaf_size(level);
      if (!f.leaf_allowed(level) || !is_aligned(delta, size)) continue;
      const u64 base = align_down(va, size);
      if (base >= first && base + (size - 1) <= last) return level;
    }
    return 0;  // the window is page-aligned: a page always fits
  }

  /// The smallest level leaf_level() returns for any address of the window:
  /// the largest level whose leaves tile the whole window. Leaf permission
  /// and alignment both only shrink with the level, so a level that does not
  /// tile the window leaves some address with a smaller leaf.
  [[nodiscard]] unsigned smallest_leaf_level() const {
    const Format& f = space_.format();
    const u64 delta = window_.pa.value() - window_.va.value();
    for (unsigned level = f.levels(); level-- > 1;) {
      const u64 size = space_.leaf_size(level);
      if (f.leaf_allowed(level) && is_aligned(delta, size) && window_.va.is_aligned(size) &&
          is_aligned(window_.size, size))
        return level;
    }
    return 0;
  }

  static Failure as_fault(Failure f) {
    f.op = Op::Fault;
    if (f.subject == nullptr) f.subject = "demand mapper";
    return f;
  }

  Space space_;
  DemandWindow window_;
  Attrs attrs_;
  Stats stats_{};
};

}  // namespace ptkit::early
