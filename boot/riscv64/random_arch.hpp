// The arch interface of the randomized phase (boot/common/random_checks.hpp)
// on RISC-V: probes through trap.hpp, classified by scause and stval, and
// physical memory through the kernel's direct map.
//
// A page fault does not say whether the translation was missing or denied
// the access (§4.1.9: one code per access kind), so every page fault at the
// probed address for the probed kind is Access::Fault. A load access fault
// (scause 5) means the translation worked and the physical address has no
// readable memory (PMP, or nothing there): a gigapage over the start of RAM
// also reaches OpenSBI's PMP-protected firmware and the hole above RAM. For
// the MMU that is a translation that succeeded, so such a read is Done; the
// phase compares values only inside its tagged RAM, where no access fault
// can happen, and never writes or executes outside it.
#pragma once

#include "cpu.hpp"
#include "random_checks.hpp"
#include "trap.hpp"

namespace kernel {

class RiscvRandomArch {
 public:
  explicit RiscvRandomArch(ptkit::u64 direct_map) : direct_map_(direct_map) {}

  static constexpr ptkit::u32 kReturnInsn = trap::kRetInstruction;

  ProbeResult read(ptkit::u64 va) {
    const trap::Probe p = trap::read(va);
    if (p.faulted && p.fault.scause == trap::kLoadAccessFault && p.fault.stval == va)
      return ProbeResult{Access::Done, 0};
    return classify(p, va, trap::kLoadPageFault);
  }
  ProbeResult write(ptkit::u64 va, ptkit::u64 value) {
    return classify(trap::write(va, value), va, trap::kStorePageFault);
  }
  ProbeResult exec(ptkit::u64 va) {
    return classify(trap::exec(va), va, trap::kInstructionPageFault);
  }

  void phys_write(ptkit::u64 pa, ptkit::u64 value) { *word(pa) = value; }
  /// Stores to code become visible to instruction fetch only after a
  /// FENCE.I (Zifencei).
  void sync_instructions() { cpu::fence_i(); }

 private:
  static ProbeResult classify(const trap::Probe& p, ptkit::u64 va, ptkit::u64 cause) {
    if (!p.faulted) return ProbeResult{Access::Done, p.value};
    if (p.fault.scause == cause && p.fault.stval == va) return ProbeResult{Access::Fault, 0};
    return ProbeResult{Access::Unexpected, p.fault.scause};
  }
  [[nodiscard]] volatile ptkit::u64* word(ptkit::u64 pa) const {
    return reinterpret_cast<volatile ptkit::u64*>(direct_map_ + pa);  // NOLINT: the direct map
  }

  ptkit::u64 direct_map_;
};

}  // namespace kernel
