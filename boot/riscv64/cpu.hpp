// The few privileged instructions and CSRs the test kernel needs (RISC-V
// Privileged Architecture 20211203, ch. 4), one inline function each. Every
// asm statement that changes how memory is seen clobbers "memory", so the
// compiler neither caches values across it nor moves accesses over it.
#pragma once

#include "ptkit/addr.hpp"

namespace kernel::cpu {

using ptkit::u64;

inline u64 read_satp() {
  u64 v;
  asm volatile("csrr %0, satp" : "=r"(v));
  return v;
}
/// The time CSR (10 MHz on the virt board), for boot-time info lines.
inline u64 read_time() {
  u64 v;
  asm volatile("rdtime %0" : "=r"(v));
  return v;
}

/// Writes satp, then fences every translation (§4.1.11: the write does not
/// order itself against earlier accesses; an SFENCE.VMA x0, x0 does, and
/// drops whatever the old mode cached).
inline void write_satp(u64 v) {
  asm volatile("csrw satp, %0\n\tsfence.vma zero, zero" : : "r"(v) : "memory");
}

// satp fields (§4.1.11): MODE in 63:60, ASID in 59:44, PPN in 43:0.
inline constexpr unsigned kSatpModeShift = 60;
inline constexpr u64 kSatpPpnMask = (u64{1} << 44) - 1;

// sstatus.MXR (§4.1.1): loads from execute-only pages succeed.
inline constexpr u64 kSstatusMxr = u64{1} << 19;
// sstatus.SUM (§4.1.1): S-mode loads and stores may touch user pages.
inline constexpr u64 kSstatusSum = u64{1} << 18;
inline void set_sstatus(u64 bits) { asm volatile("csrs sstatus, %0" : : "r"(bits) : "memory"); }
inline void clear_sstatus(u64 bits) { asm volatile("csrc sstatus, %0" : : "r"(bits) : "memory"); }

/// Traps go to `handler` (direct mode: stvec.MODE = 0, §4.1.2).
inline void write_stvec(u64 handler) { asm volatile("csrw stvec, %0" : : "r"(handler) : "memory"); }

/// Instruction fetches see earlier stores to code (Zifencei).
inline void fence_i() { asm volatile("fence.i" : : : "memory"); }

/// The real SFENCE.VMA forms outside ptkit's sink (a control experiment, the
/// demand fault path).
inline void sfence_vma_va(u64 va) { asm volatile("sfence.vma %0, zero" : : "r"(va) : "memory"); }
inline void sfence_vma_all() { asm volatile("sfence.vma zero, zero" : : : "memory"); }

}  // namespace kernel::cpu
