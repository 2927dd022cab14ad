// Physical scratch memory the checks map (RAM far above the image), every
// page of it tagged with its own physical address, so that a read through
// any mapping tells which frame it reached.
#pragma once

#include "check.hpp"
#include "kernel_space.hpp"
#include "trap.hpp"

namespace kernel {

inline constexpr u64 kScratch = 0x8800'0000;     // 4K pages: kScratch + k * 4 KiB, k < 512
inline constexpr u64 kScratch2M = 0x8820'0000;   // one 2 MiB block
inline constexpr u64 kScratchEnd = 0x8840'0000;  // the machine must have RAM up to here

inline u64 scratch(unsigned k) { return kScratch + u64{k} * 4 * KiB; }

/// What every tagged word holds: the physical address it sits at, marked.
inline constexpr u64 kTagMark = 0x7461'6700'0000'0000;  // "tag"
inline constexpr u64 tag_of(u64 pa) { return kTagMark ^ pa; }
/// Tagged words per page: at offsets 0 and 0x800.
inline constexpr u64 kTagOffsets[] = {0, 0x800};

/// Physical memory through the direct map.
class PhysWindow {
 public:
  explicit PhysWindow(u64 direct_map) : base_(direct_map) {}
  [[nodiscard]] volatile u64* at(u64 pa) const {
    return reinterpret_cast<volatile u64*>(base_ + pa);  // NOLINT: the direct map
  }
  /// Writes the tags of every page of [kScratch, kScratchEnd).
  void tag_scratch() const {
    for (u64 page = kScratch; page < kScratchEnd; page += 4 * KiB)
      for (u64 off : kTagOffsets) *at(page + off) = tag_of(page + off);
  }
  /// Restores the tags of one page after a check wrote into it.
  void retag(u64 page) const {
    for (u64 off : kTagOffsets) *at(page + off) = tag_of(page + off);
  }

 private:
  u64 base_;
};

/// Reads both tags of the page at `va` and expects those of frame `pa`.
inline bool expect_tags(Check& c, u64 va, u64 pa, const char* what) {
  for (u64 off : kTagOffsets) {
    const trap::Probe r = trap::read(va + off);
    if (!c.expect(!r.faulted, what, va + off, r.fault.scause)) return false;
    if (!c.expect(r.value == tag_of(pa + off), what, va + off, r.value)) return false;
  }
  return true;
}

}  // namespace kernel
