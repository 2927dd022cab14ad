// The virt board's devices the kernel touches (QEMU hw/riscv/virt.c memory
// map), reached at physical + an offset that is 0 before paging and the
// direct map's base after the switch to the kernel's own tables.
#pragma once

#include "ptkit/addr.hpp"

namespace kernel::mmio {

using ptkit::u64;

inline constexpr u64 kUart = 0x1000'0000;        // NS16550A
inline constexpr u64 kTestFinisher = 0x10'0000;  // sifive_test

/// Where device registers are reached: va = pa + g_offset.
inline u64 g_offset = 0;

template <class T>
volatile T* at(u64 pa) {
  return reinterpret_cast<volatile T*>(pa + g_offset);  // NOLINT: MMIO
}

/// sifive_test: (code << 16) | 0x3333 makes QEMU exit with `code`.
[[noreturn]] inline void qemu_exit(ptkit::u32 code) {
  *at<ptkit::u32>(kTestFinisher) = (code << 16) | 0x3333;
  for (;;) asm volatile("wfi");  // only if the device is missing
}
inline constexpr ptkit::u32 kExitPass = 33;
inline constexpr ptkit::u32 kExitFail = 35;

}  // namespace kernel::mmio
