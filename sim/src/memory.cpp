#include "ptkit/sim/memory.hpp"

namespace ptkit::sim {

u64* PhysMemory::word(u64 pa) {
  const u64 base = pa & ~(kChunk - 1);
  auto& chunk = chunks_[base];
  if (!chunk) chunk = std::make_unique<u64[]>(kChunk / 8);  // value-initialised: zero
  return &chunk[(pa - base) / 8];
}

u64 PhysMemory::read64(u64 pa) const {
  const auto it = chunks_.find(pa & ~(kChunk - 1));
  return it == chunks_.end() ? 0 : it->second[(pa & (kChunk - 1)) / 8];
}

bool PhysMemory::touched(u64 pa) const { return chunks_.contains(pa & ~(kChunk - 1)); }

}  // namespace ptkit::sim
