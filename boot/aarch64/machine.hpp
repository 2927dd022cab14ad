// What the kernel knows about the machine: the memory map (QEMU virt's RAM
// and the PL011) and the CPU's translation features, read from the ID
// registers, for the configuration this kernel was built for.
#pragma once

#include "config.hpp"
#include "ptkit/early/direct_map.hpp"

namespace kernel {

struct Machine {
  ptkit::early::MemoryRange ranges[2]{};
  ptkit::aarch64::Features features{};
  // ID_AA64MMFR0_EL1 / ID_AA64MMFR2_EL1 fields (D23.2).
  unsigned pa_range = 0;  // PARange: 6 is 52 bits
  unsigned tgran = 0;     // TGran4/16/64 of this kernel's granule, raw
  unsigned va_range = 0;  // VARange: 1 is 52-bit VA with the 64K granule
  unsigned bbm = 0;       // ID_AA64MMFR2_EL1.BBM: FEAT_BBM level (2: size changes in place)

  [[nodiscard]] ptkit::early::MemoryMap memory_map() const {
    return ptkit::early::MemoryMap{ranges, 2};
  }
};

/// Reads the ID registers into `m` and sets the features the configuration
/// needs. Returns why the CPU cannot run this configuration, or nullptr.
const char* discover(Machine& m);

}  // namespace kernel
