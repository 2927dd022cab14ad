// What the kernel learns about the machine before it builds its tables, all
// from the devicetree OpenSBI passes: RAM (/memory), the hart's extensions
// (/cpus/cpu@0 riscv,isa: Svpbmt, Svnapot) and the paging mode to test
// (/chosen bootargs, `ptkit.paging=sv39|sv48|sv57`, from QEMU's -append;
// `ptkit.seed=HEX` reruns the random phase with a reported seed).
#pragma once

#include "ptkit/arch/riscv.hpp"
#include "ptkit/early/direct_map.hpp"

namespace kernel {

inline constexpr unsigned kMaxRanges = 16;

struct Machine {
  ptkit::early::MemoryRange ranges[kMaxRanges]{};
  unsigned range_count = 0;
  ptkit::u64 ram_start = 0;
  ptkit::u64 ram_end = 0;
  ptkit::riscv::Features features{};
  ptkit::riscv::Mode mode = ptkit::riscv::Mode::Sv39;
  bool mode_given = false;  // bootargs named a mode
  ptkit::u64 seed = 0;      // ptkit.seed=HEX: the random phase's seed (0: from the clock)

  [[nodiscard]] ptkit::early::MemoryMap memory_map() const {
    return ptkit::early::MemoryMap{ranges, range_count};
  }
  /// Whether [pa, pa + size) lies inside one RAM range of the memory map.
  [[nodiscard]] bool is_ram(ptkit::u64 pa, ptkit::u64 size) const {
    for (unsigned i = 0; i < range_count; ++i) {
      const auto& r = ranges[i];
      if (r.kind == ptkit::early::MemoryKind::Ram && pa >= r.start.value() &&
          pa + size <= r.start.value() + r.size)
        return true;
    }
    return false;
  }
};

/// Reads the devicetree at physical `dtb` (paging is off) and builds the
/// memory map: RAM from the image's start up (below it, OpenSBI's
/// PMP-protected firmware: a Reserved hole), and the UART and test finisher
/// as Device pages. Returns false when there is no devicetree or no memory.
bool discover(ptkit::u64 dtb, ptkit::u64 image_start, Machine& m);

/// "sv39", "sv48" or "sv57".
const char* mode_name(ptkit::riscv::Mode mode);

}  // namespace kernel
