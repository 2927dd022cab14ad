// The two-pass direct map (DESIGN.md §5): maps every RAM and device range of
// a memory map at `base + pa`, over whatever the boot tables already map
// there, so that no single write changes a page size together with the frame
// or the attributes of a translation.
//
// Why two passes. The boot code usually leaves an early identity or direct
// map behind (RWX, write-back, blocks or pages of its own choosing) that the
// CPU is running on. The final direct map wants other leaf sizes (the largest
// the ranges allow) and other attributes (NX, global, a device memory type).
// Doing both at once asks the TLB to hold, for one address, an old
// translation of one size and a new one of another size with other
// attributes: Intel SDM vol. 3A §4.10.2.3 leaves that undefined (AMD: machine
// checks with conflicting memory types), and Arm's break-before-make (Arm ARM
// D8.16) forbids it outright. So:
//
// - Pass one changes sizes and frames only. Every range laid over live boot
//   mappings is mapped with the attributes the boot tables already use
//   (OnExisting::Replace): superpages straddling a range's ends are split
//   into equivalent tables, leaves keep the attributes they have, holes are
//   filled with the same attributes. Then, inside each range, tables of
//   uniform leaves are merged into superpages (again an equivalent rewrite,
//   the attributes are still the boot ones). Merges stay inside a range: a
//   superpage that straddled a range boundary would have to be split again in
//   pass two, which would then need tables (and could fail) and would change
//   a size in the attribute pass.
// - Between the passes, every invalidation pass one owes has completed (each
//   engine operation runs with TlbMode::FlushNow), so no translation of the
//   old sizes survives into pass two.
// - Pass two changes attributes only: protect() of each of those ranges to
//   its final attributes, with splits forbidden (pass one left no leaf
//   straddling a range's ends) and no merges. The leaf sizes and frames stay
//   as pass one left them. Where the architecture needs break-before-make
//   for an attribute change (Arm: memory type, non-global to global), the
//   engine does it.
//
// Ranges under which nothing at all is mapped get their final attributes in
// pass one directly and are left alone by pass two: there is no old
// translation to conflict with, and mapping device memory even briefly with
// the boot attributes (usually write-back) would let the CPU speculate into
// it through a cacheable alias.
//
// Xen PV mode (`xen`): an existing valid entry is never overwritten. Pass one
// maps with OnExisting::Keep, which writes only entries that were invalid,
// and pass two does not exist: protect() addresses ranges, not entries, so
// any pass two over a range holding pre-existing entries would rewrite them.
// Since everything written is written into invalid entries, it is written
// with the final attributes at once: no valid entry changes, so no write can
// change a size together with anything. Pre-existing translations keep their
// own attributes and sizes; no merges, no splits. (Xen PV has no superpages:
// such a caller passes leaf_sizes = the smallest page.)
//
// Holes (Reserved ranges, and physical addresses the memory map does not
// mention) are not mapped; whatever the boot tables map there is left as it is.
// Removing boot mappings is the caller's decision (unmap()), not this one's.
//
// All or nothing, as far as can be known before writing: the memory map is
// checked, every range is dry-run against the tables as they are, the
// attributes and live ranges are checked for both passes, and the tables the
// whole build needs (an upper bound: the sum of every range's dry run) are
// reserved once as a probe, all before the first write.
#pragma once

#include "ptkit/early/image_mapper.hpp"  // LeafCount
#include "ptkit/space.hpp"

namespace ptkit::early {

/// Most ranges a memory map may have (e820 maps of large machines have a
/// hundred or so).
inline constexpr unsigned kMaxMemoryRanges = 128;
/// Most paging levels the report counts leaves for.
inline constexpr unsigned kMaxDirectMapLevels = 6;

enum class MemoryKind : u8 {
  Ram,       // mapped with the RAM attributes
  Device,    // MMIO: mapped with the device attributes
  Reserved,  // a hole: not mapped (firmware, ACPI NVS, unusable)
};

/// One range of the memory map: [start, start + size), page-aligned.
struct MemoryRange {
  PhysAddr start;
  u64 size = 0;
  MemoryKind kind = MemoryKind::Reserved;
};

/// The memory map: ranges in any order, pairwise disjoint.
struct MemoryMap {
  const MemoryRange* ranges = nullptr;
  unsigned count = 0;
};

/// Attributes per kind of memory.
struct KindAttrs {
  Attrs ram{};
  Attrs device{};
  [[nodiscard]] constexpr Attrs of(MemoryKind k) const {
    return k == MemoryKind::Device ? device : ram;
  }
};

/// The memory type device ranges get: Device where the format has it (Arm
/// MAIR, RISC-V Svpbmt IO), else Uncached (x86 PAT UC), else UC-, else
/// WriteBack, which is right only where the format has no memory type in its
/// entries at all (RISC-V without Svpbmt: the platform's PMAs decide).
template <PagingFormat Format>
constexpr MemType device_mem_type(const Format& format) {
  for (MemType m : {MemType::Device, MemType::Uncached, MemType::UncachedMinus})
    if (format.can_express(Attrs{RW, m, true})) return m;
  return MemType::WriteBack;
}

/// The final attributes a kernel wants: RAM read-write, never executable,
/// global, write-back; device read-write, never executable, global, with
/// device_mem_type().
template <PagingFormat Format>
constexpr KindAttrs final_direct_map_attrs(const Format& format) {
  return KindAttrs{Attrs{RW, MemType::WriteBack, true}, Attrs{RW, device_mem_type(format), true}};
}

struct DirectMapOptions {
  /// Physical address pa is mapped at base + pa.
  VirtAddr base;
  /// What the direct map ends with. Use final_direct_map_attrs(format) for
  /// the usual choice; the default here is that choice for a format whose
  /// device type is Device (Arm, RISC-V with Svpbmt).
  KindAttrs final_attrs{Attrs{RW, MemType::WriteBack, true}, Attrs{RW, MemType::Device, true}};
  /// What the live boot tables use for this memory: pass one maps ranges
  /// laid over live mappings with these, so that replacing a boot entry
  /// changes at most its size or frame. Default: an early map built RWX,
  /// write-back, non-global, device memory included.
  KindAttrs boot_attrs{Attrs{RWX, MemType::WriteBack, false},
                       Attrs{RWX, MemType::WriteBack, false}};
  LeafSizes leaf_sizes = kAnyLeafSize;
  bool merge = true;            // merge boot tables into superpages inside a range
  bool contiguous_hint = true;  // Arm Contiguous / RISC-V Svnapot on runs written whole
  bool xen = false;             // never overwrite a valid entry (see above)
  LiveRanges live{};            // never invalid, not even for a break
  /// Called once pass one's TLB work has completed and before pass two
  /// writes anything (e.g. to switch to the new tables, or for a test to
  /// check that the TLB is coherent there).
  void (*after_pass_one)(void* context) = nullptr;
  void* context = nullptr;
};

/// One call of map(): adjacent ranges of the same kind, merged.
struct DirectMapSegment {
  VirtAddr va;
  PhysAddr pa;
  u64 size = 0;
  MemoryKind kind = MemoryKind::Ram;
  unsigned first_range = 0;  // index into the memory map of its lowest range
  unsigned range_count = 0;
  bool over_live = false;  // something was mapped there: two passes (unless xen)
};

/// What build_direct_map() did.
struct DirectMapReport {
  DirectMapSegment segments[kMaxMemoryRanges]{};
  unsigned segment_count = 0;
  unsigned ranges_mapped = 0;   // RAM and device ranges of the map
  unsigned ranges_skipped = 0;  // reserved ones
  u64 ram_bytes = 0;
  u64 device_bytes = 0;
  unsigned levels = 0;
  /// By level (0 = smallest page): the leaves translating part of a mapped
  /// segment, from the tables after the build.
  LeafCount leaves[kMaxDirectMapLevels]{};
  /// The upper bound on new tables checked before the first write.
  u64 tables_planned = 0;
  /// What each pass did, summed over its engine operations (pass one
  /// includes its merges). tables_allocated/freed, breaks, invalidations
  /// and full flushes are per pass; every pass-one invalidation has
  /// completed before pass two starts.
  OpStats pass_one{};
  OpStats pass_two{};
  unsigned pass_one_ops = 0;
  unsigned pass_two_ops = 0;

  [[nodiscard]] constexpr u64 leaves_of_size(u64 bytes) const {
    for (const LeafCount& l : leaves)
      if (l.size == bytes) return l.count;
    return 0;
  }
  [[nodiscard]] constexpr u64 tables_allocated() const {
    return pass_one.tables_allocated + pass_two.tables_allocated;
  }
};

/// The index of the memory-map range a build_direct_map() failure names: the
/// last range starting at its `pa` (a check of the map names a range by its
/// start; of two overlapping ranges, the later), else the range holding its
/// `pa` (an engine failure names the address where it failed); -1 where it
/// names none (the map as a whole, the options).
inline int failing_range(const MemoryMap& map, const Failure& f) {
  if (map.ranges == nullptr) return -1;
  for (unsigned i = map.count; i-- > 0;)
    if (map.ranges[i].start == f.pa) return int(i);
  for (unsigned i = 0; i < map.count; ++i) {
    const MemoryRange& r = map.ranges[i];
    if (f.pa >= r.start && f.pa - r.start < r.size) return int(i);
  }
  return -1;
}

namespace detail {

inline Failure dmap_failure(Error e, VirtAddr va, PhysAddr pa, const char* subject,
                            u64 alignment = 0) {
  Failure f{Op::Map, e, va, pa, kNoLevel};
  f.subject = subject;
  f.alignment = alignment;
  return f;
}

inline const char* kind_name(MemoryKind k) {
  switch (k) {
    case MemoryKind::Ram: return "RAM range";
    case MemoryKind::Device: return "device range";
    case MemoryKind::Reserved: return "reserved range";
  }
  return "range";
}

/// An engine failure inside segment `s`: its pa becomes the physical address
/// of the failing virtual address (so failing_range() finds the range), or
/// the segment's start where the engine names no address inside it.
inline Failure name_segment_failure(Failure f, const DirectMapSegment& s) {
  f.subject = kind_name(s.kind);
  f.pa = (f.va >= s.va && f.va - s.va < s.size) ? s.pa + (f.va - s.va) : s.pa;
  return f;
}

inline void add(OpStats& a, const OpStats& b) {
  a.tables_needed += b.tables_needed;
  a.tables_allocated += b.tables_allocated;
  a.tables_freed += b.tables_freed;
  a.leaves_written += b.leaves_written;
  a.splits += b.splits;
  a.merges += b.merges;
  a.breaks += b.breaks;
  a.invalidations += b.invalidations;
  a.full_flushes += b.full_flushes;
}

/// Checks the memory map (sizes, alignment, overlaps) and builds the
/// segments in ascending physical order. Everything here is refused before
/// the tables are looked at.
inline Status make_segments(const MemoryMap& map, u64 page, VirtAddr base,
                            DirectMapReport& report) {
  if ((map.ranges == nullptr && map.count != 0) || map.count > kMaxMemoryRanges)
    return dmap_failure(Error::BadSize, base, {}, "memory map");
  if (!base.is_aligned(page))
    return dmap_failure(Error::Unaligned, base, {}, "direct map base", page);
  for (unsigned i = 0; i < map.count; ++i) {
    const MemoryRange& r = map.ranges[i];
    const char* name = kind_name(r.kind);
    const u64 end = r.start.value() + r.size;  // exclusive; 0 when it ends at 2^64
    if (r.size == 0 || (end != 0 && end < r.start.value()))
      return dmap_failure(Error::BadSize, base + r.start.value(), r.start, name);
    if (!r.start.is_aligned(page) || !is_aligned(r.size, page))
      return dmap_failure(Error::Unaligned, base + r.start.value(), r.start, name, page);
    // Overlaps: the later range in the map's order is the one named.
    for (unsigned j = 0; j < i; ++j) {
      const MemoryRange& o = map.ranges[j];
      const u64 o_last = o.start.value() + (o.size - 1);
      const u64 r_last = r.start.value() + (r.size - 1);
      if (r.start.value() <= o_last && o.start.value() <= r_last)
        return dmap_failure(Error::AlreadyMapped, base + r.start.value(), r.start, name);
    }
  }
  // Ascending order by insertion sort on indices (n is small, no heap).
  unsigned order[kMaxMemoryRanges];
  for (unsigned i = 0; i < map.count; ++i) {
    unsigned k = i;
    while (k > 0 && map.ranges[order[k - 1]].start > map.ranges[i].start) {
      order[k] = order[k - 1];
      --k;
    }
    order[k] = i;
  }
  for (unsigned n = 0; n < map.count; ++n) {
    const unsigned i = order[n];
    const MemoryRange& r = map.ranges[i];
    if (r.kind == MemoryKind::Reserved) {
      ++report.ranges_skipped;
      continue;
    }
    ++report.ranges_mapped;
    (r.kind == MemoryKind::Ram ? report.ram_bytes : report.device_bytes) += r.size;
    DirectMapSegment* last =
        report.segment_count != 0 ? &report.segments[report.segment_count - 1] : nullptr;
    // Adjacent ranges of one kind are one segment, so superpages may span
    // the boundary between them (firmware splits RAM at arbitrary points).
    if (last != nullptr && last->kind == r.kind && last->pa + last->size == r.start) {
      last->size += r.size;
      ++last->range_count;
      continue;
    }
    report.segments[report.segment_count++] =
        DirectMapSegment{base + r.start.value(), r.start, r.size, r.kind, i, 1, false};
  }
  return Ok{};
}

/// The protect() change that takes any attributes to `a`.
constexpr AttrChange change_to(Attrs a) {
  AttrChange c;
  c.set = a.perm;
  c.clear = ~a.perm;
  c.change_mem = true;
  c.mem = a.mem;
  c.change_global = true;
  c.global = a.global;
  return c;
}

/// Merges, inside [va, va + size) only, every table of uniform leaves into
/// a superpage, smallest level first (a level can merge only tables whose
/// entries the level below made leaves). At each level the call covers only
/// the whole entries of that level inside the range, and lets the engine
/// merge only at that level, so no merge makes a leaf that straddles the
/// range's ends. protect() with an empty change writes nothing but merges.
template <class Space>
void merge_inside(Space& space, VirtAddr va, u64 size, const DirectMapOptions& opts, OpStats& stats,
                  unsigned& ops) {
  const auto& format = space.format();
  for (unsigned level = 1; level < format.levels(); ++level) {
    const u64 leaf = space.leaf_size(level);
    if (!format.leaf_allowed(level)) break;  // no level above may hold a leaf either
    if (!(opts.leaf_sizes & leaf)) continue;
    const u64 lo = (va.value() + leaf - 1) & ~(leaf - 1);
    const u64 end = align_down(va.value() + size, leaf);
    if (lo < va.value() || end <= lo) continue;  // no whole entry inside
    ProtectOptions po;
    po.holes = OnHole::Skip;
    po.allow_split = false;
    po.merge = true;
    po.leaf_sizes = leaf;
    po.live = opts.live;  // the engine skips merges that would break one
    po.tlb = TlbMode::FlushNow;
    auto merged = space.protect(VirtAddr(lo), end - lo, AttrChange{}, po);
    // An empty change over a validated, aligned range splits nothing and
    // needs no table: it cannot fail.
    PTKIT_INVARIANT(merged.ok());
    add(stats, merged->stats);
    ++ops;
  }
}

}  // namespace detail

/// Builds the direct map of `map`: every RAM and device range at
/// `opts.base + pa`, with `opts.final_attrs`, the largest leaves allowed by
/// alignment and `opts.leaf_sizes`, in two passes as described at the top of
/// this file. Returns what it did.
///
/// Preconditions: `space` is the live address space (or one about to be);
/// the caller states the boot attributes truthfully: where a range is laid
/// over live mappings whose attributes differ from `opts.boot_attrs`, pass
/// one's same-size rewrites change attributes (allowed, the engine handles
/// them, but it is no longer a pure size/frame pass).
///
/// Errors (op Map; `subject` says what; on every error before the first
/// write the tables are as before and no table page is held; pa names the
/// memory-map range, see failing_range()):
/// - BadSize: no room for the map (more than kMaxMemoryRanges ranges, or a
///   null array, subject "memory map"), a range of size zero or wrapping;
/// - Unaligned: a range start or size, or the base, off the smallest page
///   (`alignment` = that page);
/// - AlreadyMapped: two ranges overlap (the later in map order is named);
/// - AttrUnsupported: final or boot attributes of a kind present in the map
///   that the format cannot express (subject "final attributes" / "boot
///   attributes");
/// - LiveRangeBroken: pass one or pass two would break a live range (on Arm,
///   a memory-type or non-global-to-global change in pass two needs a break);
/// - OutOfTables: the tables the build may need (`needed`, an upper bound)
///   cannot be reserved; or the allocator runs dry mid-way after all (only
///   an allocator that refuses what it had just granted does that);
/// - anything map() reports (NonCanonical when base + pa leaves the space,
///   PhysTooLarge, LeafSizeUnsupported, ...).
///
/// Rollback after an engine failure mid-way through pass one: ranges with
/// nothing mapped under them are mapped first and are unmapped again, which
/// is exact (it frees the tables they created; see map_image() for the
/// caveat about tables that were empty before). Ranges laid over live
/// mappings are mapped after them; the one that fails is unchanged (each
/// engine operation is transactional), but one already mapped is not undone:
/// unmapping it would remove the boot mappings the CPU runs on, and ptkit
/// keeps no copy of the entries it replaced. What stays is equivalent for
/// every address the boot tables mapped with the stated boot attributes
/// (same frame, same attributes, split into smaller leaves at the range's
/// ends), plus the range's former holes, now mapped with the boot
/// attributes. The up-front reservation makes this unreachable with the
/// allocators ptkit has.
template <PagingFormat Format, TableAccess Access, TableAllocator Alloc, EntryWriter Writer,
          TlbSink Sink>
Result<DirectMapReport> build_direct_map(AddressSpace<Format, Access, Alloc, Writer, Sink>& space,
                                         const MemoryMap& map, const DirectMapOptions& opts) {
  static_assert(Format::kMaxLevels <= kMaxDirectMapLevels, "DirectMapReport counts too few levels");
  const Format& format = space.format();
  DirectMapReport report;
  report.levels = format.levels();
  for (unsigned level = 0; level < report.levels; ++level)
    report.leaves[level].size = space.leaf_size(level);

  if (auto made = detail::make_segments(map, space.leaf_size(0), opts.base, report); !made.ok())
    return made.failure();

  // Attributes of every kind present, for both passes, before the tables.
  bool has_kind[2] = {false, false};
  for (unsigned k = 0; k < report.segment_count; ++k)
    has_kind[report.segments[k].kind == MemoryKind::Device] = true;
  for (unsigned d = 0; d < 2; ++d) {
    if (!has_kind[d]) continue;
    const MemoryKind kind = d ? MemoryKind::Device : MemoryKind::Ram;
    if (!format.can_express(opts.final_attrs.of(kind)))
      return detail::dmap_failure(Error::AttrUnsupported, opts.base, {}, "final attributes");
    if (!opts.xen && !format.can_express(opts.boot_attrs.of(kind)))
      return detail::dmap_failure(Error::AttrUnsupported, opts.base, {}, "boot attributes");
  }

  MapOptions fresh;  // ranges with nothing under them: final attributes at once
  fresh.leaf_sizes = opts.leaf_sizes;
  fresh.existing = OnExisting::Error;
  fresh.allow_split = false;
  fresh.contiguous_hint = opts.contiguous_hint;
  fresh.live = opts.live;
  fresh.tlb = TlbMode::FlushNow;
  MapOptions over = fresh;  // ranges over live mappings
  if (opts.xen) {
    over.existing = OnExisting::Keep;  // only invalid entries are written
  } else {
    over.existing = OnExisting::Replace;
    over.allow_split = true;  // equivalent splits at the range's ends
  }
  over.merge = false;  // merges come separately, inside each range only

  // Dry runs of every segment against the tables as they are. The segments
  // are disjoint and pass one's maps only split (never merge), so no map can
  // need more tables for a later segment than its dry run counted here: the
  // sum is an upper bound (tables shared by segments are counted for each).
  for (unsigned k = 0; k < report.segment_count; ++k) {
    DirectMapSegment& s = report.segments[k];
    const Attrs final_attrs = opts.final_attrs.of(s.kind);
    auto probe = space.plan_map(s.va, s.pa, s.size, final_attrs, fresh);
    if (probe.ok()) {
      report.tables_planned += probe->tables_needed;
      continue;
    }
    if (probe.error() != Error::AlreadyMapped)
      return detail::name_segment_failure(probe.failure(), s);
    s.over_live = true;
    const Attrs pass_one_attrs = opts.xen ? final_attrs : opts.boot_attrs.of(s.kind);
    auto planned = space.plan_map(s.va, s.pa, s.size, pass_one_attrs, over);
    if (!planned.ok()) return detail::name_segment_failure(planned.failure(), s);
    report.tables_planned += planned->tables_needed;
    // Pass two rewrites every leaf of the segment from the boot to the final
    // attributes; where that needs a break it must not touch a live range.
    if (!opts.xen && opts.live.intersects(s.va.value(), s.va.value() + (s.size - 1)) &&
        format.needs_break(Entry::leaf(s.pa, pass_one_attrs), Entry::leaf(s.pa, final_attrs),
                           false))
      return detail::name_segment_failure(
          Failure{Op::Protect, Error::LiveRangeBroken, s.va, s.pa, kNoLevel}, s);
  }
  // The probe: all the tables at once, then given back (each map reserves
  // its own). Nothing else takes pages in between.
  if (report.tables_planned != 0) {
    const bool enough = space.allocator().reserve(report.tables_planned);
    space.allocator().give_back_unused();
    if (!enough) {
      Failure f = detail::dmap_failure(Error::OutOfTables, opts.base, {}, "direct map");
      f.needed = report.tables_planned;
      return f;
    }
  }

  // ---- Pass one: sizes and frames ----
  // Fresh segments first: they are the ones a failure can undo exactly.
  for (unsigned round = 0; round < 2; ++round) {
    for (unsigned k = 0; k < report.segment_count; ++k) {
      const DirectMapSegment& s = report.segments[k];
      if (s.over_live != (round == 1)) continue;
      const Attrs attrs =
          (s.over_live && !opts.xen) ? opts.boot_attrs.of(s.kind) : opts.final_attrs.of(s.kind);
      auto mapped = space.map(s.va, s.pa, s.size, attrs, s.over_live ? over : fresh);
      if (mapped.ok()) {
        detail::add(report.pass_one, mapped->stats);
        ++report.pass_one_ops;
        continue;
      }
      // Undo the fresh segments mapped so far (see the rollback note). They
      // were unmapped before, so no live range can depend on them, and
      // unmapping exactly what a map wrote splits nothing: it cannot fail.
      for (unsigned j = 0; j < report.segment_count; ++j) {
        const DirectMapSegment& done = report.segments[j];
        if (done.over_live || (round == 0 && j >= k)) continue;
        auto undone = space.unmap(done.va, done.size, UnmapOptions{});
        PTKIT_INVARIANT(undone.ok());
      }
      return detail::name_segment_failure(mapped.failure(), s);
    }
  }
  if (opts.merge && !opts.xen) {
    for (unsigned k = 0; k < report.segment_count; ++k) {
      const DirectMapSegment& s = report.segments[k];
      if (s.over_live)
        detail::merge_inside(space, s.va, s.size, opts, report.pass_one, report.pass_one_ops);
    }
  }
  // Every operation above ran with TlbMode::FlushNow: its invalidations have
  // completed, so no translation of a size pass one replaced is left.
  if (opts.after_pass_one != nullptr) opts.after_pass_one(opts.context);

  // ---- Pass two: attributes only ----
  if (!opts.xen) {
    for (unsigned k = 0; k < report.segment_count; ++k) {
      const DirectMapSegment& s = report.segments[k];
      if (!s.over_live) continue;
      ProtectOptions po;
      po.holes = OnHole::Error;  // pass one mapped all of it
      po.allow_split = false;    // pass one left no leaf across the ends
      po.merge = false;
      po.live = opts.live;
      po.tlb = TlbMode::FlushNow;
      auto changed =
          space.protect(s.va, s.size, detail::change_to(opts.final_attrs.of(s.kind)), po);
      // The checks above rule out every failure; should one happen anyway,
      // the segments before this one have their final attributes and the
      // rest still the boot ones, every translation valid.
      if (!changed.ok()) return detail::name_segment_failure(changed.failure(), s);
      detail::add(report.pass_two, changed->stats);
      ++report.pass_two_ops;
    }
  }

  // The report's leaves, from the tables themselves.
  for (unsigned k = 0; k < report.segment_count; ++k) {
    const DirectMapSegment& s = report.segments[k];
    const Status walked = space.walk(s.va, s.size, [&](const Mapping& m) {
      ++report.leaves[m.level].count;
      return true;
    });
    PTKIT_INVARIANT(walked.ok());  // the segment was validated by map()
  }
  return report;
}

}  // namespace ptkit::early
