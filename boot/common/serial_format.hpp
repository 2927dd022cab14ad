// Text, hex and decimal output over the architecture's serial port. Each
// kernel's serial.hpp defines `inline void kernel::serial::put(char)` first
// and then includes this, so the report reads the same on every architecture.
#pragma once

#include "ptkit/addr.hpp"

namespace kernel::serial {

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
