// COM1 (0x3f8) output: the kernel's whole report goes here, one line per
// check. Polled, no interrupts: the kernel never enables them.
#pragma once

#include "cpu.hpp"

namespace kernel::serial {

inline constexpr ptkit::u16 kCom1 = 0x3f8;

inline void init() {
  cpu::outb(kCom1 + 1, 0x00);  // no interrupts
  cpu::outb(kCom1 + 3, 0x80);  // DLAB: divisor follows
  cpu::outb(kCom1 + 0, 0x01);  // 115200 baud
  cpu::outb(kCom1 + 1, 0x00);
  cpu::outb(kCom1 + 3, 0x03);  // 8N1
  cpu::outb(kCom1 + 2, 0xC7);  // FIFO on, cleared
}

inline void put(char c) {
  while ((cpu::inb(kCom1 + 5) & 0x20) == 0) {
  }  // transmit holding register empty
  cpu::outb(kCom1, static_cast<ptkit::u8>(c));
}

}  // namespace kernel::serial

#include "serial_format.hpp"  // write, hex, dec over put
