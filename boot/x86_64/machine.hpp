// What the kernel learns about the machine before it builds its tables: the
// memory map and command line from the loader (multiboot1 or multiboot2) and
// the paging features from CPUID.
#pragma once

#include "ptkit/arch/x86_64.hpp"
#include "ptkit/early/direct_map.hpp"

namespace kernel {

inline constexpr unsigned kMaxRanges = 32;

enum class Loader : ptkit::u8 { Unknown, Multiboot1, Multiboot2 };

struct Machine {
  Loader loader = Loader::Unknown;
  ptkit::early::MemoryRange ranges[kMaxRanges]{};
  unsigned range_count = 0;
  ptkit::u64 ram_top = 0;  // end of the highest RAM range
  ptkit::x86::Features features{};
  bool la57 = false;  // the boot stub turned on 5-level paging
  /// `seed=N` (decimal or 0x hex) on the kernel command line: the seed of
  /// the randomized phase, to repeat a run (else a fresh one per boot).
  ptkit::u64 seed = 0;
  bool seed_given = false;
  /// `hold` on the kernel command line: after the checks, print the address
  /// space and stay up instead of exiting, for the monitor to dump memory
  /// (tests/qemu/dump_guest_memory.sh).
  bool hold = false;

  [[nodiscard]] ptkit::early::MemoryMap memory_map() const {
    return ptkit::early::MemoryMap{ranges, range_count};
  }
  /// Whether [pa, pa + size) lies inside one RAM range.
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

/// Reads the loader's information at physical `info` (identity-mapped by the
/// boot stub), of the kind `magic` (EAX at entry) names, and CPUID. Returns
/// false when the magic is unknown or the loader gave no memory map.
bool discover(ptkit::u32 magic, ptkit::u64 info, Machine& m);

/// "multiboot1", "multiboot2" or "unknown".
const char* loader_name(Loader loader);

}  // namespace kernel
