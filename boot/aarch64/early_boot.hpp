// The way from no MMU to a kernel's final tables when there is no direct map
// yet, done for real on the MMU (DESIGN.md §5):
//
//  1. Boot space (MMU off): ptkit builds small tables from a static pool in
//     the image (early::ImageAccess): the image with its section
//     permissions, the PL011 at its physical address (Device-nGnRE), and the
//     level-3 table of a window of transient slots. The MMU goes on with it.
//  2. Final space (MMU on, boot space): its tables come from a bump
//     allocator over RAM outside the image, which nothing maps: ptkit reaches
//     each of them through the transient slots (early::TransientSlots writes
//     a slot's level-3 entry, does the TLBI/DSB/ISB for it, and hands the
//     engine the slot's address). Into it go the image, an early direct map
//     of RAM and the UART with the boot attributes (RWX, non-global,
//     write-back; the first level-2 block of RAM as pages), and then the
//     final direct map over it with early::build_direct_map: pass one
//     changes sizes only (merges the pages into a block where the block fits
//     in RAM), pass two attributes only (RW, XN, global; Device-nGnRE for the
//     UART), which on Arm are break-before-make changes (nG 1 -> 0 and the
//     memory type). TTBR0_EL1 -> it. (The bump allocator cannot reuse the
//     merged table: one page leaked, reported.)
//
// The kernel's own space (kernel_space.hpp) is then built while running on
// the final space, and every later check runs there.
#pragma once

#include "check.hpp"
#include "cpu.hpp"
#include "kernel_space.hpp"
#include "mmu.hpp"
#include "ptkit/early/table_access.hpp"
#include "scratch.hpp"
#include "trap.hpp"

namespace kernel {

inline constexpr unsigned kBootPoolPages = 16;
alignas(config::kPage) inline ptkit::u8 g_boot_pool[kBootPoolPages * config::kPage];

class EarlyBoot {
 public:
  using BootPool = ptkit::StaticPoolAllocator<kBootPoolPages>;
  using BootSpace = ptkit::AddressSpace<Format, ptkit::early::ImageAccess, BootPool&,
                                        ptkit::PlainWriter, A64TlbSink>;
  static constexpr unsigned kSlots = 8;
  using Slots = ptkit::early::TransientSlots<Format, A64TlbSink, kSlots>;
  using FinalSpace = ptkit::AddressSpace<Format, ptkit::early::AccessRef<Slots>,
                                         ptkit::BumpAllocator&, ptkit::PlainWriter, A64TlbSink>;

  /// RAM for the final space's tables, which only the slots ever reach.
  static constexpr u64 kFinalTables = 0x4700'0000;
  static constexpr u64 kFinalTablePages = 64;
  static_assert(kFinalTables + kFinalTablePages * config::kPage <= kRamEnd);

  EarlyBoot(const Machine& m, TlbCounts* counts)
      : m_(m), counts_(counts), slot_window_(kLayout.test_base - 64 * GiB) {}

  /// Runs both stages; false when a check failed (the caller stops).
  bool run() {
    BootPool pool(PhysAddr(addr_of(g_boot_pool)), config::kPage);
    auto boot = BootSpace::create(make_format(m_), image_access(), pool, {}, sink());
    {
      Check c("boot-space");
      if (!c.expect_ok(boot, "create") || !boot_space(c, boot.value())) return false;
    }
    {
      Check c("mmu-on");
      const Format& f = boot->format();
      mmu::enable(f, boot->root().value());
      c.expect((cpu::read_sctlr_el1() & mmu::kSctlrM) != 0, "SCTLR_EL1.M", cpu::read_sctlr_el1());
      c.expect(cpu::read_ttbr0_el1() == boot->root().value(), "TTBR0_EL1", cpu::read_ttbr0_el1());
      c.expect(cpu::read_tcr_el1() == mmu::tcr_for(f), "TCR_EL1 kept every field",
               cpu::read_tcr_el1(), mmu::tcr_for(f));
      // Nothing but the image, the UART and the slot window's table.
      c.expect(
          trap::read(kScratchPages).data_abort(kScratchPages, trap::FaultKind::Translation, false),
          "RAM outside the image unmapped");
      if (c.failed()) return false;
    }
    return final_space(boot.value());
  }

 private:
  static constexpr Attrs kBootAttrs{ptkit::RWX, MemType::WriteBack, false};
  static constexpr u64 kPage = config::kPage;

  A64TlbSink sink() { return A64TlbSink(counts_); }

  /// Stage 1, MMU off.
  bool boot_space(Check& c, BootSpace& b) {
    if (!map_kernel_image(c, b)) return false;
    const Attrs device{ptkit::RW, MemType::Device, true};
    if (!c.expect_ok(b.map(VirtAddr(serial::kPl011), PhysAddr(serial::kPl011), kPage, device),
                     "the UART's page"))
      return false;
    // One read-only page just below the slots makes the level-3 table that
    // holds their entries.
    const Attrs ro{Perm::R, MemType::WriteBack, false};
    return c.expect_ok(b.map(VirtAddr(slot_window_), PhysAddr(addr_of(__image_start)), kPage, ro),
                       "the slot window's table");
  }

  /// The level-3 table (through the image) translating `va` in `b`.
  static u64* level3_table(BootSpace& b, u64 va) {
    PhysAddr table = b.root();
    for (unsigned level = b.format().levels() - 1; level >= 1; --level) {
      const u64* t = b.access().table(table);
      const u64 index = (va / b.leaf_size(level)) % b.entries(level);
      const ptkit::Entry e = b.format().decode(t[index], level);
      if (!e.is_table()) return nullptr;
      table = e.pa;
    }
    return b.access().table(table);
  }

  /// Stage 2, on the boot space.
  bool final_space(BootSpace& b) {
    const Format& format = b.format();
    auto slots = Slots::create(format, VirtAddr(slot_window_ + kPage),
                               level3_table(b, slot_window_), sink());
    {
      Check c("transient-slots");
      if (!c.expect_ok(slots, "create")) return false;
      c.expect(Slots::enough_for(format), "enough slots for the engine");
      if (c.failed()) return false;
    }
    ptkit::BumpAllocator bump(PhysAddr(kFinalTables), kFinalTablePages, kPage);
    auto created =
        FinalSpace::create(format, ptkit::early::AccessRef<Slots>(slots.value()), bump, {}, sink());
    {
      Check c("final-image-map");
      if (!c.expect_ok(created, "create") || !map_kernel_image(c, created.value())) return false;
    }
    FinalSpace& f = created.value();
    const u64 block = f.leaf_size(1);
    const bool block_fits = block <= config::kRamSize;
    {
      Check c("early-direct-map");
      // The first level-2 block of RAM as pages, as a boot stub might leave
      // them: pass one merges them into a block (if one fits in RAM).
      const u64 as_pages = block_fits ? block : 2 * MiB;
      ptkit::MapOptions pages;
      pages.leaf_sizes = kPage;
      pages.contiguous_hint = false;
      const u64 ram = config::kRamBase;
      if (!c.expect_ok(
              f.map(VirtAddr(kLayout.direct_map + ram), PhysAddr(ram), as_pages, kBootAttrs, pages),
              "RAM pages with the boot attributes") ||
          !c.expect_ok(f.map(VirtAddr(kLayout.direct_map + ram + as_pages),
                             PhysAddr(ram + as_pages), config::kRamSize - as_pages, kBootAttrs),
                       "RAM blocks with the boot attributes") ||
          !c.expect_ok(f.map(VirtAddr(kLayout.direct_map + serial::kPl011),
                             PhysAddr(serial::kPl011), kPage, kBootAttrs),
                       "the UART with the boot attributes"))
        return false;
    }
    {
      Check c("two-pass-direct-map");
      ptkit::early::DirectMapOptions opts;
      opts.base = VirtAddr(kLayout.direct_map);
      opts.final_attrs = ptkit::early::final_direct_map_attrs(format);
      opts.boot_attrs = {kBootAttrs, kBootAttrs};
      opts.after_pass_one = &after_pass_one;
      opts.context = this;
      slots_ = &slots.value();
      auto report = ptkit::early::build_direct_map(f, m_.memory_map(), opts);
      if (!c.expect_ok(report, "build_direct_map")) return false;
      c.expect(report->pass_one_ops != 0 && report->pass_two_ops != 0, "two passes",
               report->pass_one_ops, report->pass_two_ops);
      c.expect(report->pass_one.merges == (block_fits ? 1u : 0u), "the boot pages merged",
               report->pass_one.merges);
      // Arm: non-global -> global and the UART's memory type need the break.
      c.expect(report->pass_two.breaks != 0, "pass two breaks before it makes",
               report->pass_two.breaks);
      c.expect(passes_seen_ == 1 && slots_held_between_ == 0,
               "pass one done, every slot free, before pass two");
      c.expect(slots->in_use() == 0 && slots->high_water() <= kSlots, "slots all given back",
               slots->in_use(), slots->high_water());
      c.expect(!slots->last_error().any(), "no slot ran out");
      auto q = f.query(VirtAddr(kLayout.direct_map + addr_of(__image_start)));
      c.expect(q.ok() && q->attrs == opts.final_attrs.ram, "RAM has its final attributes");
      auto d = f.query(VirtAddr(kLayout.direct_map + serial::kPl011));
      c.expect(d.ok() && d->attrs == opts.final_attrs.device, "the UART too");
      report_ = report.value();
      if (c.failed()) return false;
    }
    Check c("final-switch");
    mmu::switch_to(f.root().value());
    if (!c.expect(cpu::read_ttbr0_el1() == f.root().value(), "TTBR0_EL1")) return false;
    serial::use_base(kLayout.direct_map + serial::kPl011);
    // The boot space's identity UART page is gone; the direct map has the
    // image and the UART, Device-nGnRE.
    const trap::Probe r = trap::read(kLayout.direct_map + addr_of(__rodata_start));
    c.expect(!r.faulted, "rodata through the final direct map");
    c.expect(
        trap::read(serial::kPl011).data_abort(serial::kPl011, trap::FaultKind::Translation, false),
        "the boot space's identity UART page is not here");
    const u64 par = cpu::at_s1e1r(kLayout.direct_map + serial::kPl011);
    c.expect((par & 1) == 0 && (par >> 56) == ptkit::aarch64::kMairDeviceNGnRE,
             "the UART window is Device-nGnRE", par);
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
    serial::write(" merges, ");
    serial::dec(report_.pass_two.breaks);
    serial::write(" breaks in pass two\n");
    return !c.failed();
  }

  static void after_pass_one(void* context) {
    auto& self = *static_cast<EarlyBoot*>(context);
    ++self.passes_seen_;
    self.slots_held_between_ = self.slots_->in_use();
  }

  const Machine& m_;
  TlbCounts* counts_;
  u64 slot_window_;
  const Slots* slots_ = nullptr;  // for after_pass_one
  unsigned passes_seen_ = 0;
  unsigned slots_held_between_ = 0;
  ptkit::early::DirectMapReport report_{};
};

}  // namespace kernel
