// Glue between the core and the simulator for tests: the core's tables live
// in the simulator's sparse physical memory.
#pragma once

#include "ptkit/ptkit.hpp"
#include "ptkit/sim/mmu.hpp"

namespace ptkit::test {

/// A TableAccess policy (ptkit/access.hpp) over simulated physical memory.
struct SimAccess {
  sim::PhysMemory* memory;
  u64* table(PhysAddr pa) const { return memory->word(pa.value()); }
  void done(u64*) const {}
};
static_assert(TableAccess<SimAccess>);

}  // namespace ptkit::test
