// The image mapper (DESIGN.md §5): maps a kernel or hypervisor image's
// sections at their link-time virtual addresses to where the image was
// loaded, with each section's permissions and the largest leaves the
// alignment allows.
//
// The physical address of every section follows from the image's linked
// layout and one load address: a section linked at `link_va` lies at
// `load_pa + (link_va - link_base)`. The load address is rarely the link-time
// one (relocation is the normal case), so nothing here assumes they agree.
//
// Adjacent sections with the same attributes are mapped as one range, so a
// superpage may span them (data and bss usually share one); the ranges split
// only where the attributes change or the layout leaves a gap, and gaps stay
// unmapped. The layout states the alignment it promises for the load address
// and for every section boundary; a layout that breaks its promise is refused
// by name before anything changes, because a misaligned boundary would
// silently cost the superpages the caller planned for (or, below a page, be
// impossible to honour at all).
//
// All or nothing: every check that can be made without writing is made first
// (the layout, then a dry run of every range against the existing tables);
// if the engine still fails on a later range (the allocator runs dry), the
// ranges already mapped are unmapped again, which frees the tables they
// created, so the image is never left half mapped.
#pragma once

#include "ptkit/space.hpp"

namespace ptkit::early {

/// Most sections a layout may have (text, rodata, data, bss, init, per-CPU,
/// ... with room to spare); the report holds one entry per section.
inline constexpr unsigned kMaxImageSections = 16;
/// Most paging levels a report counts leaves for (x86 5-level, Sv57, AArch64
/// with LPA2 have 5).
inline constexpr unsigned kMaxImageLevels = 6;

/// One section of the linked image. The caller gives its permissions: text
/// RX, rodata R, data and bss RW (no X, so never executable).
struct ImageSection {
  const char* name = nullptr;  // for errors and the report ("text", ".rodata")
  VirtAddr link_va;            // where the image was linked to run
  u64 size = 0;                // bytes; a multiple of the layout's alignment
  Perm perm = Perm::R;
};

/// The image as linked: its sections in ascending, non-overlapping order, the
/// link-time virtual address of the image's first byte (the one that lands at
/// the load address), and the alignment the layout promises for the load
/// address, the link base and every section's start and end (a power of two,
/// at least the format's smallest page; e.g. 2 MiB for a kernel linked with
/// block-aligned sections, 4 KiB for one that only page-aligns them).
struct ImageLayout {
  const ImageSection* sections = nullptr;
  unsigned count = 0;
  VirtAddr link_base;
  u64 alignment = 0;
};

/// Attributes beyond the permissions, the same for every section, and what
/// the engine may use.
struct ImageOptions {
  MemType mem = MemType::WriteBack;
  bool global = true;  // the image is in every address space: global translations
  LeafSizes leaf_sizes = kAnyLeafSize;
  bool contiguous_hint = true;  // Arm Contiguous / RISC-V Svnapot on whole runs
};

/// Leaves of one size: `count` leaves of `size` bytes each.
struct LeafCount {
  u64 size = 0;
  u64 count = 0;
};

/// Root (top-level) table entries [first, first + count).
struct SlotRange {
  unsigned first = 0;
  unsigned count = 0;
};

/// What one section got.
struct SectionReport {
  const char* name = nullptr;
  VirtAddr va;
  PhysAddr pa;
  u64 size = 0;
  Attrs attrs{};
  unsigned range = 0;  // index into ImageReport::ranges of the range mapping it
  /// By level (0 = smallest page): the leaves translating any part of the
  /// section. A leaf shared with an adjacent section of the same attributes
  /// counts for both.
  LeafCount leaves[kMaxImageLevels]{};
  SlotRange slots{};  // the root entries the section lies under

  /// Leaves of exactly `bytes` that translate part of the section.
  [[nodiscard]] constexpr u64 leaves_of_size(u64 bytes) const {
    for (const LeafCount& l : leaves)
      if (l.size == bytes) return l.count;
    return 0;
  }
};

/// One call of map(): adjacent sections with the same attributes.
struct MappedRange {
  VirtAddr va;
  PhysAddr pa;
  u64 size = 0;
  Attrs attrs{};
  unsigned first_section = 0;
  unsigned section_count = 0;
};

/// What map_image() did: per section and per mapped range, the leaves used,
/// and the root entries the image occupies. A boot loader copies exactly
/// those root entries into every other address space that must see the image
/// (they point to tables shared from then on, or are leaves themselves).
struct ImageReport {
  unsigned levels = 0;  // of the format; leaves[] is meaningful below
  unsigned root_level = 0;
  u64 slot_span = 0;  // bytes one root entry translates
  SectionReport sections[kMaxImageSections]{};
  unsigned section_count = 0;
  MappedRange ranges[kMaxImageSections]{};
  unsigned range_count = 0;
  /// By level: every leaf of the image, each counted once.
  LeafCount leaves[kMaxImageLevels]{};
  /// The root entries the image occupies, ascending, as maximal runs.
  SlotRange slots[kMaxImageSections]{};
  unsigned slot_range_count = 0;
  u64 tables_allocated = 0;

  [[nodiscard]] constexpr u64 leaves_of_size(u64 bytes) const {
    for (const LeafCount& l : leaves)
      if (l.size == bytes) return l.count;
    return 0;
  }
  [[nodiscard]] constexpr bool uses_slot(unsigned index) const {
    for (unsigned i = 0; i < slot_range_count; ++i)
      if (index >= slots[i].first && index - slots[i].first < slots[i].count) return true;
    return false;
  }
  [[nodiscard]] constexpr u64 slot_count() const {
    u64 n = 0;
    for (unsigned i = 0; i < slot_range_count; ++i) n += slots[i].count;
    return n;
  }
};

namespace detail {

inline const char* section_name(const ImageSection& s) {
  return s.name != nullptr ? s.name : "(unnamed section)";
}

inline Failure image_failure(Error e, VirtAddr va, PhysAddr pa, const char* subject,
                             u64 alignment = 0) {
  Failure f{Op::Map, e, va, pa, kNoLevel};
  f.subject = subject;
  f.alignment = alignment;
  return f;
}

/// An engine failure inside range `r`, named after the section holding the
/// failing address (the range's first section where it names none inside).
inline Failure name_engine_failure(Failure f, const ImageLayout& layout, const MappedRange& r) {
  f.subject = section_name(layout.sections[r.first_section]);
  for (unsigned k = r.first_section; k < r.first_section + r.section_count; ++k) {
    const ImageSection& s = layout.sections[k];
    if (f.va >= s.link_va && f.va - s.link_va < s.size) f.subject = section_name(s);
  }
  return f;
}

/// Checks the layout against its own promises and the format: everything
/// that can be refused without looking at the tables. Fills `report`'s
/// sections and ranges.
template <class Format>
Status check_layout(const Format& format, u64 page, const ImageLayout& layout, PhysAddr load_pa,
                    const ImageOptions& opts, ImageReport& report) {
  if (layout.sections == nullptr || layout.count == 0 || layout.count > kMaxImageSections)
    return image_failure(Error::BadSize, layout.link_base, load_pa, "layout");
  const u64 align = layout.alignment;
  if (align == 0 || (align & (align - 1)) != 0)
    return image_failure(Error::BadConfig, layout.link_base, load_pa, "layout alignment");
  // A promise below the smallest page cannot be mapped at all.
  if (align < page)
    return image_failure(Error::Unaligned, layout.link_base, load_pa, "layout alignment", page);
  if (!load_pa.is_aligned(align))
    return image_failure(Error::Unaligned, layout.link_base, load_pa, "load address", align);
  if (!layout.link_base.is_aligned(align))
    return image_failure(Error::Unaligned, layout.link_base, load_pa, "link base", align);

  for (unsigned i = 0; i < layout.count; ++i) {
    const ImageSection& s = layout.sections[i];
    const char* name = section_name(s);
    const u64 start = s.link_va.value();
    const u64 end = start + s.size;  // exclusive; 0 when the section ends at 2^64
    const PhysAddr pa = load_pa + (s.link_va - layout.link_base);
    if (s.size == 0 || (end != 0 && end < start))
      return image_failure(Error::BadSize, s.link_va, pa, name);
    if (!is_aligned(start, align))
      return image_failure(Error::Unaligned, s.link_va, pa, name, align);
    if (!is_aligned(end, align))
      return image_failure(Error::Unaligned, VirtAddr(end), pa + s.size, name, align);
    // Below the link base a section has no place in the loaded image.
    if (s.link_va < layout.link_base) return image_failure(Error::BadConfig, s.link_va, pa, name);
    if (i > 0) {
      const ImageSection& prev = layout.sections[i - 1];
      const u64 prev_end = prev.link_va.value() + prev.size;
      if (prev_end == 0 || start < prev_end) {
        // Overlapping the previous section, or entirely before it (unsorted).
        const bool overlaps = start + s.size > prev.link_va.value() || end == 0;
        return image_failure(overlaps ? Error::AlreadyMapped : Error::BadConfig, s.link_va, pa,
                             name);
      }
    }
    const Attrs attrs{s.perm, opts.mem, opts.global};
    if (!format.can_express(attrs))
      return image_failure(Error::AttrUnsupported, s.link_va, pa, name);

    SectionReport& sr = report.sections[i];
    sr.name = name;
    sr.va = s.link_va;
    sr.pa = pa;
    sr.size = s.size;
    sr.attrs = attrs;
    // Extends the previous range when it ends where this section starts and
    // has the same attributes: one map() call, so leaves may span both.
    MappedRange* last = report.range_count != 0 ? &report.ranges[report.range_count - 1] : nullptr;
    if (last != nullptr && last->attrs == attrs && last->va + last->size == s.link_va) {
      last->size += s.size;
      ++last->section_count;
    } else {
      report.ranges[report.range_count++] = MappedRange{s.link_va, pa, s.size, attrs, i, 1};
    }
    sr.range = report.range_count - 1;
  }
  report.section_count = layout.count;
  return Ok{};
}

inline void add_slots(ImageReport& report, SlotRange s) {
  if (report.slot_range_count != 0) {
    SlotRange& last = report.slots[report.slot_range_count - 1];
    // Sections ascend, so their slots never go backwards.
    if (s.first <= last.first + last.count) {
      const unsigned end = s.first + s.count;
      if (end > last.first + last.count) last.count = end - last.first;
      return;
    }
  }
  report.slots[report.slot_range_count++] = s;
}

}  // namespace detail

/// Maps every section of `layout` at its link address to
/// `load_pa + (link_va - layout.link_base)`, with attributes {section perm,
/// opts.mem, opts.global}, the largest leaves that the alignment of the
/// addresses and `opts.leaf_sizes` allow, adjacent sections with the same
/// attributes as one range. Never overwrites an existing translation.
///
/// Preconditions: none beyond a valid `space`; every bad input is an error.
///
/// Errors (op Map; `subject` names what is wrong, `alignment` the alignment
/// required where the error is Unaligned; on every error the tables are as
/// before and no table page is held):
/// - BadSize: no sections or more than kMaxImageSections (subject "layout"),
///   or a section of size zero or wrapping around (subject: the section);
/// - BadConfig: a layout alignment that is not a power of two (subject
///   "layout alignment"), a section below the link base or out of ascending
///   order (subject: the section);
/// - Unaligned: a promise below the format's smallest page (subject "layout
///   alignment", alignment = that page), a load address or link base off the
///   promised alignment (subject "load address" / "link base"), a section
///   whose start or end is off it (subject: the section, va: the boundary);
/// - AlreadyMapped: a section overlapping the previous one (subject: the
///   later section), or any section over an existing translation;
/// - AttrUnsupported: a section whose attributes the format cannot express;
/// - anything map() reports (NonCanonical, PhysTooLarge, OutOfTables, ...),
///   named after the section holding the failing address.
///
/// Rollback caveat: after an engine failure on a later range, unmapping the
/// earlier ones frees every table that the unmap leaves empty. Those are the
/// tables the image created, unless the space held empty tables before (the
/// engine never leaves any, but adopted or static tables may be empty); those
/// would be freed too. A bump allocator cannot take most pages back and
/// counts them as leaked.
template <PagingFormat Format, TableAccess Access, TableAllocator Alloc, EntryWriter Writer,
          TlbSink Sink>
Result<ImageReport> map_image(AddressSpace<Format, Access, Alloc, Writer, Sink>& space,
                              const ImageLayout& layout, PhysAddr load_pa,
                              const ImageOptions& opts = {}) {
  static_assert(Format::kMaxLevels <= kMaxImageLevels, "ImageReport counts too few levels");
  const Format& format = space.format();
  ImageReport report;
  report.levels = format.levels();
  report.root_level = format.levels() - 1;
  report.slot_span = space.leaf_size(report.root_level);

  if (auto checked =
          detail::check_layout(format, space.leaf_size(0), layout, load_pa, opts, report);
      !checked.ok())
    return checked.failure();

  MapOptions mo;
  mo.leaf_sizes = opts.leaf_sizes;
  mo.existing = OnExisting::Error;
  mo.allow_split = false;  // only invalid entries are written: nothing to split
  mo.contiguous_hint = opts.contiguous_hint;

  // Dry runs: canonical form, physical size, leaf sizes and existing
  // translations, for every range before the first write. The ranges are
  // disjoint, so one range's plan cannot be invalidated by another's map.
  for (unsigned k = 0; k < report.range_count; ++k) {
    const MappedRange& r = report.ranges[k];
    auto planned = space.plan_map(r.va, r.pa, r.size, r.attrs, mo);
    if (!planned.ok()) return detail::name_engine_failure(planned.failure(), layout, r);
  }

  for (unsigned k = 0; k < report.range_count; ++k) {
    const MappedRange& r = report.ranges[k];
    auto mapped = space.map(r.va, r.pa, r.size, r.attrs, mo);
    if (mapped.ok()) {
      report.tables_allocated += mapped->stats.tables_allocated;
      continue;
    }
    // Only what the dry run cannot foresee gets here (the allocator ran dry).
    // Unmapping exactly the ranges mapped touches only leaves they wrote, so
    // it needs no table and cannot fail.
    for (unsigned j = k; j-- > 0;) {
      auto undone = space.unmap(report.ranges[j].va, report.ranges[j].size);
      PTKIT_INVARIANT(undone.ok());
    }
    return detail::name_engine_failure(mapped.failure(), layout, r);
  }

  // The report, from the tables themselves.
  for (unsigned level = 0; level < report.levels; ++level) {
    report.leaves[level].size = space.leaf_size(level);
    for (unsigned i = 0; i < report.section_count; ++i)
      report.sections[i].leaves[level].size = space.leaf_size(level);
  }
  const u64 root_entries = space.entries(report.root_level);
  auto slot_of = [&](VirtAddr va) {
    return unsigned((va.value() / report.slot_span) & (root_entries - 1));
  };
  for (unsigned i = 0; i < report.section_count; ++i) {
    SectionReport& s = report.sections[i];
    const unsigned first = slot_of(s.va);
    s.slots = SlotRange{first, slot_of(s.va + (s.size - 1)) - first + 1};
    detail::add_slots(report, s.slots);
  }
  for (unsigned k = 0; k < report.range_count; ++k) {
    const MappedRange& r = report.ranges[k];
    unsigned next = r.first_section;  // first section that may meet the leaf
    const unsigned end = r.first_section + r.section_count;
    const Status walked = space.walk(r.va, r.size, [&](const Mapping& m) {
      ++report.leaves[m.level].count;
      const u64 last = m.va.value() + (m.size - 1);
      while (next < end &&
             report.sections[next].va.value() + (report.sections[next].size - 1) < m.va.value())
        ++next;
      for (unsigned i = next; i < end && report.sections[i].va.value() <= last; ++i)
        ++report.sections[i].leaves[m.level].count;
      return true;
    });
    PTKIT_INVARIANT(walked.ok());  // the range was just mapped, so it is valid
  }
  return report;
}

}  // namespace ptkit::early
