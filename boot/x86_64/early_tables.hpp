// The kernel's direct map, built the way a kernel must before it has one
// (DESIGN.md §5), on the tables the CPU is running on:
//
// 1. Transient slots. The kernel runs on its image mapping alone. Table
//    pages come from a boot allocator in RAM no mapping covers, so the
//    engine reaches each through a transient slot (early/table_access.hpp):
//    a few fixed virtual pages whose level-0 entries the slot policy writes
//    itself. With them the kernel maps an early direct map of the boot
//    allocator's range, 4K pages with the boot attributes (RWX, not global),
//    needing more tables than there are slots: the slots are reused.
// 2. The early direct map is then live: the final build reaches its tables
//    through it (DirectMapAccess), and it is declared a live range.
// 3. The two-pass direct map (early/direct_map.hpp) of all RAM and the local
//    APIC laid over it: pass one changes sizes only (4K tables merged into
//    2M leaves, holes filled, with the boot attributes), the TLB work
//    completes, pass two changes attributes only (NX, global). Every entry
//    write is audited (write_audit.hpp), and the CPU executes from and writes
//    to the live range between the passes and after them.
#pragma once

#include "check.hpp"
#include "kernel_space.hpp"
#include "ptkit/early/direct_map.hpp"
#include "ptkit/early/table_access.hpp"
#include "trap.hpp"
#include "write_audit.hpp"

namespace kernel {

/// The boot allocator's physical range, which the early direct map covers.
inline constexpr u64 kBootTables = 16 * MiB;
inline constexpr u64 kBootTablesSize = 8 * MiB;
/// Its last page holds a `ret` at kRetOffset, to execute through the early
/// direct map (the allocator never gets that far).
inline constexpr u64 kBootRetPage = kBootTables + kBootTablesSize - 4 * KiB;
inline constexpr u64 kRetOffset = 0xF00;
/// What an early boot map uses, and what pass one keeps.
inline constexpr Attrs kBootAttrs{ptkit::RWX, MemType::WriteBack, false};

template <class Format>
class EarlyTables {
  static constexpr unsigned kSlots = ptkit::early::engine_views(Format::kMaxLevels);
  using Slots = ptkit::early::TransientSlots<Format, X86TlbSink, kSlots>;
  using SlotRef = ptkit::early::AccessRef<Slots>;
  using SlotSpace =
      ptkit::AddressSpace<Format, ptkit::early::ChainAccess<ptkit::early::ImageAccess, SlotRef>,
                          ptkit::BumpAllocator&, ptkit::PlainWriter, X86TlbSink>;
  // How the audit reads tables: those in the image, and those of the boot
  // allocator through the early direct map.
  using TableReach =
      ptkit::early::ChainAccess<ptkit::early::ImageAccess, ptkit::early::DirectMapAccess>;
  using Audit = WriteAudit<Format, TableReach>;
  using AuditSpace = ptkit::AddressSpace<
      Format,
      ptkit::early::ChainAccess<ptkit::early::ImageAccess, ptkit::early::DirectMapAccess, SlotRef>,
      ptkit::BumpAllocator&, ptkit::RecordingWriter<Audit>, X86TlbSink>;

 public:
  EarlyTables(ImageSpace<Format>& space, const Machine& m, const VirtualLayout& v,
              TlbCounts* counts)
      : s_(space), m_(m), v_(v), counts_(counts) {}

  /// Every step is a check; false if one failed (the kernel stops there).
  bool run() {
    u64* level0 = slot_level0();
    if (level0 == nullptr) return false;
    auto made = Slots::create(s_.format(), VirtAddr(v_.slot_window + kSlotOffset), level0,
                              X86TlbSink(&slot_counts_));
    {
      Check c("slot-window");
      if (!c.expect_ok(made, "TransientSlots::create")) return false;
      if (!c.expect(Slots::enough_for(s_.format()), "enough slots for the engine")) return false;
    }
    Slots& slots = made.value();
    return early_direct_map(slots) && final_direct_map(slots);
  }

 private:
  // The slot window: an anchor page at the start of its 2M block makes the
  // level-0 table exist (in the image pool); the slots follow 8 pages on.
  static constexpr u64 kSlotOffset = 8 * 4 * KiB;

  static unsigned index_of(u64 va, unsigned level) { return (va >> (12 + 9 * level)) & 511; }

  /// Maps the anchor and finds the level-0 table that maps the slot window.
  u64* slot_level0() {
    Check c("slot-anchor");
    const Attrs anchor{Perm::R, MemType::WriteBack, false};
    auto mapped =
        s_.map(VirtAddr(v_.slot_window), PhysAddr(addr_of(__rodata_start)), 4 * KiB, anchor);
    if (!c.expect_ok(mapped, "map the anchor page")) return nullptr;
    // ptkit names leaves, not tables, so the kernel follows the path itself
    // (as the host tests of the slots do). It was just made from the image
    // pool, which ImageAccess reaches.
    PhysAddr table = s_.root();
    for (unsigned level = s_.format().levels() - 1; level > 0; --level) {
      const u64* t = s_.access().table(table);
      const ptkit::Entry e = s_.format().decode(t[index_of(v_.slot_window, level)], level);
      if (!c.expect(e.is_table(), "a table on the way to the slot window", level)) return nullptr;
      table = e.pa;
    }
    u64* level0 = s_.access().table(table);
    c.expect(level0 != nullptr, "level-0 table inside the image", table.value());
    return level0;
  }

  /// Step 1: the early direct map, its tables reached through the slots.
  bool early_direct_map(Slots& slots) {
    {
      Check c("slot-tables");
      SlotSpace space(s_.format(),
                      ptkit::early::ChainAccess<ptkit::early::ImageAccess, SlotRef>(image_access(),
                                                                                    SlotRef(slots)),
                      bump_, {}, X86TlbSink(counts_), s_.root());
      ptkit::MapOptions o;
      o.leaf_sizes = 4 * KiB;
      auto done = space.map(VirtAddr(v_.direct_map + kBootTables), PhysAddr(kBootTables),
                            kBootTablesSize, kBootAttrs, o);
      if (!c.expect_ok(done, "map the early direct map")) return false;
      // Every slot use is one INVLPG when it is mapped and one when it is
      // given back: more uses than slots means slot entries were reused.
      const u64 uses = slot_counts_.invlpg / 2;
      c.expect(done->stats.tables_allocated > kSlots, "more tables than slots",
               done->stats.tables_allocated, kSlots);
      c.expect(uses > kSlots, "slot entries reused", uses, kSlots);
      c.expect(slots.high_water() <= kSlots && slots.in_use() == 0, "all slots given back",
               slots.high_water(), slots.in_use());
      for (unsigned i = 0; i < kSlots; ++i) {
        c.expect(*slots.slot_entry(i) == 0, "slot entry invalid again", i);
        // Each was in the TLB while used: done() must have invalidated it.
        const u64 va = slots.slot_va(i).value();
        c.expect(trap::read(va).page_fault(va, trap::kPfPresent, 0), "slot page faults after", va);
      }
      serial::write("info slots ");
      serial::dec(kSlots);
      serial::write(", uses ");
      serial::dec(uses);
      serial::write(", boot tables ");
      serial::dec(done->stats.tables_allocated);
      serial::write("\n");
      if (c.failed()) return false;
    }
    Check c("early-direct-map");
    // Written through a slot, read and executed through the early map.
    auto page = slots.acquire(PhysAddr(kBootRetPage));
    if (!c.expect_ok(page, "acquire a slot")) return false;
    page.value()[0] = kMagic;
    page.value()[kRetOffset / 8] = 0xC3;  // ret
    slots.done(page.value());
    const u64 va = v_.direct_map + kBootRetPage;
    const trap::Probe r = trap::read(va);
    c.expect(!r.faulted && r.value == kMagic, "slot write read through the early map", r.value);
    c.expect(!trap::exec(va + kRetOffset).faulted, "executable (boot attributes)");
    return !c.failed();
  }

  /// What the CPU does between the passes (DirectMapOptions::after_pass_one).
  struct Between {
    Audit* audit;
    u64 ret_va;
    bool exec_ok = false;
    bool write_ok = false;
  };
  static void between_passes(void* context) {
    auto* b = static_cast<Between*>(context);
    b->audit->set_pass(1);
    // Sizes changed, attributes not yet: still the boot ones.
    b->exec_ok = !trap::exec(b->ret_va).faulted;
    b->write_ok = !trap::write(b->ret_va - kRetOffset, kMagic).faulted;
  }

  /// Steps 2 and 3: the final direct map over the live early one.
  bool final_direct_map(Slots& slots) {
    const u64 early_va = v_.direct_map + kBootTables;
    const ptkit::early::DirectMapAccess early{
        PhysAddr(kBootTables), PhysAddr(kBootTables + kBootTablesSize - 1), VirtAddr(early_va)};
    Audit audit(s_.format(), TableReach(image_access(), early));
    AuditSpace space(
        s_.format(),
        ptkit::early::ChainAccess<ptkit::early::ImageAccess, ptkit::early::DirectMapAccess,
                                  SlotRef>(image_access(), early, SlotRef(slots)),
        bump_, ptkit::RecordingWriter<Audit>(audit), X86TlbSink(counts_), s_.root());
    const ptkit::VirtRange live = ptkit::VirtRange::of(VirtAddr(early_va), kBootTablesSize);
    const u64 ret_va = v_.direct_map + kBootRetPage + kRetOffset;
    Between between{&audit, ret_va};
    ptkit::early::DirectMapReport report;
    {
      Check c("direct-map");
      ptkit::early::DirectMapOptions opts;
      opts.base = VirtAddr(v_.direct_map);
      opts.final_attrs = ptkit::early::final_direct_map_attrs(space.format());
      opts.boot_attrs = {kBootAttrs, kBootAttrs};
      opts.live = ptkit::LiveRanges{&live, 1};
      opts.after_pass_one = &between_passes;
      opts.context = &between;
      auto built = ptkit::early::build_direct_map(space, m_.memory_map(), opts);
      if (!c.expect_ok(built, "build_direct_map")) return false;
      report = built.value();
      c.expect(report.pass_two_ops != 0, "two passes over the live range", report.pass_two_ops);
      c.expect(report.pass_one.merges != 0, "pass one merged boot tables into 2M leaves");
      c.expect(report.leaves_of_size(2 * MiB) != 0, "2M leaves in the direct map");
      serial::write("info direct map: pass one ");
      serial::dec(report.pass_one_ops);
      serial::write(" ops, ");
      serial::dec(report.pass_one.merges);
      serial::write(" merges; pass two ");
      serial::dec(report.pass_two_ops);
      serial::write(" ops, ");
      serial::dec(report.pass_two.leaves_written);
      serial::write(" leaves rewritten; boot tables leaked ");
      serial::dec(bump_.leaked());
      serial::write("\n");
      if (c.failed()) return false;
    }
    Check c("direct-map-passes");
    const WriteCounts& one = audit.pass(0);
    const WriteCounts& two = audit.pass(1);
    c.expect(one.size_changes != 0 && one.size_changes == one.equivalent,
             "pass one: every size change keeps frames and attributes", one.size_changes,
             one.equivalent);
    c.expect(one.attr_only == 0 && one.frame_changes == 0,
             "pass one: no live leaf changes attributes or frame", one.attr_only,
             one.frame_changes);
    c.expect(two.attr_only != 0, "pass two: live leaves changed attributes", two.attr_only);
    c.expect(two.size_changes == 0 && two.frame_changes == 0 && two.fresh == 0,
             "pass two: no size or frame change, no new table", two.size_changes,
             two.frame_changes);
    c.expect(between.exec_ok && between.write_ok, "between the passes: executable and writable");
    auto merged = space.query(VirtAddr(early_va + 2 * MiB));
    c.expect(merged.ok() && merged->size == 2 * MiB &&
                 merged->attrs == ptkit::early::final_direct_map_attrs(space.format()).ram,
             "the live range: 2M leaves with the final attributes");
    // Rewriting the `ret` drops what QEMU translated from it (its jump cache
    // ignores large-page invalidations, see random_checks.hpp): the fetch
    // below goes through the TLB, where pass two's invalidation must show.
    *reinterpret_cast<volatile ptkit::u8*>(ret_va) = 0xC3;  // NOLINT: the direct map
    c.expect(trap::exec(ret_va).page_fault(ret_va, kPfBits, trap::kPfPresent | trap::kPfFetch),
             "after pass two the live range is no-execute");
    c.expect(!trap::write(ret_va - kRetOffset, kMagic).faulted, "and still writable");
    serial::write("info audit: pass one ");
    serial::dec(one.size_changes);
    serial::write(" size changes (equivalent ");
    serial::dec(one.equivalent);
    serial::write("), ");
    serial::dec(one.added);
    serial::write(" added; pass two ");
    serial::dec(two.attr_only);
    serial::write(" attribute-only, ");
    serial::dec(two.size_changes);
    serial::write(" size changes\n");
    return !c.failed();
  }

  static constexpr u64 kMagic = 0x736c'6f74'6d61'7021;
  static constexpr u64 kPfBits = trap::kPfPresent | trap::kPfWrite | trap::kPfFetch;

  ImageSpace<Format>& s_;
  const Machine& m_;
  const VirtualLayout& v_;
  TlbCounts* counts_;
  TlbCounts slot_counts_{};
  ptkit::BumpAllocator bump_{PhysAddr(kBootTables), kBootTablesSize / (4 * KiB) - 1};
};

}  // namespace kernel
