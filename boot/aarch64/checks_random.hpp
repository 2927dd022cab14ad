// The randomized phase: a few thousand random map, unmap and protect
// operations (with splits, merges, Contiguous runs and, with the 4K
// granule, 2M blocks) in a window of its own, each followed by in-guest
// checks of the pages it touched and a few others: a read and a write
// through the page must do what a reference kept here says (the tagged
// physical page, or the right fault), and AT must agree with ptkit's query.
// Every check touches the pages, so the TLB holds their translations when
// the next operation changes them: a missing or wrong TLBI shows as a
// stale access.
#pragma once

#include "at_oracle.hpp"
#include "check.hpp"
#include "kernel_space.hpp"
#include "random.hpp"
#include "scratch.hpp"
#include "trap.hpp"

namespace kernel {

class RandomPhase {
  static constexpr u64 kPage = config::kPage;
  static constexpr unsigned kWindowPages = kPage == 4 * KiB ? 1024 : 256;
  static constexpr unsigned kPhysPages = static_cast<unsigned>(16 * MiB / kPage);
  static constexpr unsigned kOps = 3000;

  struct RefPage {
    bool mapped = false;
    bool writable = false;
    unsigned phys = 0;  // index into the scratch pages
  };

 public:
  RandomPhase(Space& space, u64 seed) : s_(space), rng_(seed) {}

  void run() {
    Check c("random-ops");
    tag_pages(kScratchRandom, kPhysPages);
    const u64 tables_before = s_.allocator().pages_in_use();
    const unsigned run = s_.format().contiguous_entries(0);
    // 2M blocks where the granule has them and the window holds two.
    const unsigned block = static_cast<unsigned>(s_.leaf_size(1) / kPage);
    const bool blocks = block * 2 <= kWindowPages;
    unsigned op = 0;
    for (; op < kOps && !c.failed(); ++op) {
      unsigned align = 1;
      unsigned len = 1 + static_cast<unsigned>(rng_.below(8));
      switch (rng_.below(10)) {
        case 6:
        case 7: align = len = run; break;
        case 8:
          if (blocks) align = len = block;
          break;
        case 9: len = 1 + static_cast<unsigned>(rng_.below(64)); break;
        default: break;
      }
      const unsigned first = static_cast<unsigned>(rng_.below(kWindowPages / align)) * align;
      if (first + len > kWindowPages) len = kWindowPages - first;
      const VirtAddr va(base(first));
      const u64 size = len * kPage;
      const TlbCounts before = s_.sink().counts();
      ptkit::Result<ptkit::Outcome> done = ptkit::Failure{};
      switch (rng_.below(3)) {
        case 0: {
          const unsigned phys =
              static_cast<unsigned>(rng_.below((kPhysPages - len) / align + 1)) * align;
          const bool writable = rng_.below(3) != 0;
          ptkit::MapOptions o;
          o.existing = ptkit::OnExisting::Replace;
          o.allow_split = true;
          o.merge = rng_.below(4) == 0;
          done = s_.map(va, PhysAddr(kScratchRandom + phys * kPage), size,
                        Attrs{writable ? ptkit::RW : Perm::R, MemType::WriteBack, false}, o);
          if (done.ok())
            for (unsigned k = 0; k < len; ++k) ref_[first + k] = RefPage{true, writable, phys + k};
          break;
        }
        case 1: {
          ptkit::UnmapOptions o;
          o.allow_split = true;
          done = s_.unmap(va, size, o);
          if (done.ok())
            for (unsigned k = 0; k < len; ++k) ref_[first + k] = RefPage{};
          break;
        }
        default: {
          const bool writable = rng_.below(2) == 0;
          ptkit::ProtectOptions o;
          o.holes = ptkit::OnHole::Skip;
          o.allow_split = true;
          o.merge = rng_.below(4) == 0;
          const ptkit::AttrChange change = writable ? ptkit::AttrChange{Perm::W, Perm::None}
                                                    : ptkit::AttrChange{Perm::None, Perm::W};
          done = s_.protect(va, size, change, o);
          if (done.ok())
            for (unsigned k = 0; k < len; ++k)
              if (ref_[first + k].mapped) ref_[first + k].writable = writable;
          break;
        }
      }
      if (!c.expect_ok(done, "operation")) break;
      add(done->stats);
      // The sink did exactly the TLB work ptkit reported.
      const TlbCounts& after = s_.sink().counts();
      c.expect(after.tlbi_va + after.tlbi_va_leaf - before.tlbi_va - before.tlbi_va_leaf ==
                   done->stats.invalidations,
               "TLBIs by address as reported", done->stats.invalidations,
               after.tlbi_va + after.tlbi_va_leaf - before.tlbi_va - before.tlbi_va_leaf);
      c.expect(after.tlbi_asid + after.tlbi_vmalle1 - before.tlbi_asid - before.tlbi_vmalle1 ==
                   done->stats.full_flushes,
               "full flushes as reported", done->stats.full_flushes);
      // The pages changed, their neighbours, and a few anywhere.
      const unsigned lo = first == 0 ? 0 : first - 1;
      const unsigned hi = first + len < kWindowPages ? first + len : kWindowPages - 1;
      if (hi - lo <= 16) {
        for (unsigned i = lo; i <= hi; ++i) verify(c, i);
      } else {
        verify(c, lo);
        verify(c, hi);
        for (unsigned k = 0; k < 14; ++k)
          verify(c, lo + static_cast<unsigned>(rng_.below(hi - lo)));
      }
      for (unsigned k = 0; k < 4; ++k) verify(c, static_cast<unsigned>(rng_.below(kWindowPages)));
    }
    if (c.failed()) {
      serial::write("info random phase stopped at operation ");
      serial::dec(op);
      serial::write("\n");
      return;
    }
    c.expect_ok(s_.unmap(VirtAddr(base(0)), kWindowPages * kPage), "unmap the window");
    c.expect(s_.allocator().pages_in_use() == tables_before, "every table given back",
             s_.allocator().pages_in_use(), tables_before);
    serial::write("info random phase: ");
    serial::dec(op);
    serial::write(" operations, ");
    serial::dec(verified_);
    serial::write(" page checks; splits ");
    serial::dec(total_.splits);
    serial::write(", merges ");
    serial::dec(total_.merges);
    serial::write(", breaks ");
    serial::dec(total_.breaks);
    serial::write(", tables allocated ");
    serial::dec(total_.tables_allocated);
    serial::write(", freed ");
    serial::dec(total_.tables_freed);
    serial::write(", TLBIs by address ");
    serial::dec(total_.invalidations);
    serial::write(", full flushes ");
    serial::dec(total_.full_flushes);
    serial::write("\n");
    // Coverage: Contiguous runs taken apart everywhere; with blocks in the
    // window (4K granule), splits, merges and freed tables too.
    c.expect(total_.breaks > 0 && total_.full_flushes > 0, "breaks and full flushes happened",
             total_.breaks, total_.full_flushes);
    if (blocks)
      c.expect(total_.splits > 0 && total_.merges > 0 && total_.tables_freed > 0,
               "splits, merges and freed tables happened", total_.splits, total_.merges);
  }

 private:
  static u64 base(unsigned page) { return kLayout.random_base + page * kPage; }

  void add(const ptkit::OpStats& st) {
    total_.splits += st.splits;
    total_.merges += st.merges;
    total_.breaks += st.breaks;
    total_.tables_allocated += st.tables_allocated;
    total_.tables_freed += st.tables_freed;
    total_.invalidations += st.invalidations;
    total_.full_flushes += st.full_flushes;
  }

  /// Page `i` of the window behaves as the reference says, and AT agrees.
  void verify(Check& c, unsigned i) {
    ++verified_;
    const RefPage& p = ref_[i];
    const u64 va = base(i) + rng_.below(kPage / 8) * 8;
    const u64 pa = kScratchRandom + p.phys * kPage + (va - base(i));
    const trap::Probe r = trap::read(va);
    if (!p.mapped) {
      c.expect(r.data_abort(va, trap::FaultKind::Translation, false), "unmapped page reads fault",
               va, r.fault.esr);
      c.expect(trap::write(va, 0).data_abort(va, trap::FaultKind::Translation, true),
               "unmapped page writes fault", va);
    } else {
      c.expect(!r.faulted && r.value == phys(pa), "mapped page reads its physical page", va,
               r.value);
      // Writing back what is there changes nothing when it is allowed.
      const trap::Probe w = trap::write(va, r.value);
      if (p.writable)
        c.expect(!w.faulted, "writable page writes", va, w.fault.esr);
      else
        c.expect(w.data_abort(va, trap::FaultKind::Permission, true),
                 "read-only page: permission fault", va, w.fault.esr);
    }
    at_agrees(c, s_, va);
  }

  Space& s_;
  Random rng_;
  RefPage ref_[kWindowPages]{};
  ptkit::OpStats total_{};
  u64 verified_ = 0;
};

}  // namespace kernel
