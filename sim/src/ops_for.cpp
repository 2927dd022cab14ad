// Kept apart from the walkers so that a program using one architecture links
// only that one.
#include "ptkit/sim/mmu.hpp"

namespace ptkit::sim {

const ArchOps& ops_for(Arch arch) {
  switch (arch) {
    case Arch::X86_64: return x86_ops();
    case Arch::AArch64: return aarch64_ops();
    case Arch::RiscV: return riscv_ops();
  }
  return x86_ops();
}

}  // namespace ptkit::sim
