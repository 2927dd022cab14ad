// Superpages split while the kernel runs from them. The image is three
// megapages (kernel.ld): the text megapage holds the code doing the split,
// the data megapage holds the stack and the very page tables ptkit is
// editing (reached through the image mapping). A protect of one page inside
// each splits it with ptkit's sequence, with those ranges declared live, and
// the kernel keeps running; a protect back with `merge` folds the table into
// a megapage again.
//
// RISC-V has no break-before-make (§4.2.1: a hart uses the old or the new
// translation until the fence, both valid), so ptkit never has to make a
// live range invalid for a split, and a split is not refused for one. What
// is refused is an update that would itself remove a live translation: an
// unmap over a live range fails with LiveRangeBroken before any write.
#pragma once

#include "check.hpp"
#include "kernel_space.hpp"
#include "trap.hpp"

extern "C" char live_text_page[];  // traps.S: a `ret` alone on its page

namespace kernel {

// A page of its own inside the data megapage.
alignas(4096) inline u64 g_live_data_page[512];

class LiveChecks {
 public:
  LiveChecks(Space& space, TlbState& tlb) : s_(space), tlb_(tlb) {
    live_[0] = ptkit::VirtRange::of(VirtAddr(addr_of(__text_start)),
                                    addr_of(__text_end) - addr_of(__text_start));
    live_[1] = ptkit::VirtRange::of(VirtAddr(addr_of(__data_start)),
                                    addr_of(__data_end) - addr_of(__data_start));
  }

  void run() {
    split_text();
    split_data();
    live_unmap_refused();
  }

 private:
  [[nodiscard]] ptkit::LiveRanges live() const { return ptkit::LiveRanges{live_, 2}; }

  ptkit::ProtectOptions split_options() const {
    ptkit::ProtectOptions o;
    o.allow_split = true;
    o.live = live();
    return o;
  }
  ptkit::ProtectOptions merge_options() const {
    ptkit::ProtectOptions o;
    o.merge = true;
    o.live = live();
    return o;
  }

  bool is_megapage(u64 va) const {
    auto q = s_.query(VirtAddr(va));
    return q.ok() && q->size == 2 * MiB;
  }

  /// The page of text made non-executable while the code around it runs.
  void split_text() {
    const u64 page = addr_of(live_text_page);
    Check c("split-live-text");
    c.expect(is_megapage(page), "text is one megapage");
    c.expect(!trap::exec(page).faulted, "the page runs before");
    const u64 fences = tlb_.counts.by_address() + tlb_.counts.whole();
    auto done = s_.protect(VirtAddr(page), 4 * KiB, ptkit::AttrChange{Perm::None, Perm::X},
                           split_options());
    if (!c.expect_ok(done, "protect -X inside the running text")) return;
    c.expect(done->stats.splits == 1 && done->stats.breaks == 0, "split without a break",
             done->stats.splits, done->stats.breaks);
    c.expect(tlb_.counts.by_address() + tlb_.counts.whole() > fences, "fenced");
    c.expect(trap::exec(page).page_fault(page, trap::kInstructionPageFault),
             "the page no longer runs");
    c.expect(!trap::exec(addr_of(probe_done)).faulted, "the rest of the text runs");
    auto back = s_.protect(VirtAddr(page), 4 * KiB, ptkit::AttrChange{Perm::X, Perm::None},
                           merge_options());
    if (!c.expect_ok(back, "protect +X with merge")) return;
    c.expect(back->stats.merges == 1 && back->stats.tables_freed == 1, "merged back",
             back->stats.merges, back->stats.tables_freed);
    c.expect(is_megapage(page), "text is one megapage again");
    c.expect(!trap::exec(page).faulted, "the page runs again");
  }

  /// The data megapage holds the stack this code runs on and the tables
  /// ptkit edits during the split (the root among them).
  void split_data() {
    const u64 page = addr_of(g_live_data_page);
    Check c("split-live-data");
    c.expect(is_megapage(page) && is_megapage(addr_of(g_table_pool)), "data is megapages");
    c.expect(!trap::write(page, 1).faulted, "the page is writable before");
    auto done = s_.protect(VirtAddr(page), 4 * KiB, ptkit::AttrChange{Perm::None, Perm::W},
                           split_options());
    if (!c.expect_ok(done, "protect -W inside the live data")) return;
    c.expect(done->stats.splits == 1 && done->stats.breaks == 0, "split without a break");
    c.expect(trap::write(page, 2).page_fault(page, trap::kStorePageFault), "the page is read-only");
    const trap::Probe r = trap::read(page);
    c.expect(!r.faulted && r.value == 1, "and still readable", r.value);
    c.expect(!trap::write(page + 4 * KiB, 3).faulted, "its neighbour is writable");
    auto back = s_.protect(VirtAddr(page), 4 * KiB, ptkit::AttrChange{Perm::W, Perm::None},
                           merge_options());
    if (!c.expect_ok(back, "protect +W with merge")) return;
    c.expect(back->stats.merges == 1, "merged back", back->stats.merges);
    c.expect(is_megapage(page), "data is one megapage again");
    c.expect(!trap::write(page, 4).faulted, "writable again");
  }

  /// Unmapping a range that meets a live one is refused before any write.
  void live_unmap_refused() {
    Check c("live-unmap-refused");
    const u64 stack_page = ptkit::align_down(addr_of(boot_stack_top) - 1, 4 * KiB);
    const TlbCounts before = tlb_.counts;
    ptkit::UnmapOptions o;
    o.allow_split = true;
    o.live = live();
    auto refused = s_.unmap(VirtAddr(stack_page), 4 * KiB, o);
    c.expect(!refused.ok() && refused.error() == ptkit::Error::LiveRangeBroken,
             "refused with LiveRangeBroken");
    c.expect(
        tlb_.counts.by_address() == before.by_address() && tlb_.counts.whole() == before.whole(),
        "no fence issued");
    c.expect(is_megapage(stack_page), "the stack's megapage unchanged");
  }

  Space& s_;
  TlbState& tlb_;
  ptkit::VirtRange live_[2];
};

}  // namespace kernel
