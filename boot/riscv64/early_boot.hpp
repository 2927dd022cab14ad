// The way from no paging to a kernel's final tables when there is no direct
// map yet, done for real on the MMU (DESIGN.md §5):
//
//  1. Boot space (paging off): ptkit builds small tables from a static pool
//     in the image (early::ImageAccess): the image with its section
//     permissions, the UART and test finisher at their physical addresses,
//     and the level-0 table of a window of transient slots. satp -> it.
//  2. Final space (paging on, boot space): its tables come from a bump
//     allocator over RAM outside the image, which nothing maps: ptkit reaches
//     each of them through the transient slots (early::TransientSlots writes
//     a slot's level-0 entry, fences it, and hands the engine the slot's
//     address). Into it go the image, an early direct map (the first 64 MiB
//     of RAM, its first 2 MiB as pages, and the devices, with the boot
//     attributes: RWX, non-global, write-back), and then the final direct
//     map over it with early::build_direct_map: pass one changes sizes only
//     (merges the pages, fills holes with the boot attributes), pass two
//     attributes only (RW, NX, global, IO for the devices with Svpbmt).
//     satp -> it. (The bump allocator cannot reuse the merged table: one
//     page leaked, reported.)
//
// The kernel's own space (kernel_space.hpp) is then built while running on
// the final space, and every later check runs there.
#pragma once

#include "check.hpp"
#include "cpu.hpp"
#include "image_marks.hpp"
#include "kernel_space.hpp"
#include "ptkit/early/table_access.hpp"

namespace kernel {

inline constexpr unsigned kBootPoolPages = 16;
alignas(4096) inline u64 g_boot_pool[kBootPoolPages][512];

class EarlyBoot {
 public:
  using BootPool = ptkit::StaticPoolAllocator<kBootPoolPages>;
  using BootSpace = ptkit::AddressSpace<Format, ptkit::early::ImageAccess, BootPool&,
                                        ptkit::PlainWriter, TlbSinkRv>;
  static constexpr unsigned kSlots = 8;
  using Slots = ptkit::early::TransientSlots<Format, TlbSinkRv, kSlots>;
  using FinalSpace = ptkit::AddressSpace<Format, ptkit::early::AccessRef<Slots>,
                                         ptkit::BumpAllocator&, ptkit::PlainWriter, TlbSinkRv>;

  /// RAM for the final space's tables, which only the slots ever reach.
  static constexpr u64 kFinalTables = 0x8C00'0000;
  static constexpr u64 kFinalTablePages = 64;
  /// RAM the early direct map covers, from the image's start.
  static constexpr u64 kEarlyDirect = 64 * MiB;

  EarlyBoot(const Machine& m, const VirtualLayout& v, TlbState& tlb)
      : m_(m), v_(v), tlb_(tlb), slot_window_(v.test_base + 3 * GiB) {}

  /// Runs both stages; false when a check failed (the caller stops).
  bool run() {
    BootPool pool(PhysAddr(addr_of(g_boot_pool)));
    auto boot = BootSpace::create(Format(m_.mode, m_.features), image_access(), pool, {}, sink());
    {
      Check c("boot-space");
      if (!c.expect_ok(boot, "create") || !boot_space(c, boot.value())) return false;
    }
    return final_space(boot.value());
  }

 private:
  static constexpr Attrs kBootAttrs{ptkit::RWX, MemType::WriteBack, false};

  TlbSinkRv sink() { return TlbSinkRv(CountingOps(&tlb_), 0); }

  /// Stage 1, paging off.
  bool boot_space(Check& c, BootSpace& b) {
    if (!map_kernel_image(c, b)) return false;
    const Attrs device{ptkit::RW, ptkit::early::device_mem_type(b.format()), true};
    for (u64 pa : {mmio::kUart, mmio::kTestFinisher})
      if (!c.expect_ok(b.map(VirtAddr(pa), PhysAddr(pa), 4 * KiB, device), "device page"))
        return false;
    // One read-only page just below the slots makes the level-0 table that
    // holds their entries.
    const Attrs ro{Perm::R, MemType::WriteBack, false};
    if (!c.expect_ok(b.map(VirtAddr(slot_window_), KernelImage::load_pa(), 4 * KiB, ro),
                     "the slot window's table"))
      return false;
    const u64 satp = satp_for(m_.mode, b.root());
    cpu::write_satp(satp);
    // An unsupported MODE makes the whole write have no effect (§4.1.11).
    return c.expect(cpu::read_satp() == satp, "satp read back", cpu::read_satp(), satp);
  }

  /// The level-0 table (through the image) translating `va` in `b`.
  static u64* level0_table(BootSpace& b, u64 va) {
    PhysAddr table = b.root();
    for (unsigned level = b.format().levels() - 1; level >= 1; --level) {
      const u64* t = b.access().table(table);
      const ptkit::Entry e = b.format().decode(t[(va >> (12 + 9 * level)) & 511], level);
      if (!e.is_table()) return nullptr;
      table = e.pa;
    }
    return b.access().table(table);
  }

  /// Stage 2, on the boot space.
  bool final_space(BootSpace& b) {
    const Format& format = b.format();
    auto slots = Slots::create(format, VirtAddr(slot_window_ + 4 * KiB),
                               level0_table(b, slot_window_), sink());
    {
      Check c("transient-slots");
      if (!c.expect_ok(slots, "create")) return false;
      c.expect(Slots::enough_for(format), "enough slots for the engine");
      if (c.failed()) return false;
    }
    ptkit::BumpAllocator bump(PhysAddr(kFinalTables), kFinalTablePages);
    auto created =
        FinalSpace::create(format, ptkit::early::AccessRef<Slots>(slots.value()), bump, {}, sink());
    {
      Check c("final-image-map");
      if (!c.expect_ok(created, "create") || !map_kernel_image(c, created.value())) return false;
    }
    FinalSpace& f = created.value();
    {
      Check c("early-direct-map");
      const u64 ram = addr_of(__image_start);
      // The first 2 MiB as pages, as a boot stub might leave them: pass one
      // merges them into a megapage.
      ptkit::MapOptions pages;
      pages.leaf_sizes = 4 * KiB;
      pages.contiguous_hint = false;
      if (!c.expect_ok(
              f.map(VirtAddr(v_.direct_map + ram), PhysAddr(ram), 2 * MiB, kBootAttrs, pages),
              "RAM pages with the boot attributes") ||
          !c.expect_ok(f.map(VirtAddr(v_.direct_map + ram + 2 * MiB), PhysAddr(ram + 2 * MiB),
                             kEarlyDirect - 2 * MiB, kBootAttrs),
                       "RAM megapages with the boot attributes"))
        return false;
      for (u64 pa : {mmio::kUart, mmio::kTestFinisher})
        if (!c.expect_ok(f.map(VirtAddr(v_.direct_map + pa), PhysAddr(pa), 4 * KiB, kBootAttrs),
                         "device with the boot attributes"))
          return false;
    }
    {
      Check c("two-pass-direct-map");
      ptkit::early::DirectMapOptions opts;
      opts.base = VirtAddr(v_.direct_map);
      opts.final_attrs = ptkit::early::final_direct_map_attrs(format);
      opts.boot_attrs = {kBootAttrs, kBootAttrs};
      opts.after_pass_one = &after_pass_one;
      opts.context = this;
      slots_ = &slots.value();
      auto report = ptkit::early::build_direct_map(f, m_.memory_map(), opts);
      if (!c.expect_ok(report, "build_direct_map")) return false;
      c.expect(report->pass_one_ops != 0 && report->pass_two_ops != 0, "two passes",
               report->pass_one_ops, report->pass_two_ops);
      c.expect(report->pass_one.merges == 1, "the boot pages merged", report->pass_one.merges);
      c.expect(passes_seen_ == 1 && slots_held_between_ == 0,
               "pass one done, every slot free, before pass two");
      c.expect(slots->in_use() == 0 && slots->high_water() <= kSlots, "slots all given back",
               slots->in_use(), slots->high_water());
      c.expect(!slots->last_error().any(), "no slot ran out");
      const u64 image = v_.direct_map + addr_of(__image_start);
      auto q = f.query(VirtAddr(image));
      c.expect(q.ok() && q->attrs == opts.final_attrs.ram, "RAM has its final attributes");
      auto d = f.query(VirtAddr(v_.direct_map + mmio::kUart));
      c.expect(d.ok() && d->attrs == opts.final_attrs.device, "the UART too");
      report_ = report.value();
      if (c.failed()) return false;
    }
    Check c("final-switch");
    const u64 satp = satp_for(m_.mode, f.root());
    cpu::write_satp(satp);
    if (!c.expect(cpu::read_satp() == satp, "satp read back")) return false;
    mmio::g_offset = v_.direct_map;
    // The boot space's identity pages are gone; the direct map has the image.
    const trap::Probe r = trap::read(v_.direct_map + addr_of(&g_rodata_word));
    c.expect(!r.faulted && r.value == kRodataMagic, "rodata through the final direct map");
    c.expect(trap::read(mmio::kUart).page_fault(mmio::kUart, trap::kLoadPageFault),
             "the boot space's device identity page is not here");
    serial::write("info early boot: final tables ");
    serial::dec(kFinalTablePages - bump.pages_free());
    serial::write(" (leaked ");
    serial::dec(bump.leaked());
    serial::write("), slots high water ");
    serial::dec(slots->high_water());
    serial::write(", direct map pass one ");
    serial::dec(report_.pass_one_ops);
    serial::write(" ops / pass two ");
    serial::dec(report_.pass_two_ops);
    serial::write(" ops, ");
    serial::dec(report_.pass_one.merges);
    serial::write(" merges\n");
    return !c.failed();
  }

  static void after_pass_one(void* context) {
    auto& self = *static_cast<EarlyBoot*>(context);
    ++self.passes_seen_;
    self.slots_held_between_ = self.slots_->in_use();
  }

  const Machine& m_;
  const VirtualLayout& v_;
  TlbState& tlb_;
  u64 slot_window_;
  const Slots* slots_ = nullptr;  // for after_pass_one
  unsigned passes_seen_ = 0;
  unsigned slots_held_between_ = 0;
  ptkit::early::DirectMapReport report_{};
};

}  // namespace kernel
