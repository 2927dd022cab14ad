// The arch interface of the randomized phase (boot/common/random_checks.hpp)
// on x86-64: probes through trap.hpp, classified by the page-fault error
// code, and physical memory through the kernel's direct map.
#pragma once

#include "random_checks.hpp"
#include "trap.hpp"

namespace kernel {

class X86RandomArch {
 public:
  explicit X86RandomArch(ptkit::u64 direct_map) : direct_map_(direct_map) {}

  static constexpr ptkit::u32 kReturnInsn = 0xC3;  // ret, then three bytes never reached

  ProbeResult read(ptkit::u64 va) { return classify(trap::read(va), va, 0); }
  ProbeResult write(ptkit::u64 va, ptkit::u64 value) {
    return classify(trap::write(va, value), va, trap::kPfWrite);
  }
  ProbeResult exec(ptkit::u64 va) { return classify(trap::exec(va), va, trap::kPfFetch); }

  void phys_write(ptkit::u64 pa, ptkit::u64 value) { *word(pa) = value; }
  // Instruction fetch sees stores at once on x86 (SDM vol. 3A §8.1.3): the
  // tags are written long before any of them is executed.
  void sync_instructions() {}

 private:
  /// A #PF at exactly `va` whose W/I bits say the access asked for (`kind`);
  /// P tells a permission fault from a missing translation (SDM §4.7).
  static ProbeResult classify(const trap::Probe& p, ptkit::u64 va, ptkit::u64 kind) {
    if (!p.faulted) return ProbeResult{Access::Done, p.value};
    constexpr ptkit::u64 kKindBits = trap::kPfWrite | trap::kPfFetch;
    if (p.fault.vector != trap::kVectorPageFault || p.fault.cr2 != va ||
        (p.fault.error & kKindBits) != kind)
      return ProbeResult{Access::Unexpected, p.fault.error};
    const bool present = (p.fault.error & trap::kPfPresent) != 0;
    return ProbeResult{present ? Access::PermissionFault : Access::TranslationFault, 0};
  }
  [[nodiscard]] volatile ptkit::u64* word(ptkit::u64 pa) const {
    return reinterpret_cast<volatile ptkit::u64*>(direct_map_ + pa);  // NOLINT: the direct map
  }

  ptkit::u64 direct_map_;
};

}  // namespace kernel
