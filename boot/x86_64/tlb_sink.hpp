// The TlbSink that carries out ptkit's TLB work on the CPU: INVLPG per page
// of the range, a CR3 reload for a full flush, a CR4.PGE toggle for a full
// flush that must include global translations. It also counts what it did,
// and can be told to drop everything (the control experiment that shows
// QEMU keeps stale translations, i.e. that a missing invalidation is seen).
#pragma once

#include "cpu.hpp"
#include "ptkit/tlb.hpp"

namespace kernel {

struct TlbCounts {
  ptkit::u64 invlpg = 0;
  ptkit::u64 cr3_reloads = 0;
  ptkit::u64 global_flushes = 0;
  ptkit::u64 dropped = 0;  // calls ignored while dropping
};

class X86TlbSink {
 public:
  explicit X86TlbSink(TlbCounts* counts) : counts_(counts) {}

  // x86 stores are seen by the page walker in program order (SDM §4.10.4:
  // the walker reads memory like any other agent, and this CPU's stores are
  // visible to itself at once); only the compiler must not sink the entry
  // stores below the code that relies on them.
  void publish() { asm volatile("" : : : "memory"); }

  void invalidate(const ptkit::TlbRange& r) {
    if (dropping_) {
      ++counts_->dropped;
      return;
    }
    // One INVLPG per leaf of the smallest changed size; INVLPG also drops
    // global translations of the address and all paging-structure caches,
    // so `global` and `tables` need nothing more (SDM §4.10.4.1).
    const ptkit::u64 step = ptkit::u64{1} << r.stride_shift;
    for (ptkit::u64 va = r.first.value();; va += step) {
      cpu::invlpg(va);
      ++counts_->invlpg;
      if (r.last.value() - va < step) break;  // also stops at the top of the space
    }
  }

  void invalidate_all(bool global) {
    if (dropping_) {
      ++counts_->dropped;
      return;
    }
    if (global) {
      cpu::flush_all_global();
      ++counts_->global_flushes;
    } else {
      // A CR3 load keeps global translations (SDM §4.10.4.1).
      cpu::write_cr3(cpu::read_cr3());
      ++counts_->cr3_reloads;
    }
  }

  // INVLPG and MOV to CR3/CR4 are serializing: nothing is left to wait for.
  void complete() {}

  void set_dropping(bool drop) { dropping_ = drop; }
  [[nodiscard]] const TlbCounts& counts() const { return *counts_; }

 private:
  TlbCounts* counts_;
  bool dropping_ = false;
};

static_assert(ptkit::TlbSink<X86TlbSink>);

}  // namespace kernel
