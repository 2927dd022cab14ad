// The TlbSink that carries out ptkit's TLB work on the CPU: ptkit's own
// aarch64::TlbiSink (the DSB/TLBI/ISB sequence of Arm ARM D8.16), over
// instructions that also count what they did. It can be told to drop its
// invalidations (the control experiment that shows QEMU keeps stale
// translations, i.e. that a missing invalidation would be seen).
#pragma once

#include "ptkit/arch/aarch64_tlb.hpp"

namespace kernel {

struct TlbCounts {
  ptkit::u64 tlbi_va = 0;       // VAE1IS / VAAE1IS: leaf and walk caches
  ptkit::u64 tlbi_va_leaf = 0;  // VALE1IS / VAALE1IS: last level only
  ptkit::u64 tlbi_asid = 0;     // ASIDE1IS
  ptkit::u64 tlbi_vmalle1 = 0;  // VMALLE1IS
  ptkit::u64 dsb = 0;           // DSB ISHST and DSB ISH
  ptkit::u64 isb = 0;
  ptkit::u64 dropped = 0;  // invalidations ignored while dropping
  [[nodiscard]] ptkit::u64 tlbis() const {
    return tlbi_va + tlbi_va_leaf + tlbi_asid + tlbi_vmalle1;
  }
};

/// ptkit::aarch64::InlineOps, counted.
struct CountingOps {
  TlbCounts* counts;
  using Cpu = ptkit::aarch64::InlineOps;
  void dsb_ishst() const {
    ++counts->dsb;
    Cpu::dsb_ishst();
  }
  void dsb_ish() const {
    ++counts->dsb;
    Cpu::dsb_ish();
  }
  void isb() const {
    ++counts->isb;
    Cpu::isb();
  }
  void tlbi_vae1is(ptkit::u64 op) const {
    ++counts->tlbi_va;
    Cpu::tlbi_vae1is(op);
  }
  void tlbi_vale1is(ptkit::u64 op) const {
    ++counts->tlbi_va_leaf;
    Cpu::tlbi_vale1is(op);
  }
  void tlbi_vaae1is(ptkit::u64 op) const {
    ++counts->tlbi_va;
    Cpu::tlbi_vaae1is(op);
  }
  void tlbi_vaale1is(ptkit::u64 op) const {
    ++counts->tlbi_va_leaf;
    Cpu::tlbi_vaale1is(op);
  }
  void tlbi_aside1is(ptkit::u16 asid) const {
    ++counts->tlbi_asid;
    Cpu::tlbi_aside1is(asid);
  }
  void tlbi_vmalle1is() const {
    ++counts->tlbi_vmalle1;
    Cpu::tlbi_vmalle1is();
  }
};
static_assert(ptkit::aarch64::TlbiOps<CountingOps>);

/// ASID 0 (TTBR0_EL1.ASID is 0): the kernel has one address space.
class A64TlbSink {
 public:
  explicit A64TlbSink(TlbCounts* counts) : tlbi_(CountingOps{counts}, 0), counts_(counts) {}

  void publish() { tlbi_.publish(); }
  void invalidate(const ptkit::TlbRange& r) {
    if (dropping_) {
      ++counts_->dropped;
      return;
    }
    tlbi_.invalidate(r);
  }
  void invalidate_all(bool global) {
    if (dropping_) {
      ++counts_->dropped;
      return;
    }
    tlbi_.invalidate_all(global);
  }
  void complete() { tlbi_.complete(); }

  void set_dropping(bool drop) { dropping_ = drop; }
  [[nodiscard]] const TlbCounts& counts() const { return *counts_; }

 private:
  ptkit::aarch64::TlbiSink<CountingOps> tlbi_;
  TlbCounts* counts_;
  bool dropping_ = false;
};

static_assert(ptkit::TlbSink<A64TlbSink>);

}  // namespace kernel
