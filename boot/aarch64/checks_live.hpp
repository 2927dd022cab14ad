// Blocks split while the kernel runs on them: the checks below run on a
// stack inside the very block they split (call_on_stack, entry.S).
//
// Without FEAT_BBM level 2 a block becomes a table only through
// break-before-make (D8.16.1): for an instant it is invalid, and a CPU using
// it (here: for its stack) takes a translation fault with nowhere to push
// the exception frame. ptkit refuses such a split when the stack is
// declared live (LiveRangeBroken), before any write. With FEAT_BBM level 2
// (QEMU's -cpu max has it: ID_AA64MMFR2_EL1.BBM = 2) the split is an
// equivalent rewrite in one write, so ptkit allows it with the same live
// range, and the kernel keeps running on the stack inside the block while
// the block becomes a table. (QEMU models no TLB conflict aborts, the
// hardware hazard of such a rewrite that FEAT_BBM level 2 leaves to
// software: REAL-MMU.md.)
#pragma once

#include "check.hpp"
#include "kernel_space.hpp"
#include "machine.hpp"
#include "scratch.hpp"
#include "trap.hpp"

extern "C" void call_on_stack(void (*fn)(void*), void* arg, ptkit::u64 stack_top);

namespace kernel {

class LiveChecks {
 public:
  LiveChecks(Space& space, const Machine& m) : s_(space), m_(m) {}

  void run() {
    const Format& f = s_.format();
    size_ = s_.leaf_size(1);
    u64 region = GiB;
    for (unsigned level = 0; level < f.levels(); ++level)
      if (f.leaf_allowed(level) && s_.leaf_size(level) > region) region = s_.leaf_size(level);
    // Past the regions the paging checks use.
    va_ = kLayout.test_base + 16 * region;
    pa_ = ptkit::align_down(kScratchBlock, size_);
    const u64 in_ram = va_ + (kScratchBlock - pa_);
    stack_lo_ = in_ram + 1 * MiB;
    page_ = in_ram + 5 * config::kPage;
    {
      Check c("live-block");
      if (!c.expect_ok(s_.map(VirtAddr(va_), PhysAddr(pa_), size_, kData), "map")) return;
      auto q = s_.query(VirtAddr(stack_lo_));
      c.expect(q.ok() && q->size == size_, "one level-2 block");
      if (c.failed()) return;
    }
    call_on_stack(&on_block_stack, this, stack_lo_ + kStack);
    Check c("live-block-unmap");
    c.expect_ok(s_.unmap(VirtAddr(va_), size_), "unmap");
  }

 private:
  static constexpr Attrs kData{ptkit::RW, MemType::WriteBack, false};
  static constexpr u64 kStack = 64 * KiB;

  static void on_block_stack(void* self) { static_cast<LiveChecks*>(self)->split_while_on_it(); }

  [[nodiscard]] bool on_stack_in_block() const {
    const u64 sp = addr_of(__builtin_frame_address(0));
    return sp >= stack_lo_ && sp < stack_lo_ + kStack;
  }

  void split_while_on_it() {
    const ptkit::VirtRange live[] = {ptkit::VirtRange::of(VirtAddr(stack_lo_), kStack)};
    ptkit::ProtectOptions split;
    split.allow_split = true;
    split.live = ptkit::LiveRanges{live, 1};
    const ptkit::AttrChange ro{Perm::None, Perm::W};
    {
      Check c("split-live-refused");
      c.expect(on_stack_in_block(), "running on a stack inside the block");
      auto refused = s_.protect(VirtAddr(page_), config::kPage, ro, split);
      c.expect(!refused.ok() && refused.error() == ptkit::Error::LiveRangeBroken,
               "the break would unmap the stack: refused");
      auto q = s_.query(VirtAddr(page_));
      c.expect(q.ok() && q->size == size_, "still one block");
    }
    Check c("split-live-bbm2");
    if (!c.expect(m_.bbm >= 2, "FEAT_BBM level 2 (ID_AA64MMFR2_EL1.BBM)", m_.bbm)) return;
    // The same tables, seen by a format that knows the CPU has BBM level 2.
    ptkit::aarch64::Features features = s_.format().features();
    features.bbm2 = true;
    const Format bbm2(config::kGranule, config::kVaBits, ptkit::aarch64::Half::Lower, features);
    Space view(bbm2, s_.access(), s_.allocator(), s_.writer(), s_.sink(), s_.root());
    auto done = view.protect(VirtAddr(page_), config::kPage, ro, split);
    if (!c.expect_ok(done, "split with the stack live")) return;
    c.expect(done->stats.splits == 1 && done->stats.breaks == 0, "split in one write, no break",
             done->stats.splits, done->stats.breaks);
    c.expect(on_stack_in_block(), "still running on the stack inside it");
    const trap::Probe w = trap::write(page_, 0xdead);
    c.expect(w.data_abort(page_, trap::FaultKind::Permission, true) && w.level() == 3,
             "the page: permission fault at level 3", w.fault.far, w.fault.esr);
    c.expect(!trap::write(page_ + config::kPage, 0x1234).faulted, "its neighbour writable");
    auto q = s_.query(VirtAddr(stack_lo_));
    c.expect(q.ok() && q->size == config::kPage, "the stack's pages are pages now");
  }

  Space& s_;
  const Machine& m_;
  u64 size_ = 0, va_ = 0, pa_ = 0, stack_lo_ = 0, page_ = 0;
};

}  // namespace kernel
