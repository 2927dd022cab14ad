// Checks of map, unmap and protect on the real (emulated) MMU: every change
// ptkit makes is tested by touching memory through it, and every check that
// restricts or removes a translation touches it first, so the TLB holds the
// old one: without the invalidation ptkit asks for, the CPU would keep using
// it (QEMU's TCG keeps stale translations; tlb-stale-control proves it).
#pragma once

#include "check.hpp"
#include "kernel_space.hpp"
#include "trap.hpp"

extern "C" char probe_done[];  // traps.S: a `ret`

namespace kernel {

// A `ret` in a data page, to show the image mapper made data non-executable.
inline ptkit::u8 g_ret_in_data[16] = {0xC3};
// A value in rodata, to read through other mappings and to try to write.
inline constexpr u64 kRodataMagic = 0x7074'6b69'7452'4f21;
inline const u64 g_rodata_word = kRodataMagic;  // read only through probes

using trap::kPfFetch;
using trap::kPfPresent;
using trap::kPfWrite;
inline constexpr u64 kPfBits = kPfPresent | kPfWrite | kPfFetch;

/// Physical scratch memory the checks map (RAM, outside the image).
inline constexpr u64 kScratch = 32 * MiB;     // 4K pages: kScratch + k * 4 KiB, k < 256
inline constexpr u64 kScratch2M = 34 * MiB;   // one 2 MiB block
inline constexpr u64 kScratch1G = 36 * MiB;   // pages reached through the 1G leaf
inline constexpr u64 kScratchEnd = 40 * MiB;  // the machine must have RAM up to here

inline u64 scratch(unsigned k) { return kScratch + u64{k} * 4 * KiB; }

template <class Format>
class PagingChecks {
 public:
  PagingChecks(Space<Format>& space, const VirtualLayout& v, const Machine& m)
      : s_(space), v_(v), m_(m), t_(v.test_base) {}

  void run() {
    own_tables();
    image_permissions();
    map_4k();
    protect_readonly();
    nx_exec();
    leaf_2m();
    if (m_.features.page_1g) leaf_1g();
    tlb_stale_control();
    full_flush(false);
    full_flush(true);
  }

 private:
  static constexpr Attrs kData{ptkit::RW, MemType::WriteBack, false};

  volatile u64* phys(u64 pa) const {
    return reinterpret_cast<volatile u64*>(v_.direct_map + pa);  // NOLINT: the direct map
  }
  static bool same_page(const ptkit::Mapping& q, u64 va, u64 pa, u64 size) {
    return q.size == size && q.va.value() == ptkit::align_down(va, size) &&
           q.pa.value() == ptkit::align_down(pa, size);
  }

  /// The CPU runs on ptkit's tables alone: the stub's identity map is gone.
  void own_tables() {
    Check c("own-tables");
    c.expect(trap::read(0).page_fault(0, kPfBits, 0), "page 0 unmapped");
    c.expect(trap::read(kScratch).page_fault(kScratch, kPfBits, 0), "identity RAM unmapped",
             kScratch);
    // The direct map reaches the same memory as the image mapping.
    const trap::Probe r = trap::read(v_.direct_map + addr_of(&g_rodata_word));
    c.expect(!r.faulted && r.value == kRodataMagic, "rodata via direct map", r.value);
    // The device page is mapped too, uncached: the local APIC version
    // register (offset 0x30, SDM §11.4.8) has a version in bits 7:0.
    const u64 version = *reinterpret_cast<volatile ptkit::u32*>(  // NOLINT: MMIO
                            v_.direct_map + 0xfee0'0030) &
                        0xFF;
    c.expect(version != 0 && version != 0xFF, "local APIC version via direct map", version);
  }

  /// The image mapper's permissions, enforced by the CPU (CR0.WP and NX on).
  void image_permissions() {
    {
      Check c("image-text-readonly");
      const u64 va = addr_of(__text_start) + 0x100;
      // Writing back the value already there is harmless if it succeeds.
      const trap::Probe r = trap::read(va);
      c.expect(!r.faulted, "text readable");
      c.expect(trap::write(va, r.value).page_fault(va, kPfBits, kPfPresent | kPfWrite),
               "write to text faults with P|W");
    }
    {
      Check c("image-rodata-readonly");
      const u64 va = addr_of(&g_rodata_word);
      c.expect(va >= addr_of(__rodata_start) && va < addr_of(__rodata_end), "placed in rodata", va);
      c.expect(trap::write(va, kRodataMagic).page_fault(va, kPfBits, kPfPresent | kPfWrite),
               "write to rodata faults with P|W");
    }
    {
      Check c("image-data-nx");
      const u64 va = addr_of(g_ret_in_data);
      c.expect(trap::exec(va).page_fault(va, kPfBits, kPfPresent | kPfFetch),
               "executing data faults with P|I");
      // probe_done (traps.S) is a lone `ret`: text stays executable.
      c.expect(!trap::exec(addr_of(probe_done)).faulted, "executing text works");
    }
  }

  /// A 4K mapping works both ways, and unmapping it takes it away.
  void map_4k() {
    const u64 va = t_;
    const u64 pa = scratch(0);
    {
      Check c("map-4k");
      auto done = s_.map(VirtAddr(va), PhysAddr(pa), 4 * KiB, kData);
      if (!c.expect_ok(done, "map")) return;
      c.expect(done->stats.invalidations == 0, "adding needs no invalidation");
      c.expect(!trap::write(va + 8, 0x1111'2222).faulted, "write through the new mapping");
      c.expect(*phys(pa + 8) == 0x1111'2222, "seen at the physical page", *phys(pa + 8));
      *phys(pa + 16) = 0x3333'4444;
      const trap::Probe r = trap::read(va + 16);
      c.expect(!r.faulted && r.value == 0x3333'4444, "read through the new mapping", r.value);
      auto q = s_.query(VirtAddr(va));
      c.expect(q.ok() && same_page(q.value(), va, pa, 4 * KiB), "query agrees");
    }
    {
      Check c("unmap-4k");
      const u64 before = s_.sink().counts().invlpg;
      auto done = s_.unmap(VirtAddr(va), 4 * KiB);
      if (!c.expect_ok(done, "unmap")) return;
      c.expect(s_.sink().counts().invlpg == before + 1, "one invlpg",
               s_.sink().counts().invlpg - before);
      // The TLB held the translation (the write above): without the invlpg
      // this read would still succeed.
      const trap::Probe r = trap::read(va + 16);
      c.expect(r.page_fault(va + 16, kPfBits, 0), "read after unmap faults, not present",
               r.fault.cr2, r.fault.error);
      c.expect(trap::write(va, 0).page_fault(va, kPfBits, kPfWrite), "write faults with W only");
    }
  }

  void protect_readonly() {
    const u64 va = t_ + 0x4000;
    const u64 pa = scratch(1);
    Check c("protect-readonly");
    if (!c.expect_ok(s_.map(VirtAddr(va), PhysAddr(pa), 4 * KiB, kData), "map")) return;
    c.expect(!trap::write(va, 0xabcd).faulted, "writable before");
    auto done = s_.protect(VirtAddr(va), 4 * KiB, ptkit::AttrChange{Perm::None, Perm::W});
    if (!c.expect_ok(done, "protect")) return;
    const trap::Probe w = trap::write(va, 0xdead);
    c.expect(w.page_fault(va, kPfBits, kPfPresent | kPfWrite), "write faults with P|W", w.fault.cr2,
             w.fault.error);
    const trap::Probe r = trap::read(va);
    c.expect(!r.faulted && r.value == 0xabcd, "still readable, unchanged", r.value);
    auto back = s_.protect(VirtAddr(va), 4 * KiB, ptkit::AttrChange{Perm::W, Perm::None});
    c.expect_ok(back, "protect +W");
    c.expect(!trap::write(va, 0xbeef).faulted && *phys(pa) == 0xbeef, "writable again");
  }

  void nx_exec() {
    const u64 va = t_ + 0x8000;
    const u64 pa = scratch(2);
    Check c("nx-exec");
    if (!c.expect_ok(s_.map(VirtAddr(va), PhysAddr(pa), 4 * KiB, kData), "map")) return;
    *phys(pa) = 0xC3;  // ret
    const trap::Probe x = trap::exec(va);
    c.expect(x.page_fault(va, kPfBits, kPfPresent | kPfFetch), "fetch faults with P|I", x.fault.cr2,
             x.fault.error);
    auto done = s_.protect(VirtAddr(va), 4 * KiB, ptkit::AttrChange{Perm::X, Perm::W});
    if (!c.expect_ok(done, "protect +X -W")) return;
    c.expect(!trap::exec(va).faulted, "executes after +X");
    c.expect(trap::write(va, 0xC3).page_fault(va, kPfBits, kPfPresent | kPfWrite),
             "and is read-only");
  }

  /// A 2M leaf, then a split of it by protecting one 4K page inside.
  void leaf_2m() {
    const u64 va = t_ + 2 * MiB;
    const u64 pa = kScratch2M;
    {
      Check c("leaf-2m");
      auto done = s_.map(VirtAddr(va), PhysAddr(pa), 2 * MiB, kData);
      if (!c.expect_ok(done, "map")) return;
      auto q = s_.query(VirtAddr(va + 0x5008));
      c.expect(q.ok() && same_page(q.value(), va, pa, 2 * MiB) && q->level == 1, "one 2M leaf");
      c.expect(!trap::write(va + 0x1F'F000, 0x2020).faulted && *phys(pa + 0x1F'F000) == 0x2020,
               "last page writes through");
    }
    {
      // The whole leaf: one INVLPG (stride 2M), not 512.
      Check c("protect-2m");
      const u64 before = s_.sink().counts().invlpg;
      auto done = s_.protect(VirtAddr(va), 2 * MiB, ptkit::AttrChange{Perm::None, Perm::W});
      if (!c.expect_ok(done, "protect")) return;
      c.expect(s_.sink().counts().invlpg == before + 1, "one invlpg",
               s_.sink().counts().invlpg - before);
      const trap::Probe w = trap::write(va + 0x5000, 0xdead);
      c.expect(w.page_fault(va + 0x5000, kPfBits, kPfPresent | kPfWrite), "write faults with P|W",
               w.fault.cr2, w.fault.error);
      c.expect_ok(s_.protect(VirtAddr(va), 2 * MiB, ptkit::AttrChange{Perm::W, Perm::None}),
                  "protect +W");
      c.expect(!trap::write(va + 0x5000, 0x5555).faulted, "writable again, TLB warm");
      auto q = s_.query(VirtAddr(va));
      c.expect(q.ok() && q->size == 2 * MiB, "still one 2M leaf");
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
      // The 2M translation was in the TLB, writable: the split's invalidation
      // must remove it for this write to fault.
      const trap::Probe w = trap::write(page, 0xdead);
      c.expect(w.page_fault(page, kPfBits, kPfPresent | kPfWrite), "write faults with P|W",
               w.fault.cr2, w.fault.error);
      c.expect(!trap::write(page + 4 * KiB, 0x6666).faulted && *phys(pa + 0x6000) == 0x6666,
               "neighbour still writable");
      const trap::Probe r = trap::read(page);
      c.expect(!r.faulted && r.value == 0x5555, "protected page readable", r.value);
      auto q = s_.query(VirtAddr(page + 4 * KiB));
      c.expect(q.ok() && same_page(q.value(), page + 4 * KiB, pa + 0x6000, 4 * KiB), "4K now");
    }
  }

  /// A 1G leaf over physical [0, 1G), read against the image, then split.
  void leaf_1g() {
    const u64 va = t_ + GiB;
    {
      Check c("leaf-1g");
      auto done = s_.map(VirtAddr(va), PhysAddr(0), GiB, kData);
      if (!c.expect_ok(done, "map")) return;
      c.expect(done->stats.leaves_written == 1, "one leaf", done->stats.leaves_written);
      auto q = s_.query(VirtAddr(va + 12345));
      c.expect(q.ok() && q->size == GiB && q->level == 2, "1G leaf");
      const trap::Probe r = trap::read(va + addr_of(&g_rodata_word));
      c.expect(!r.faulted && r.value == kRodataMagic, "image through the 1G leaf", r.value);
      c.expect(!trap::write(va + kScratch1G, 0x1616).faulted && *phys(kScratch1G) == 0x1616,
               "write through the 1G leaf");
    }
    {
      Check c("split-1g");
      const u64 page = va + kScratch1G;
      ptkit::ProtectOptions split;
      split.allow_split = true;
      auto done =
          s_.protect(VirtAddr(page), 4 * KiB, ptkit::AttrChange{Perm::None, Perm::W}, split);
      if (!c.expect_ok(done, "protect with allow_split")) return;
      c.expect(done->stats.splits == 2, "1G -> 2M -> 4K", done->stats.splits);
      const trap::Probe w = trap::write(page, 0xdead);
      c.expect(w.page_fault(page, kPfBits, kPfPresent | kPfWrite), "write faults with P|W",
               w.fault.cr2, w.fault.error);
      c.expect(!trap::write(page + 4 * KiB, 1).faulted, "4K neighbour writable");
      auto q = s_.query(VirtAddr(va + 512 * MiB));
      c.expect(q.ok() && q->size == 2 * MiB, "2M elsewhere in the old 1G leaf");
      const trap::Probe r = trap::read(va + 512 * MiB + addr_of(&g_rodata_word) % (2 * MiB));
      c.expect(!r.faulted, "2M neighbour readable");
      const trap::Probe img = trap::read(va + addr_of(&g_rodata_word));
      c.expect(!img.faulted && img.value == kRodataMagic, "image still through it", img.value);
    }
  }

  /// The control experiment: the same protect with the sink dropping its
  /// work leaves the stale writable translation in use. If this failed, the
  /// other checks could not see a missing invalidation.
  void tlb_stale_control() {
    const u64 va = t_ + 0xC000;
    const u64 pa = scratch(3);
    Check c("tlb-stale-control");
    if (!c.expect_ok(s_.map(VirtAddr(va), PhysAddr(pa), 4 * KiB, kData), "map")) return;
    c.expect(!trap::write(va, 1).faulted, "warm the TLB");
    const u64 dropped = s_.sink().counts().dropped;
    s_.sink().set_dropping(true);
    auto done = s_.protect(VirtAddr(va), 4 * KiB, ptkit::AttrChange{Perm::None, Perm::W});
    s_.sink().set_dropping(false);
    if (!c.expect_ok(done, "protect")) return;
    c.expect(s_.sink().counts().dropped == dropped + 1, "the invalidation was dropped");
    c.expect(!trap::write(va, 2).faulted && *phys(pa) == 2,
             "stale writable translation still used (QEMU keeps stale TLB entries)");
    cpu::invlpg(va);
    c.expect(trap::write(va, 3).page_fault(va, kPfBits, kPfPresent | kPfWrite),
             "after invlpg the write faults");
  }

  /// More than 32 pages: ptkit flushes everything instead. For global
  /// translations a CR3 reload is not enough; the sink must toggle CR4.PGE.
  /// (QEMU's TCG drops global translations on a CR3 load too, so there only
  /// the sink's counts tell the two apart; the faults prove the flush.)
  void full_flush(bool global) {
    constexpr unsigned kPages = 64;
    const u64 va = t_ + (global ? 0x18'0000 : 0x10'0000);
    const u64 pa = scratch(global ? 128 : 16);
    Check c(global ? "tlb-full-flush-global" : "tlb-full-flush");
    const Attrs attrs{ptkit::RW, MemType::WriteBack, global};
    if (!c.expect_ok(s_.map(VirtAddr(va), PhysAddr(pa), kPages * 4 * KiB, attrs), "map")) return;
    for (unsigned k = 0; k < kPages; ++k)
      c.expect(!trap::write(va + k * 4 * KiB, k).faulted, "warm the TLB", k);
    const TlbCounts before = s_.sink().counts();
    auto done = s_.unmap(VirtAddr(va), kPages * 4 * KiB);
    if (!c.expect_ok(done, "unmap")) return;
    const TlbCounts& after = s_.sink().counts();
    c.expect(done->stats.full_flushes == 1 && after.invlpg == before.invlpg, "one full flush");
    c.expect(global ? after.global_flushes == before.global_flushes + 1
                    : after.cr3_reloads == before.cr3_reloads + 1,
             "the right kind of full flush");
    for (unsigned k = 0; k < kPages; ++k) {
      const u64 a = va + k * 4 * KiB;
      c.expect(trap::read(a).page_fault(a, kPfBits, 0), "every page faults after", a);
    }
  }

  Space<Format>& s_;
  const VirtualLayout& v_;
  const Machine& m_;
  u64 t_;
};

}  // namespace kernel
