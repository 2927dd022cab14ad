// Every leaf size the mode has, read back against tagged physical pages:
// pages (in order, in reverse, and an alias), a NAPOT 64 KiB run where the
// hart has Svnapot, a megapage, a gigapage, and on Sv48/Sv57 a terapage (and
// on Sv57 a petapage) over physical 0, which reaches RAM at its physical
// offset. Superpages are then protected whole (one fence) and split by a
// protect of one page inside (allow_split).
#pragma once

#include "check.hpp"
#include "image_marks.hpp"
#include "kernel_space.hpp"
#include "scratch.hpp"
#include "table_peek.hpp"
#include "trap.hpp"

namespace kernel {

class LeafChecks {
 public:
  LeafChecks(Space& space, const VirtualLayout& v, const Machine& m, TlbState& tlb)
      : s_(space), m_(m), tlb_(tlb), phys_(v.direct_map), t_(v.test_base) {}

  void run() {
    pages();
    if (m_.features.svnapot) napot();
    megapage();
    gigapage();
    if (s_.format().levels() >= 4) huge_leaf(3, "leaf-512g");
    if (s_.format().levels() >= 5) huge_leaf(4, "leaf-256t");
  }

 private:
  static constexpr Attrs kData{ptkit::RW, MemType::WriteBack, false};
  static constexpr unsigned kPages = 16;

  [[nodiscard]] const TlbCounts& counts() const { return tlb_.counts; }

  ptkit::MapOptions only(u64 leaf_size, bool hint = false) const {
    ptkit::MapOptions o;
    o.leaf_sizes = leaf_size;
    o.contiguous_hint = hint;
    return o;
  }

  /// 4K pages: in order, then each virtual page k on frame 15 - k, then an
  /// alias of one frame written through one mapping and read through the
  /// other and the direct map.
  void pages() {
    const u64 fwd = t_ + 4 * MiB;
    const u64 rev = fwd + kPages * 4 * KiB;
    const u64 alias = rev + kPages * 4 * KiB;
    {
      Check c("leaf-4k");
      if (!c.expect_ok(
              s_.map(VirtAddr(fwd), PhysAddr(scratch(32)), kPages * 4 * KiB, kData, only(4 * KiB)),
              "map"))
        return;
      for (unsigned k = 0; k < kPages; ++k)
        expect_tags(c, fwd + k * 4 * KiB, scratch(32 + k), "forward page reads its frame");
    }
    {
      Check c("leaf-4k-reverse");
      for (unsigned k = 0; k < kPages; ++k)
        if (!c.expect_ok(s_.map(VirtAddr(rev + k * 4 * KiB), PhysAddr(scratch(32 + kPages - 1 - k)),
                                4 * KiB, kData),
                         "map"))
          return;
      for (unsigned k = 0; k < kPages; ++k) {
        const u64 va = rev + k * 4 * KiB;
        expect_tags(c, va, scratch(32 + kPages - 1 - k), "reverse page reads its frame");
        auto q = s_.query(VirtAddr(va));
        c.expect(q.ok() && q->pa.value() == scratch(32 + kPages - 1 - k), "query agrees", va);
      }
    }
    {
      Check c("leaf-4k-alias");
      const u64 frame = scratch(32 + 5);
      if (!c.expect_ok(s_.map(VirtAddr(alias), PhysAddr(frame), 4 * KiB, kData), "map")) return;
      c.expect(!trap::write(alias + 0x100, 0xa11a5).faulted, "write through the alias");
      const trap::Probe r = trap::read(fwd + 5 * 4 * KiB + 0x100);
      c.expect(!r.faulted && r.value == 0xa11a5, "seen through the first mapping", r.value);
      const trap::Probe back = trap::read(rev + (kPages - 1 - 5) * 4 * KiB + 0x100);
      c.expect(!back.faulted && back.value == 0xa11a5, "and through the reverse one", back.value);
      c.expect(*phys_.at(frame + 0x100) == 0xa11a5, "and through the direct map");
    }
    Check c("unmap-4k-range");
    auto done = s_.unmap(VirtAddr(fwd), 3 * kPages * 4 * KiB);
    if (!c.expect_ok(done, "unmap")) return;
    c.expect(done->stats.leaves_written == 2 * kPages + 1, "every page",
             done->stats.leaves_written);
    for (u64 va = fwd; va < alias + 4 * KiB; va += 4 * KiB)
      c.expect(trap::read(va).page_fault(va, trap::kLoadPageFault), "faults after unmap", va);
  }

  /// A 64 KiB NAPOT run (ch. 5): written whole with the hint, every page
  /// reads its own frame; a protect of one page takes the run apart first.
  void napot() {
    const u64 va = t_ + 6 * MiB;
    const u64 pa = scratch(64);  // 64 KiB aligned
    Check c("leaf-64k-napot");
    if (!c.expect_ok(s_.map(VirtAddr(va), PhysAddr(pa), 64 * KiB, kData, only(4 * KiB, true)),
                     "map"))
      return;
    const ptkit::Entry e = leaf_entry(s_, va + 0x3000);
    c.expect(e.is_leaf() && e.contiguous, "NAPOT entries written");
    for (unsigned k = 0; k < 16; ++k)
      expect_tags(c, va + k * 4 * KiB, pa + k * 4 * KiB, "NAPOT page reads its frame");
    c.expect(!trap::write(va + 0x5008, 0x5a5a).faulted, "warm the TLB, writable");
    auto done = s_.protect(VirtAddr(va + 0x5000), 4 * KiB, ptkit::AttrChange{Perm::None, Perm::W});
    if (!c.expect_ok(done, "protect one page of the run")) return;
    c.expect(!leaf_entry(s_, va).contiguous, "the run taken apart");
    c.expect(trap::write(va + 0x5008, 1).page_fault(va + 0x5008, trap::kStorePageFault),
             "the page is read-only");
    c.expect(!trap::write(va + 0x6008, 2).faulted, "its neighbour is writable");
    for (unsigned k = 0; k < 16; ++k)
      expect_tags(c, va + k * 4 * KiB, pa + k * 4 * KiB, "still its own frame");
    c.expect_ok(s_.unmap(VirtAddr(va), 64 * KiB), "unmap");
    phys_.retag(pa + 0x5000);
    phys_.retag(pa + 0x6000);
  }

  /// A megapage, protected whole (one fence), then split by a protect of one
  /// page inside it.
  void megapage() {
    const u64 va = t_ + 2 * MiB;
    const u64 pa = kScratch2M;
    {
      Check c("leaf-2m");
      auto done = s_.map(VirtAddr(va), PhysAddr(pa), 2 * MiB, kData, only(2 * MiB));
      if (!c.expect_ok(done, "map")) return;
      auto q = s_.query(VirtAddr(va + 0x5008));
      c.expect(q.ok() && q->size == 2 * MiB && q->level == 1, "one megapage");
      for (u64 off : {u64{0}, u64{0x5000}, u64{0x10'0000}, u64{0x1F'F000}})
        expect_tags(c, va + off, pa + off, "megapage reads its frames");
    }
    {
      Check c("protect-2m");
      c.expect(!trap::write(va + 0x5008, 0x2020).faulted, "warm the TLB, writable");
      const u64 before = counts().by_address();
      auto done = s_.protect(VirtAddr(va), 2 * MiB, ptkit::AttrChange{Perm::None, Perm::W});
      if (!c.expect_ok(done, "protect")) return;
      c.expect(done->stats.invalidations == 1 && counts().by_address() == before + 1,
               "one sfence.vma for the megapage", counts().by_address() - before);
      c.expect(trap::write(va + 0x5008, 0).page_fault(va + 0x5008, trap::kStorePageFault),
               "write faults");
      c.expect_ok(s_.protect(VirtAddr(va), 2 * MiB, ptkit::AttrChange{Perm::W, Perm::None}),
                  "protect +W");
      c.expect(!trap::write(va + 0x5008, 0x5555).faulted, "writable again, TLB warm");
    }
    {
      Check c("split-2m");
      const u64 page = va + 0x5000;
      const ptkit::AttrChange ro{Perm::None, Perm::W};
      auto refused = s_.protect(VirtAddr(page), 4 * KiB, ro);
      c.expect(!refused.ok() && refused.error() == ptkit::Error::SplitForbidden,
               "split refused without allow_split");
      ptkit::ProtectOptions split;
      split.allow_split = true;
      auto done = s_.protect(VirtAddr(page), 4 * KiB, ro, split);
      if (!c.expect_ok(done, "protect with allow_split")) return;
      c.expect(done->stats.splits == 1 && done->stats.tables_allocated == 1, "one split",
               done->stats.splits, done->stats.tables_allocated);
      // The writable megapage translation was in the TLB: the split's fence
      // must remove it for this write to fault.
      c.expect(trap::write(page + 8, 0xdead).page_fault(page + 8, trap::kStorePageFault),
               "the page is read-only");
      c.expect(!trap::write(page + 4 * KiB + 8, 0x6666).faulted, "neighbour still writable");
      auto q = s_.query(VirtAddr(page + 4 * KiB));
      c.expect(q.ok() && q->size == 4 * KiB, "pages now");
      for (u64 off : {u64{0}, u64{0x4000}, u64{0x1F'F000}})
        expect_tags(c, va + off, pa + off, "split pages read their frames");
      c.expect_ok(s_.unmap(VirtAddr(va), 2 * MiB), "unmap");
      phys_.retag(pa + 0x5000);
      phys_.retag(pa + 0x6000);
    }
  }

  /// A gigapage over the gigabyte holding RAM's start, split down to a page.
  void gigapage() {
    const u64 va = t_ + GiB;
    const u64 base = ptkit::align_down(m_.ram_start, GiB);
    {
      Check c("leaf-1g");
      auto done = s_.map(VirtAddr(va), PhysAddr(base), GiB, kData, only(GiB));
      if (!c.expect_ok(done, "map")) return;
      c.expect(done->stats.leaves_written == 1, "one leaf", done->stats.leaves_written);
      auto q = s_.query(VirtAddr(va + 12345));
      c.expect(q.ok() && q->size == GiB && q->level == 2, "one gigapage");
      for (u64 pa : {scratch(0), scratch(200), kScratch2M + 0x1F'F000})
        expect_tags(c, va + (pa - base), pa, "gigapage reads its frames");
    }
    {
      Check c("split-1g");
      const u64 page = va + (scratch(300) - base);
      ptkit::ProtectOptions split;
      split.allow_split = true;
      c.expect(!trap::write(page + 8, 1).faulted, "warm the TLB, writable");
      auto done =
          s_.protect(VirtAddr(page), 4 * KiB, ptkit::AttrChange{Perm::None, Perm::W}, split);
      if (!c.expect_ok(done, "protect with allow_split")) return;
      c.expect(done->stats.splits == 2, "1G -> 2M -> 4K", done->stats.splits);
      c.expect(trap::write(page + 8, 2).page_fault(page + 8, trap::kStorePageFault),
               "the page is read-only");
      c.expect(!trap::write(page + 4 * KiB + 8, 3).faulted, "page neighbour writable");
      auto q = s_.query(VirtAddr(va + 512 * MiB));
      c.expect(q.ok() && q->size == 2 * MiB, "megapages elsewhere in the old gigapage");
      for (u64 pa : {scratch(0), scratch(300), kScratch2M})
        expect_tags(c, va + (pa - base), pa, "split gigapage reads its frames");
      c.expect_ok(s_.unmap(VirtAddr(va), GiB), "unmap");
      phys_.retag(scratch(300));
      phys_.retag(scratch(301));
    }
  }

  /// A terapage (level 3) or petapage (level 4) over physical 0: RAM is read
  /// at va + pa. The alias of the whole RAM beside the direct map.
  void huge_leaf(unsigned level, const char* name) {
    const u64 size = s_.leaf_size(level);
    const u64 va = t_ + size;
    Check c(name);
    auto done = s_.map(VirtAddr(va), PhysAddr(0), size, kData, only(size));
    if (!c.expect_ok(done, "map")) return;
    auto q = s_.query(VirtAddr(va + kScratch));
    c.expect(q.ok() && q->size == size && q->level == level, "one leaf at the level",
             q.ok() ? q->level : ~u64{0});
    for (u64 pa : {scratch(0), scratch(257), kScratch2M + 0x8000})
      expect_tags(c, va + pa, pa, "huge leaf reads its frames");
    const trap::Probe r = trap::read(va + addr_of(&g_rodata_word));
    c.expect(!r.faulted && r.value == kRodataMagic, "the image through it", r.value);
    const u64 before = counts().by_address();
    c.expect_ok(s_.unmap(VirtAddr(va), size), "unmap");
    c.expect(counts().by_address() == before + 1, "one fence for the whole leaf");
    c.expect(trap::read(va + kScratch).page_fault(va + kScratch, trap::kLoadPageFault),
             "faults after unmap");
  }

  Space& s_;
  const Machine& m_;
  TlbState& tlb_;
  PhysWindow phys_;
  u64 t_;
};

}  // namespace kernel
