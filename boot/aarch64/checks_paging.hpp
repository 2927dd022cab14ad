// Checks of map, unmap and protect on QEMU's MMU: every change ptkit makes
// is tested by touching memory through it, and every check that restricts
// or removes a translation touches it first, so the TLB holds the old one:
// without the TLBI ptkit asks for, the CPU would keep using it (QEMU's TCG
// keeps stale translations; tlb-stale-control proves it). Faults are
// checked for their address (FAR_EL1), kind and direction (ESR_EL1), and
// for the lookup level ptkit's own query names.
#pragma once

#include "at_oracle.hpp"
#include "check.hpp"
#include "cpu.hpp"
#include "kernel_space.hpp"
#include "scratch.hpp"
#include "trap.hpp"

extern "C" char probe_done[];  // vectors.S: a `ret`

namespace kernel {

// A `ret` in a data page, to show the image mapper made data non-executable.
inline constexpr ptkit::u32 kRet = 0xd65f'03c0;
inline ptkit::u32 g_ret_in_data[4] = {kRet};
// A value in rodata, to read through other mappings and to try to write.
inline constexpr u64 kRodataMagic = 0x7074'6b69'7452'4f21;
inline const u64 g_rodata_word = kRodataMagic;  // read only through probes

using trap::FaultKind;

class PagingChecks {
 public:
  explicit PagingChecks(Space& space) : s_(space), page_(config::kPage) {
    // Each check works in its own region, one largest-leaf apart, so no
    // check's tables or blocks meet another's.
    u64 largest = GiB;
    for (unsigned level = 0; level < s_.format().levels(); ++level)
      if (s_.format().leaf_allowed(level) && s_.leaf_size(level) > largest)
        largest = s_.leaf_size(level);
    region_ = largest;
  }

  void run() {
    tag_pages(kScratchPages, kTaggedPages);
    own_tables();
    image_permissions();
    tagged_pages();
    map_page();
    protect_readonly();
    nx_exec();
    user_page();
    contiguous_run();
    leaf_sizes();
    high_output_addresses();
    block_checks();
    tlb_stale_control();
    full_flush(false);
    full_flush(true);
  }

 private:
  static constexpr Attrs kData{ptkit::RW, MemType::WriteBack, false};

  [[nodiscard]] u64 region(unsigned i) const { return kLayout.test_base + i * region_; }
  [[nodiscard]] u64 slot(unsigned k) const { return region(0) + k * page_; }
  [[nodiscard]] static u64 scratch(unsigned k) { return kScratchPages + k * config::kPage; }

  /// The Arm lookup level at which ptkit's tables have no entry for `va`
  /// (query's NotMapped level, counted from the top as the Arm ARM does).
  [[nodiscard]] int missing_level(u64 va) const {
    auto q = s_.query(VirtAddr(va));
    return q.ok() ? 99 : Format::arm_level(static_cast<unsigned>(q.failure().level));
  }
  /// A translation fault at `va` at the level where ptkit's walk ends.
  bool translation_fault(Check& c, const trap::Probe& p, u64 va, bool write, const char* what) {
    c.expect(p.data_abort(va, FaultKind::Translation, write), what, p.fault.far, p.fault.esr);
    return c.expect(!p.faulted || p.level() == missing_level(va), "fault level is query's",
                    static_cast<u64>(p.level()), static_cast<u64>(missing_level(va)));
  }
  bool write_fault(Check& c, u64 va, const char* what) {
    const trap::Probe w = trap::write(va, 0xdead);
    return c.expect(w.data_abort(va, FaultKind::Permission, true), what, w.fault.far, w.fault.esr);
  }
  bool reads(Check& c, u64 va, u64 expected, const char* what) {
    const trap::Probe r = trap::read(va);
    return c.expect(!r.faulted && r.value == expected, what, r.value, expected);
  }

  /// The CPU runs on ptkit's tables alone: nothing is identity-mapped but
  /// the image, the direct map reaches RAM and the UART's window is Device.
  void own_tables() {
    Check c("own-tables");
    translation_fault(c, trap::read(0), 0, false, "page 0 unmapped");
    translation_fault(c, trap::read(kScratchPages), kScratchPages, false,
                      "identity RAM outside the image unmapped");
    reads(c, kLayout.direct_map + addr_of(&g_rodata_word), kRodataMagic, "rodata via direct map");
    reads(c, kLayout.direct_map + scratch(1), tag_of(scratch(1)), "tag via direct map");
    // UARTPeriphID0 (PL011 TRM §3.3.14) reads 0x11 through the window.
    const u64 uart = kLayout.direct_map + serial::kPl011;
    const ptkit::u32 id = *reinterpret_cast<volatile ptkit::u32*>(uart + 0xFE0);  // NOLINT: MMIO
    c.expect(id == 0x11, "UARTPeriphID0", id);
    // PAR_EL1.ATTR is the MAIR attribute of the translation (D23.2).
    const u64 par = cpu::at_s1e1r(uart);
    c.expect((par & 1) == 0 && (par >> 56) == ptkit::aarch64::kMairDeviceNGnRE,
             "UART window is Device-nGnRE", par);
  }

  /// The image mapper's permissions, enforced by the MMU.
  void image_permissions() {
    {
      Check c("image-text-readonly");
      const u64 va = addr_of(__text_start) + 0x100;
      const trap::Probe r = trap::read(va);
      c.expect(!r.faulted, "text readable");
      // Writing back the value already there is harmless if it succeeds.
      const trap::Probe w = trap::write(va, r.value);
      c.expect(w.data_abort(va, FaultKind::Permission, true), "write to text: permission fault",
               w.fault.far, w.fault.esr);
    }
    {
      Check c("image-rodata-readonly");
      const u64 va = addr_of(&g_rodata_word);
      c.expect(va >= addr_of(__rodata_start) && va < addr_of(__rodata_end), "placed in rodata", va);
      const trap::Probe w = trap::write(va, kRodataMagic);
      c.expect(w.data_abort(va, FaultKind::Permission, true), "write to rodata: permission fault",
               w.fault.far, w.fault.esr);
    }
    {
      Check c("image-data-nx");
      const u64 va = addr_of(g_ret_in_data);
      const trap::Probe x = trap::exec(va);
      c.expect(x.instruction_abort(va, FaultKind::Permission), "executing data: permission fault",
               x.fault.far, x.fault.esr);
      c.expect(!trap::exec(addr_of(probe_done)).faulted, "executing text works");
    }
  }

  /// Tagged pages read back through page mappings in reverse order and
  /// through an alias; a write through the alias shows through the other two.
  void tagged_pages() {
    constexpr unsigned kPages = 8;
    Check c("tagged-pages");
    for (unsigned k = 0; k < kPages; ++k)
      if (!c.expect_ok(s_.map(VirtAddr(slot(k)), PhysAddr(scratch(kPages - 1 - k)), page_, kData),
                       "map reversed"))
        return;
    if (!c.expect_ok(s_.map(VirtAddr(slot(kPages)), PhysAddr(scratch(0)), page_, kData),
                     "map alias"))
      return;
    for (unsigned k = 0; k < kPages; ++k) {
      const u64 pa = scratch(kPages - 1 - k);
      reads(c, slot(k), tag_of(pa), "first word of the reversed page");
      reads(c, slot(k) + page_ - 8, ~tag_of(pa), "last word of the reversed page");
    }
    reads(c, slot(kPages), tag_of(scratch(0)), "alias reads the same page");
    c.expect(!trap::write(slot(kPages) + 8, 0xa11a5).faulted, "write through the alias");
    reads(c, slot(kPages - 1) + 8, 0xa11a5, "seen through the other mapping");
    c.expect(phys(scratch(0) + 8) == 0xa11a5, "and at the physical page");
    auto q = s_.query(VirtAddr(slot(3) + 24));
    c.expect(q.ok() && q->pa.value() == scratch(kPages - 4) && q->size == page_, "query agrees");
    auto done = s_.unmap(VirtAddr(slot(0)), (kPages + 1) * page_);
    if (!c.expect_ok(done, "unmap")) return;
    for (unsigned k = 0; k <= kPages; ++k)
      translation_fault(c, trap::read(slot(k)), slot(k), false, "unmapped after");
  }

  /// A page mapping works both ways, and unmapping it takes it away.
  void map_page() {
    const u64 va = slot(16);
    const u64 pa = scratch(8);
    {
      Check c("map-page");
      auto done = s_.map(VirtAddr(va), PhysAddr(pa), page_, kData);
      if (!c.expect_ok(done, "map")) return;
      c.expect(done->stats.invalidations == 0, "adding needs no invalidation");
      c.expect(!trap::write(va + 8, 0x1111'2222).faulted, "write through the new mapping");
      c.expect(phys(pa + 8) == 0x1111'2222, "seen at the physical page", phys(pa + 8));
      phys(pa + 16) = 0x3333'4444;
      reads(c, va + 16, 0x3333'4444, "read through the new mapping");
    }
    {
      Check c("unmap-page");
      const u64 before = s_.sink().counts().tlbis();
      auto done = s_.unmap(VirtAddr(va), page_);
      if (!c.expect_ok(done, "unmap")) return;
      c.expect(s_.sink().counts().tlbis() == before + 1, "one TLBI",
               s_.sink().counts().tlbis() - before);
      // The TLB held the translation (the write above): without the TLBI
      // this read would still succeed.
      translation_fault(c, trap::read(va + 16), va + 16, false, "read after unmap");
      translation_fault(c, trap::write(va, 0), va, true, "write after unmap");
    }
  }

  void protect_readonly() {
    const u64 va = slot(17);
    const u64 pa = scratch(9);
    Check c("protect-readonly");
    if (!c.expect_ok(s_.map(VirtAddr(va), PhysAddr(pa), page_, kData), "map")) return;
    c.expect(!trap::write(va, 0xabcd).faulted, "writable before");
    const u64 before = s_.sink().counts().tlbi_va_leaf;
    auto done = s_.protect(VirtAddr(va), page_, ptkit::AttrChange{Perm::None, Perm::W});
    if (!c.expect_ok(done, "protect")) return;
    c.expect(s_.sink().counts().tlbi_va_leaf == before + 1, "one last-level TLBI");
    c.expect(done->stats.invalidations == 1, "as ptkit reported", done->stats.invalidations);
    write_fault(c, va, "write: permission fault");
    reads(c, va, 0xabcd, "still readable, unchanged");
    c.expect_ok(s_.protect(VirtAddr(va), page_, ptkit::AttrChange{Perm::W, Perm::None}),
                "protect +W");
    c.expect(!trap::write(va, 0xbeef).faulted && phys(pa) == 0xbeef, "writable again");
  }

  void nx_exec() {
    const u64 va = slot(18);
    const u64 pa = scratch(10);
    Check c("nx-exec");
    if (!c.expect_ok(s_.map(VirtAddr(va), PhysAddr(pa), page_, kData), "map")) return;
    phys(pa) = kRet;  // ret, and zeros
    cpu::sync_icache(kLayout.direct_map + pa);
    const trap::Probe x = trap::exec(va);
    c.expect(x.instruction_abort(va, FaultKind::Permission), "fetch: permission fault", x.fault.far,
             x.fault.esr);
    const u64 before = s_.sink().counts().tlbis();
    auto done = s_.protect(VirtAddr(va), page_, ptkit::AttrChange{Perm::X, Perm::W});
    if (!c.expect_ok(done, "protect +X -W")) return;
    c.expect(done->stats.invalidations == s_.sink().counts().tlbis() - before,
             "the sink issued the TLBIs ptkit reported", done->stats.invalidations,
             s_.sink().counts().tlbis() - before);
    c.expect(!trap::exec(va).faulted, "executes after +X");
    write_fault(c, va, "and is read-only");
  }

  /// An EL0 page: EL1 may read and write it (PSTATE.PAN is 0) but never
  /// execute it (ptkit sets PXN on user leaves); EL0's view comes from AT.
  void user_page() {
    const u64 va = slot(20);
    const u64 pa = scratch(14);
    Check c("user-page");
    const Attrs user{ptkit::RWX | Perm::User, MemType::WriteBack, false};
    if (!c.expect_ok(s_.map(VirtAddr(va), PhysAddr(pa), page_, user), "map")) return;
    phys(pa) = kRet;
    cpu::sync_icache(kLayout.direct_map + pa);
    reads(c, va, kRet, "EL1 reads it");
    const trap::Probe x = trap::exec(va);
    c.expect(x.instruction_abort(va, FaultKind::Permission), "EL1 fetch: permission fault (PXN)",
             x.fault.far, x.fault.esr);
    c.expect((cpu::at_s1e0r(va) & 1) == 0 && (cpu::at_s1e0w(va) & 1) == 0,
             "EL0 may read and write it");
    const u64 kernel_va = addr_of(&g_rodata_word);
    c.expect((cpu::at_s1e0r(kernel_va) & 1) == 1, "EL0 may not read the kernel's rodata");
    at_agrees(c, s_, va);
    at_agrees(c, s_, kernel_va);
  }

  /// A run of the Contiguous hint (D8.6.1), written whole by one map; one
  /// page of it made read-only must take the hint off the whole run first,
  /// with a break-before-make, and the other pages stay as they were.
  void contiguous_run() {
    const unsigned n = s_.format().contiguous_entries(0);
    const u64 va = region(1);
    Check c("contiguous-run");
    tag_pages(kScratchRun, n);
    auto done = s_.map(VirtAddr(va), PhysAddr(kScratchRun), n * page_, kData);
    if (!c.expect_ok(done, "map")) return;
    c.expect(n > 1, "the granule has a run of pages", n);
    for (unsigned k = 0; k < n; ++k)
      reads(c, va + k * page_, tag_of(kScratchRun + k * page_), "each page of the run");
    const u64 page = va + 3 * page_;
    auto ro = s_.protect(VirtAddr(page), page_, ptkit::AttrChange{Perm::None, Perm::W});
    if (!c.expect_ok(ro, "protect one page")) return;
    c.expect(ro->stats.breaks >= 1, "the run was broken before it was rewritten", ro->stats.breaks);
    write_fault(c, page, "the page: permission fault");
    c.expect(!trap::write(va + 4 * page_ + 8, 4).faulted, "its neighbour still writable");
    for (unsigned k = 0; k < n; ++k)
      reads(c, va + k * page_, tag_of(kScratchRun + k * page_), "each page after");
    c.expect_ok(s_.unmap(VirtAddr(va), n * page_), "unmap");
  }

  /// Every leaf size the configuration has, mapped alone and read back
  /// through (page, blocks); the sizes it has not are refused.
  void leaf_sizes() {
    Check c("leaf-sizes");
    serial::write("info leaf sizes mapped and read back (KiB):");
    for (unsigned level = 0; level < s_.format().levels(); ++level) {
      const u64 size = s_.leaf_size(level);
      const u64 va = region(3 + level);
      ptkit::MapOptions only;
      only.leaf_sizes = size;
      const u64 pa = level == 0 ? scratch(11) : ptkit::align_down(kScratchBlock, size);
      auto done = s_.map(VirtAddr(va), PhysAddr(pa), size, kData, only);
      if (!s_.format().leaf_allowed(level)) {
        c.expect(!done.ok() && done.error() == ptkit::Error::LeafSizeUnsupported,
                 "a size the format has not is refused", size);
        continue;
      }
      if (!c.expect_ok(done, "map one leaf")) return;
      serial::write(" ");
      serial::dec(size / KiB);
      c.expect(done->stats.leaves_written == 1, "one leaf", size, done->stats.leaves_written);
      auto q = s_.query(VirtAddr(va + size / 2));
      c.expect(q.ok() && q->size == size && q->level == level, "query: one leaf", size);
      // The leaf's last word inside RAM, tagged anew through the direct map.
      const u64 end = pa + size < kRamEnd ? pa + size : kRamEnd;
      const u64 probe_pa = end - 8;
      phys(probe_pa) = tag_of(probe_pa) ^ size;
      reads(c, va + (probe_pa - pa), tag_of(probe_pa) ^ size, "tag through the leaf");
      c.expect(!trap::write(va + (probe_pa - pa), size).faulted && phys(probe_pa) == size,
               "write through the leaf", size);
      if (pa <= addr_of(&g_rodata_word) && addr_of(&g_rodata_word) < pa + size)
        reads(c, va + (addr_of(&g_rodata_word) - pa), kRodataMagic, "the image through it");
      if (!c.expect_ok(s_.unmap(VirtAddr(va), size), "unmap")) return;
      translation_fault(c, trap::read(va + (probe_pa - pa)), va + (probe_pa - pa), false,
                        "gone after unmap");
    }
    serial::write("\n");
  }

  /// Output addresses above 2^48 (bits 51:48 sit elsewhere in the
  /// descriptor: 15:12 with 64K LPA, 9:8 and 49:48 under DS): nothing is
  /// there to touch, but AT reports the output address the MMU computed.
  /// Without 52-bit PA, ptkit refuses them.
  void high_output_addresses() {
    Check c("high-pa");
    const u64 pa = 0x000F'5A00'0000'0000;
    for (unsigned level = 0; level < 2; ++level) {
      const u64 size = s_.leaf_size(level);
      const u64 va = region(3 + level);
      ptkit::MapOptions only;
      only.leaf_sizes = size;
      auto done = s_.map(VirtAddr(va), PhysAddr(pa), size, kData, only);
      if (!config::kWide) {
        c.expect(!done.ok() && done.error() == ptkit::Error::PhysTooLarge,
                 "refused without 52-bit PA", size);
        continue;
      }
      if (!c.expect_ok(done, "map")) return;
      const u64 offset = size - page_;
      const u64 par = cpu::at_s1e1r(va + offset);
      c.expect((par & 1) == 0 && (par & 0x000F'FFFF'FFFF'F000) == pa + offset,
               "AT: the 52-bit output address", par, pa + offset);
      c.expect_ok(s_.unmap(VirtAddr(va), size), "unmap");
    }
  }

  /// A level-2 block (2M, 32M or 512M): protected whole with one TLBI, then
  /// split live: refused where it would break a live range, done with
  /// break-before-make otherwise, while the rest of it stays in use.
  void block_checks() {
    const u64 size = s_.leaf_size(1);
    const u64 va = region(2);
    const u64 pa = ptkit::align_down(kScratchBlock, size);
    const u64 in_ram = kScratchBlock - pa;  // offset of the scratch block inside it
    const u64 page = va + in_ram + 5 * page_;
    {
      Check c("block-protect");
      auto done = s_.map(VirtAddr(va), PhysAddr(pa), size, kData);
      if (!c.expect_ok(done, "map")) return;
      auto q = s_.query(VirtAddr(va));
      c.expect(q.ok() && q->size == size && q->level == 1, "one level-2 block");
      c.expect(!trap::write(page, 0x5555).faulted, "writable, TLB warm");
      const TlbCounts before = s_.sink().counts();
      auto ro = s_.protect(VirtAddr(va), size, ptkit::AttrChange{Perm::None, Perm::W});
      if (!c.expect_ok(ro, "protect")) return;
      c.expect(s_.sink().counts().tlbis() == before.tlbis() + 1, "one TLBI for the block",
               s_.sink().counts().tlbis() - before.tlbis());
      const trap::Probe w = trap::write(page, 0xdead);
      c.expect(w.data_abort(page, FaultKind::Permission, true) && w.level() == 2,
               "write: permission fault at level 2", w.fault.far, w.fault.esr);
      c.expect_ok(s_.protect(VirtAddr(va), size, ptkit::AttrChange{Perm::W, Perm::None}),
                  "protect +W");
      c.expect(!trap::write(page + page_, 0x6666).faulted, "writable again");
    }
    const ptkit::AttrChange ro{Perm::None, Perm::W};
    {
      Check c("split-refused");
      ptkit::ProtectOptions opts;
      auto no_split = s_.protect(VirtAddr(page), page_, ro, opts);
      c.expect(!no_split.ok() && no_split.error() == ptkit::Error::SplitForbidden,
               "refused without allow_split");
      // The block holds something that must never go invalid (say, the
      // stack of another CPU): the split's break would unmap it for a moment.
      const ptkit::VirtRange live[] = {
          ptkit::VirtRange{VirtAddr(page + 2 * page_), VirtAddr(page + 3 * page_ - 1)}};
      opts.allow_split = true;
      opts.live = ptkit::LiveRanges{live, 1};
      auto refused = s_.protect(VirtAddr(page), page_, ro, opts);
      c.expect(!refused.ok() && refused.error() == ptkit::Error::LiveRangeBroken,
               "refused: it would break a live range");
      auto q = s_.query(VirtAddr(page));
      c.expect(q.ok() && q->size == size, "still one block");
      c.expect(!trap::write(page, 0x5555).faulted, "still writable");
    }
    {
      Check c("split-bbm");
      const TlbCounts before = s_.sink().counts();
      ptkit::ProtectOptions split;
      split.allow_split = true;
      auto done = s_.protect(VirtAddr(page), page_, ro, split);
      if (!c.expect_ok(done, "protect with allow_split")) return;
      c.expect(done->stats.splits == 1 && done->stats.tables_allocated == 1, "one split",
               done->stats.splits, done->stats.tables_allocated);
      // No FEAT_BBM level 2: the block goes invalid, is invalidated, and
      // only then does the table replace it (D8.16.1).
      c.expect(done->stats.breaks == 1, "break-before-make", done->stats.breaks);
      // The block was a leaf: a last-level TLBI (VALE1IS) of it suffices.
      c.expect(s_.sink().counts().tlbis() > before.tlbis(), "TLBI of the broken block",
               s_.sink().counts().tlbis() - before.tlbis());
      // The block was in the TLB, writable: the split's invalidation must
      // remove it for this write to fault.
      const trap::Probe w = trap::write(page, 0xdead);
      c.expect(w.data_abort(page, FaultKind::Permission, true) && w.level() == 3,
               "write: permission fault at level 3", w.fault.far, w.fault.esr);
      reads(c, page, 0x5555, "the protected page kept its data");
      reads(c, page + page_, 0x6666, "so did its neighbour");
      c.expect(!trap::write(page + page_, 0x7777).faulted, "neighbour still writable");
      auto q = s_.query(VirtAddr(page + page_));
      c.expect(q.ok() && q->size == page_ && q->pa.value() == kScratchBlock + 6 * page_,
               "a page now");
    }
    {
      // Back to writable with merge: the table is uniform again and folds
      // into the block, again through a break (table -> block), and the
      // table page goes back to the pool only after its TLBI.
      Check c("merge-bbm");
      const u64 pool_before = s_.allocator().pages_in_use();
      ptkit::ProtectOptions merge;
      merge.merge = true;
      auto done = s_.protect(VirtAddr(page), page_, ptkit::AttrChange{Perm::W, Perm::None}, merge);
      if (!c.expect_ok(done, "protect +W with merge")) return;
      c.expect(done->stats.merges == 1 && done->stats.breaks >= 1 && done->stats.tables_freed == 1,
               "one merge, with a break, its table freed", done->stats.merges, done->stats.breaks);
      c.expect(s_.allocator().pages_in_use() == pool_before - 1, "the table is back in the pool");
      auto q = s_.query(VirtAddr(page));
      c.expect(q.ok() && q->size == size && q->level == 1, "one block again");
      c.expect(!trap::write(page, 0x8888).faulted, "the page writable again");
      reads(c, page + page_, 0x7777, "its neighbour kept its data");
      c.expect_ok(s_.unmap(VirtAddr(va), size), "unmap");
    }
  }

  /// The control experiment: the same protect with the sink dropping its
  /// work leaves the stale writable translation in use. If this failed, the
  /// other checks could not see a missing invalidation.
  void tlb_stale_control() {
    const u64 va = slot(19);
    const u64 pa = scratch(12);
    Check c("tlb-stale-control");
    if (!c.expect_ok(s_.map(VirtAddr(va), PhysAddr(pa), page_, kData), "map")) return;
    c.expect(!trap::write(va, 1).faulted, "warm the TLB");
    const u64 dropped = s_.sink().counts().dropped;
    s_.sink().set_dropping(true);
    auto done = s_.protect(VirtAddr(va), page_, ptkit::AttrChange{Perm::None, Perm::W});
    s_.sink().set_dropping(false);
    if (!c.expect_ok(done, "protect")) return;
    c.expect(s_.sink().counts().dropped == dropped + 1, "the invalidation was dropped");
    c.expect(!trap::write(va, 2).faulted && phys(pa) == 2,
             "stale writable translation still used (QEMU keeps stale TLB entries)");
    cpu::tlbi_page(va);
    write_fault(c, va, "after the TLBI the write faults");
  }

  /// More than 32 pages: ptkit flushes everything instead: ASIDE1IS for
  /// non-global translations, VMALLE1IS when global ones are among them.
  void full_flush(bool global) {
    constexpr unsigned kPages = 64;
    const u64 va = slot(global ? 128 : 64);
    Check c(global ? "tlb-full-flush-global" : "tlb-full-flush");
    const Attrs attrs{ptkit::RW, MemType::WriteBack, global};
    // Every page an alias of one scratch page: 64 pages of 64 KiB would not
    // fit the scratch area.
    for (unsigned k = 0; k < kPages; ++k)
      if (!c.expect_ok(s_.map(VirtAddr(va + k * page_), PhysAddr(scratch(13)), page_, attrs),
                       "map"))
        return;
    for (unsigned k = 0; k < kPages; ++k)
      c.expect(!trap::write(va + k * page_, k).faulted, "warm the TLB", k);
    const TlbCounts before = s_.sink().counts();
    auto done = s_.unmap(VirtAddr(va), kPages * page_);
    if (!c.expect_ok(done, "unmap")) return;
    const TlbCounts& after = s_.sink().counts();
    c.expect(done->stats.full_flushes == 1 && after.tlbi_va_leaf == before.tlbi_va_leaf &&
                 after.tlbi_va == before.tlbi_va,
             "one full flush, no TLBI by address");
    c.expect(global ? after.tlbi_vmalle1 == before.tlbi_vmalle1 + 1
                    : after.tlbi_asid == before.tlbi_asid + 1,
             "the right kind of full flush");
    for (unsigned k = 0; k < kPages; ++k) {
      const u64 a = va + k * page_;
      c.expect(trap::read(a).data_abort(a, FaultKind::Translation, false),
               "every page faults after", a);
    }
  }

  Space& s_;
  u64 page_;
  u64 region_ = 0;
};

}  // namespace kernel
