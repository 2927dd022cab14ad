// The kernel's TLB sink: ptkit's own SfenceSink (arch/riscv_tlb.hpp), which
// turns the engine's TLB work into SFENCE.VMA forms, over instructions that
// also count what they did and can be told to drop everything (the control
// experiment that shows QEMU keeps stale translations, i.e. that a missing
// fence is seen).
#pragma once

#include "ptkit/arch/riscv_tlb.hpp"

namespace kernel {

struct TlbCounts {
  ptkit::u64 va_asid = 0;  // sfence.vma va, asid
  ptkit::u64 va = 0;       // sfence.vma va, x0 (global translations among them)
  ptkit::u64 asid = 0;     // sfence.vma x0, asid
  ptkit::u64 all = 0;      // sfence.vma x0, x0
  ptkit::u64 dropped = 0;  // fences not issued while dropping

  [[nodiscard]] ptkit::u64 by_address() const { return va_asid + va; }
  [[nodiscard]] ptkit::u64 whole() const { return asid + all; }
};

struct TlbState {
  TlbCounts counts;
  bool dropping = false;
};

/// ptkit::riscv::InlineOps, counted.
class CountingOps {
 public:
  explicit CountingOps(TlbState* state) : state_(state) {}

  void sfence_vma(ptkit::u64 va, ptkit::u16 asid) {
    if (drop()) return;
    inline_.sfence_vma(va, asid);
    ++state_->counts.va_asid;
  }
  void sfence_vma_va(ptkit::u64 va) {
    if (drop()) return;
    inline_.sfence_vma_va(va);
    ++state_->counts.va;
  }
  void sfence_vma_asid(ptkit::u16 asid) {
    if (drop()) return;
    inline_.sfence_vma_asid(asid);
    ++state_->counts.asid;
  }
  void sfence_vma_all() {
    if (drop()) return;
    inline_.sfence_vma_all();
    ++state_->counts.all;
  }

  [[nodiscard]] TlbState& state() { return *state_; }

 private:
  bool drop() {
    if (!state_->dropping) return false;
    ++state_->counts.dropped;
    return true;
  }
  ptkit::riscv::InlineOps inline_;
  TlbState* state_;
};

/// The kernel runs with ASID 0 (satp.ASID is 0).
using TlbSinkRv = ptkit::riscv::SfenceSink<CountingOps>;
static_assert(ptkit::TlbSink<TlbSinkRv>);

}  // namespace kernel
