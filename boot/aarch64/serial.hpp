// PL011 UART output (QEMU virt: 0x0900_0000; PL011 TRM §3.3): the kernel's
// whole report goes here, one line per check. Polled, no interrupts. Before
// the MMU is on the UART is reached at its physical address; afterwards
// through the Device-nGnRE window of the direct map (moved there by
// serial::use_base once the new tables are live).
#pragma once

#include "ptkit/addr.hpp"

namespace kernel::serial {

inline constexpr ptkit::u64 kPl011 = 0x0900'0000;
inline constexpr ptkit::u64 kDataRegister = 0x00;  // UARTDR
inline constexpr ptkit::u64 kFlagRegister = 0x18;  // UARTFR
inline constexpr ptkit::u32 kTxFifoFull = 1u << 5;

inline ptkit::u64 g_base = kPl011;

inline void use_base(ptkit::u64 va) { g_base = va; }

inline volatile ptkit::u32& reg(ptkit::u64 offset) {
  return *reinterpret_cast<volatile ptkit::u32*>(g_base + offset);  // NOLINT: MMIO
}

inline void put(char c) {
  while ((reg(kFlagRegister) & kTxFifoFull) != 0) {
  }
  reg(kDataRegister) = static_cast<unsigned char>(c);
}

}  // namespace kernel::serial

#include "serial_format.hpp"  // write, hex, dec over put
