// The transient-slot area under Xen PV: the guest edits its live tables
// reaching each one only through a few slot pages
// (early::TransientSlots), as a kernel does before it has a direct map. Under
// PV a slot may map a table page read-only only, and its entry lives in a
// page table the guest cannot write: the slot entries go through mmu_update
// (xen::SlotEntryUpdate) and their invalidations through MMUEXT
// (xen::MmuextSink). One named check, `transient-slots`.
#pragma once

#include "check.hpp"
#include "kernel_space.hpp"
#include "ptkit/early/table_access.hpp"
#include "serial.hpp"

extern "C" char __rodata_start[];
extern "C" volatile ptkit::u64 fault_resume, fault_error, fault_count;

namespace kernel {

/// The slot window's 2 MiB block: an anchor page at its start makes its L1
/// exist; the slots follow 8 pages on.
inline constexpr u64 kSlotBlock = 0xffffc90080000000;
inline constexpr u64 kSlotWindow = kSlotBlock + 8 * kPage;
/// What the slot space maps: 8 MiB under a fresh L2 (an L2 and four L1s,
/// more tables than slots), from tagged pseudo-physical memory.
inline constexpr u64 kSlotMapped = 0xffffc900c0000000;
inline constexpr u64 kSlotMappedSize = u64{8} << 20;
inline constexpr u64 kSlotPhys = u64{24} << 20;

class TransientSlotCheck {
  using Perm = ptkit::Perm;

  static constexpr unsigned kSlots = ptkit::early::engine_views(Format::kMaxLevels);
  using EntryUpdate = ptkit::xen::SlotEntryUpdate<xen::MmuUpdateCall, Translation>;
  using Slots = ptkit::early::TransientSlots<Format, Sink, kSlots, ptkit::early::VirtualSlotWindow,
                                             EntryUpdate>;
  using SlotSpace =
      ptkit::AddressSpace<Format, ptkit::early::AccessRef<Slots>, Tables, Writer, Sink>;

 public:
  /// `read_faults(va)`: whether a read of `va` faults.
  TransientSlotCheck(Space& space, Tables tables, bool (*read_faults)(u64))
      : space_(space), tables_(tables), read_faults_(read_faults) {}

  void run() {
    Check c("transient-slots");
    u64* level0 = anchor(c);
    if (level0 == nullptr) return;
    auto made = Slots::create(space_.format(), VirtAddr(kSlotWindow), level0,
                              Sink(xen::MmuextCall{}), {}, ptkit::xen::kSlotAttrs,
                              EntryUpdate(xen::MmuUpdateCall{}, Translation{}, level0_pa_));
    if (!c.expect_ok(made, "TransientSlots::create")) return;
    Slots& slots = made.value();
    SlotSpace s(space_.format(), ptkit::early::AccessRef<Slots>(slots), tables_,
                Writer(xen::MmuUpdateCall{}, Translation{}), Sink(xen::MmuextCall{}),
                space_.root());

    for (u64 off = 0; off < kSlotMappedSize; off += kPage) *word(kSlotPhys + off) = tag(off);
    ptkit::MapOptions mo;
    mo.leaf_sizes = kPage;
    ptkit::Attrs rw{};
    rw.perm = Perm::R | Perm::W;
    auto mapped = s.map(VirtAddr(kSlotMapped), PhysAddr(kSlotPhys), kSlotMappedSize, rw, mo);
    if (!c.expect_ok(mapped, "map through the slots")) return;
    c.expect(mapped->stats.tables_allocated > kSlots, "more tables than slots",
             mapped->stats.tables_allocated, kSlots);
    // Each use of a slot is one INVLPG when it is mapped and one when it is
    // given back: more uses than slots means slot entries were reused.
    const u64 uses = slots.sink().invlpgs() / 2;
    c.expect(uses > kSlots, "slot entries reused", uses, kSlots);
    expect_slots_released(c, slots);
    for (u64 off = 0; off < kSlotMappedSize && !c.failed(); off += kPage) {
      const auto* p = reinterpret_cast<const volatile u64*>(kSlotMapped + off);
      c.expect(*p == tag(off), "tag read back through the slot-built mapping", off, *p);
      auto q = space_.query(VirtAddr(kSlotMapped + off));
      c.expect(q.ok() && q->pa.value() == kSlotPhys + off && q->attrs.perm == rw.perm,
               "the main space sees it", off);
    }

    // Write permission off half of it, each PTE through invalid first
    // (PvFormat), the engine reading each L1 through a slot.
    auto prot = s.protect(VirtAddr(kSlotMapped), kSlotMappedSize / 2,
                          ptkit::AttrChange{Perm::None, Perm::W});
    if (c.expect_ok(prot, "protect through the slots"))
      c.expect(prot->stats.breaks == kSlotMappedSize / 2 / kPage, "one break per page",
               prot->stats.breaks);
    auto ro = space_.query(VirtAddr(kSlotMapped + kSlotMappedSize / 2 - kPage));
    c.expect(ro.ok() && ro->attrs.perm == Perm::R, "protected half read-only");
    expect_slots_released(c, slots);

    // Unmapped whole, all five tables are freed again.
    auto gone = s.unmap(VirtAddr(kSlotMapped), kSlotMappedSize);
    if (c.expect_ok(gone, "unmap through the slots"))
      c.expect(gone->stats.tables_freed == mapped->stats.tables_allocated, "tables freed",
               gone->stats.tables_freed, mapped->stats.tables_allocated);
    c.expect(read_faults_(kSlotMapped) && read_faults_(kSlotMapped + kSlotMappedSize - kPage),
             "unmapped: reads fault");
    expect_slots_released(c, slots);
    c.expect(!s.writer().failed(), "every mmu_update accepted");
    c.expect(slots.sink().failures() == 0 && s.sink().failures() == 0, "every MMUEXT op accepted");
    c.expect(!slots.last_error().any(), "no slot error",
             slots.last_error().any() ? slots.last_error().count : 0);

    serial::write("info slots ");
    serial::dec(kSlots);
    serial::write(", uses ");
    serial::dec(slots.sink().invlpgs() / 2);
    serial::write(", tables through slots ");
    serial::dec(mapped->stats.tables_allocated);
    serial::write(", mmu_update requests ");
    serial::dec(s.writer().requests());
    serial::write(" in ");
    serial::dec(s.writer().hypercalls());
    serial::write(" hypercalls\n");

    // The anchor goes, and with it the slot window's L1 and L2.
    auto anchor_gone = space_.unmap(VirtAddr(kSlotBlock), kPage);
    if (c.expect_ok(anchor_gone, "unmap the anchor"))
      c.expect(anchor_gone->stats.tables_freed == 2, "the slot window's tables freed",
               anchor_gone->stats.tables_freed);
  }

 private:
  static u64 tag(u64 off) { return 0x5107'0000'0000'0000 | off; }
  static volatile u64* word(u64 pa) {
    return reinterpret_cast<volatile u64*>(kDirectBase + pa);  // NOLINT: the direct map
  }

  /// Maps the anchor page and returns the slot window's L1 as the guest
  /// reads it (through the direct map, read-only).
  u64* anchor(Check& c) {
    ptkit::MapOptions mo;
    mo.leaf_sizes = kPage;
    ptkit::Attrs ro{};
    ro.perm = Perm::R;
    auto mapped =
        space_.map(VirtAddr(kSlotBlock),
                   PhysAddr(reinterpret_cast<u64>(__rodata_start) - kVirtBase), kPage, ro, mo);
    if (!c.expect_ok(mapped, "map the anchor page")) return nullptr;
    PhysAddr t = space_.root();
    for (unsigned level = 3; level > 0; --level) {
      const u64 raw = GuestAccess{}.table(t)[(kSlotBlock >> (12 + 9 * level)) & 511];
      const ptkit::Entry e = space_.format().decode(raw, level);
      if (!c.expect(e.is_table(), "a table on the way to the slot window", level)) return nullptr;
      t = e.pa;
    }
    level0_pa_ = t;
    return GuestAccess{}.table(t);
  }

  void expect_slots_released(Check& c, Slots& slots) {
    c.expect(slots.in_use() == 0 && slots.high_water() <= kSlots, "all slots given back",
             slots.in_use(), slots.high_water());
    for (unsigned i = 0; i < kSlots; ++i) {
      c.expect(*slots.slot_entry(i) == 0, "slot entry invalid again", i);
      c.expect(read_faults_(slots.slot_va(i).value()), "slot page faults after use", i);
    }
  }

  Space& space_;
  Tables tables_;
  bool (*read_faults_)(u64);
  PhysAddr level0_pa_;
};

}  // namespace kernel
