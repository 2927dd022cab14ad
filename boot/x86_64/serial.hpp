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

inline void write(const char* s) {
  while (*s != 0) put(*s++);
}

inline void hex(ptkit::u64 v) {
  write("0x");
  bool started = false;
  for (int shift = 60; shift >= 0; shift -= 4) {
    const unsigned digit = (v >> shift) & 0xF;
    if (digit != 0 || started || shift == 0) {
      put("0123456789abcdef"[digit]);
      started = true;
    }
  }
}

inline void dec(ptkit::u64 v) {
  char buf[21];
  int n = 0;
  do {
    buf[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  while (n > 0) put(buf[--n]);
}

}  // namespace kernel::serial
