// Sparse physical memory for the simulator: 64 KiB chunks allocated, zeroed,
// on first touch, so that any table of any granule (at most 64 KiB, aligned
// to its size) is contiguous host memory (tests point the core's access
// policy at word()).
#pragma once

#include <cstdint>
#include <memory>
#include <unordered_map>

namespace ptkit::sim {

using u64 = std::uint64_t;

class PhysMemory {
 public:
  static constexpr u64 kChunk = 64 * 1024;

  /// Host pointer to the 64-bit word at `pa` (8-byte aligned), touching its
  /// chunk. Valid as long as the memory lives.
  u64* word(u64 pa);
  /// Reads without touching: untouched memory reads as 0.
  [[nodiscard]] u64 read64(u64 pa) const;
  void write64(u64 pa, u64 value) { *word(pa) = value; }
  /// Whether the chunk holding `pa` was ever touched.
  [[nodiscard]] bool touched(u64 pa) const;
  [[nodiscard]] u64 chunks() const { return chunks_.size(); }

 private:
  std::unordered_map<u64, std::unique_ptr<u64[]>> chunks_;
};

}  // namespace ptkit::sim
