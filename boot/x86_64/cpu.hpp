// The few privileged instructions the test kernel needs, one inline function
// each. Every asm statement clobbers "memory" where the CPU's view of memory
// (translations, port side effects) changes, so the compiler neither caches
// values across it nor moves accesses over it.
#pragma once

#include "ptkit/addr.hpp"

namespace kernel::cpu {

using ptkit::u16;
using ptkit::u32;
using ptkit::u64;
using ptkit::u8;

inline void outb(u16 port, u8 value) {
  asm volatile("outb %0, %1" : : "a"(value), "Nd"(port) : "memory");
}
inline u8 inb(u16 port) {
  u8 value;
  asm volatile("inb %1, %0" : "=a"(value) : "Nd"(port) : "memory");
  return value;
}

struct CpuidRegs {
  u32 eax, ebx, ecx, edx;
};
inline CpuidRegs cpuid(u32 leaf, u32 subleaf = 0) {
  CpuidRegs r;
  asm volatile("cpuid"
               : "=a"(r.eax), "=b"(r.ebx), "=c"(r.ecx), "=d"(r.edx)
               : "a"(leaf), "c"(subleaf));
  return r;
}

inline u64 read_cr2() {
  u64 v;
  asm volatile("mov %%cr2, %0" : "=r"(v));
  return v;
}
inline u64 read_cr3() {
  u64 v;
  asm volatile("mov %%cr3, %0" : "=r"(v));
  return v;
}
// Loading CR3 switches tables and drops every non-global translation (SDM
// §4.10.4.1): memory written before must be written, hence "memory".
inline void write_cr3(u64 v) { asm volatile("mov %0, %%cr3" : : "r"(v) : "memory"); }
inline u64 read_cr4() {
  u64 v;
  asm volatile("mov %%cr4, %0" : "=r"(v));
  return v;
}
inline void write_cr4(u64 v) { asm volatile("mov %0, %%cr4" : : "r"(v) : "memory"); }

inline constexpr u64 kCr4Pge = u64{1} << 7;
inline constexpr u64 kCr4La57 = u64{1} << 12;

/// The time-stamp counter: a seed that differs from boot to boot.
inline u64 rdtsc() {
  u32 lo, hi;
  asm volatile("rdtsc" : "=a"(lo), "=d"(hi));
  return (u64{hi} << 32) | lo;
}

inline u64 rdmsr(u32 msr) {
  u32 lo, hi;
  asm volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
  return (u64{hi} << 32) | lo;
}
inline constexpr u32 kMsrEfer = 0xC000'0080;
inline constexpr u64 kEferNxe = u64{1} << 11;

// INVLPG drops the translation of one address, global or not, and every
// paging-structure cache entry (SDM §4.10.4.1); "memory": the next access
// through that address must come after it.
inline void invlpg(u64 va) { asm volatile("invlpg (%0)" : : "r"(va) : "memory"); }

/// Every translation, global ones included: toggling CR4.PGE flushes the
/// whole TLB (SDM §4.10.4.1, "MOV to CR4 ... modifies CR4.PGE").
inline void flush_all_global() {
  const u64 cr4 = read_cr4();
  write_cr4(cr4 ^ kCr4Pge);
  write_cr4(cr4);
}

/// Stops for good: with interrupts off, HLT waits for an NMI or reset
/// (SDM vol. 2A, HLT), and the loop halts again after an NMI.
[[noreturn]] inline void halt_forever() {
  for (;;) asm volatile("cli; hlt");
}

/// QEMU's isa-debug-exit (iobase 0xf4): QEMU exits with (value << 1) | 1.
[[noreturn]] inline void qemu_exit(u8 value) {
  outb(0xf4, value);
  halt_forever();  // only if the device is missing
}
inline constexpr u8 kExitPass = 0x10;  // QEMU status 33
inline constexpr u8 kExitFail = 0x11;  // QEMU status 35

}  // namespace kernel::cpu
