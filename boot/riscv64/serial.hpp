// The virt board's NS16550A UART, polled. QEMU needs no baud setup; the
// kernel only waits for the transmit holding register to empty.
#pragma once

#include "mmio.hpp"

namespace kernel::serial {

inline void put(char c) {
  constexpr ptkit::u64 kThr = 0, kLsr = 5;
  constexpr ptkit::u8 kLsrThrEmpty = 0x20;
  while ((*mmio::at<ptkit::u8>(mmio::kUart + kLsr) & kLsrThrEmpty) == 0) {
  }
  *mmio::at<ptkit::u8>(mmio::kUart + kThr) = static_cast<ptkit::u8>(c);
}

}  // namespace kernel::serial

#include "serial_format.hpp"  // write, hex, dec over put
