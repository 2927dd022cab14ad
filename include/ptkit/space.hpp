// AddressSpace: map, unmap, protect, query, walk and plan over one set of page
// tables, generic over the paging format and the policies.
//
// Every update runs twice over the same code: a plan pass that reads the
// tables, decides everything, detects every error and counts the tables the
// update needs; then, once those tables are reserved, an apply pass that
// cannot fail. A failed update therefore leaves the tables bit-for-bit as they
// were and holds no pages.
//
// The engine changes a page size only through equivalent rewrites (a split of
// a superpage into a table of identical translations, or the reverse merge),
// and asks the format whether a valid entry must be broken before it is
// replaced. That keeps x86's "no size change together with frame or
// attributes" rule and Arm's break-before-make by construction.
//
// Runs of the contiguous hint (Arm Contiguous bit, RISC-V Svnapot) are kept
// uniform the same way: the hint is set only on runs that a map writes whole
// into invalid entries; an update that rewrites a whole run alike keeps it,
// breaking the whole run first when the format says so; any other change
// inside a run first rewrites the run without the hint.
#pragma once

#include "ptkit/access.hpp"
#include "ptkit/alloc.hpp"
#include "ptkit/format.hpp"
#include "ptkit/options.hpp"
#include "ptkit/status.hpp"
#include "ptkit/tlb.hpp"
#include "ptkit/writer.hpp"

namespace ptkit {

template <PagingFormat Format, TableAccess Access, TableAllocator Alloc,
          EntryWriter Writer = PlainWriter, TlbSink Sink = NullSink>
class AddressSpace {
 public:
  /// Above this many invalidations by address, an update flushes the whole
  /// TLB instead (Linux's tlb_single_page_flush_ceiling is 33 for the same
  /// trade-off: beyond that, refilling is cheaper than invalidating).
  static constexpr u64 kDefaultFullFlushThreshold = 32;
  /// Longest run of the contiguous hint any format has (Arm 16K granule: 128).
  static constexpr unsigned kMaxRunEntries = 128;

  /// Adopts existing tables rooted at `root`.
  AddressSpace(Format format, Access access, Alloc alloc, Writer writer, Sink sink, PhysAddr root)
      : format_(format), access_(access), alloc_(alloc), writer_(writer), sink_(sink), root_(root) {
    unsigned shift = format_.page_shift();
    for (unsigned level = 0; level < format_.levels(); ++level) {
      span_shift_[level] = shift;
      shift += format_.index_bits(level);
      run_entries_[level] = format_.contiguous_entries(level);
      PTKIT_INVARIANT(run_entries_[level] <= kMaxRunEntries);
    }
    space_shift_ = shift;
  }

  /// Allocates and clears a root table. Fails with OutOfTables.
  static Result<AddressSpace> create(Format format, Access access, Alloc alloc, Writer writer = {},
                                     Sink sink = {}) {
    if (!alloc.reserve(1)) return Failure{Op::Create, Error::OutOfTables, {}, {}, kNoLevel, 1};
    const PhysAddr root = alloc.take();
    AddressSpace space(format, access, alloc, writer, sink, root);
    u64* table = space.access_.table(root);
    for (u64 i = 0; i < space.entries(format.levels() - 1); ++i) table[i] = 0;
    space.access_.done(table);
    space.set_count(root, 0);
    return space;
  }

  AddressSpace(AddressSpace&&) noexcept = default;

  [[nodiscard]] PhysAddr root() const { return root_; }
  [[nodiscard]] const Format& format() const { return format_; }
  Alloc& allocator() { return alloc_; }
  Writer& writer() { return writer_; }
  Sink& sink() { return sink_; }
  Access& access() { return access_; }
  void set_full_flush_threshold(u64 invalidations) { full_flush_threshold_ = invalidations; }

  /// Bytes mapped by one entry at `level`.
  [[nodiscard]] u64 leaf_size(unsigned level) const { return u64{1} << span_shift_[level]; }
  /// Entries in a table at `level` (the root may have fewer than a full page).
  [[nodiscard]] u64 entries(unsigned level) const { return u64{1} << format_.index_bits(level); }

  // ---- Updates -------------------------------------------------------------

  /// Maps [va, va+size) to [pa, pa+size) with the largest leaves that the
  /// alignment of va and pa, the format, the CPU and `opts.leaf_sizes` allow.
  /// Errors: Unaligned, BadSize, NonCanonical, PhysTooLarge,
  /// LeafSizeUnsupported, AttrUnsupported, AlreadyMapped (existing=Error),
  /// SplitForbidden, LiveRangeBroken, OutOfTables. On error nothing changed.
  Result<Outcome> map(VirtAddr va, PhysAddr pa, u64 size, Attrs attrs,
                      const MapOptions& opts = {}) {
    Request r = map_request(va, pa, size, attrs, opts);
    return run(r);
  }

  /// Removes the translations of [va, va+size), splitting superpages that
  /// straddle the ends and freeing tables that become empty once the TLB work
  /// that makes them unreachable is done.
  Result<Outcome> unmap(VirtAddr va, u64 size, const UnmapOptions& opts = {}) {
    Request r = unmap_request(va, size, opts);
    return run(r);
  }

  /// Applies `change` to every translation in [va, va+size), splitting
  /// superpages only where they straddle the range's ends.
  Result<Outcome> protect(VirtAddr va, u64 size, AttrChange change,
                          const ProtectOptions& opts = {}) {
    Request r = protect_request(va, size, change, opts);
    return run(r);
  }

  // ---- Batches of scattered updates ------------------------------------------

  /// Maps each item's [va, va+size) to [pa, pa+size), in order, each exactly
  /// as map() would (its own validation, tables, writes and TLB work). Stops
  /// at the first item that fails; that one changes nothing. With
  /// TlbMode::Defer the items' TLB work and table frees gather in the
  /// outcome's one token (one bounding range: flushing it after scattered
  /// pages is typically one full flush); should the tables to free outgrow a
  /// token, the work gathered so far is done at once, as within one update.
  /// What a batch adds is reading ahead: while the engine works on one item,
  /// the entries later items will read are brought into the cache, so the
  /// cache misses of scattered updates overlap instead of adding up. With a
  /// LookaheadAllocator that includes the entries they will write in the
  /// fresh tables they take: a scattered map's first write to a fresh page
  /// was most of its time. The checks that do not depend on the items'
  /// addresses (size, attributes, options) are done once.
  BatchOutcome map_each(const PageMap* items, u64 count, u64 size, Attrs attrs,
                        const MapOptions& opts = {}) {
    const auto va_of = [&](u64 k) { return items[k].va; };
    // What does not depend on an item's addresses is validated once: the
    // request for address 0 is every item's, but for its range.
    Request shape = map_request(VirtAddr(0), PhysAddr(0), size, attrs, opts);
    if (shape.invalid || has_table_guard())
      return for_each_item(count, opts.tlb, true, va_of,
                           [&](u64 k) { return map(items[k].va, items[k].pa, size, attrs, opts); });
    set_leaf_template(shape, size);
    return for_each_item(count, opts.tlb, true, va_of, [&](u64 k) {
      const u64 va = items[k].va.value();
      const u64 pa = items[k].pa.value();
      if (!address_checks_pass(va, pa, size))
        return map(items[k].va, items[k].pa, size, attrs, opts);
      shape.lo = va;
      shape.hi = va + (size - 1);
      shape.delta = pa - va;
      return run(shape);
    });
  }

  /// Unmaps [va, va+size) for each of `vas`, in order, as map_each() maps:
  /// each as its own unmap(); stops at the first failure.
  BatchOutcome unmap_each(const VirtAddr* vas, u64 count, u64 size, const UnmapOptions& opts = {}) {
    return for_each_item(
        count, opts.tlb, false, [&](u64 k) { return vas[k]; },
        [&](u64 k) { return unmap(vas[k], size, opts); });
  }

  /// Dry runs: what the update would need and do, without changing anything.
  Result<OpStats> plan_map(VirtAddr va, PhysAddr pa, u64 size, Attrs attrs,
                           const MapOptions& opts = {}) {
    Request r = map_request(va, pa, size, attrs, opts);
    return plan(r);
  }
  Result<OpStats> plan_unmap(VirtAddr va, u64 size, const UnmapOptions& opts = {}) {
    Request r = unmap_request(va, size, opts);
    return plan(r);
  }
  Result<OpStats> plan_protect(VirtAddr va, u64 size, AttrChange change,
                               const ProtectOptions& opts = {}) {
    Request r = protect_request(va, size, change, opts);
    return plan(r);
  }

  /// Performs the TLB work a deferred update owes and frees its tables.
  void flush(FlushToken&& token) {
    FlushToken owed(static_cast<FlushToken&&>(token));
    if (!owed.batch().empty()) {
      issue_invalidation(owed.batch(), nullptr);
      sink_.complete();
    }
    owed.clear_batch();
    release_tables(owed);
  }

  /// The caller has done the TLB work itself (e.g. a full flush by reloading
  /// the root): only free the tables the token holds.
  void release_after_own_flush(FlushToken&& token) {
    FlushToken owed(static_cast<FlushToken&&>(token));
    owed.clear_batch();
    release_tables(owed);
  }

  // ---- Reading -------------------------------------------------------------

  /// The leaf translating `va`, or NotMapped naming the level where the walk
  /// found an invalid entry.
  [[nodiscard]] Result<Mapping> query(VirtAddr va) const {
    if (!format_.is_canonical(va)) return Failure{Op::Query, Error::NonCanonical, va, {}, kNoLevel};
    PhysAddr table = root_;
    for (unsigned level = format_.levels(); level-- > 0;) {
      const u64 raw = read_real(table, index_of(va.value(), level));
      const u64 base = align_down(va.value(), leaf_size(level));
      const Entry e = entry_at(raw, level, base);
      if (!e.valid()) return Failure{Op::Query, Error::NotMapped, va, {}, int(level)};
      if (e.is_leaf()) return to_mapping(base, level, e);
      table = e.pa;
    }
    invariant_failed();  // level 0 entries are always leaves
  }

  /// Calls `visit(const Mapping&)` for every leaf that intersects [va,
  /// va+size), in address order. Visiting stops early when `visit` returns
  /// false. Errors: BadSize, NonCanonical.
  template <class Visitor>
  Status walk(VirtAddr va, u64 size, Visitor&& visit) const {
    const u64 lo = va.value();
    const u64 hi = lo + (size - 1);
    if (size == 0 || hi < lo) return Failure{Op::Walk, Error::BadSize, va, {}, kNoLevel};
    if (!in_one_half(lo, hi)) return Failure{Op::Walk, Error::NonCanonical, va, {}, kNoLevel};
    walk_table(format_.levels() - 1, root_, lo, hi, visit);
    return Ok{};
  }

  /// Calls `visit(const MappedRange&)` for each maximal range of leaves that
  /// intersect [va, va+size) and continue one another (the next virtual and
  /// output address, the same attributes), in address order: what coalescing
  /// walk()'s leaves gives, without a call per leaf. Where the format
  /// describes its raw leaves (LeafStep), a leaf whose raw value is the
  /// previous one plus the step joins the range undecoded. Ranges start and
  /// end on leaf boundaries, which may lie outside [va, va+size). Visiting
  /// stops early when `visit` returns false. Errors: BadSize, NonCanonical.
  template <class Visitor>
  Status walk_ranges(VirtAddr va, u64 size, Visitor&& visit) const {
    const u64 lo = va.value();
    const u64 hi = lo + (size - 1);
    if (size == 0 || hi < lo) return Failure{Op::Walk, Error::BadSize, va, {}, kNoLevel};
    if (!in_one_half(lo, hi)) return Failure{Op::Walk, Error::NonCanonical, va, {}, kNoLevel};
    RangeCursor open;
    if (ranges_in(format_.levels() - 1, root_, lo, hi, open, visit) && open.size != 0)
      visit(static_cast<const MappedRange&>(open));
    return Ok{};
  }

 private:
  enum class Pass : u8 { Plan, Apply };

  struct Request {
    Op op = Op::Map;
    u64 lo = 0, hi = 0;  // inclusive virtual range
    u64 delta = 0;       // map: pa - va, modulo 2^64
    Attrs attrs{};
    AttrChange change{};
    LeafSizes leaf_sizes = kAnyLeafSize;
    OnExisting existing = OnExisting::Error;
    OnHole holes = OnHole::Skip;
    bool allow_split = false;
    bool merge = false;
    bool contiguous_hint = false;
    LiveRanges live{};
    TlbMode tlb = TlbMode::FlushNow;
    bool invalid = false;  // validation failed: `failure` says why
    Failure failure{};
    // A batch's leaves at one level, encoded once (see encode_leaf()).
    unsigned template_level = kNoTemplate;
    u64 template_raw = 0;    // the leaf mapping pa 0
    u64 template_delta = 0;  // raw difference between consecutive leaves
  };
  static constexpr unsigned kNoTemplate = ~0u;

  /// A table as the passes see it: a real table, or (plan pass only) the
  /// table a split would create, whose entries are synthesised from the leaf.
  struct View {
    PhysAddr pa;
    u64* ptr = nullptr;
    bool synthetic = false;
    Entry split_of{};  // synthetic: the leaf one level up being split
  };

  /// The run of the contiguous hint an update is working through in one
  /// table (entries are visited in order, so one at a time suffices).
  struct Run {
    u64 lo = 1, hi = 0;  // its virtual range; empty when there is none
    bool fresh = false;  // invalid entries mapped whole: set the hint
    bool plain = false;  // hint removed: its entries are plain leaves now
    bool done = false;   // rewritten whole as one unit: skip its entries
    [[nodiscard]] bool contains(u64 va) const { return lo <= va && va <= hi; }
  };

  struct Ctx {
    // A constructor, not aggregate initialization, which would clear the
    // whole context (the token's free slots too) on every update.
    Ctx(const Request& r, Pass p) : req(r), pass(p) {}
    const Request& req;
    Pass pass;
    OpStats stats{};
    FlushToken token{};
    Failure failure{};
    // Protect's runs of leaves (protect_leaves()), counted in the order both
    // passes meet them; the plan finds how many of the first ones a single
    // group of alike leaves fills whole, and the apply pass rewrites those
    // without testing each entry again (see protect_leaves()).
    u64 stretches = 0;
    u64 uniform_stretches = 0;
    bool diverged = false;  // plan: a stretch was not uniform, or a leaf took the general path
    [[nodiscard]] bool apply() const { return pass == Pass::Apply; }
  };

  // ---- Requests and validation ----------------------------------------------

  Request map_request(VirtAddr va, PhysAddr pa, u64 size, Attrs attrs, const MapOptions& o) const {
    Request r;
    r.op = Op::Map;
    r.attrs = attrs;
    r.leaf_sizes = o.leaf_sizes;
    r.existing = o.existing;
    r.allow_split = o.allow_split;
    r.merge = o.merge;
    r.contiguous_hint = o.contiguous_hint;
    r.live = o.live;
    r.tlb = o.tlb;
    r.delta = pa.value() - va.value();
    // Every return names `r`, so it is built in place (the request is large:
    // copying it on return was 5% of a batched single-page map's instructions).
    validate_range(r, va, size, pa);
    if (r.invalid) return r;
    const u64 pa_last = pa.value() + (size - 1);
    if (pa_last < pa.value() || (format_.phys_bits() < 64 && (pa_last >> format_.phys_bits()) != 0))
      reject(r, Error::PhysTooLarge, va, pa);
    else if (!format_.can_express(attrs))
      reject(r, Error::AttrUnsupported, va, pa);
    else if (writable_table(pa, size, attrs))
      reject(r, Error::WritableTable, va, pa);
    return r;
  }

  /// Where the leaves of `size` encode linearly (LeafStep), encodes the one
  /// for pa 0 into `r`: the batch's items then add their address to it.
  void set_leaf_template(Request& r, u64 size) const {
    for (unsigned level = 0; level < format_.levels(); ++level) {
      if (leaf_size(level) != size || !leaf_ok(r, level)) continue;
      const LeafStep step = leaf_step(level, false);
      if (!step.linear) return;
      r.template_level = level;
      r.template_raw = format_.encode(Entry::leaf(PhysAddr(0), r.attrs, 0, false), level);
      r.template_delta = step.delta;
    }
  }

  /// The leaf at `level` mapping `pa` with the request's attributes: from
  /// the batch's template where it has one for this level (the leaf for
  /// k leaves past pa 0 is the template + k * delta, see LeafStep).
  [[nodiscard]] u64 encode_leaf(const Request& r, unsigned level, u64 pa, bool hint) const {
    if (level == r.template_level && !hint)
      return r.template_raw + (pa >> span_shift_[level]) * r.template_delta;
    return format_.encode(Entry::leaf(PhysAddr(pa), r.attrs, 0, hint), level);
  }

  /// Whether map_request() accepts [va, va + size) -> [pa, pa + size) when it
  /// accepts the same request at address 0 (size, leaf sizes and attributes
  /// are valid): the addresses are aligned to the lowest bit of the size (a
  /// multiple of the smallest leaf allowed), canonical, and pa fits. When
  /// false, map_request() decides, and names the error.
  [[nodiscard]] bool address_checks_pass(u64 va, u64 pa, u64 size) const {
    const u64 last = size - 1;
    const u64 pa_last = pa + last;
    return is_aligned(va | pa, size & (~size + 1)) && in_one_half(va, va + last) && pa_last >= pa &&
           (format_.phys_bits() >= 64 || (pa_last >> format_.phys_bits()) == 0);
  }

  /// Whether the format knows its table pages and refuses writable mappings
  /// of them (writable_table() then depends on each pa).
  static constexpr bool has_table_guard() {
    return requires(const Format f, PhysAddr pa, u64 size) { f.holds_tables(pa, size); };
  }

  /// Whether a leaf with `attrs` over [pa, pa + size) would be a writable
  /// mapping of a page table, in a format that knows its table pages and
  /// forbids that (Xen PV: Xen refuses it, and a guest that could write its
  /// tables could bypass every rule).
  [[nodiscard]] bool writable_table(PhysAddr pa, u64 size, const Attrs& attrs) const {
    if constexpr (has_table_guard()) {
      return has(attrs.perm, Perm::W) && format_.holds_tables(pa, size);
    } else {
      return false;
    }
  }

  Request unmap_request(VirtAddr va, u64 size, const UnmapOptions& o) const {
    Request r;
    r.op = Op::Unmap;
    r.holes = o.holes;
    r.allow_split = o.allow_split;
    r.live = o.live;
    r.tlb = o.tlb;
    validate_range(r, va, size, PhysAddr(va.value()));
    if (!r.invalid && r.live.intersects(r.lo, r.hi)) reject(r, Error::LiveRangeBroken, va, {});
    return r;
  }

  Request protect_request(VirtAddr va, u64 size, AttrChange change, const ProtectOptions& o) const {
    Request r;
    r.op = Op::Protect;
    r.change = change;
    r.holes = o.holes;
    r.allow_split = o.allow_split;
    r.merge = o.merge;
    r.leaf_sizes = o.leaf_sizes;
    r.live = o.live;
    r.tlb = o.tlb;
    validate_range(r, va, size, PhysAddr(va.value()));
    return r;
  }

  void reject(Request& r, Error e, VirtAddr va, PhysAddr pa) const {
    r.invalid = true;
    r.failure = Failure{r.op, e, va, pa, kNoLevel};
  }

  /// Checks size, canonical form, leaf sizes and alignment. `pa` must be
  /// aligned like `va` (unmap/protect pass va itself).
  void validate_range(Request& r, VirtAddr va, u64 size, PhysAddr pa) const {
    r.lo = va.value();
    r.hi = r.lo + (size - 1);
    if (size == 0 || r.hi < r.lo) {
      reject(r, Error::BadSize, va, pa);
      return;
    }
    if (!in_one_half(r.lo, r.hi)) {
      reject(r, Error::NonCanonical, va, pa);
      return;
    }
    u64 smallest = 0;
    if (r.leaf_sizes == kAnyLeafSize) {
      smallest = leaf_size(0);
    } else {
      LeafSizes unmatched = r.leaf_sizes;
      for (unsigned level = format_.levels(); level-- > 0;) {
        if (!(r.leaf_sizes & leaf_size(level)) || !format_.leaf_allowed(level)) continue;
        unmatched &= ~leaf_size(level);
        smallest = leaf_size(level);
      }
      if (unmatched != 0 || smallest == 0) {
        reject(r, Error::LeafSizeUnsupported, va, pa);
        return;
      }
    }
    if (!is_aligned(r.lo, smallest) || !is_aligned(size, smallest) ||
        !is_aligned(pa.value(), smallest))
      reject(r, Error::Unaligned, va, pa);
  }

  /// Canonical at both ends and no wider than the root's reach, so the range
  /// cannot jump a non-canonical hole.
  [[nodiscard]] bool in_one_half(u64 lo, u64 hi) const {
    if (!format_.is_canonical(VirtAddr(lo)) || !format_.is_canonical(VirtAddr(hi))) return false;
    return space_shift_ >= 64 || ((hi - lo) >> space_shift_) == 0;
  }

  // ---- The two passes ---------------------------------------------------------

  Result<OpStats> plan(const Request& r) {
    if (r.invalid)
      return Failure{r.failure.op, r.failure.error, r.failure.va, r.failure.pa, r.failure.level};
    Ctx plan_ctx{r, Pass::Plan};
    if (!dispatch(plan_ctx)) return plan_ctx.failure;
    return plan_ctx.stats;
  }

  Result<Outcome> run(const Request& r) {
    if (r.invalid) return r.failure;
    if (engine_fast_paths()) {
      Ctx ctx{r, Pass::Apply};
      const Fast fast = r.op == Op::Map     ? map_one_leaf(ctx)
                        : r.op == Op::Unmap ? unmap_one_leaf(ctx)
                                            : Fast::Declined;
      if (fast == Fast::OutOfTables)
        return Failure{r.op, Error::OutOfTables, VirtAddr(r.lo),
                       {},   kNoLevel,           ctx.stats.tables_needed};
      if (fast == Fast::Done) {
        alloc_.give_back_unused();
        return finish(ctx);
      }
    }
    Ctx plan_ctx{r, Pass::Plan};
    if (!dispatch(plan_ctx)) return plan_ctx.failure;
    const u64 needed = plan_ctx.stats.tables_needed;
    if (needed != 0 && !alloc_.reserve(needed)) {
      return Failure{r.op, Error::OutOfTables, VirtAddr(r.lo), {}, kNoLevel, needed};
    }
    Ctx ctx{r, Pass::Apply};
    ctx.stats.tables_needed = needed;
    ctx.uniform_stretches = plan_ctx.uniform_stretches;
    // The plan pass has ruled out every failure and counted every table.
    PTKIT_INVARIANT(dispatch(ctx));
    PTKIT_INVARIANT(ctx.stats.tables_allocated <= needed);
    alloc_.give_back_unused();
    return finish(ctx);
  }

  bool dispatch(Ctx& c) {
    const View root = real(root_);
    const unsigned top = format_.levels() - 1;
    bool ok = false;
    switch (c.req.op) {
      case Op::Map: ok = map_in(c, top, root, c.req.lo, c.req.hi); break;
      case Op::Unmap: ok = unmap_in(c, top, root, c.req.lo, c.req.hi); break;
      case Op::Protect: ok = protect_in(c, top, root, c.req.lo, c.req.hi); break;
      default: break;
    }
    done(root);
    return ok;
  }

  /// Publishes the writes, then does (or defers) the TLB work and frees.
  Outcome finish(Ctx& c) {
    publish();
    TlbBatch& batch = c.token.batch();
    if (c.req.tlb == TlbMode::Defer) return Outcome{c.stats, static_cast<FlushToken&&>(c.token)};
    if (!batch.empty()) issue_invalidation(batch, &c.stats);
    sink_.complete();
    c.token.clear_batch();
    release_tables(c.token);
    return Outcome{c.stats, FlushToken{}};
  }

  /// Hands the token's table pages back to the allocator (their TLB work is
  /// done), saying which are all zero where the allocator can use that.
  void release_tables(FlushToken& token) {
    token.take_frees([&](PhysAddr pa, bool zeroed) {
      if constexpr (ZeroKeepingAllocator<Alloc>) {
        if (zeroed) {
          alloc_.release_zeroed(pa);
          return;
        }
      }
      alloc_.release(pa);
    });
  }

  /// Makes every entry write so far visible to the walker: a writer that
  /// batches (Xen PV's mmu_update) sends its batch first.
  void publish() {
    if constexpr (requires { writer_.flush(); }) writer_.flush();
    sink_.publish();
  }

  /// Entries about to be read directly may still sit in a batching writer's
  /// queue; such a writer sends them first.
  void before_read(const u64* first, u64 count) const {
    if constexpr (requires(Writer & w) { w.before_read(first, count); })
      // NOLINTNEXTLINE(cppcoreguidelines-pro-type-const-cast): reading is logically const
      const_cast<Writer&>(writer_).before_read(first, count);
  }

  void issue_invalidation(const TlbBatch& batch, OpStats* stats) {
    if (batch.invalidations() > full_flush_threshold_) {
      sink_.invalidate_all(batch.global());
      if (stats) ++stats->full_flushes;
    } else {
      sink_.invalidate(batch.range());
      if (stats) stats->invalidations += batch.invalidations();
    }
  }

  /// A table page (at `level`) became unreachable: free it after the TLB
  /// work. If the token cannot hold more, do that work now rather than grow
  /// without bound.
  void free_later(Ctx& c, PhysAddr table, unsigned level) {
    if (c.token.frees_full()) {
      publish();
      if (!c.token.batch().empty()) issue_invalidation(c.token.batch(), &c.stats);
      sink_.complete();
      c.token.clear_batch();
      release_tables(c.token);
    }
    c.token.add_free(table, known_zero(table, level));
    ++c.stats.tables_freed;
  }

  /// Whether the whole page of the table at `table` (at `level`) is 0: its
  /// count says no entry is valid, the engine (which wrote every entry: that
  /// is what keeping the count means) writes invalid entries as 0, and the
  /// table fills its page.
  bool known_zero(PhysAddr table, unsigned level) {
    const u16* n = known_count(table);
    if (n == nullptr || *n != 0 || format_.encode(Entry::invalid(), level) != 0 ||
        entries(level) * sizeof(u64) != u64{1} << format_.page_shift())
      return false;  // NOLINT(readability-simplify-boolean-expr): the tests' check follows
#ifdef PTKIT_CHECK_ENTRY_COUNTS  // tests: the page must be all zero indeed
    u64* t = access_.table(table);
    for (u64 k = 0; k < entries(level); ++k) PTKIT_INVARIANT(t[k] == 0);
    access_.done(t);
#endif
    return true;
  }

  // ---- Single-leaf fast paths -------------------------------------------------
  //
  // A map or unmap of exactly one leaf (a page fault, a scattered edit) is
  // dominated by the descent from the root, which the plan and apply passes
  // each do. For the simple cases the fast paths below descend once: reading
  // only, they decide whether the case is theirs and count the tables it
  // needs; then they reserve (OutOfTables before any write) and write through
  // the same helpers the apply pass uses, so the tables, stats, stores and TLB
  // work are the general path's (tests compare them on every format). Every
  // other case is declined before anything is written, and the general path
  // runs as if the fast path did not exist.

  enum class Fast : u8 { Declined, Done, OutOfTables };

  /// Whether the engine takes its fast paths. A format may opt out with
  /// `static constexpr bool kEngineFastPaths = false` (tests do, to compare
  /// the fast paths with the general path).
  static constexpr bool engine_fast_paths() {
    if constexpr (requires { Format::kEngineFastPaths; }) return Format::kEngineFastPaths;
    return true;
  }

  /// The tables a single-leaf fast path holds, from the root down.
  struct Path {
    Path() {}  // NOLINT(modernize-use-equals-default): leaves the views unset
    /// The view of the table at `level`; set for [bottom, top] only.
    View& view(unsigned level) { return slots[level].view; }
    unsigned top = 0;
    unsigned bottom = 0;  // the lowest level reached; view(top..bottom) are held

   private:
    // Unset until the descent reaches them: constructing every level's view
    // up front cleared 320 bytes per single-page update.
    union Slot {
      Slot() {}  // NOLINT(modernize-use-equals-default)
      View view;
    } slots[Format::kMaxLevels];
  };

  // ---- Reading ahead for batches -------------------------------------------

  /// How many items ahead a batch reads, per level below the one it reads:
  /// the entry at level 0 of item k + kReadAhead, at level 1 of item
  /// k + 2 * kReadAhead. Enough items to cover a miss to memory (hundreds of
  /// ns) with the work of the items in between.
  static constexpr u64 kReadAhead = 8;

  /// What a batch knows of the fresh tables its next items will take:
  /// for items k .. k + kReadAhead - 1, how many each will take (as their
  /// read-ahead found the path: the levels below its first invalid entry).
  struct FreshAhead {
    u8 tables[kReadAhead] = {};
    u64 pending = 0;  // their sum: pages taken before the next item's
  };

  /// `takes_tables`: the items are maps, which take the fresh tables below
  /// an invalid entry; with a LookaheadAllocator the batch reads ahead into
  /// those pages too.
  template <class VaOf, class Apply>
  BatchOutcome for_each_item(u64 count, TlbMode tlb, bool takes_tables, VaOf&& va_of,
                             Apply&& apply) {
    BatchOutcome out;
    FreshAhead fresh;
    // The first items' entries, the higher level first: a read-ahead at a
    // level walks through the entries the one above brought in.
    for (u64 k = 0; k < count && k < 2 * kReadAhead; ++k) prefetch_entry(va_of(k).value(), 1);
    for (u64 k = 0; k < count && k < kReadAhead; ++k)
      read_ahead_leaf(va_of(k).value(), k, takes_tables, fresh);
    for (u64 k = 0; k < count; ++k) {
      if (k + 2 * kReadAhead < count) prefetch_entry(va_of(k + 2 * kReadAhead).value(), 1);
      // Item k + kReadAhead's pages come after those of items k .. k + 7,
      // item k's included: it takes them below.
      const u8 taken_now = fresh.tables[k % kReadAhead];
      fresh.tables[k % kReadAhead] = 0;
      if (k + kReadAhead < count)
        read_ahead_leaf(va_of(k + kReadAhead).value(), k + kReadAhead, takes_tables, fresh);
      fresh.pending -= taken_now;
      auto r = apply(k);
      if (!r) {
        out.failed = true;
        out.failure = r.failure();
        return out;
      }
      if (tlb == TlbMode::Defer) {
        FlushToken& owed = r->token;
        if (!out.token.can_absorb(owed)) flush(static_cast<FlushToken&&>(out.token));
        out.token.absorb(static_cast<FlushToken&&>(owed));
      }
      ++out.done;
    }
    return out;
  }

  /// The read-ahead at level 0 for `item` of a batch. Where the path ends
  /// at an invalid entry and the items are maps, the item will take fresh
  /// tables: pages the allocator can name (LookaheadAllocator), after those
  /// of the items before it. The entries it will write there are brought
  /// toward the cache too (a guess: should an item take other pages, as
  /// two items under one fresh table do, only a prefetch is wasted).
  void read_ahead_leaf(u64 va, u64 item, bool takes_tables, FreshAhead& fresh) {
    const unsigned tables = prefetch_entry(va, 0);
    if constexpr (LookaheadAllocator<Alloc> && FixedTableAccess<Access>) {
      if (!takes_tables || tables == 0) return;
      // Taken top down: the j-th page becomes the table at level tables - 1 - j.
      for (unsigned j = 0; j < tables; ++j) {
        const PhysAddr page = alloc_.upcoming(fresh.pending + j);
        if (page == kNoPage) break;
        __builtin_prefetch(&access_.table(page)[index_of(va, tables - 1 - j)], 1);
      }
      fresh.tables[item % kReadAhead] = u8(tables);
      fresh.pending += tables;
    }
  }

  /// Brings toward the cache the entry at `level` that an update of `va`
  /// will read: follows the tables down to the one that holds it, through
  /// entries an earlier call brought in, and prefetches its line. A hint
  /// only: it stops at an entry that is not a table, and does nothing where
  /// reaching a table costs more than a computation (transient slots).
  /// Returns how many tables are missing below the path: the levels under
  /// an invalid entry it stopped at (0 when it reached `level`, stopped at a
  /// leaf or did nothing).
  unsigned prefetch_entry(u64 va, unsigned level) const {
    if constexpr (FixedTableAccess<Access>) {
      if (level + 1 >= format_.levels() || !format_.is_canonical(VirtAddr(va))) return 0;
      PhysAddr table = root_;
      for (unsigned l = format_.levels() - 1; l > level; --l) {
        const u64 raw = __atomic_load_n(&access_.table(table)[index_of(va, l)], __ATOMIC_RELAXED);
        const u64 next = next_table(raw, l);
        if (next == kNotTable) return format_.is_valid_raw(raw, l) ? 0 : l;
        table = PhysAddr(next);
      }
      __builtin_prefetch(&access_.table(table)[index_of(va, level)], 1);
    }
    return 0;
  }

  void release_path(Path& p) {
    for (unsigned level = p.bottom; level <= p.top; ++level) done(p.view(level));
  }

  /// map() of one leaf of a size leaf_ok() allows into an invalid entry below
  /// existing tables (or an invalid entry higher up, with the tables below it
  /// new): what the general path does there is write the leaf, or
  /// map_new_table(). Declines a valid entry on the way or at the leaf
  /// (AlreadyMapped, Replace, Keep, splits) and merges.
  Fast map_one_leaf(Ctx& c) {
    const Request& r = c.req;
    if (r.merge) return Fast::Declined;
    const u64 size = r.hi - r.lo + 1;
    unsigned leaf = format_.levels();
    for (unsigned level = 0; level < format_.levels(); ++level)
      if (leaf_size(level) == size) leaf = level;
    // The general path writes one leaf only where the range covers the entry
    // whole and leaf_ok() allows it (validation checked the alignment of the
    // smallest allowed leaf only).
    if (leaf == format_.levels() || !is_aligned(r.lo, size) || !leaf_ok(r, leaf))
      return Fast::Declined;
    Path p;
    p.top = p.bottom = format_.levels() - 1;
    p.view(p.top) = real(root_);
    Fast result = Fast::Declined;
    for (unsigned level = p.top;; --level) {
      const View& view = p.view(level);
      const unsigned i = index_of(r.lo, level);
      const u64 raw = read(view, level, i);
      if (level == leaf) {
        if (!format_.is_valid_raw(raw, level)) {
          Run run;
          const bool hint = fresh_run(r, view, level, r.lo, run);
          store(c, view, level, i, encode_leaf(r, level, r.lo + r.delta, hint));
          ++c.stats.leaves_written;
          result = Fast::Done;
        }
        break;
      }
      if (!format_.is_valid_raw(raw, level)) {
        const u64 needed = tables_for_fresh(r, level - 1, r.lo, r.hi);
        c.stats.tables_needed = needed;
        if (!alloc_.reserve(needed)) {
          result = Fast::OutOfTables;
          break;
        }
        map_new_table(c, level, view, i, r.lo, r.hi);
        PTKIT_INVARIANT(c.stats.tables_allocated <= needed);
        result = Fast::Done;
        break;
      }
      const u64 next = next_table(raw, level);
      if (next == kNotTable) break;
      p.view(level - 1) = real(PhysAddr(next));
      p.bottom = level - 1;
    }
    release_path(p);
    return result;
  }

  /// unmap() of exactly one plain leaf (no contiguous hint) below tables that
  /// the range does not cover whole: the general path invalidates the leaf,
  /// then frees each table on the way up that is now empty. Declines holes,
  /// partial leaves (splits) and runs of the hint.
  Fast unmap_one_leaf(Ctx& c) {
    const Request& r = c.req;
    Path p;
    p.top = p.bottom = format_.levels() - 1;
    p.view(p.top) = real(root_);
    unsigned index[Format::kMaxLevels] = {};
    PhysAddr table_pa[Format::kMaxLevels] = {};  // the table each level's entry points to
    Entry leaf{};
    unsigned level = p.top;
    for (;; --level) {
      const View& view = p.view(level);
      index[level] = index_of(r.lo, level);
      const u64 raw = read(view, level, index[level]);
      if (!format_.is_valid_raw(raw, level)) break;
      const u64 span = leaf_size(level);
      const u64 base = align_down(r.lo, span);
      const bool full = base == r.lo && r.hi - r.lo == span - 1;
      const Entry e = entry_at(raw, level, base);
      if (e.is_leaf()) {
        if (full && !e.contiguous) leaf = e;
        break;
      }
      // A table the range covers whole goes with everything below it: that
      // is the general path's.
      if (full || level == 0) break;
      table_pa[level] = e.pa;
      p.view(level - 1) = real(e.pa);
      p.bottom = level - 1;
    }
    if (!leaf.is_leaf()) {
      release_path(p);
      return Fast::Declined;
    }
    store(c, p.view(level), level, index[level], format_.encode(Entry::invalid(), level));
    owe(c, r.lo, r.hi, span_shift_[level], leaf.attrs.global, false);
    ++c.stats.leaves_written;
    // Up the path: a table that is empty now is unlinked and freed after the
    // TLB work. One that is not keeps its parent non-empty, so the walk ends.
    for (unsigned up = level + 1; up <= p.top; ++up) {
      const View& child = p.view(up - 1);
      if (!table_empty(child, up - 1, index[up - 1])) break;
      store(c, p.view(up), up, index[up], format_.encode(Entry::invalid(), up));
      owe(c, r.lo, r.hi, span_shift_[up - 1], false, true);
      done(child);
      p.bottom = up;
      free_later(c, table_pa[up], up - 1);
    }
    release_path(p);
    return Fast::Done;
  }

  // ---- The cursor: one walker for every operation ----------------------------

  [[nodiscard]] unsigned index_of(u64 va, unsigned level) const {
    return unsigned((va >> span_shift_[level]) & (entries(level) - 1));
  }

  /// Calls fn(index, entry_base, sub_lo, sub_hi, full) for each entry of a
  /// table at `level` that [lo, hi] touches, in order; stops when fn returns
  /// false. [sub_lo, sub_hi] is the part of the range inside the entry; `full`
  /// says the range covers the whole entry.
  template <class Fn>
  bool for_each_entry(unsigned level, u64 lo, u64 hi, Fn&& fn) const {
    const u64 span_mask = leaf_size(level) - 1;
    u64 cur = lo;
    for (;;) {
      const u64 base = cur & ~span_mask;
      const u64 end = base + span_mask;
      const u64 sub_hi = end < hi ? end : hi;
      if (!fn(index_of(cur, level), base, cur, sub_hi, cur == base && sub_hi == end)) return false;
      if (sub_hi == hi) return true;
      cur = sub_hi + 1;
    }
  }

  /// Like for_each_entry, but fn returns how many entries it has done from
  /// the one it was given (0: stop): more than one only when the range covers
  /// them all whole.
  template <class Fn>
  bool for_each_stretch(unsigned level, u64 lo, u64 hi, Fn&& fn) const {
    const u64 span_mask = leaf_size(level) - 1;
    u64 cur = lo;
    for (;;) {
      const u64 base = cur & ~span_mask;
      const u64 end = base + span_mask;
      const u64 sub_hi = end < hi ? end : hi;
      const u64 n = fn(index_of(cur, level), base, cur, sub_hi, cur == base && sub_hi == end);
      if (n == 0) return false;
      const u64 last = base + ((n << span_shift_[level]) - 1);
      if (last >= hi) return true;
      cur = last + 1;
    }
  }

  View real(PhysAddr pa) { return View{pa, access_.table(pa)}; }
  void done(const View& v) {
    if (v.synthetic) return;
    // A batching writer knows its queued entries by their address in this
    // view. Once the view is given back, that address may show another
    // table (a transient slot) and this table may come back at another one,
    // where the writer would not know it: such entries are sent first.
    before_read(v.ptr, (u64{1} << format_.page_shift()) / sizeof(u64));
    access_.done(v.ptr);
  }

  u64 read_real(PhysAddr table, unsigned index) const {
    // Access policies are logically const: reaching a table does not change it.
    auto& access = const_cast<Access&>(access_);  // NOLINT(cppcoreguidelines-pro-type-const-cast)
    u64* ptr = access.table(table);
    before_read(&ptr[index], 1);
    const u64 raw = __atomic_load_n(&ptr[index], __ATOMIC_RELAXED);
    access.done(ptr);
    return raw;
  }

  u64 read(const View& v, unsigned level, unsigned index) const {
    if (!v.synthetic) {
      before_read(&v.ptr[index], 1);
      return __atomic_load_n(&v.ptr[index], __ATOMIC_RELAXED);
    }
    return format_.encode(split_piece(v.split_of, level, index), level);
  }

  /// The table `raw` at `level` points to, or kNotTable: through the
  /// format's table_address() where it has one (it skips decoding a leaf's
  /// attributes), else decode().
  [[nodiscard]] u64 next_table(u64 raw, unsigned level) const {
    if constexpr (requires { format_.table_address(raw, level); }) {
      return format_.table_address(raw, level);
    } else {
      const Entry e = format_.decode(raw, level);
      return e.is_table() ? e.pa.value() : kNotTable;
    }
  }

  /// Decodes the entry mapping `base` at `level`. A leaf with the contiguous
  /// hint decodes to its run's output address; add the entry's offset.
  [[nodiscard]] Entry entry_at(u64 raw, unsigned level, u64 base) const {
    Entry e = format_.decode(raw, level);
    if (e.contiguous) e.pa = e.pa + (base & (run_size(level) - 1));
    return e;
  }

  /// Bytes one run of the contiguous hint maps at `level`.
  [[nodiscard]] u64 run_size(unsigned level) const {
    return leaf_size(level) * run_entries_[level];
  }

  /// Whether a map may write the run of entries around `base` at `level` with
  /// the contiguous hint: the format has one there, the run lies inside the
  /// request, leaves of this size are allowed and pa - va keeps the run
  /// aligned.
  [[nodiscard]] bool run_foldable(const Request& r, unsigned level, u64 base) const {
    if (run_entries_[level] <= 1 || !r.contiguous_hint) return false;
    const u64 lo = align_down(base, run_size(level));
    return lo >= r.lo && lo + (run_size(level) - 1) <= r.hi && leaf_ok(r, level) &&
           is_aligned(r.delta, run_size(level));
  }

  /// Entry `index` of the table that splitting `leaf` (one level above
  /// `level`) produces: the same attributes, a slice of the output range.
  Entry split_piece(const Entry& leaf, unsigned level, unsigned index) const {
    return Entry::leaf(leaf.pa + u64{index} * leaf_size(level), leaf.attrs, leaf.kept);
  }

  void store(Ctx& c, const View& v, unsigned level, unsigned index, u64 raw) {
    if (!c.apply()) return;
    if (u16* n = known_count(v.pa)) {
      const bool was = format_.is_valid_raw(read(v, level, index), level);
      *n = u16(*n + (format_.is_valid_raw(raw, level) ? 1 : 0) - (was ? 1 : 0));
    }
    writer_.store(&v.ptr[index], raw, WriteSite{v.pa, index, level});
  }

  // ---- Entry counts (EntryCountingAllocator) ----------------------------------

  /// The count of valid entries kept for the table at `pa`, if the allocator
  /// keeps one and the engine has set it (it built the table).
  u16* known_count(PhysAddr pa) {
    if constexpr (EntryCountingAllocator<Alloc>) {
      u16* n = alloc_.entry_count(pa);
      return n != nullptr && *n != kUnknownEntryCount ? n : nullptr;
    } else {
      return nullptr;
    }
  }
  /// A table the engine has just built at `pa` holds `valid` valid entries.
  void set_count(PhysAddr pa, u64 valid) {
    if constexpr (EntryCountingAllocator<Alloc>) {
      if (u16* n = alloc_.entry_count(pa)) *n = u16(valid);
    }
  }

  /// Records an invalidation the update owes (apply pass only).
  void owe(Ctx& c, u64 first, u64 last, unsigned stride_shift, bool global, bool tables) {
    if (c.apply()) c.token.batch().add(first, last, stride_shift, global, tables);
  }

  [[nodiscard]] bool leaf_ok(const Request& r, unsigned level) const {
    return format_.leaf_allowed(level) && (r.leaf_sizes & leaf_size(level)) != 0 &&
           is_aligned(r.delta, leaf_size(level));
  }

  /// Whether the request may write a leaf at some level below `level`.
  [[nodiscard]] bool leaf_below(const Request& r, unsigned level) const {
    for (unsigned l = 0; l < level; ++l)
      if (leaf_ok(r, l)) return true;
    return false;
  }

  bool fail(Ctx& c, Error e, u64 va, PhysAddr pa, unsigned level) {
    c.failure = Failure{c.req.op, e, VirtAddr(va), pa, int(level)};
    return false;
  }

  // ---- Map ---------------------------------------------------------------------

  bool map_in(Ctx& c, unsigned level, const View& view, u64 lo, u64 hi) {
    const Request& r = c.req;
    Run run;
    return for_each_entry(level, lo, hi, [&](unsigned i, u64 base, u64 s_lo, u64 s_hi, bool full) {
      const u64 raw = read(view, level, i);
      if (!format_.is_valid_raw(raw, level)) {
        if (full && leaf_ok(r, level)) {
          const bool hint = fresh_run(r, view, level, base, run);
          store(c, view, level, i,
                format_.encode(Entry::leaf(PhysAddr(base + r.delta), r.attrs, 0, hint), level));
          ++c.stats.leaves_written;
          return true;
        }
        return map_new_table(c, level, view, i, s_lo, s_hi);
      }
      Entry e = entry_at(raw, level, base);
      if (run.contains(base)) {
        if (run.done) return true;
        if (run.plain) e.contiguous = false;
      }
      if (e.is_table()) {
        // A table holds the range, but no leaf size the request allows fits
        // below it (a 2M-only map over a table of 4K pages): nothing can be
        // written inside it. Keep keeps it whole; otherwise the request
        // overlaps what the table maps (unmap it first to replace it).
        if (!leaf_below(r, level)) {
          if (r.existing == OnExisting::Keep) return true;
          return fail(c, Error::AlreadyMapped, base, e.pa, level);
        }
        const View child = real(e.pa);
        const bool ok = map_in(c, level - 1, child, s_lo, s_hi);
        done(child);
        if (ok && r.merge && c.apply()) try_merge(c, level, view, i, base, e);
        return ok;
      }
      switch (r.existing) {
        case OnExisting::Error: return fail(c, Error::AlreadyMapped, base, e.pa, level);
        case OnExisting::Keep: return true;
        case OnExisting::Replace: break;
      }
      const bool same_size = full && leaf_ok(r, level);
      if (e.contiguous) {
        const bool hint = run_foldable(r, level, base);
        const bool whole = same_size && run_inside(level, base, r.lo, r.hi);
        return enter_run(c, level, view, base, e, whole, run,
                         [&](u64 base_k, const Entry&) {
                           return Entry::leaf(PhysAddr(base_k + r.delta), r.attrs, 0, hint);
                         }) &&
               (run.done || finish_map_entry(c, level, view, i, base, s_lo, s_hi, e, same_size));
      }
      return finish_map_entry(c, level, view, i, base, s_lo, s_hi, e, same_size);
    });
  }

  /// Replaces or splits the existing plain leaf `e` for a map with Replace.
  bool finish_map_entry(Ctx& c, unsigned level, const View& view, unsigned i, u64 base, u64 s_lo,
                        u64 s_hi, const Entry& e, bool same_size) {
    const Request& r = c.req;
    if (same_size) {
      const Entry wanted = Entry::leaf(PhysAddr(base + r.delta), r.attrs);
      // Already this translation: the entry stays as it is, with the bits
      // the walker or a hypervisor set in it (accessed, dirty, Xen's own).
      if (e.pa == wanted.pa && e.attrs == wanted.attrs) return true;
      return replace_leaf(c, level, view, i, base, e, wanted);
    }
    return split_then(c, level, view, i, base, e,
                      [&](const View& child) { return map_in(c, level - 1, child, s_lo, s_hi); });
  }

  /// An invalid entry needs a table below it for [lo, hi].
  bool map_new_table(Ctx& c, unsigned level, const View& view, unsigned i, u64 lo, u64 hi) {
    PTKIT_INVARIANT(level > 0);
    if (!c.apply()) {
      c.stats.tables_needed += tables_for_fresh(c.req, level - 1, lo, hi);
      return true;
    }
    const PhysAddr table = new_table(c, level - 1, lo, hi);
    publish();  // the new table's contents reach the walker before the link
    store(c, view, level, i, format_.encode(Entry::table(table), level));
    return true;
  }

  /// Allocates a table at `level` and fills it for [lo, hi], recursively. No
  /// walker can reach it yet, so it is written with plain stores and every
  /// entry is written exactly once (no separate clearing pass).
  PhysAddr new_table(Ctx& c, unsigned level, u64 lo, u64 hi) {
    const TakenPage page = take_table();
    const PhysAddr pa = page.pa;
    ++c.stats.tables_allocated;
    u64* t = access_.table(pa);
    const unsigned first = index_of(lo, level);
    const unsigned last = index_of(hi, level);
    // A page known to be zero needs no clearing: a scattered map writes one
    // entry of a fresh 4 KiB table, and clearing the rest would be most of
    // its cost.
    const bool clear = !(page.zeroed && omits_zero_fill());
    if (clear)
      for (unsigned i = 0; i < first; ++i) writer_.store_fresh(&t[i], 0, WriteSite{pa, i, level});
    const Request& r = c.req;
    const u64 span = leaf_size(level);
    const bool leaves = leaf_ok(r, level);
    // Every entry but the first and the last is covered whole. The last
    // may be partial even when it is also the first (last - 1 may not exist).
    const bool last_partial = hi - align_down(hi, span) != span - 1;
    u64 base = align_down(lo, span);
    for (unsigned i = first;;) {
      const u64 s_lo = lo > base ? lo : base;
      const u64 s_hi = hi < base + (span - 1) ? hi : base + (span - 1);
      if (leaves && s_lo == base && (i < last || !last_partial)) {
        const unsigned to = last_partial ? last - 1 : last;
        fill_leaves(c, t, pa, level, i, to, base);
        base += u64{to - i + 1} * span;
        i = to + 1;
      } else {
        const u64 raw = format_.encode(Entry::table(new_table(c, level - 1, s_lo, s_hi)), level);
        writer_.store_fresh(&t[i], raw, WriteSite{pa, i, level});
        base += span;
        ++i;
      }
      if (i > last) break;
    }
    if (clear)
      for (unsigned i = last + 1; i < entries(level); ++i)
        writer_.store_fresh(&t[i], 0, WriteSite{pa, i, level});
    access_.done(t);
    set_count(pa, last - first + 1);  // a leaf or a table in each of [first, last]
    return pa;
  }

  /// A page for a new table, and whether the allocator knows it is zero.
  TakenPage take_table() {
    if constexpr (ZeroTrackingAllocator<Alloc>)
      return alloc_.take_page();
    else
      return TakenPage{alloc_.take(), false};
  }
  static constexpr bool omits_zero_fill() {
    if constexpr (requires { Writer::kOmitsZeroFill; })
      return Writer::kOmitsZeroFill;
    else
      return false;
  }

  /// Writes leaves into entries [from, to] of a fresh table, the first
  /// mapping `base`. The hot loop of every bulk map: it goes stretch by
  /// stretch of leaves that share the contiguous hint (the whole range where
  /// the format has no runs); where the format's raw leaves advance linearly
  /// (LeafStep), a stretch is encoded once and stored as raw + k * delta.
  void fill_leaves(Ctx& c, u64* t, PhysAddr table, unsigned level, unsigned from, unsigned to,
                   u64 base) {
    const Request& r = c.req;
    const u64 span = leaf_size(level);
    const unsigned run = run_entries_[level];
    for (unsigned k = from; k <= to;) {
      bool hint = false;
      unsigned end = to;
      if (run > 1) {
        // Runs are aligned groups of `run` entries; whole runs with the same
        // hint join the stretch.
        hint = run_foldable(r, level, base);
        end = (k | (run - 1)) < to ? (k | (run - 1)) : to;
        while (end < to && run_foldable(r, level, base + u64{end + 1 - k} * span) == hint)
          end = end + run < to ? end + run : to;
      }
      const LeafStep step = leaf_step(level, hint);
      u64 pa = base + r.delta;
      u64 raw = encode_leaf(r, level, pa, hint);
      if (step.linear) {
        store_fresh_run(t, table, level, k, end, raw, step.delta);
      } else {
        for (unsigned i = k; i <= end; ++i, pa += span) {
          if (i != k) raw = format_.encode(Entry::leaf(PhysAddr(pa), r.attrs, 0, hint), level);
          writer_.store_fresh(&t[i], raw, WriteSite{table, i, level});
        }
      }
      base += u64{end - k + 1} * span;
      k = end + 1;
    }
    c.stats.leaves_written += to - from + 1;
  }

  /// Entries [from, to] of a fresh table get raw, raw + delta, ...: in one
  /// call where the writer takes runs (a loop the compiler vectorizes), else
  /// entry by entry.
  void store_fresh_run(u64* t, PhysAddr table, unsigned level, unsigned from, unsigned to, u64 raw,
                       u64 delta) {
    if constexpr (requires { writer_.store_fresh_run(t, u64{1}, raw, delta); }) {
      writer_.store_fresh_run(&t[from], u64{to - from + 1}, raw, delta);
    } else {
      for (unsigned i = from; i <= to; ++i, raw += delta)
        writer_.store_fresh(&t[i], raw, WriteSite{table, i, level});
    }
  }

  [[nodiscard]] LeafStep leaf_step(unsigned level, bool contiguous) const {
    if constexpr (requires { format_.leaf_step(level, contiguous); })
      return format_.leaf_step(level, contiguous);
    return {};
  }

  /// Tables a fresh table at `level` needs to map [lo, hi], itself included.
  /// O(levels): fully covered entries all need the same, since whether they
  /// can be leaves depends only on the alignment of pa - va.
  u64 tables_for_fresh(const Request& r, unsigned level, u64 lo, u64 hi) const {
    if (level == 0) return 1;
    const u64 span = leaf_size(level);
    const u64 first_base = align_down(lo, span);
    const u64 last_base = align_down(hi, span);
    u64 n = 1;
    u64 full_entries = ((last_base - first_base) >> span_shift_[level]) + 1;
    if (lo != first_base || (first_base == last_base && hi != last_base + span - 1)) {
      n += tables_for_fresh(r, level - 1, lo, first_base == last_base ? hi : first_base + span - 1);
      --full_entries;
    }
    if (first_base != last_base && hi != last_base + span - 1) {
      n += tables_for_fresh(r, level - 1, last_base, hi);
      --full_entries;
    }
    if (full_entries != 0 && !leaf_ok(r, level)) n += full_entries * tables_for_full(r, level - 1);
    return n;
  }

  /// Tables needed below a fully covered entry: one table at `level`, and
  /// under it the same again unless its entries can be leaves.
  u64 tables_for_full(const Request& r, unsigned level) const {
    if (level == 0 || leaf_ok(r, level)) return 1;
    return 1 + entries(level) * tables_for_full(r, level - 1);
  }

  // ---- Unmap -------------------------------------------------------------------

  bool unmap_in(Ctx& c, unsigned level, const View& view, u64 lo, u64 hi) {
    Run run;
    const auto one = [&](unsigned i, u64 base, u64 s_lo, u64 s_hi, bool full) {
      const u64 raw = read(view, level, i);
      if (!format_.is_valid_raw(raw, level)) {
        if (c.req.holes == OnHole::Error) return fail(c, Error::NotMapped, s_lo, {}, level);
        return true;
      }
      Entry e = entry_at(raw, level, base);
      if (run.contains(base) && run.plain) e.contiguous = false;
      // Removing a whole run entry by entry is fine: every translation goes
      // and the invalidation follows. Removing part of one is not.
      if (e.contiguous && !run_inside(level, base, lo, hi) &&
          !enter_run(c, level, view, base, e, false, run, plain_leaf))
        return false;
      if (e.is_leaf()) {
        if (!full) {
          return split_then(c, level, view, i, base, e, [&](const View& child) {
            return unmap_in(c, level - 1, child, s_lo, s_hi);
          });
        }
        store(c, view, level, i, format_.encode(Entry::invalid(), level));
        owe(c, base, base + leaf_size(level) - 1, span_shift_[level], e.attrs.global, false);
        ++c.stats.leaves_written;
        return true;
      }
      const View child = real(e.pa);
      const bool ok = unmap_in(c, level - 1, child, s_lo, s_hi);
      if (ok && c.apply() && (full || table_empty(child, level - 1))) {
        store(c, view, level, i, format_.encode(Entry::invalid(), level));
        // Any address inside the freed table's span invalidates cached walks
        // through it (SDM §4.10.4.1; Arm TLBI VAE1), so the unmapped part
        // suffices.
        owe(c, s_lo, s_hi, span_shift_[level - 1], false, true);
        done(child);
        free_later(c, e.pa, level - 1);
        return true;
      }
      done(child);
      return ok;
    };
    // Holes skipped are passed over a stretch at a time (a reset of a large,
    // sparsely mapped window is mostly holes).
    return for_each_stretch(level, lo, hi,
                            [&](unsigned i, u64 base, u64 s_lo, u64 s_hi, bool full) -> u64 {
                              if (c.req.holes == OnHole::Skip && !view.synthetic) {
                                const u64 n = count_invalid(view, level, i, base, hi);
                                if (n != 0) return n;
                              }
                              return one(i, base, s_lo, s_hi, full) ? 1 : 0;
                            });
  }

  /// How many entries of a real table from `i` (mapping `base`), up to the
  /// last that [base, hi] touches, are invalid, up to the first valid one.
  u64 count_invalid(const View& v, unsigned level, unsigned i, u64 base, u64 hi) const {
    u64 limit = ((hi - base) >> span_shift_[level]) + 1;
    if (limit > entries(level) - i) limit = entries(level) - i;
    const u64* t = v.ptr + i;
    before_read(t, limit);
    u64 n = 0;
    if (!format_.is_valid_raw(0, level)) {  // eight zero entries at a time first
      while (n + 8 <= limit && block_mismatch(&t[n], ~u64{0}, 0) == 0) n += 8;
    }
    while (n < limit && !format_.is_valid_raw(t[n], level)) ++n;
    return n;
  }

  /// Whether no entry of the table is valid: from its entry count where the
  /// allocator keeps one the engine has set, else by reading it (scan_empty()).
  bool table_empty(const View& v, unsigned level, unsigned near = 0) {
    if (const u16* count = known_count(v.pa)) {
#ifdef PTKIT_CHECK_ENTRY_COUNTS  // tests: the count must decide as reading the table would
      PTKIT_INVARIANT((*count == 0) == scan_empty(v, level, near));
#endif
      return *count == 0;
    }
    return scan_empty(v, level, near);
  }
  /// `near`: an entry just made invalid; its neighbours are checked first, as
  /// a table with another valid entry often has one close by. Where a raw 0
  /// is invalid (every format; encode() writes it for the invalid entry),
  /// eight entries at a time are tested for all zero (block_mismatch()); a
  /// block that is not is decoded entry by entry. A table found empty has
  /// been read whole: on a cold table, that read is most of a single-leaf
  /// unmap's cost (what entry counts avoid).
  bool scan_empty(const View& v, unsigned level, unsigned near) const {
    const u64 n = entries(level);
    const u64* t = v.ptr;
    before_read(t, n);
    constexpr u64 kBlock = 8;  // one 64-byte cache line of entries
    const auto block_empty = [&](u64 first) {
      if (block_mismatch(&t[first], ~u64{0}, 0) == 0) return true;
      for (u64 k = 0; k < kBlock; ++k)
        if (format_.is_valid_raw(t[first + k], level)) return false;
      return true;
    };
    if (format_.is_valid_raw(0, level) || n % kBlock != 0) {
      for (u64 i = 0; i < n; ++i)
        if (format_.is_valid_raw(t[i], level)) return false;
      return true;
    }
    const u64 first = (near % n) & ~(kBlock - 1);
    if (!block_empty(first)) return false;
    // The rest is likely read whole: ask for every line at once, so the
    // misses overlap instead of waiting for the hardware prefetcher to ramp.
    for (u64 b = 0; b < n; b += kBlock) __builtin_prefetch(&t[b]);
    for (u64 b = 0; b < n; b += kBlock)
      if (b != first && !block_empty(b)) return false;
    return true;
  }

  // ---- Protect -----------------------------------------------------------------

  bool protect_in(Ctx& c, unsigned level, const View& view, u64 lo, u64 hi) {
    const Request& r = c.req;
    Run run;
    LeafGroup group;
    const auto one = [&](unsigned i, u64 base, u64 s_lo, u64 s_hi, bool full) {
      const u64 raw = read(view, level, i);
      if (!format_.is_valid_raw(raw, level)) {
        if (r.holes == OnHole::Error) return fail(c, Error::NotMapped, s_lo, {}, level);
        return true;
      }
      Entry e = entry_at(raw, level, base);
      if (run.contains(base)) {
        if (run.done) return true;
        if (run.plain) e.contiguous = false;
      }
      if (e.is_table()) {
        const View child = real(e.pa);
        const bool ok = protect_in(c, level - 1, child, s_lo, s_hi);
        done(child);
        if (ok && r.merge && c.apply()) try_merge(c, level, view, i, base, e);
        return ok;
      }
      // From here the passes may meet different stretches (a split's new
      // table is real only in the apply pass): the plan's verdict ends here.
      // Conservative: an extra stretch in the apply pass only shifts the
      // verdicts onto earlier stretches, also uniform; but what the general
      // path does to the count is not worth reasoning about for a rare case.
      c.diverged = c.diverged || !c.apply();
      const Attrs changed = r.change.applied_to(e.attrs);
      if (changed == e.attrs) return true;
      if (!format_.can_express(changed)) return fail(c, Error::AttrUnsupported, s_lo, e.pa, level);
      if (writable_table(e.pa, leaf_size(level), changed))
        return fail(c, Error::WritableTable, base, e.pa, level);
      if (e.contiguous) {
        const bool whole = run_inside(level, base, lo, hi);
        if (!enter_run(c, level, view, base, e, whole, run, [&](u64, const Entry& old_k) {
              return Entry::leaf(old_k.pa, r.change.applied_to(old_k.attrs), old_k.kept, true);
            }))
          return false;
        if (run.done) return true;
      }
      if (!full) {
        return split_then(c, level, view, i, base, e, [&](const View& child) {
          return protect_in(c, level - 1, child, s_lo, s_hi);
        });
      }
      return replace_leaf(c, level, view, i, base, e, Entry::leaf(e.pa, changed, e.kept));
    };
    return for_each_stretch(level, lo, hi,
                            [&](unsigned i, u64 base, u64 s_lo, u64 s_hi, bool full) -> u64 {
                              if (full && !view.synthetic && !run.contains(base)) {
                                const u64 n = protect_leaves(c, level, view, i, base, hi, group);
                                if (n != 0) return n;
                              }
                              return one(i, base, s_lo, s_hi, full) ? 1 : 0;
                            });
  }

  /// What protect() does to the leaves of one table whose raw values agree
  /// outside their address and kept bits (LeafStep): they have the same
  /// attributes and hint, so they all change alike, by one and/or mask.
  struct LeafGroup {
    bool known = false;
    u64 free = 0;         // address | kept: the bits the leaves may differ in
    u64 key = 0;          // raw & ~free of every leaf of the group
    u64 set = 0;          // the new raw & ~free of every leaf of the group
    bool change = false;  // the rewrite changes the leaves
    bool contiguous = false;
    bool global = false;  // old or new translations are global
    u64 address = 0;      // LeafStep::address
    u64 delta = 0;        // LeafStep::delta
  };

  /// The raw fast path of protect: rewrites in place, by an and/or mask on
  /// the raw values, the longest stretch of leaves from entry `i` (mapping
  /// `base`) that the range covers whole, that lie in this table and whose
  /// change the format allows in place (permission changes: no break, same
  /// size, same frame). Contiguous runs are taken whole and only when their
  /// entries hold consecutive addresses. Returns the entries done, 0 when
  /// entry `i` needs the general path (which decides and reports everything
  /// the fast path declines: tables, holes, splits, breaks, errors). Each
  /// entry ends as the general path would write it (tests check that on
  /// every format); one invalidation range is owed for the stretch.
  ///
  /// The plan pass has read every entry the apply pass rewrites. Where it
  /// found a stretch filled whole by the group of its first entry (the usual
  /// case: a range mapped alike), the apply pass takes the stretch as one
  /// group once its first entry is decoded, instead of testing each entry
  /// again: nothing changes the tables between the passes but the walker,
  /// which sets only kept bits (accessed, dirty), outside the group's key.
  u64 protect_leaves(Ctx& c, unsigned level, const View& view, unsigned i, u64 base, u64 hi,
                     LeafGroup& g) {
    const unsigned shift = span_shift_[level];
    const u64 mask = leaf_size(level) - 1;
    // Entries from i that [base, hi] covers whole, within this table.
    u64 n_max = ((hi - base) >> shift) + ((((hi - base) & mask) == mask) ? 1 : 0);
    if (n_max > entries(level) - i) n_max = entries(level) - i;
    if (n_max == 0) return 0;
    // Counted only when its first entry is a leaf done here; the others
    // (tables, holes) both passes give to the general path alike.
    const bool uniform_in_plan = c.apply() && c.stretches < c.uniform_stretches;
    bool uniform = true;  // one group, not a contiguous run, fills the stretch
    u64* t = view.ptr + i;
    before_read(t, n_max);
    u64 done_n = 0;
    // The entries rewritten: how many, the first and the last.
    u64 changed = 0;
    u64 changed_lo = 0;
    u64 changed_hi = 0;
    bool global = false;
    while (done_n < n_max) {
      const u64 raw = __atomic_load_n(&t[done_n], __ATOMIC_RELAXED);
      if (!g.known || (raw & ~g.free) != g.key) {
        if (!protect_group(c, level, raw, base + (done_n << shift), g)) break;
      }
      u64 n = 1;
      uniform = uniform && done_n == 0 && !(g.contiguous && g.change);
      if (uniform && uniform_in_plan) {
        n = n_max;
#ifdef PTKIT_CHECK_PLAN_VERDICTS  // tests: the entries must match as the plan saw
        PTKIT_INVARIANT(1 + count_matching(&t[1], n_max - 1, ~g.free, g.key) == n_max);
#endif
      } else if (g.contiguous && g.change) {
        // A whole run, from its first entry, holding its run's addresses in
        // order (as the general path would rewrite them).
        // Runs that follow it holding the next addresses (raw + k * delta,
        // without carrying out of the address field) are whole runs too,
        // from their first entry on, with the same attributes: one rewrite.
        const unsigned run = run_entries_[level];
        const u64 run_bits = (g.delta * run - 1) & ~(g.delta - 1) & g.address;
        if (((i + done_n) & (run - 1)) != 0 || done_n + run > n_max || (raw & run_bits) != 0) break;
        const LeafStep step{true, g.delta, g.address, 0};
        const u64 linear = 1 + count_linear(&t[done_n + 1], n_max - done_n - 1, raw, step);
        if (linear < run) break;
        n = linear - linear % run;
      } else {
        n += count_matching(&t[done_n + 1], n_max - done_n - 1, ~g.free, g.key);
      }
      if (g.change) {
        if (changed == 0) changed_lo = done_n;
        changed_hi = done_n + n - 1;
        changed += n;
        global = global || g.global;
        if (c.apply()) store_masked(view, level, i + done_n, n, g.free, g.set);
      }
      done_n += n;
    }
    if (done_n != 0) {
      ++c.stretches;
      if (!c.apply()) {
        if (uniform && done_n == n_max && !c.diverged)
          ++c.uniform_stretches;
        else
          c.diverged = true;
      }
    }
    if (changed != 0) {
      c.stats.leaves_written += changed;
      const u64 first = base + (changed_lo << shift);
      owe(c, first, base + (changed_hi << shift) + mask, shift, global, false);
    }
    return done_n;
  }

  /// How many of the `count` entries from `t` satisfy (raw & mask) == key, up
  /// to the first that does not. The hot loop of protect's fast path, run by
  /// both passes: eight entries (a cache line) per test, with plain loads so
  /// that the compiler vectorizes the block. Only a decision is read here
  /// (like table_empty()); the rewrite re-reads each entry atomically.
  static u64 count_matching(const u64* t, u64 count, u64 mask, u64 key) {
    u64 n = 0;
    while (n + 8 <= count && block_mismatch(&t[n], mask, key) == 0) n += 8;
    while (n < count && (t[n] & mask) == key) ++n;
    return n;
  }

  /// The OR over the eight entries from `t` of (raw & mask) ^ key: zero when
  /// all eight satisfy (raw & mask) == key. Read in 16-byte vectors (a GCC and
  /// Clang extension; targets without vectors get pairs of words), because
  /// compilers do not vectorize the reduction themselves and the scans that
  /// use this run at the speed of their instructions, not of memory. Only
  /// decisions are read this way (each 64-bit lane is one whole entry); entries
  /// are rewritten one atomic store at a time.
  static u64 block_mismatch(const u64* t, u64 mask, u64 key) {
    using Pair = u64 __attribute__((vector_size(16)));
    const Pair m = {mask, mask};
    const Pair k = {key, key};
    Pair x = {0, 0};
    for (u64 pair = 0; pair < 4; ++pair) {
      Pair v;
      __builtin_memcpy(&v, &t[2 * pair], sizeof v);
      x |= (v & m) ^ k;
    }
    return x[0] | x[1];
  }

  /// How many of the `count` entries from `t` hold raw + step.delta, raw +
  /// 2 * step.delta, ... in order, without the address field overflowing
  /// (the hot loop of walk_ranges() and protect's fast path).
  static u64 count_linear(const u64* t, u64 count, u64 raw, const LeafStep& step) {
    const u64 d = step.delta;
    // Steps left before the address field would carry into other bits. The
    // field is a plain shifted copy of the address: a power-of-two step and
    // contiguous bits from its bit up (checked; otherwise test entry by entry).
    const unsigned shift = unsigned(__builtin_ctzll(d | (u64{1} << 63)));
    const u64 field = step.address >> shift;
    if ((d & (d - 1)) != 0 || (step.address & (d - 1)) != 0 || (field & (field + 1)) != 0) {
      u64 n = 0;
      for (u64 want = raw + d; n < count && __atomic_load_n(&t[n], __ATOMIC_RELAXED) == want &&
                               ((want ^ raw) & ~step.address) == 0;
           want += d)
        ++n;
      return n;
    }
    const u64 room = field - ((raw & step.address) >> shift);
    if (count > room) count = room;
    u64 n = linear_blocks(t, count, raw + d, d);
    for (u64 want = raw + (n + 1) * d;
         n < count && __atomic_load_n(&t[n], __ATOMIC_RELAXED) == want; want += d)
      ++n;
    return n;
  }

  /// How many entries from `t`, in whole blocks of eight (a cache line), hold
  /// first, first + d, first + 2d, ...: the vector part of count_linear(),
  /// in 16-byte vectors like block_mismatch() (one entry per lane, a
  /// decision only), because the scalar loop ran at its instructions' speed.
  static u64 linear_blocks(const u64* t, u64 count, u64 first, u64 d) {
    using Pair = u64 __attribute__((vector_size(16)));
    Pair w0 = {first, first + d};
    const Pair two = {2 * d, 2 * d};
    Pair w1 = w0 + two;
    Pair w2 = w1 + two;
    Pair w3 = w2 + two;
    const Pair eight = two + two + two + two;
    u64 n = 0;
    for (; n + 8 <= count; n += 8) {
      Pair a, b, c, e;
      __builtin_memcpy(&a, &t[n], sizeof a);
      __builtin_memcpy(&b, &t[n + 2], sizeof b);
      __builtin_memcpy(&c, &t[n + 4], sizeof c);
      __builtin_memcpy(&e, &t[n + 6], sizeof e);
      const Pair x = (a ^ w0) | (b ^ w1) | (c ^ w2) | (e ^ w3);
      if ((x[0] | x[1]) != 0) break;
      w0 += eight;
      w1 += eight;
      w2 += eight;
      w3 += eight;
    }
    return n;
  }

  /// Entries [first, first + count) of a live table become (old & keep) |
  /// set: in one call where the writer takes such runs, else entry by entry.
  void store_masked(const View& v, unsigned level, u64 first, u64 count, u64 keep, u64 set) {
    if constexpr (requires(u64 * p) {
                    writer_.store_masked_run(p, count, keep, set, WriteSite{});
                  }) {
      writer_.store_masked_run(&v.ptr[first], count, keep, set,
                               WriteSite{v.pa, unsigned(first), level});
    } else {
      for (u64 k = first; k < first + count; ++k)
        writer_.store(&v.ptr[k], (__atomic_load_n(&v.ptr[k], __ATOMIC_RELAXED) & keep) | set,
                      WriteSite{v.pa, unsigned(k), level});
    }
  }

  /// Decodes `raw`, the leaf mapping `base` at `level`, and describes in `g`
  /// how protect changes it and every leaf that agrees with it outside its
  /// address and kept bits. False when the general path must handle it.
  bool protect_group(const Ctx& c, unsigned level, u64 raw, u64 base, LeafGroup& g) const {
    g.known = false;
    if (!format_.is_valid_raw(raw, level)) return false;
    const Entry e = entry_at(raw, level, base);
    if (!e.is_leaf()) return false;
    const LeafStep step = leaf_step(level, e.contiguous);
    if (!step.linear || step.address == 0) return false;
    const u64 free = step.address | step.kept;
    const Attrs changed = c.req.change.applied_to(e.attrs);
    u64 next = raw;
    if (!(changed == e.attrs)) {
      if (!format_.can_express(changed) || writable_table(e.pa, leaf_size(level), changed))
        return false;
      const Entry new_entry = Entry::leaf(e.pa, changed, e.kept, e.contiguous);
      if (format_.needs_break(e, new_entry, false)) return false;
      next = format_.encode(new_entry, level);
      // The rewrite must keep every address and kept bit (it does, unless
      // the entry holds an address its position contradicts).
      if (((next ^ raw) & free) != 0) return false;
    }
    g.known = true;
    g.free = free;
    g.key = raw & ~free;
    g.set = next & ~free;
    g.change = next != raw;
    g.contiguous = e.contiguous;
    g.global = e.attrs.global || changed.global;
    g.address = step.address;
    g.delta = step.delta;
    return true;
  }

  // ---- Rewrites of valid entries -------------------------------------------------

  /// Replaces a valid leaf by another leaf of the same size, breaking first
  /// when the format requires it.
  bool replace_leaf(Ctx& c, unsigned level, const View& view, unsigned i, u64 base,
                    const Entry& old_entry, const Entry& new_entry) {
    const u64 raw = format_.encode(new_entry, level);
    if (raw == read(view, level, i)) return true;
    const u64 last = base + leaf_size(level) - 1;
    const bool brk = format_.needs_break(old_entry, new_entry, false);
    if (brk && breaks_live(c, view, base, last))
      return fail(c, Error::LiveRangeBroken, base, old_entry.pa, level);
    ++c.stats.leaves_written;
    if (brk) ++c.stats.breaks;
    if (!c.apply()) return true;
    const bool global = old_entry.attrs.global || new_entry.attrs.global;
    if (brk) break_run(c, level, view, i, 1, base, last, global, false);
    store(c, view, level, i, raw);
    if (!brk) owe(c, base, last, span_shift_[level], global, false);
    return true;
  }

  /// Whether a break of [first, last] would invalidate a declared live range
  /// or the table being edited itself: with an access policy that reaches
  /// tables through this address space (`space_va`), the rest of the sequence
  /// writes `view` through that address, which would fault. Tables the same
  /// update creates are not known in the plan pass; their pages come from the
  /// allocator, whose window a caller declares live where it matters.
  bool breaks_live(const Ctx& c, const View& view, u64 first, u64 last) const {
    if (c.req.live.intersects(first, last)) return true;
    if constexpr (requires(const Access& a, const u64* p) {
                    { a.space_va(p) } -> std::same_as<VirtAddr>;
                  }) {
      if (view.synthetic || view.ptr == nullptr) return false;
      const u64 lo = access_.space_va(view.ptr).value();
      const u64 hi = lo + entries(0) * sizeof(u64) - 1;
      return lo <= last && first <= hi;
    }
    return false;
  }

  /// Break-before-make: invalid entries, the walker sees them, the TLB
  /// forgets the old translations, and only then may new valid entries be
  /// written. `tables`: the entries pointed to tables, whose leaves are a
  /// level down, so the invalidation steps by that level's size (a TLBI by
  /// address reaches only the translation of that address).
  void break_run(Ctx& c, unsigned level, const View& view, unsigned first, unsigned count, u64 base,
                 u64 last, bool global, bool tables) {
    const u64 invalid = format_.encode(Entry::invalid(), level);
    for (unsigned k = 0; k < count; ++k) store(c, view, level, first + k, invalid);
    publish();
    const unsigned stride = span_shift_[tables ? level - 1 : level];
    sink_.invalidate(TlbRange{VirtAddr(base), VirtAddr(last), stride, global, tables});
    sink_.complete();
    c.stats.invalidations += ((last - base) >> stride) + 1;
  }

  /// Splits the leaf `e` at `level` into an equivalent table one level down,
  /// then runs `inner` on that table. In the plan pass the table is synthetic.
  template <class Inner>
  bool split_then(Ctx& c, unsigned level, const View& view, unsigned i, u64 base, const Entry& e,
                  Inner&& inner) {
    const u64 last = base + leaf_size(level) - 1;
    PTKIT_INVARIANT(!e.contiguous);  // callers take the run apart first
    if (!c.req.allow_split) return fail(c, Error::SplitForbidden, base, e.pa, level);
    const bool brk = format_.needs_break(e, Entry::table(PhysAddr()), true);
    if (brk && breaks_live(c, view, base, last))
      return fail(c, Error::LiveRangeBroken, base, e.pa, level);
    ++c.stats.splits;
    if (brk) ++c.stats.breaks;
    if (!c.apply()) {
      ++c.stats.tables_needed;
      return inner(View{PhysAddr(), nullptr, true, e});
    }
    const PhysAddr pa = alloc_.take();
    ++c.stats.tables_allocated;
    u64* t = access_.table(pa);
    for (unsigned k = 0; k < entries(level - 1); ++k)
      writer_.store_fresh(&t[k], format_.encode(split_piece(e, level - 1, k), level - 1),
                          WriteSite{pa, k, level - 1});
    set_count(pa, entries(level - 1));
    publish();  // the equivalent table is complete before it is linked
    if (brk) break_run(c, level, view, i, 1, base, last, e.attrs.global, false);
    store(c, view, level, i, format_.encode(Entry::table(pa), level));
    // The superpage's own TLB entry must go (SDM §4.10.4.2), even though every
    // address still translates the same.
    if (!brk) owe(c, base, last, span_shift_[level], e.attrs.global, false);
    const View child{pa, t};
    const bool ok = inner(child);
    access_.done(t);
    return ok;
  }

  /// If the table under entry `i` (at `level`) now holds leaves that are
  /// contiguous, uniform and aligned for a leaf at `level`, replace it by that
  /// leaf. Opportunistic: skipped where it would break a live range.
  void try_merge(Ctx& c, unsigned level, const View& view, unsigned i, u64 base,
                 const Entry& table) {
    if (level == 0) return;  // a table at level 0 has no leaves below it to fold
    if (!format_.leaf_allowed(level) || !(c.req.leaf_sizes & leaf_size(level))) return;
    const View child = real(table.pa);
    before_read(child.ptr, entries(level - 1));
    const u64 step = leaf_size(level - 1);
    const Entry first = entry_at(child.ptr[0], level - 1, base);
    bool uniform = first.is_leaf() && first.pa.is_aligned(leaf_size(level));
    for (unsigned k = 1; uniform && k < entries(level - 1); ++k) {
      const Entry e = entry_at(child.ptr[k], level - 1, base + k * step);
      uniform = e.is_leaf() && e.pa == first.pa + k * step && e.attrs == first.attrs &&
                e.kept == first.kept;
    }
    done(child);
    if (!uniform) return;
    const Entry merged = Entry::leaf(first.pa, first.attrs, first.kept);
    const u64 last = base + leaf_size(level) - 1;
    const bool brk = format_.needs_break(table, merged, true);
    if (brk && breaks_live(c, view, base, last)) return;
    if (brk) {
      break_run(c, level, view, i, 1, base, last, first.attrs.global, true);
      ++c.stats.breaks;
    }
    store(c, view, level, i, format_.encode(merged, level));
    if (!brk) owe(c, base, last, span_shift_[level - 1], first.attrs.global, true);
    ++c.stats.merges;
    free_later(c, table.pa, level - 1);
  }

  // ---- Runs of the contiguous hint ------------------------------------------------

  [[nodiscard]] bool run_inside(unsigned level, u64 base, u64 lo, u64 hi) const {
    const u64 run_lo = align_down(base, run_size(level));
    return run_lo >= lo && run_lo + (run_size(level) - 1) <= hi;
  }

  static Entry plain_leaf(u64 /*base*/, const Entry& e) {
    return Entry::leaf(e.pa, e.attrs, e.kept, false);
  }

  /// For an invalid entry a map writes as a leaf: whether its run gets the
  /// hint, i.e. the map writes the whole run and all of it is invalid now.
  bool fresh_run(const Request& r, const View& view, unsigned level, u64 base, Run& run) const {
    if (run_entries_[level] <= 1) return false;
    if (run.contains(base)) return run.fresh;
    run = Run{};
    run.lo = align_down(base, run_size(level));
    run.hi = run.lo + (run_size(level) - 1);
    if (!run_foldable(r, level, base)) return false;
    const unsigned first = index_of(run.lo, level);
    for (unsigned k = 0; k < run_entries_[level]; ++k)
      if (format_.is_valid_raw(read(view, level, first + k), level)) return false;
    run.fresh = true;
    return true;
  }

  /// The update is about to change `e`, a leaf of a contiguous run. If it
  /// changes the whole run alike (`whole`), the run is rewritten here as one
  /// unit with `make(base_k, old_k)` giving each entry's new value, and
  /// run.done tells the caller to skip its entries. Otherwise the run is
  /// rewritten without the hint, and `e` continues as a plain leaf.
  template <class Make>
  bool enter_run(Ctx& c, unsigned level, const View& view, u64 base, Entry& e, bool whole, Run& run,
                 Make&& make) {
    run = Run{};
    run.lo = align_down(base, run_size(level));
    run.hi = run.lo + (run_size(level) - 1);
    if (whole) {
      run.done = true;
      return rewrite_run(c, level, view, run.lo, false, make);
    }
    run.plain = true;
    e.contiguous = false;
    return rewrite_run(c, level, view, run.lo, true, plain_leaf);
  }

  /// Rewrites every entry of the run at `run_lo` to `make(base_k, old_k)`,
  /// breaking the whole run first where the format requires it (Arm ARM:
  /// entries of a run must agree, so one entry alone cannot be broken).
  /// `equivalent`: every address keeps its translation.
  template <class Make>
  bool rewrite_run(Ctx& c, unsigned level, const View& view, u64 run_lo, bool equivalent,
                   Make&& make) {
    const unsigned n = run_entries_[level];
    const unsigned first = index_of(run_lo, level);
    const u64 run_hi = run_lo + (run_size(level) - 1);
    u64 next[kMaxRunEntries];
    bool changed = false;
    Entry old_first;
    Entry new_first;
    for (unsigned k = 0; k < n; ++k) {
      const u64 base_k = run_lo + k * leaf_size(level);
      const u64 raw = read(view, level, first + k);
      const Entry old_k = entry_at(raw, level, base_k);
      const Entry new_k = make(base_k, old_k);
      next[k] = format_.encode(new_k, level);
      changed = changed || next[k] != raw;
      if (k == 0) {
        old_first = old_k;
        new_first = new_k;
      }
    }
    if (!changed) return true;
    const bool brk = format_.needs_break(old_first, new_first, equivalent);
    if (brk && breaks_live(c, view, run_lo, run_hi))
      return fail(c, Error::LiveRangeBroken, run_lo, old_first.pa, level);
    c.stats.leaves_written += n;
    if (brk) ++c.stats.breaks;
    if (!c.apply()) return true;
    const bool global = old_first.attrs.global || new_first.attrs.global;
    if (brk) break_run(c, level, view, first, n, run_lo, run_hi, global, false);
    for (unsigned k = 0; k < n; ++k) store(c, view, level, first + k, next[k]);
    if (!brk) owe(c, run_lo, run_hi, span_shift_[level], global, false);
    return true;
  }

  // ---- Reading -------------------------------------------------------------------

  Mapping to_mapping(u64 base, unsigned level, const Entry& e) const {
    return Mapping{VirtAddr(base), e.pa, leaf_size(level), level, e.attrs, e.kept};
  }

  template <class Visitor>
  bool walk_table(unsigned level, PhysAddr table, u64 lo, u64 hi, Visitor& visit) const {
    return for_each_entry(level, lo, hi, [&](unsigned i, u64 base, u64 s_lo, u64 s_hi, bool) {
      const Entry e = entry_at(read_real(table, i), level, base);
      if (!e.valid()) return true;
      if (e.is_table()) return walk_table(level - 1, e.pa, s_lo, s_hi, visit);
      return bool(visit(to_mapping(base, level, e)));
    });
  }

  /// The range walk_ranges() is extending (size 0: none yet).
  struct RangeCursor : MappedRange {};

  /// Adds the leaves [va, va + size) -> pa to `open`, or reports `open` and
  /// starts a new range with them. False when `visit` asked to stop.
  template <class Visitor>
  static bool add_leaves(RangeCursor& open, u64 va, u64 pa, u64 size, const Attrs& attrs,
                         Visitor& visit) {
    if (open.size != 0 && va == open.va.value() + open.size && pa == open.pa.value() + open.size &&
        attrs == open.attrs) {
      open.size += size;
      return true;
    }
    if (open.size != 0 && !bool(visit(static_cast<const MappedRange&>(open)))) return false;
    open.va = VirtAddr(va);
    open.pa = PhysAddr(pa);
    open.size = size;
    open.attrs = attrs;
    return true;
  }

  template <class Visitor>
  bool ranges_in(unsigned level, PhysAddr table, u64 lo, u64 hi, RangeCursor& open,
                 Visitor& visit) const {
    // Access policies are logically const: reaching a table does not change it.
    auto& access = const_cast<Access&>(access_);  // NOLINT(cppcoreguidelines-pro-type-const-cast)
    u64* t = access.table(table);
    const unsigned shift = span_shift_[level];
    const u64 span = leaf_size(level);
    const unsigned first = index_of(lo, level);
    const unsigned last = index_of(hi, level);
    before_read(&t[first], u64{last - first} + 1);
    bool go = true;
    u64 base = align_down(lo, span);
    for (unsigned i = first; go && i <= last;) {
      const u64 raw = __atomic_load_n(&t[i], __ATOMIC_RELAXED);
      if (!format_.is_valid_raw(raw, level)) {
        ++i;
        base += span;
        continue;
      }
      const Entry e = entry_at(raw, level, base);
      if (e.is_table()) {
        const u64 s_lo = lo > base ? lo : base;
        const u64 s_hi = hi < base + (span - 1) ? hi : base + (span - 1);
        go = ranges_in(level - 1, e.pa, s_lo, s_hi, open, visit);
        ++i;
        base += span;
        continue;
      }
      // Leaves that follow as raw + k * delta continue this one: the same
      // attributes, hint and kept bits, the next output address. A leaf with
      // the hint continues only when it holds the address its position says.
      unsigned n = 1;
      const LeafStep step = leaf_step(level, e.contiguous);
      if (step.linear && step.address != 0 &&
          ((format_.encode(e, level) ^ raw) & step.address) == 0) {
        n += unsigned(count_linear(&t[i + 1], u64{last - i}, raw, step));
      }
      go = add_leaves(open, base, e.pa.value(), u64{n} << shift, e.attrs, visit);
      i += n;
      base += u64{n} << shift;
    }
    access.done(t);
    return go;
  }

  Format format_;
  Access access_;
  Alloc alloc_;
  Writer writer_;
  Sink sink_;
  PhysAddr root_;
  u64 full_flush_threshold_ = kDefaultFullFlushThreshold;
  unsigned span_shift_[Format::kMaxLevels] = {};
  unsigned run_entries_[Format::kMaxLevels] = {};
  unsigned space_shift_ = 0;
};

}  // namespace ptkit
