// The privileged AArch64 instructions the test kernel needs, one inline
// function each (register descriptions: Arm ARM DDI 0487 D23; AT: C5.5).
// System register writes that change translation are followed by an ISB
// where they are made (the caller, build_kernel_space, says why); every asm
// statement that changes what memory means clobbers "memory".
#pragma once

#include "ptkit/addr.hpp"

namespace kernel::cpu {

using ptkit::u32;
using ptkit::u64;

#define KERNEL_READ_SYSREG(name)                        \
  inline u64 read_##name() {                            \
    u64 v;                                              \
    asm volatile("mrs %0, " #name : "=r"(v)::"memory"); \
    return v;                                           \
  }
#define KERNEL_WRITE_SYSREG(name) \
  inline void write_##name(u64 v) { asm volatile("msr " #name ", %0" ::"r"(v) : "memory"); }

KERNEL_READ_SYSREG(currentel)
KERNEL_READ_SYSREG(id_aa64mmfr0_el1)
KERNEL_READ_SYSREG(id_aa64mmfr2_el1)
KERNEL_READ_SYSREG(par_el1)
KERNEL_READ_SYSREG(sctlr_el1)
KERNEL_WRITE_SYSREG(sctlr_el1)
KERNEL_READ_SYSREG(tcr_el1)
KERNEL_WRITE_SYSREG(tcr_el1)
KERNEL_READ_SYSREG(ttbr0_el1)
KERNEL_WRITE_SYSREG(ttbr0_el1)
KERNEL_WRITE_SYSREG(mair_el1)
KERNEL_WRITE_SYSREG(vbar_el1)

#undef KERNEL_READ_SYSREG
#undef KERNEL_WRITE_SYSREG

inline void isb() { asm volatile("isb" ::: "memory"); }
inline void dsb_ish() { asm volatile("dsb ish" ::: "memory"); }
inline void dsb_sy() { asm volatile("dsb sy" ::: "memory"); }

/// TLBI VAALE1IS (any ASID, last level) of one page with the barriers
/// around it: the control experiment's own invalidation (tlb-stale-control),
/// not ptkit's.
inline void tlbi_page(u64 va) {
  asm volatile(
      "dsb ishst\n tlbi vaale1is, %0\n dsb ish\n isb" ::"r"((va >> 12) & ((u64{1} << 44) - 1))
      : "memory");
}
/// Every EL1&0 translation; used once, before the MMU goes on (D8.16:
/// entries cached from before reset are UNKNOWN).
inline void tlbi_all() { asm volatile("dsb ishst\n tlbi vmalle1\n dsb ish\n isb" ::: "memory"); }

/// Code written through a data mapping becomes executable only after the
/// instruction cache forgets the old bytes (D7.5.9, "Ordering and
/// completion of data and instruction cache instructions"). QEMU has no
/// caches; real hardware needs all of it.
inline void sync_icache(u64 va) {
  asm volatile("dc cvau, %0\n dsb ish\n ic ivau, %0\n dsb ish\n isb" ::"r"(va) : "memory");
}

/// AT S1E1R / S1E1W: the MMU's own stage 1 walk of `va` for an EL1 read or
/// write, answered in PAR_EL1 (C5.5.x "AT S1E1R"). The ISB makes the PAR
/// write visible to the MRS that follows (D23.2 "PAR_EL1").
inline u64 at_s1e1r(u64 va) {
  asm volatile("at s1e1r, %0\n isb" ::"r"(va) : "memory");
  return read_par_el1();
}
inline u64 at_s1e1w(u64 va) {
  asm volatile("at s1e1w, %0\n isb" ::"r"(va) : "memory");
  return read_par_el1();
}
/// The same walk with EL0's permissions (AT S1E0R / S1E0W).
inline u64 at_s1e0r(u64 va) {
  asm volatile("at s1e0r, %0\n isb" ::"r"(va) : "memory");
  return read_par_el1();
}
inline u64 at_s1e0w(u64 va) {
  asm volatile("at s1e0w, %0\n isb" ::"r"(va) : "memory");
  return read_par_el1();
}

/// Semihosting SYS_EXIT (0x18), which on A64 takes a block {reason, code};
/// with ADP_Stopped_ApplicationExit (0x20026) QEMU -semihosting exits with
/// `code` (Arm semihosting 2.0, "SYS_EXIT"). HLT #0xF000 is the A64
/// semihosting call.
[[noreturn]] inline void qemu_exit(u32 code) {
  const u64 block[2] = {0x20026, code};
  register u64 x0 asm("x0") = 0x18;
  register const u64* x1 asm("x1") = block;
  asm volatile("hlt #0xf000" ::"r"(x0), "r"(x1) : "memory");
  for (;;) asm volatile("wfi");  // only without -semihosting
}
inline constexpr u32 kExitPass = 33;
inline constexpr u32 kExitFail = 35;

}  // namespace kernel::cpu
